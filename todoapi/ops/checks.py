"""Dependency probes for the health endpoints: a short reason when something is down."""

from peewee import PeeweeException
from playhouse.pool import MaxConnectionsExceeded
from redis.exceptions import RedisError

from todoapi.db import HANDSHAKE_SECONDS, answer_within, db
from todoapi.queue import get_redis


def database_problem() -> str | None:
    try:
        with answer_within(HANDSHAKE_SECONDS):  # SPEC: 503 within 2 s, also when the server hangs
            db.execute_sql("SELECT 1").fetchone()
    except (PeeweeException, MaxConnectionsExceeded) as exc:
        return f"unreachable ({type(exc).__name__})"
    return None


def redis_problem() -> str | None:
    try:
        get_redis().ping()
    except RedisError as exc:
        return f"unreachable ({type(exc).__name__})"
    return None
