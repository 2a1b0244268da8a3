"""Assertions and API shortcuts shared by the tests."""

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg2.extensions
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse


def assert_error(response: TestResponse, status: int, *fields: str, location: str = "json") -> None:
    """The SPEC's error shape, with `errors` naming each field when fields are given."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    for field in fields:
        assert field in body["errors"][location], body


def due_tomorrow() -> date:
    """Due soon for a UTC owner now, and still after a midnight passes during the test."""
    return datetime.now(UTC).date() + timedelta(days=1)


def create_todo(client: FlaskClient, auth: dict[str, str], title: str, due: date) -> int:
    """A todo due on `due`, through the API; returns its id."""
    response = client.post("/todos", json={"title": title, "due_date": due.isoformat()}, headers=auth)
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def sent_statements(database: Any) -> list[str]:
    """Every statement the database's connections send from now on (connections opened later)."""
    statements: list[str] = []

    class CountingCursor(psycopg2.extensions.cursor):
        def execute(self, sql: Any, params: Any = None) -> Any:  # type: ignore[override]
            statements.append(sql)
            return super().execute(sql, params)

    database.connect_params["cursor_factory"] = CountingCursor
    return statements


class Background:
    """One request on its own thread and test client."""

    def __init__(self, app: Flask, send: Callable[[FlaskClient], TestResponse]) -> None:
        self.response: TestResponse | None = None
        self.thread = threading.Thread(target=self._run, args=(app, send), daemon=True)
        self.thread.start()

    def _run(self, app: Flask, send: Callable[[FlaskClient], TestResponse]) -> None:
        self.response = send(app.test_client())

    def result(self) -> TestResponse:
        self.thread.join(30)
        assert self.response is not None, "the request did not finish"
        return self.response


def waiting_on_locks(session: Any) -> int:
    """How many of the test database's connections wait for a lock (`session`: a psycopg2 connection)."""
    with session.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a transaction sees one snapshot otherwise
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])
