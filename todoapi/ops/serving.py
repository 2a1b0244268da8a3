"""gunicorn's threaded worker, with kept-alive connections spread evenly over the workers, the
application's `Connection: close` honoured, and gunicorn's own errors in the API's error shape;
gunicorn's own log lines as the application's JSON lines.

All workers listen on one inherited socket and wake together when connections arrive; whichever
gets there first accepts them. A client that opens a pool of kept-alive connections at once (a
load balancer, a router) often lands most of them on one worker, which then queues its requests
behind each other while the other workers idle: on 2 cores, 16 connections split 13/3 put the
p99 at about 1.8 times that of an 8/8 split. Here each worker publishes how many connections it holds,
and one that holds more than the least loaded live worker leaves a new connection to that one.
"""

import ctypes
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from gunicorn import glogging, util
from gunicorn.workers.gthread import ThreadWorker

from todoapi.ops.logs import JsonLinesHandler

# Enough for any WEB_CONCURRENCY on one machine; a worker that finds no free entry accepts as usual.
ENTRIES = 64
# A worker's loop wakes at least once a second (gunicorn's poll timeout) and publishes each time:
# an entry not refreshed for longer belongs to a worker that died or hangs, and is ignored.
STALE_AFTER_S = 3.0
# How long a worker that left a connection to another stays off the listening socket. Without a
# pause it would be woken again at once by the same connection, until the other accepts it.
PAUSE_S = 0.002


class _Entry(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_int), ("connections", ctypes.c_int), ("seen", ctypes.c_double)]


# Created in the master when gunicorn loads the worker class, before any fork: every worker
# inherits the same shared memory and lock.
_TABLE = multiprocessing.RawArray(_Entry, ENTRIES)
_CLAIM = multiprocessing.Lock()


def _claim() -> int | None:
    """This process's entry: a free one, or one a dead or hung worker left behind."""
    pid, now = os.getpid(), time.monotonic()
    with _CLAIM:
        for index, entry in enumerate(_TABLE):
            if entry.pid in (0, pid) or now - entry.seen > STALE_AFTER_S:
                entry.pid, entry.connections, entry.seen = pid, 0, now
                return index
    return None


def least_loaded_other(own: int | None, now: float) -> int | None:
    """The fewest connections any other live worker holds (None when there is none)."""
    counts = []
    for index, entry in enumerate(_TABLE):
        if not entry.seen:
            break  # entries are claimed lowest first: none after a never-used one was ever used
        if index != own and entry.pid and now - entry.seen <= STALE_AFTER_S:
            counts.append(entry.connections)
    return min(counts) if counts else None


def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it could not parse (a bad request line, headers over its
    limits), as JSON in the API's error shape instead of an HTML page. Connection: close, as
    gunicorn's own: where the next request would start is unknown."""
    body = orjson.dumps({"code": status_int, "status": reason, "message": mesg or reason})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# `Worker.handle_error` looks the function up in gunicorn.util at each call; only processes that
# import this module (gunicorn with this worker class) answer so.
util.write_error = write_error

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def honour_connection_close(app: WSGIApp) -> WSGIApp:
    """gunicorn drops a response's hop-by-hop `Connection` header and decides keep-alive itself,
    after the response is written: a 413 went out saying keep-alive, then the connection closed
    (gunicorn drains at most 64 KiB of an unread body). The application's `close` now holds."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            for name, value in headers:
                if name.lower() == "connection" and value.lower() == "close":
                    start_response.__self__.force_close()  # type: ignore[attr-defined]  # gunicorn's Response
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped


class BalancedThreadWorker(ThreadWorker):
    _entry: int | None = None
    _paused_until = 0.0

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi: WSGIApp = honour_connection_close(self.wsgi)

    def init_process(self) -> None:
        self._entry = _claim()
        super().init_process()

    def _publish(self) -> None:
        if self._entry is None:
            return
        entry = _TABLE[self._entry]
        if self.alive:
            entry.connections, entry.seen = self.nr_conns, time.monotonic()
        else:
            # Stopping: it accepts nothing more, so no other worker may leave connections to it.
            entry.pid = 0

    def accept(self, listener: Any) -> None:
        now = time.monotonic()
        least = least_loaded_other(self._entry, now)
        if least is not None and self.nr_conns > least:
            self._paused_until = now + PAUSE_S
            self.set_accept_enabled(False)
            return
        super().accept(listener)  # the count is published once this turn's events are dispatched

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and time.monotonic() < self._paused_until:
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        pause_left = self._paused_until - time.monotonic()
        if pause_left > 0 and not self._accepting:
            timeout = min(timeout, pause_left)  # wake when the pause ends, to listen again
        super().wait_for_and_dispatch_events(timeout)
        self._publish()


class JsonLogger(glogging.Logger):
    """gunicorn's own lines on stderr (start, workers booted and exiting, signals, timeouts) as the
    application's JSON lines, so that whatever reads the web's log reads one format. An error log
    written to a file (`--error-logfile`) keeps gunicorn's text."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if cfg.errorlog != "-":
            return
        for handler in list(self.error_log.handlers):
            if type(handler) is logging.StreamHandler and getattr(handler, "_gunicorn", False):
                self.error_log.removeHandler(handler)
        handler = JsonLinesHandler()
        handler._gunicorn = True  # type: ignore[attr-defined]  # gunicorn's next setup() replaces it
        self.error_log.addHandler(handler)
