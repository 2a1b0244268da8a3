"""A request waits a bounded time for a lock another transaction holds (an account being deleted, a
migration), then answers 503 by itself: no change is made, and its process goes on serving everyone
else, where a wait cut by the client's deadline would have looked like a silent server (and started
a second of fail-fast for the whole process).

PostgreSQL only: SQLite's writers queue for the file instead (tests/test_sqlite_writers.py).
"""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from peewee import OperationalError
from werkzeug.test import TestResponse

from tests.helpers import Background, assert_error, waiting_on_locks
from tests.processes import wait_for
from todoapi.db import REQUEST_LOCK_WAIT_SECONDS, open_database

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

# Longer than a request's bound on a lock wait and than the client's deadline on a request's first
# statement (1.5 s), so a request that waited it out would succeed instead.
HOLD_SECONDS = 2.5


class Held:
    """A transaction outside the service holding rows locked for `HOLD_SECONDS` at most."""

    def __init__(self, database_url: str, sql: str, params: tuple[Any, ...]) -> None:
        self.connection = psycopg2.connect(database_url)
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            assert cursor.rowcount == 1
        self._timer = threading.Timer(HOLD_SECONDS, self.release)
        self._timer.start()
        self._released = threading.Lock()

    def release(self) -> None:
        with self._released:
            if not self.connection.closed:
                self.connection.rollback()
                self.connection.close()

    def stop(self) -> None:
        self._timer.cancel()
        self.release()


@pytest.fixture
def hold(database_url: str) -> Iterator[Callable[[str, tuple[Any, ...]], Held]]:
    held: list[Held] = []

    def _hold(sql: str, params: tuple[Any, ...]) -> Held:
        held.append(Held(database_url, sql, params))
        return held[-1]

    yield _hold
    for each in held:
        each.stop()


LOCKED_ACCOUNT_WRITES: dict[str, Callable[[FlaskClient, dict[str, str], int], TestResponse]] = {
    "create": lambda c, auth, todo: c.post("/todos", json={"title": "new"}, headers=auth),
    "keyed create": lambda c, auth, todo: c.post(
        "/todos", json={"title": "new"}, headers={**auth, "Idempotency-Key": "locked-1"}
    ),
    "change": lambda c, auth, todo: c.patch(f"/todos/{todo}", json={"title": "new"}, headers=auth),
    "delete": lambda c, auth, todo: c.delete(f"/todos/{todo}", headers=auth),
}


