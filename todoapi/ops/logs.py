"""JSON logs, one line per request, and the request id that ties a request to its jobs."""

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
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


def log_time(created: float) -> str:
    """A record's time: ISO 8601 in UTC, to the millisecond (lines of one second stay in order)."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class _Formatter(OrjsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return log_time(record.created)


class JsonLinesHandler(logging.StreamHandler):
    """Our one handler: a JSON object per line (python-json-logger's orjson formatter) on stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(
            _Formatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
        self.addFilter(RequestIdFilter())

    def request_line(self, fields: dict[str, Any], created: float) -> str:
        """The line `log.info("request", extra=fields)` at `created` gets from this handler's
        formatter (tests hold the two equal)."""
        data = {
            "time": log_time(created),
            "level": "INFO",
            "logger": log.name,
            "message": "request",
            **fields,
        }
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()

    def write_request(self, fields: dict[str, Any]) -> None:
        """Write the request line without a LogRecord, the way `emit` writes one."""
        self.acquire()
        try:
            self.stream.write(self.request_line(fields, time.time()) + self.terminator)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra=fields))
        finally:
            self.release()


def _sole_handler() -> JsonLinesHandler | None:
    """Our handler, when it is the only one the request line reaches and nothing filters it.

    Through `log.info` the line costs ~25 µs of a request (the record, the logger chain, the
    formatter's generic merge of the record's attributes); written here, ~10. Any other handler or
    filter (pytest's capture, a deployer's own) gets the record through logging as usual.
    """
    if log.filters or not log.isEnabledFor(logging.INFO):
        return None
    handlers: list[logging.Handler] = []
    logger: logging.Logger | None = log
    while logger is not None:
        handlers.extend(logger.handlers)
        logger = logger.parent if logger.propagate else None
    if len(handlers) != 1:
        return None
    [handler] = handlers
    if not isinstance(handler, JsonLinesHandler) or handler.level > logging.INFO:
        return None
    if not all(isinstance(f, RequestIdFilter) for f in handler.filters):
        return None
    return handler


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON handler on the root logger (idempotent: factories may run many times)."""
    root = logging.getLogger()
    if any(isinstance(handler, JsonLinesHandler) for handler in root.handlers):
        return
    root.addHandler(JsonLinesHandler())
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
        fields = {
            "method": request.method,
            "path": request.path,  # never the query string or headers: no tokens in logs
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
            "request_id": g.request_id,
            "user_id": g.get("caller_id"),  # set once the caller's session was seen live
        }
        handler = _sole_handler()
        if handler is None:
            log.info("request", extra=fields)
        else:
            handler.write_request(fields)
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
