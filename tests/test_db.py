"""How `DATABASE_URL` becomes a database: SQLite pragmas, pooling, URL forms."""

import threading
from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from peewee import IntegrityError
from playhouse.pool import PooledPostgresqlDatabase

import todoapi.db as db_module
from tests.helpers import sent_statements
from todoapi.db import db, execute_together, open_database, planned_each_time


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


def test_sqlite_connections_are_kept_between_requests_and_shared_by_threads(tmp_path):
    database = open_database(f"sqlite:///{tmp_path}/kept.db")
    opened: list[object] = []

    def one_request() -> None:
        with database.connection_context():
            opened.append(database.connection())
            assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1

    one_request()
    one_request()
    worker = threading.Thread(target=one_request)  # another thread takes the same connection back out
    worker.start()
    worker.join()
    assert len(opened) == 3
    assert opened[0] is opened[1] is opened[2]  # opened (and its pragmas set) once
    database.close_all()


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


def test_request_reads_run_as_prepared_statements_planned_once_per_connection(postgres_url, monkeypatch):
    database = open_database(postgres_url)
    monkeypatch.setattr(db_module, "PREPARED_PER_CONNECTION", 2)

    def prepared() -> list[str]:
        """What this connection holds prepared (asked past execute_sql, so as not to prepare this)."""
        cursor = database.connection().cursor()
        cursor.execute("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
        return [row[0].split(" AS ", 1)[1] for row in cursor.fetchall()]

    with Flask(__name__).test_request_context(), database.connection_context():
        assert database.execute_sql("SELECT %s::int + %s, '100%%'", (1, 2)).fetchone() == (3, "100%")
        assert database.execute_sql("SELECT %s::int + %s, '100%%'", (5, 2)).fetchone() == (7, "100%")
        assert database.execute_sql("SELECT 'no parameters'").fetchone() == ("no parameters",)
        assert prepared() == [
            "SELECT $1::int + $2, '100%'",
            "SELECT 'no parameters'",
        ]
        # A third shape evicts the least recently used one (DEALLOCATE): at most 2 per connection.
        assert database.execute_sql("SELECT %s::text", ("x",)).fetchone() == ("x",)
        assert prepared() == [
            "SELECT 'no parameters'",
            "SELECT $1::text",
        ]
        # PostgreSQL cannot type this parameter: the statement runs as it is, and keeps doing so.
        for _ in range(2):
            assert database.execute_sql("SELECT %s IS NULL", ("untyped",)).fetchone() == (False,)
        assert prepared() == ["SELECT 'no parameters'", "SELECT $1::text"]
        # A transaction's first statement is prepared before its BEGIN is sent, where a failed
        # PREPARE aborts nothing; later ones run as they are (a failed PREPARE would abort it).
        with database.atomic():
            assert database.execute_sql("SELECT %s::int * 2", (21,)).fetchone() == (42,)
            assert database.execute_sql("SELECT %s::int * 3", (21,)).fetchone() == (63,)
        assert prepared() == ["SELECT $1::text", "SELECT $1::int * 2"]
        with database.atomic():  # a first statement that cannot be prepared: the transaction goes on
            assert database.execute_sql("SELECT %s IS NOT NULL", ("untyped",)).fetchone() == (True,)
            assert database.execute_sql("SELECT %s::int * 3", (2,)).fetchone() == (6,)
        assert prepared() == ["SELECT $1::text", "SELECT $1::int * 2"]
    with database.connection_context():  # outside a request (worker, CLI): plain statements
        assert database.execute_sql("SELECT %s::int - 1", (1,)).fetchone() == (0,)
        assert all("- 1" not in sql for sql in prepared())
    database.close_all()


def test_prepared_statements_run_generic_plans_and_counts_are_planned_each_time(postgres_url):
    database = open_database(postgres_url)

    def ask(sql: str) -> list[tuple[Any, ...]]:
        """Asked past execute_sql, so as not to prepare this."""
        cursor = database.connection().cursor()
        cursor.execute(sql)
        return cursor.fetchall()

    with Flask(__name__).test_request_context(), database.connection_context():
        # The setting rides with the connection's first PREPARE that succeeds.
        assert database.execute_sql("SELECT %s IS NULL", ("untyped",)).fetchone() == (False,)
        assert ask("SHOW plan_cache_mode") == [("auto",)]
        for n in range(3):
            assert database.execute_sql("SELECT %s::int + 1", (n,)).fetchone() == (n + 1,)
        assert ask("SHOW plan_cache_mode") == [("force_generic_plan",)]
        assert ask("SELECT generic_plans, custom_plans FROM pg_prepared_statements") == [(3, 0)]
        with planned_each_time():
            assert database.execute_sql("SELECT %s::int * 5", (2,)).fetchone() == (10,)
        assert database.execute_sql("SELECT %s::int * 7", (2,)).fetchone() == (14,)
        statements = [
            row[0].split(" AS ", 1)[1] for row in ask("SELECT statement FROM pg_prepared_statements")
        ]
        assert sorted(statements) == ["SELECT $1::int * 7", "SELECT $1::int + 1"]
    database.close_all()


def test_in_a_request_a_connection_back_moments_ago_is_reused_without_a_ping(postgres_url, monkeypatch):
    database = open_database(postgres_url)

    statements = sent_statements(database)
    with Flask(__name__).test_request_context():
        for n in range(3):
            with database.connection_context():
                database.execute_sql(f"SELECT {n} + 10")
    # The first checkout opened the connection; the next two, moments later, skipped peewee's ping.
    assert statements.count("SELECT 1") == 0, statements
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    with Flask(__name__).test_request_context(), database.connection_context():  # idle "long enough"
        database.execute_sql("SELECT 4 + 0")
    with database.connection_context():  # outside a request: always pinged
        database.execute_sql("SELECT 5 + 0")
    assert statements.count("SELECT 1") == 2, statements
    database.close_all()


def test_a_connection_checked_in_inside_a_transaction_is_rolled_back_and_kept(postgres_url):
    database = open_database(postgres_url)
    with database.connection_context():
        database.execute_sql("CREATE TABLE IF NOT EXISTS checkin_probe (n int)")
        database.execute_sql("TRUNCATE checkin_probe")
    with Flask(__name__).test_request_context():
        with database.connection_context():
            conn = database.connection()
            conn.cursor().execute("BEGIN; INSERT INTO checkin_probe VALUES (1)")  # never finished
            assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
        with database.connection_context():  # the same connection, back from the pool
            assert database.connection() is conn
            assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
            assert database.execute_sql("SELECT count(*) FROM checkin_probe").fetchone() == (0,)
    with database.connection_context():
        database.execute_sql("DROP TABLE checkin_probe")
    database.close_all()


def test_begin_travels_with_the_first_statement_of_a_transaction(postgres_url):
    database = open_database(postgres_url)

    def rows_seen_elsewhere() -> list[int]:
        with psycopg2.connect(postgres_url) as other, other.cursor() as cursor:
            cursor.execute("SELECT n FROM begin_probe ORDER BY n")
            return [row[0] for row in cursor.fetchall()]

    statements = sent_statements(database)
    with database.connection_context():
        database.execute_sql("CREATE TABLE IF NOT EXISTS begin_probe (n int)")
        database.execute_sql("TRUNCATE begin_probe")
        statements.clear()

        with database.atomic():
            database.execute_sql("INSERT INTO begin_probe VALUES (%s)", (1,))
            assert rows_seen_elsewhere() == []  # inside a transaction block: not committed yet
            with database.atomic():  # a savepoint
                database.execute_sql("INSERT INTO begin_probe VALUES (%s)", (2,))
        assert rows_seen_elsewhere() == [1, 2]
        assert statements[0] == "BEGIN; INSERT INTO begin_probe VALUES (%s)"
        assert statements[-1] == "COMMIT"
        assert "BEGIN" not in statements[1:]

        with pytest.raises(RuntimeError), database.atomic():
            database.execute_sql("INSERT INTO begin_probe VALUES (%s)", (3,))
            raise RuntimeError
        assert rows_seen_elsewhere() == [1, 2]  # rolled back

        statements.clear()
        with database.atomic():
            pass
        assert statements == []  # an empty transaction costs no round trip at all
        database.execute_sql("INSERT INTO begin_probe VALUES (%s)", (4,))
        assert statements == ["INSERT INTO begin_probe VALUES (%s)"]  # no BEGIN left over
        assert database.connection().info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        assert rows_seen_elsewhere() == [1, 2, 4]
        database.execute_sql("DROP TABLE begin_probe")
    database.close_all()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_statements_run_together_in_order_and_in_one_round_trip_on_postgres(kind, postgres_url, tmp_path):
    url = postgres_url if kind == "postgres" else f"sqlite:///{tmp_path / 'together.db'}"
    database = open_database(url)
    statements = sent_statements(database) if kind == "postgres" else []
    bound = db.obj
    db.initialize(database)
    try:
        with database.connection_context():
            database.execute_sql("CREATE TABLE together_probe (n int, label text)")
            statements.clear()
            with database.atomic():
                cursor = execute_together(
                    ("INSERT INTO together_probe VALUES (%s, %s)".replace("%s", database.param), (1, "50%")),
                    ("UPDATE together_probe SET n = n + %s".replace("%s", database.param), (10,)),
                    ("SELECT n, label FROM together_probe", ()),
                )
                assert cursor.fetchall() == [(11, "50%")]  # in order; the last statement's rows
            if kind == "postgres":
                assert len(statements) == 2, statements  # BEGIN with all three, then COMMIT
            database.execute_sql("DROP TABLE together_probe")
    finally:
        db.initialize(bound)
        if kind == "postgres":
            database.close_all()
        else:
            database.close()


def test_commit_travels_with_the_last_statements_of_a_transaction(postgres_url):
    database = open_database(postgres_url)
    statements = sent_statements(database)
    bound = db.obj
    db.initialize(database)

    def rows_seen_elsewhere() -> list[int]:
        with psycopg2.connect(postgres_url) as other, other.cursor() as cursor:
            cursor.execute("SELECT n FROM commit_probe ORDER BY n")
            return [row[0] for row in cursor.fetchall()]

    try:
        with database.connection_context():
            database.execute_sql("CREATE TABLE commit_probe (n int PRIMARY KEY)")
            statements.clear()
            with database.atomic():
                database.execute_sql("INSERT INTO commit_probe VALUES (1)")
                execute_together(("INSERT INTO commit_probe VALUES (2)", ()), commit=True)
                assert rows_seen_elsewhere() == [1, 2]  # committed already
            assert len(statements) == 2, statements  # BEGIN with the first; the rest with COMMIT

            # A failing statement stops the string before its COMMIT: the transaction rolls back.
            with pytest.raises(IntegrityError), database.atomic():
                database.execute_sql("INSERT INTO commit_probe VALUES (3)")
                execute_together(("INSERT INTO commit_probe VALUES (1)", ()), commit=True)
            assert rows_seen_elsewhere() == [1, 2]

            # Inside a savepoint the outer transaction decides: no COMMIT goes early.
            with database.atomic():
                database.execute_sql("INSERT INTO commit_probe VALUES (4)")
                with database.atomic():
                    execute_together(("INSERT INTO commit_probe VALUES (5)", ()), commit=True)
                assert rows_seen_elsewhere() == [1, 2]
            assert rows_seen_elsewhere() == [1, 2, 4, 5]
            with database.atomic():  # the connection goes on as usual
                execute_together(("DELETE FROM commit_probe WHERE n > 2", ()), commit=True)
            assert rows_seen_elsewhere() == [1, 2]
            database.execute_sql("DROP TABLE commit_probe")
    finally:
        db.initialize(bound)
        database.close_all()
