"""SQLite's writers take turns in a queue in front of SQLite's write lock (todoapi.db.WriterQueue).

Another process's turn is held by a real separate process holding `flock` on `<file>-writers`.
"""

import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD
from tests.helpers import assert_error, due_tomorrow
from todoapi.db import NO_QUEUE, WriterQueue, db, open_database
from todoapi.notifications import services as notifications

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


class OtherProcessTurn:
    """Another process holding the file's writer turn until `end()`."""

    def __init__(self, database_path: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, database_path + "-writers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline() == "held\n"

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            self.process.wait(timeout=10)


@pytest.fixture
def db_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


@pytest.fixture
def other_turn(db_path: str) -> Iterator[Callable[[], OtherProcessTurn]]:
    started: list[OtherProcessTurn] = []

    def start() -> OtherProcessTurn:
        started.append(OtherProcessTurn(db_path))
        return started[-1]

    yield start
    for turn in started:
        turn.end()


class InThread:
    """`call()` run in a thread of its own (a request of another gthread thread)."""

    def __init__(self, app: Flask, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                with app.app_context():
                    self.result = call()
            except BaseException as error:  # handed to the test
                self.error = error
            finally:
                if not db.is_closed():
                    db.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finished_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return not self.thread.is_alive()

    def outcome(self) -> Any:
        assert self.finished_within(10)
        if self.error is not None:
            raise self.error
        return self.result


def count(db_path: str, sql: str) -> int:
    connection = sqlite3.connect(db_path)
    try:
        return int(connection.execute(sql).fetchone()[0])
    finally:
        connection.close()


@pytest.fixture
def ann(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    created = client.post(
        "/todos", json={"title": "rent", "due_date": due_tomorrow().isoformat()}, headers=auth
    )
    assert created.status_code == 201
    return {"auth": auth, "todo": created.json["id"]}


WRITES: dict[str, tuple[Callable[[FlaskClient, dict[str, Any]], Any], str, int]] = {
    # name: (the write, a count that it changes, the expected status)
    "register": (
        lambda client, ann: client.post(
            "/auth/register", json={"email": "cy@example.com", "password": PASSWORD}
        ),
        "SELECT count(*) FROM users",
        201,
    ),
    "login": (
        lambda client, ann: client.post(
            "/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
        ),
        "SELECT count(*) FROM sessions",
        200,
    ),
    "create": (
        lambda client, ann: client.post("/todos", json={"title": "x", "tags": ["a"]}, headers=ann["auth"]),
        "SELECT count(*) FROM todos",
        201,
    ),
    "idempotent create": (
        lambda client, ann: client.post(
            "/todos", json={"title": "x"}, headers={**ann["auth"], "Idempotency-Key": "k1"}
        ),
        "SELECT count(*) FROM todos",
        201,
    ),
    "patch": (
        lambda client, ann: client.patch(
            f"/todos/{ann['todo']}", json={"title": "paid"}, headers=ann["auth"]
        ),
        "SELECT count(*) FROM todos WHERE title = 'paid'",
        200,
    ),
    "delete": (
        lambda client, ann: client.delete(f"/todos/{ann['todo']}", headers=ann["auth"]),
        "SELECT count(*) FROM todos",
        204,
    ),
    "logout": (
        lambda client, ann: client.post("/auth/logout", headers=ann["auth"]),
        "SELECT count(*) FROM sessions",
        204,
    ),
    "notification": (
        lambda client, ann: notifications.scan_due_soon(),
        "SELECT count(*) FROM notifications",
        0,
    ),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_every_write_waits_for_another_process_turn_and_goes_ahead_when_it_ends(
    name, app, client, ann, db_path, other_turn
):
    write, changed, status = WRITES[name]
    before = count(db_path, changed)
    turn = other_turn()

    waiting = InThread(app, lambda: write(app.test_client(), ann))
    assert not waiting.finished_within(0.5)
    assert count(db_path, changed) == before
    # Reads do not queue.
    assert client.get(f"/todos/{ann['todo']}", headers=ann["auth"]).status_code == 200

    turn.end()
    response = waiting.outcome()
    if status:
        assert response.status_code == status, response.get_data(as_text=True)
    assert count(db_path, changed) != before


def test_a_process_other_writers_wait_a_bounded_time_then_get_503_and_change_nothing(
    app, client, ann, db_path, other_turn
):
    db.obj.writers.wait_seconds = 0.2
    turn = other_turn()
    # This process's turn is next: one thread waits for it on the other process...
    first = InThread(
        app,
        lambda: app.test_client().patch(f"/todos/{ann['todo']}", json={"title": "paid"}, headers=ann["auth"]),
    )
    assert not first.finished_within(0.3)
    # ...and the others wait behind that thread, up to their bound.
    second = InThread(app, lambda: app.test_client().post("/todos", json={"title": "x"}, headers=ann["auth"]))
    response = second.outcome()
    assert_error(response, 503)
    # Busy, not down: the database answers, a write holds it.
    assert response.headers["Retry-After"] == "1"
    assert "another change" in response.json["message"]
    assert count(db_path, "SELECT count(*) FROM todos") == 1

    turn.end()
    assert first.outcome().status_code == 200
    assert count(db_path, "SELECT count(*) FROM todos WHERE title = 'paid'") == 1
    assert client.post("/todos", json={"title": "x"}, headers=ann["auth"]).status_code == 201


def test_a_failed_write_ends_its_turn(app, client, ann, db_path):
    duplicate = {"email": "ann@example.com", "password": PASSWORD}
    assert client.post("/auth/register", json=duplicate).status_code == 409
    with app.app_context():
        assert not db.obj.writers.holds()
    other = InThread(app, lambda: app.test_client().post("/todos", json={"title": "x"}, headers=ann["auth"]))
    assert other.outcome().status_code == 201


# Python 3.12+ warns on any fork of a process with threads; this child only takes the writers' lock
# and leaves by os._exit, as a gunicorn worker forked from a preloaded master would.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_takes_its_own_turn_after_its_parent_ends_its_own(app, db_path):
    queue = db.obj.writers
    queue.acquire()
    queue.release()  # the parent's file is open: a child must not share it (one flock for both)
    queue.acquire()
    ending, ended = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its turn comes once the parent's ends, not before, not never
        code = 3

        def give_up(*_: Any) -> None:
            raise TimeoutError

        try:
            signal.signal(signal.SIGALRM, give_up)
            signal.setitimer(signal.ITIMER_REAL, 5)
            queue.acquire()
            signal.setitimer(signal.ITIMER_REAL, 0)
            code = 0 if select.select([ending], [], [], 0)[0] else 2
        finally:
            os._exit(code)
    time.sleep(0.3)
    os.write(ended, b"x")
    queue.release()
    _, status = os.waitpid(pid, 0)
    # 2: the child wrote while the parent had the turn; 3: it never got one.
    assert os.waitstatus_to_exitcode(status) == 0
    assert not queue.holds()


def test_databases_of_one_file_share_a_queue_and_memory_has_none(db_path, tmp_path):
    first = open_database(f"sqlite:///{db_path}")
    assert first.writers is not NO_QUEUE
    assert first.writers is open_database(f"sqlite:///{Path(db_path).parent}/./{Path(db_path).name}").writers
    assert first.writers is not WriterQueue.for_file(str(tmp_path / "another.db"))
    assert WriterQueue.for_file(":memory:") is NO_QUEUE
    assert open_database("sqlite:///:memory:").writers is NO_QUEUE


def test_a_database_whose_directory_is_gone_answers_503_to_writes_too(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'gone' / 'todo.db'}")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a crash must show as the 500 a client gets
    client = app.test_client()

    response = client.post("/auth/register", json={"email": "ann@example.com", "password": PASSWORD})

    assert_error(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "unavailable" in response.json["message"]
    with app.app_context():
        assert not db.obj.writers.holds()
    assert client.get("/health/db").status_code == 503
    assert not (tmp_path / "gone").exists()
