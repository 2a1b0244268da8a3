"""Redis and the job queue: one client per app, created by the factory."""

from flask import Flask, current_app
from redis import Redis

# Short timeouts: a Redis outage must not stall web requests (todo CRUD never needs Redis).
REDIS_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 2, "health_check_interval": 30}


def init_redis(app: Flask) -> None:
    app.extensions["redis"] = Redis.from_url(app.config["REDIS_URL"], **REDIS_OPTIONS)


def get_redis() -> Redis:
    redis: Redis = current_app.extensions["redis"]
    return redis
