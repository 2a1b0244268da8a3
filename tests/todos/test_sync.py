"""Incremental sync: a client that asks for `updated_since=<the latest updated_at it has seen>` misses
no change, even when two of the owner's changes are under way at once and commit out of order.

PostgreSQL only: it runs a user's writes side by side, so the order of their timestamps and of their
commits can differ. SQLite runs one write transaction at a time, each stamped inside it.
"""

from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.helpers import Background, waiting_on_locks
from tests.processes import wait_for

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
    pytest.mark.usefixtures("patient_requests"),  # change A waits on the test's lock
]


@pytest.fixture
def session(database_url: str) -> Iterator[Any]:
    """A connection of the test's own, outside the service: it holds locks, and sees who waits."""
    connection = psycopg2.connect(database_url)
    yield connection
    connection.rollback()
    connection.close()


def updated_ats(response: TestResponse) -> dict[int, str]:
    assert response.status_code == 200, response.json
    return {item["id"]: item["updated_at"] for item in response.json["items"]}


OTHER_CHANGES: dict[str, Callable[[dict[str, str], int], Callable[[FlaskClient], TestResponse]]] = {
    "another todo changed": lambda auth, other: (
        lambda c: c.patch(f"/todos/{other}", json={"title": "B"}, headers=auth)
    ),
    "a todo created": lambda auth, other: lambda c: c.post("/todos", json={"title": "B"}, headers=auth),
    "a todo created under an Idempotency-Key": lambda auth, other: (
        lambda c: c.post("/todos", json={"title": "B"}, headers={**auth, "Idempotency-Key": "sync-b"})
    ),
}


@pytest.mark.parametrize("other_change", OTHER_CHANGES)
def test_a_change_that_commits_late_is_not_behind_one_already_seen(
    app: Flask, client: FlaskClient, auth: dict[str, str], session: Any, other_change: str
) -> None:
    first = client.post("/todos", json={"title": "A", "tags": ["old"]}, headers=auth).json["id"]
    other = client.post("/todos", json={"title": "other"}, headers=auth).json["id"]
    # Change A is held before its commit: its old tag rows are locked by someone else.
    with session.cursor() as cursor:
        cursor.execute("SELECT 1 FROM todo_tags WHERE todo_id = %s FOR UPDATE", (first,))
    change_a = Background(app, lambda c: c.patch(f"/todos/{first}", json={"tags": ["new"]}, headers=auth))
    wait_for(lambda: waiting_on_locks(session) == 1, 10, "change A to wait", interval=0.01)
    # Change B starts after A: it commits first, or waits for A.
    change_b = Background(app, OTHER_CHANGES[other_change](auth, other))
    wait_for(
        lambda: not change_b.thread.is_alive() or waiting_on_locks(session) == 2,
        10,
        "change B to end or wait",
        interval=0.01,
    )

    seen = updated_ats(client.get("/todos", query_string={"limit": 100}, headers=auth))
    session.rollback()  # A goes on
    assert change_a.result().status_code == 200
    assert change_b.result().status_code in (200, 201)

    since = max(seen.values())
    query = {"limit": 100, "updated_since": since}
    synced = updated_ats(client.get("/todos", query_string=query, headers=auth))
    assert first in synced, f"change A ({change_a.result().json['updated_at']}) is behind {since}"
    b_id = change_b.result().json["id"]
    assert b_id in synced or seen.get(b_id) == change_b.result().json["updated_at"]
