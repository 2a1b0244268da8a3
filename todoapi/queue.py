"""Redis and the job queue: one client per app, created by the factory."""

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Worker

# Short timeouts: a Redis outage must not stall web requests (todo CRUD never needs Redis).
REDIS_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 2, "health_check_interval": 30}
QUEUE_NAMES = ("default",)


def init_redis(app: Flask) -> None:
    app.extensions["redis"] = Redis.from_url(app.config["REDIS_URL"], **REDIS_OPTIONS)


def get_redis() -> Redis:
    redis: Redis = current_app.extensions["redis"]
    return redis


def run_worker(app: Flask) -> None:
    """Work the app's queues until stopped; the worker's scheduler runs delayed and retried jobs."""
    redis = app.extensions["redis"]
    queues = [Queue(name, connection=redis) for name in QUEUE_NAMES]
    with app.app_context():
        Worker(queues, connection=redis).work(with_scheduler=True)
