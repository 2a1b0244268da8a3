"""Domain errors and the one function that builds every error body."""

import logging
from typing import Any

from flask import Flask
from peewee import InterfaceError, OperationalError
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.http import HTTP_STATUS_CODES

from todoapi.db import contention

log = logging.getLogger(__name__)


class AppError(Exception):
    code = 400
    headers: dict[str, str] = {}

    def __init__(self, message: str, errors: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class Unauthorized(AppError):
    code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    code = 403


class NotFound(AppError):
    code = 404


class Conflict(AppError):
    code = 409


class PreconditionFailed(AppError):
    code = 412


class Unprocessable(AppError):
    code = 422


class ServiceUnavailable(AppError):
    code = 503


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    # werkzeug's phrases, not http.HTTPStatus: Python 3.13 renamed 413 and 422.
    body: dict[str, Any] = {"code": code, "status": HTTP_STATUS_CODES.get(code, "Error"), "message": message}
    if errors:
        body["errors"] = errors
    return body


def init_errors(app: Flask) -> None:
    """Errors raised outside werkzeug's HTTPException tree; smorest's Api handles the rest."""

    @app.errorhandler(AppError)
    def _app_error(error: AppError) -> tuple[dict[str, Any], int, dict[str, str]]:
        return error_body(error.code, error.message, error.errors), error.code, dict(error.headers)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(MaxConnectionsExceeded)
    def _database_down(error: Exception) -> tuple[dict[str, Any], int, dict[str, str]]:
        kind = contention(error)
        if kind is not None:
            log.warning("another transaction's locks stood in the way: %s", kind)
            message = "The request waited too long for another change to finish; try again shortly."
            return error_body(503, message), 503, {"Retry-After": "1"}
        log.error("database unavailable: %s", type(error).__name__)
        return error_body(503, "The database is unavailable; try again shortly."), 503, {"Retry-After": "5"}
