"""How `DATABASE_URL` becomes a database: SQLite pragmas, PostgreSQL pooling, URL forms."""

import pytest
from playhouse.pool import PooledPostgresqlDatabase

from todoapi.db import db, open_database


def test_sqlite_urls_relative_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_database("sqlite:///todo.db").database == "todo.db"
    assert open_database(f"sqlite:///{tmp_path}/abs.db").database == f"{tmp_path}/abs.db"


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path):
    database = open_database(f"sqlite:///{tmp_path}/x.db")
    with database.connection_context():
        pragma = lambda name: database.execute_sql(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 1000


def test_postgres_urls_give_a_per_process_pool():
    for url in ("postgresql://postgres@127.0.0.1:5432/test", "postgres://postgres@127.0.0.1:5432/test"):
        database = open_database(url)
        assert isinstance(database, PooledPostgresqlDatabase)
        assert database.connect_params["connect_timeout"] == 2


def test_unknown_schemes_are_refused():
    with pytest.raises(ValueError, match="DATABASE_URL"):
        open_database("mysql://root@localhost/todo")


def test_nothing_connects_at_import_or_app_creation(make_app):
    make_app(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")  # unreachable, yet builds fine
    assert db.is_closed()
