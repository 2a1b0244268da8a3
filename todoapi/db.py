"""Database binding: a proxy set up by the app factory, never at import time."""

from pathlib import Path
from typing import Any

from flask import Flask
from peewee import Database, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import connect
from playhouse.migrations import Runner

db = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Serialises concurrent `migrate` runs (two release steps racing) on PostgreSQL.
_MIGRATION_LOCK_ID = 7_261_504

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "synchronous": "normal",
}


def open_database(url: str, timeout_seconds: int = 2) -> Database:
    """Build (not connect) the database named by a `DATABASE_URL`."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return connect(
            "postgresql+pool://" + url[len("postgresql://") :],
            max_connections=20,
            stale_timeout=300,
            timeout=timeout_seconds,  # wait for a free pooled connection, then fail
            connect_timeout=timeout_seconds,
            keepalives=1,
            keepalives_idle=30,
        )
    if url.startswith("sqlite:///"):
        return connect(url, pragmas=SQLITE_PRAGMAS, timeout=timeout_seconds + 3)
    raise ValueError(f"DATABASE_URL must start with sqlite:/// or postgresql://, got {url.split(':')[0]!r}")


def init_db(app: Flask) -> None:
    db.initialize(open_database(app.config["DATABASE_URL"], app.config["DB_TIMEOUT_SECONDS"]))

    # Connections open lazily on the first query, so /health touches nothing; the
    # teardown returns a pooled connection (or closes SQLite's) after every request.
    @app.teardown_appcontext
    def _close_db(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()


def is_postgres(database: Any = db) -> bool:
    target = database.obj if isinstance(database, DatabaseProxy) else database
    return isinstance(target, PostgresqlDatabase)


def is_sqlite(database: Any = db) -> bool:
    target = database.obj if isinstance(database, DatabaseProxy) else database
    return isinstance(target, SqliteDatabase)


def write_transaction() -> Any:
    """A transaction that takes the write lock at BEGIN on SQLite, so two writers that read
    first never deadlock on the upgrade; PostgreSQL locks rows as it goes (see `for_update`)."""
    return db.atomic("IMMEDIATE") if is_sqlite() else db.atomic()


def for_update(query: Any) -> Any:
    """Lock the selected rows until commit where the database can (SQLite: the whole file already is)."""
    return query.for_update() if is_postgres() else query


def migrate(database: Database) -> list[str]:
    """Apply pending migrations from `migrations/`; returns the names applied (idempotent)."""
    with database.connection_context():
        locked = is_postgres(database)
        if locked:
            database.execute_sql("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            return Runner(database, str(MIGRATIONS_DIR)).up()
        finally:
            if locked:
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
