"""Redis and the job queue: one client per app, created by the factory; the worker loop."""

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from typing import Any
from uuid import uuid4

from flask import Flask, current_app
from redis import Redis
from redis.client import PubSub, PubSubWorkerThread
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.job import Job
from rq.scheduler import RQScheduler

from todoapi.ops.logs import request_id_var

log = logging.getLogger(__name__)

# Short timeouts: a Redis outage must not stall web requests (todo CRUD never needs Redis).
REDIS_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 5, "health_check_interval": 30}
QUEUE_NAME = "default"
MAX_BACKOFF_SECONDS = 30
# How soon a worker notices that its scheduler process died or that the scheduler lock is free.
SCHEDULER_CHECK_SECONDS = 2


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


class AppScheduler(RQScheduler):
    """RQ's scheduler process, ending with one log line when Redis goes away (the worker starts it
    again). RQ's own process function logs a traceback, and multiprocessing prints another, raw, on
    stderr."""

    def start(self) -> BaseProcess:
        self._status = self.Status.STARTED
        self._connection = None  # the process opens a pool of its own after the fork
        process = get_context("fork").Process(target=_run_scheduler, args=(self,), name="Scheduler")
        process.start()
        self._process = process  # type: ignore[assignment]  # RQ leaves the attribute unannotated
        return process


def _run_scheduler(scheduler: RQScheduler) -> None:
    log.info("scheduler started pid=%s queues=%s", os.getpid(), ",".join(sorted(scheduler.acquired_locks)))
    try:
        scheduler.work()
    except RedisError as exc:
        if scheduler._stop_requested:  # stopping with its worker: its locks expire by themselves
            log.info("scheduler stopped; redis unavailable (%s)", type(exc).__name__)
            return
        log.warning(
            "scheduler lost redis (%s); the worker starts another once redis answers", type(exc).__name__
        )
        sys.exit(1)
    except Exception:
        log.exception("scheduler crashed; the worker starts another")
        sys.exit(1)


class AppWorker(_TracedJobs, Worker):
    """RQ's forking worker, which keeps its scheduler running.

    RQ looks at the scheduler process only in its maintenance pass (every 10 minutes), and an idle
    worker waits up to 405 s in one BLPOP: a scheduler that died in a Redis outage, or that could not
    start because an older worker held the lock, left retries waiting for minutes. This worker waits
    for jobs in turns of a few seconds and between them starts the scheduler again, through RQ's
    own `acquire_locks(auto_start=True)`, as soon as its process is gone and the lock is free.
    """

    # RQ's reconnect backoff grows to this (its default is 60 s): back at work within seconds of Redis.
    max_connection_wait_time = 10.0
    _scheduler_checked_at = 0.0
    # The name the scheduler holds its lock under. `run_worker` keeps one for all the workers it starts
    # in turn: the lock of a scheduler stopped while Redis was away (so never released) is then taken
    # back by the next one at once, not after the lock's 61 s expiry.
    scheduler_name: str | None = None

    @property
    def dequeue_timeout(self) -> int:
        return SCHEDULER_CHECK_SECONDS

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or self._scheduler_stopped()

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # registries, and RQ's own scheduler check
        elif self.scheduler is not None:
            self.scheduler.acquire_locks(auto_start=True)

    def _scheduler_stopped(self) -> bool:
        """Whether the scheduler process is not running; asked at most every SCHEDULER_CHECK_SECONDS."""
        if self.scheduler is None or self.last_cleaned_at is None:  # none wanted, or work() starts it
            return False
        if self._stop_requested:
            # Stopping: the SIGTERM to the group ended the scheduler too. One forked now would have
            # missed that signal, and the worker's teardown would wait for it.
            return False
        now = time.monotonic()
        if now - self._scheduler_checked_at < SCHEDULER_CHECK_SECONDS:
            return False
        self._scheduler_checked_at = now
        process = self.scheduler._process
        if process is not None and process.is_alive():  # is_alive() also reaps a process that ended
            return False
        # Forget an ended process: RQ's stop_scheduler would signal its pid, which the system may reuse.
        self.scheduler._process = None
        return True

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with AppScheduler."""
        self.scheduler = AppScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
            name=self.scheduler_name,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def _pubsub_exception_handler(
        self, exc: Exception, pubsub: PubSub, pubsub_thread: PubSubWorkerThread
    ) -> None:
        # RQ logs an error here every 2 s of an outage; the dequeue loop already reports it.
        if isinstance(exc, RedisConnectionError):
            time.sleep(2.0)
        else:
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)


class _OutageWithoutTraceback(logging.Filter):
    """RQ logs a worker that quits because Redis went away mid-job with a traceback, and `run_worker`
    says so again as it restarts the worker: one line naming the error is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (RedisConnectionError, RedisTimeoutError)):
            record.msg = f"{record.msg} (redis unavailable: {type(record.exc_info[1]).__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


_outage_without_traceback = _OutageWithoutTraceback()


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
        name, pause = self.func.__name__, min(1.0, self.interval / 4)
        down_since: float | None = None  # logged once when an outage starts and once when it ends
        with self.app.app_context():
            while True:
                try:
                    if get_redis().set(self.lock_key, "1", nx=True, ex=self.interval):
                        get_queue().enqueue(self.func)
                    if down_since is not None:
                        log.info(
                            "ticker for %s: redis is back after %.0f s", name, time.monotonic() - down_since
                        )
                        down_since = None
                except RedisError as exc:
                    if down_since is None:
                        down_since = time.monotonic()
                        log.warning(
                            "ticker for %s: redis unavailable (%s); retrying every %g s",
                            name,
                            type(exc).__name__,
                            pause,
                        )
                time.sleep(pause)


def run_worker(app: Flask, every: Mapping[Callable[..., Any], int] | None = None) -> None:
    """Work the queue until SIGTERM/SIGINT, surviving Redis outages; tick the repeating jobs."""
    logging.getLogger("rq.worker").addFilter(_outage_without_traceback)
    with app.app_context():
        for func, interval in (every or {}).items():
            Ticker(app, func, interval).start()
        # The worker blocks on BLPOP for its dequeue timeout: its client must not time out sooner,
        # unlike the web's short-timeout client.
        connection = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=1, socket_timeout=600)
        # Safe to share: RQ's teardown stops (and joins) a worker's scheduler before the next starts.
        scheduler_name = uuid4().hex
        backoff = 1.0
        while True:
            worker = None
            started = time.monotonic()
            try:
                worker = AppWorker([Queue(QUEUE_NAME, connection=connection)], connection=connection)
                worker.scheduler_name = scheduler_name
                worker.work(with_scheduler=True)
            except RedisError as exc:
                if _stop_requested(worker):
                    log.info("worker stopped; redis unavailable (%s)", type(exc).__name__)
                    return
                log.error("worker lost redis (%s); restarting in %.0f s", type(exc).__name__, backoff)
            except (StopRequested, KeyboardInterrupt):
                return
            if _stop_requested(worker):
                return  # SIGTERM/SIGINT: RQ finished its warm shutdown
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran fine for a while: this is a new outage
            # RQ's handlers belong to the worker that just quit; between workers, a signal stops us.
            signal.signal(signal.SIGTERM, _interrupt)
            signal.signal(signal.SIGINT, _interrupt)
            try:
                time.sleep(backoff)
            except KeyboardInterrupt:
                log.info("worker stopped before its restart")
                return
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _stop_requested(worker: Worker | None) -> bool:
    return worker is not None and (worker._stop_requested or worker._shutdown_requested_date is not None)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