@pytest.mark.parametrize("write", LOCKED_ACCOUNT_WRITES)
def test_a_write_waiting_on_its_accounts_row_gets_503_alone_and_changes_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    other_auth: dict[str, str],
    hold: Callable[..., Held],
    write: str,
) -> None:
    """The account's row is held as `DELETE /me` holds it (every change bumps the account's revision)."""
    todo = client.post("/todos", json={"title": "old"}, headers=auth).json["id"]
    before = client.get("/todos", headers=auth).json
    others = client.post("/todos", json={"title": "bob's"}, headers=other_auth).json["id"]

    held = hold("SELECT 1 FROM users WHERE email = %s FOR UPDATE", ("ann@example.com",))
    response = LOCKED_ACCOUNT_WRITES[write](client, auth, todo)
    # Right after it, another account's reads and writes are served: no fail-fast.
    other_read = client.get(f"/todos/{others}", headers=other_auth)
    other_write = client.patch(f"/todos/{others}", json={"done": True}, headers=other_auth)
    held.stop()

    assert_error(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "another change" in response.json["message"]
    assert other_read.status_code == 200, other_read.json
    assert other_write.status_code == 200, other_write.json
    assert client.get("/todos", headers=auth).json == before


@pytest.mark.usefixtures("patient_requests")
def test_an_account_deletion_takes_rows_in_a_changes_order_so_the_two_never_deadlock(
    app: Flask, client: FlaskClient, auth: dict[str, str], database_url: str
) -> None:
    """A change holds its todo, then takes its account's row (the revision bump): the deletion waits
    for the todo before it takes the account's row, so the change goes through, then the deletion."""
    todo = client.post("/todos", json={"title": "old"}, headers=auth).json["id"]
    change = psycopg2.connect(database_url)  # the change, stopped between its two steps
    try:
        with change.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
            cursor.execute("SELECT 1 FROM todos WHERE id = %s FOR UPDATE", (todo,))
        deletion = Background(app, lambda c: c.delete("/me", headers=auth))
        wait_for(lambda: waiting_on_locks(change) == 1, 10, "the deletion to wait", interval=0.01)
        with change.cursor() as cursor:
            cursor.execute(
                "UPDATE users SET todo_revision = todo_revision + 1 WHERE email = %s", ("ann@example.com",)
            )
            assert cursor.rowcount == 1
        change.commit()
    finally:
        change.rollback()
        change.close()

    assert deletion.result().status_code == 204, deletion.result().json
    assert client.get("/me", headers=auth).status_code == 401


@pytest.mark.usefixtures("patient_requests")
def test_a_change_that_a_deadlock_fails_gets_the_same_503(
    app: Flask, client: FlaskClient, auth: dict[str, str], database_url: str
) -> None:
    """Something outside the service (a maintenance script) holds the account's row, then takes a
    todo's, while a change holds the todo and waits for the account's row. PostgreSQL breaks the
    cycle by failing one; when that is the change, it answers as a lock wait does and changes nothing."""
    todo = client.post("/todos", json={"title": "old"}, headers=auth).json["id"]
    script = psycopg2.connect(database_url)
    try:
        with script.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '60s'")  # the change's backend finds the cycle (after 1 s)
            cursor.execute("SELECT 1 FROM users WHERE email = %s FOR UPDATE", ("ann@example.com",))
        change = Background(app, lambda c: c.patch(f"/todos/{todo}", json={"title": "new"}, headers=auth))
        wait_for(lambda: waiting_on_locks(script) == 1, 10, "the change to wait", interval=0.01)
        with script.cursor() as cursor:  # waits for the change, until the change is failed
            cursor.execute("SELECT 1 FROM todos WHERE id = %s FOR UPDATE", (todo,))
        response = change.result()
    finally:
        script.rollback()
        script.close()

    assert_error(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert "another change" in response.json["message"]
    assert client.get(f"/todos/{todo}", headers=auth).json["title"] == "old"


def test_a_read_waiting_on_a_migrations_lock_gets_503_and_the_process_serves_on(
    client: FlaskClient, auth: dict[str, str], hold: Callable[..., Held], database_url: str
) -> None:
    """A migration rewriting `todos` locks the whole table; sessions and accounts stay readable."""
    client.post("/todos", json={"title": "old"}, headers=auth)
    held = hold("LOCK TABLE todos IN ACCESS EXCLUSIVE MODE; SELECT 1", ())
    page = client.get("/todos", headers=auth)
    me = client.get("/me", headers=auth)
    held.stop()

    assert_error(page, 503)
    assert me.status_code == 200, me.json
    assert client.get("/todos", headers=auth).status_code == 200


def test_only_requests_bound_their_lock_waits(
    app: Flask, auth: dict[str, str], database_url: str, hold: Callable[..., Held]
) -> None:
    """Outside a request (the worker, the CLI) a statement waits for a lock as long as it takes: two
    scans meet on the unique index of notifications, a migration waits for the one before. One
    pooled connection serves both ways in turn."""
    database = open_database(database_url)
    lock_a_user = "SELECT 1 FROM users LIMIT 1 FOR UPDATE"

    def lock_timeout_ms() -> tuple[int, int]:
        """This connection's bound on lock waits, and which connection it is."""
        sql = "SELECT setting::int, pg_backend_pid() FROM pg_settings WHERE name = 'lock_timeout'"
        return tuple(database.execute_sql(sql).fetchone())

    try:
        with app.test_request_context(), database.connection_context():
            bounded, backend = lock_timeout_ms()
        assert bounded == REQUEST_LOCK_WAIT_SECONDS * 1000
        with database.connection_context():
            assert lock_timeout_ms() == (0, backend)

        held = hold(lock_a_user, ())
        with database.connection_context(), database.atomic():  # waits out the hold, then has the row
            assert database.execute_sql(lock_a_user).fetchone() == (1,)
        assert held.connection.closed

        hold(lock_a_user, ())
        with (
            app.test_request_context(),
            database.connection_context(),
            pytest.raises(OperationalError) as raised,
            database.atomic(),
        ):
            database.execute_sql(lock_a_user)
        assert "lock timeout" in str(raised.value)
    finally:
        database.close_all()
