"""The shared table by which gunicorn workers spread kept-alive connections (todoapi/ops/serving.py).

What a real server does with it is checked in tests/ops/test_metrics_gunicorn.py; these are the
table's rules, which a server only shows when a worker stops or dies.
"""

import ctypes
import logging
import os
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config

from todoapi.ops import serving
from todoapi.ops.logs import JsonLinesHandler


@pytest.fixture(autouse=True)
def empty_table() -> Iterator[None]:
    ctypes.memset(serving._TABLE, 0, ctypes.sizeof(serving._TABLE))
    yield
    ctypes.memset(serving._TABLE, 0, ctypes.sizeof(serving._TABLE))


def other_worker(index: int, connections: int, seen_ago: float = 0.0) -> None:
    entry = serving._TABLE[index]
    entry.pid, entry.connections, entry.seen = 100_000 + index, connections, time.monotonic() - seen_ago


def test_the_least_loaded_other_worker_counts_only_live_workers_that_are_not_this_one() -> None:
    own = serving._claim()
    assert own is not None
    serving._TABLE[own].connections = 0
    now = time.monotonic()
    assert serving.least_loaded_other(own, now) is None  # alone: it accepts everything

    other_worker(own + 1, 5)
    other_worker(own + 2, 1, seen_ago=serving.STALE_AFTER_S + 1)  # died or hangs
    assert serving.least_loaded_other(own, time.monotonic()) == 5
    other_worker(own + 3, 3)
    assert serving.least_loaded_other(own, time.monotonic()) == 3


def test_a_worker_keeps_its_entry_and_takes_over_only_a_stale_one() -> None:
    other_worker(0, 4)
    other_worker(1, 2, seen_ago=serving.STALE_AFTER_S + 1)
    own = serving._claim()
    assert own == 1
    assert serving._TABLE[1].pid == os.getpid() and serving._TABLE[1].connections == 0
    assert serving._claim() == 1  # claiming again finds its own entry
    assert serving._TABLE[0].pid == 100_000  # the live one is untouched


def test_a_stopping_worker_leaves_the_table_so_that_no_connection_is_left_to_it() -> None:
    worker = serving.BalancedThreadWorker(1, os.getpid(), [], None, 30, Config(), logging.getLogger("test"))
    worker._entry = serving._claim()
    assert worker._entry is not None
    worker.nr_conns = 1
    worker._publish()
    other_worker(worker._entry + 1, 6)
    assert serving.least_loaded_other(worker._entry + 1, time.monotonic()) == 1

    worker.alive = False  # SIGTERM: it finishes what it holds and accepts nothing new
    worker._publish()
    assert serving.least_loaded_other(worker._entry + 1, time.monotonic()) is None
    worker.tmp.close()


def gunicorns_handlers(logger: serving.JsonLogger) -> list[logging.Handler]:
    """The handlers gunicorn's setup put on its error log (pytest's capture adds its own)."""
    return [handler for handler in logger.error_log.handlers if getattr(handler, "_gunicorn", False)]


def test_gunicorn_lines_on_stderr_are_json_lines_and_a_reload_does_not_stack_them() -> None:
    config = Config()
    config.set("errorlog", "-")
    logger = serving.JsonLogger(config)
    logger.setup(config)  # what a configuration reload (SIGHUP) runs again
    [handler] = gunicorns_handlers(logger)
    assert isinstance(handler, JsonLinesHandler)
    assert logger.error_log.propagate is False  # not written twice, by the root's handler too


def test_a_gunicorn_error_log_file_keeps_gunicorn_text(tmp_path) -> None:
    config = Config()
    config.set("errorlog", str(tmp_path / "error.log"))
    logger = serving.JsonLogger(config)
    logger.error_log.info("Booting worker with pid: %s", 1)
    [handler] = gunicorns_handlers(logger)
    handler.flush()
    assert type(handler) is logging.FileHandler
    assert "[INFO] Booting worker with pid: 1" in (tmp_path / "error.log").read_text()
