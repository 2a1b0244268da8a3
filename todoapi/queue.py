"""Redis and the job queue: one client per app, created by the factory; the worker loop."""

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job

from todoapi.ops.logs import request_id_var

log = logging.getLogger(__name__)

# Short timeouts: a Redis outage must not stall web requests (todo CRUD never needs Redis).
REDIS_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 5, "health_check_interval": 30}
QUEUE_NAME = "default"
MAX_BACKOFF_SECONDS = 30


def init_redis(app: Flask) -> None:
    app.extensions["redis"] = Redis.from_url(app.config["REDIS_URL"], **REDIS_OPTIONS)


def get_redis() -> Redis:
    redis: Redis = current_app.extensions["redis"]
    return redis


def get_queue() -> Queue:
    return Queue(QUEUE_NAME, connection=get_redis())


def enqueue(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Job | None:
    """Enqueue a job; if Redis is down, log and return None (the next scan picks the work up).

    The job carries the current request (or job) id, so its log lines can be traced back.
    """
    kwargs.setdefault("meta", {"request_id": request_id_var.get()})
    try:
        return get_queue().enqueue(func, *args, **kwargs)
    except RedisError as exc:
        log.warning("queue unavailable (%s), %s deferred to the next scan", type(exc).__name__, func.__name__)
        return None


class _TracedJobs:
    """Runs each job with the request id it was enqueued under (or its own id)."""

    def perform_job(self, job: Job, queue: Queue) -> bool:
        token = request_id_var.set(job.meta.get("request_id") or job.id)
        try:
            return super().perform_job(job, queue)  # type: ignore[misc]
        finally:
            request_id_var.reset(token)


class AppWorker(_TracedJobs, Worker):
    pass


class AppSimpleWorker(_TracedJobs, SimpleWorker):
    """In-process worker (tests, one-off draining)."""


class Ticker(threading.Thread):
    """Enqueues `func` every `interval` seconds, at most once per interval across all workers.

    The Redis key taken with SET NX EX is the cross-process lock; the work itself must still
    be idempotent (it is: the database decides what was already done).
    """

    def __init__(self, app: Flask, func: Callable[..., Any], interval: int):
        super().__init__(name=f"ticker:{func.__name__}", daemon=True)
        self.app, self.func, self.interval = app, func, interval
        self.lock_key = f"todoapi:tick:{func.__module__}.{func.__name__}"

    def run(self) -> None:
        with self.app.app_context():
            while True:
                try:
                    if get_redis().set(self.lock_key, "1", nx=True, ex=self.interval):
                        get_queue().enqueue(self.func)
                except RedisError as exc:
                    log.warning(
                        "ticker for %s: redis unavailable (%s)", self.func.__name__, type(exc).__name__
                    )
                time.sleep(min(1.0, self.interval / 4))


def run_worker(app: Flask, every: Mapping[Callable[..., Any], int] | None = None) -> None:
    """Work the queue until SIGTERM/SIGINT, surviving Redis outages; tick the repeating jobs."""
    with app.app_context():
        for func, interval in (every or {}).items():
            Ticker(app, func, interval).start()
        # The worker blocks on BLPOP for up to RQ's dequeue timeout (405 s): its client must not
        # time out sooner, unlike the web's short-timeout client.
        connection = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=1, socket_timeout=600)
        backoff = 1.0
        while True:
            worker = None
            started = time.monotonic()
            try:
                worker = AppWorker([Queue(QUEUE_NAME, connection=connection)], connection=connection)
                worker.work(with_scheduler=True)
            except RedisError as exc:
                log.error("worker lost redis (%s); restarting in %.0f s", type(exc).__name__, backoff)
            except (StopRequested, KeyboardInterrupt):
                return
            if worker is not None and (worker._stop_requested or worker._shutdown_requested_date is not None):
                return  # SIGTERM/SIGINT: RQ finished its warm shutdown
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran fine for a while: this is a new outage
            # RQ's handlers belong to the worker that just quit; between workers, a signal stops us.
            signal.signal(signal.SIGTERM, _interrupt)
            signal.signal(signal.SIGINT, _interrupt)
            try:
                time.sleep(backoff)
            except KeyboardInterrupt:
                return
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
