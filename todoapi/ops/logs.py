"""JSON logs, one line per request, and the request id that ties a request to its jobs."""

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from flask import Flask, Response, g, request
from pythonjsonlogger.orjson import OrjsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
_VALID_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
log = logging.getLogger("todoapi.request")


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request (or job) id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON handler on the root logger (idempotent: factories may run many times)."""
    root = logging.getLogger()
    if any(getattr(handler, "todoapi", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        OrjsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    handler.addFilter(RequestIdFilter())
    handler.todoapi = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request's full URL at INFO; a webhook URL may carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # peewee logs every statement with its parameters at DEBUG (password hashes, webhook secrets).
    logging.getLogger("peewee").setLevel(logging.INFO)


def init_request_logging(app: Flask) -> None:
    configure_logging()

    @app.before_request
    def _start() -> None:
        # From the environ: werkzeug's header lookup builds an exception for every absent header.
        offered = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = offered if _VALID_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        g.request_id_token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        if "request_id" not in g:  # failed before our hook ran (e.g. routing)
            _start()
        response.headers["X-Request-ID"] = g.request_id
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,  # never the query string or headers: no tokens in logs
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
                "request_id": g.request_id,
                "user_id": g.get("caller_id"),  # set once the caller's session was seen live
            },
        )
        return response

    @app.teardown_request
    def _forget(exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
)


def init_security_headers(app: Flask) -> None:
    @app.after_request
    def _secure(response: Response) -> Response:
        # Added where the response has not set its own; one pass over its headers, not one per name.
        present = {name.lower() for name, _ in response.headers.items()}
        for name, value in SECURITY_HEADERS:
            if name.lower() not in present:
                response.headers.add(name, value)
        if "HTTP_AUTHORIZATION" in request.environ or request.path.startswith("/auth/"):
            response.headers["Cache-Control"] = "no-store"  # personal data and tokens
        return response
