"""Dependency probes for the health endpoints: a short reason when something is down."""

from peewee import PeeweeException
from playhouse.pool import MaxConnectionsExceeded
from redis.exceptions import RedisError

from todoapi.db import HANDSHAKE_SECONDS, answer_within, db, pending_migrations
from todoapi.queue import get_redis


def database_problem(schema: bool = False) -> str | None:
    """Why the database cannot serve, or None; `schema`: also when migrations are pending (a
    database that answers but was never released to would fail every request)."""
    try:
        with answer_within(HANDSHAKE_SECONDS):  # SPEC: 503 within 2 s, also when the server hangs
            db.execute_sql("SELECT 1").fetchone()
            pending = pending_migrations(db.obj) if schema else []
    except (PeeweeException, MaxConnectionsExceeded) as exc:
        return f"unreachable ({type(exc).__name__})"
    if pending:
        return f"schema not migrated ({len(pending)} pending; run the release step)"
    return None


def redis_problem() -> str | None:
    try:
        get_redis().ping()
    except RedisError as exc:
        return f"unreachable ({type(exc).__name__})"
    return None
