"""The in-app inbox: GET /notifications, POST /notifications/{id}/read and /notifications/read-all."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import assert_error
from todoapi.notifications import services

NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)
TODAY = NOW.date()
NOTIFICATION_KEYS = {"id", "kind", "todo_id", "title", "due_date", "created_at", "read_at", "deliveries"}


def create_todo(client: FlaskClient, auth: dict[str, str], title: str, due: date = TODAY) -> int:
    response = client.post("/todos", json={"title": title, "due_date": due.isoformat()}, headers=auth)
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def scan(app: Flask, now: datetime = NOW, **options: Any) -> list[int]:
    """Run the due-soon scan at `now`; the ids of the notifications it created."""
    with app.app_context():
        return [entry["id"] for entry in services.scan_due_soon(now=now, **options).notified]


def notify(app: Flask, client: FlaskClient, auth: dict[str, str], *titles: str) -> list[int]:
    """One due-soon notification per title, one scan (and one created_at) each, oldest first."""
    created = []
    for minute, title in enumerate(titles):
        create_todo(client, auth, title)
        [notification_id] = scan(app, NOW + timedelta(minutes=minute))
        created.append(notification_id)
    return created


def page(client: FlaskClient, auth: dict[str, str], **query: Any) -> dict[str, Any]:
    response = client.get("/notifications", query_string=query, headers=auth)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def titles(body: dict[str, Any]) -> list[str]:
    return [item["title"] for item in body["items"]]


def test_inbox_pages_newest_first(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    notify(app, client, auth, "a", "b", "c")
    create_todo(client, auth, "d")
    create_todo(client, auth, "e")
    scan(app, NOW + timedelta(minutes=10))  # d and e share created_at: the later one first

    everything = page(client, auth)
    second = page(client, auth, skip=2, limit=2)
    last = page(client, auth, skip=4, limit=2)
    beyond = page(client, auth, skip=10)

    assert set(everything) == {"items", "total", "skip", "limit"}
    assert titles(everything) == ["e", "d", "c", "b", "a"]
    assert (everything["total"], everything["skip"], everything["limit"]) == (5, 0, 50)
    assert titles(second) == ["c", "b"] and (second["total"], second["skip"], second["limit"]) == (5, 2, 2)
    assert titles(last) == ["a"] and last["total"] == 5
    assert beyond["items"] == [] and beyond["total"] == 5


def test_inbox_pages_link_their_neighbours(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    notify(app, client, auth, "a", "b", "c", "d", "e")

    first = client.get("/notifications?unread=true&limit=2", headers=auth)
    middle = client.get("/notifications?unread=true&limit=2&skip=2", headers=auth)
    last = client.get("/notifications?unread=true&limit=2&skip=4", headers=auth)
    whole = client.get("/notifications", headers=auth)

    assert first.headers["Link"] == '</notifications?unread=true&skip=2&limit=2>; rel="next"'
    assert middle.headers["Link"] == (
        '</notifications?unread=true&skip=0&limit=2>; rel="prev", '
        '</notifications?unread=true&skip=4&limit=2>; rel="next"'
    )
    assert last.headers["Link"] == '</notifications?unread=true&skip=2&limit=2>; rel="prev"'
    assert "Link" not in whole.headers
    # Following the links walks every notification once.
    seen = titles(first.json) + titles(middle.json) + titles(last.json)
    assert sorted(seen) == ["a", "b", "c", "d", "e"]


def test_notification_object(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    todo_id = create_todo(client, auth, "Pay rent", TODAY + timedelta(days=1))
    scan(app, email=True)

    [item] = page(client, auth)["items"]

    assert set(item) == NOTIFICATION_KEYS
    assert isinstance(item["id"], int)
    assert item["kind"] == "due_soon"
    assert (item["todo_id"], item["title"]) == (todo_id, "Pay rent")
    assert item["due_date"] == (TODAY + timedelta(days=1)).isoformat()
    assert datetime.fromisoformat(item["created_at"]) == NOW
    assert item["read_at"] is None
    assert item["deliveries"] == [
        {"channel": "email", "status": "pending", "attempts": 0, "last_error": None}
    ]


def test_inbox_only_notification_has_no_deliveries(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    notify(app, client, auth, "a")

    [item] = page(client, auth)["items"]

    assert set(item) == NOTIFICATION_KEYS
    assert item["deliveries"] == []


def test_unread_filter(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    first, second, third = notify(app, client, auth, "a", "b", "c")
    assert client.post(f"/notifications/{second}/read", headers=auth).status_code == 200

    unread, read, every = (
        page(client, auth, unread="true"),
        page(client, auth, unread="false"),
        page(client, auth),
    )

    assert [item["id"] for item in unread["items"]] == [third, first] and unread["total"] == 2
    assert [item["id"] for item in read["items"]] == [second] and read["total"] == 1
    assert every["total"] == 3
    assert all(item["read_at"] is None for item in unread["items"])
    assert read["items"][0]["read_at"] is not None


def test_mark_read_sets_read_at_once(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    [notification_id] = notify(app, client, auth, "a")
    [before] = page(client, auth)["items"]

    first = client.post(f"/notifications/{notification_id}/read", headers=auth)
    again = client.post(f"/notifications/{notification_id}/read", headers=auth)

    assert first.status_code == 200, first.json
    assert set(first.json) == NOTIFICATION_KEYS
    read_at = datetime.fromisoformat(first.json["read_at"])
    assert read_at.utcoffset() is not None
    assert {**first.json, "read_at": None} == before
    assert again.status_code == 200 and again.json["read_at"] == first.json["read_at"]
    assert page(client, auth)["items"][0]["read_at"] == first.json["read_at"]


def test_read_all_marks_only_the_callers_unread(
    app: Flask, client: FlaskClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    first, _, _ = notify(app, client, auth, "a", "b", "c")
    notify(app, client, other_auth, "x", "y")
    read_first = client.post(f"/notifications/{first}/read", headers=auth).json["read_at"]

    response = client.post("/notifications/read-all", headers=auth)
    again = client.post("/notifications/read-all", headers=auth)

    assert response.status_code == 200 and response.json == {"updated": 2}
    assert again.status_code == 200 and again.json == {"updated": 0}
    assert page(client, auth, unread="true")["total"] == 0
    assert [item["read_at"] for item in page(client, auth)["items"]][-1] == read_first
    others = page(client, other_auth)
    assert others["total"] == 2 and all(item["read_at"] is None for item in others["items"])


def test_another_users_notification_is_not_found(
    app: Flask, client: FlaskClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    [bobs] = notify(app, client, other_auth, "bob's")

    foreign = client.post(f"/notifications/{bobs}/read", headers=auth)
    missing = client.post(f"/notifications/{bobs + 1000}/read", headers=auth)

    assert_error(foreign, 404)
    assert foreign.json == missing.json
    assert page(client, other_auth)["items"][0]["read_at"] is None


@pytest.mark.parametrize(
    "query, field",
    [
        ({"unread": "maybe"}, "unread"),
        ({"unread": ""}, "unread"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"skip": -1}, "skip"),
        ({"skip": "+1"}, "skip"),
        ({"limit": "\uff15"}, "limit"),  # FULLWIDTH DIGIT FIVE
    ],
)
def test_bad_query_is_rejected(
    client: FlaskClient, auth: dict[str, str], query: dict[str, Any], field: str
) -> None:
    response = client.get("/notifications", query_string=query, headers=auth)

    assert_error(response, 422, field, location="query")


@pytest.mark.parametrize(
    "method, path",
    [("get", "/notifications"), ("post", "/notifications/{id}/read"), ("post", "/notifications/read-all")],
)
@pytest.mark.parametrize("token", [None, "Bearer not-a-token"], ids=["no-token", "bad-token"])
def test_inbox_requires_a_token(
    app: Flask, client: FlaskClient, auth: dict[str, str], method: str, path: str, token: str | None
) -> None:
    [notification_id] = notify(app, client, auth, "a")
    headers = {"Authorization": token} if token else {}

    response = client.open(path.format(id=notification_id), method=method, headers=headers)

    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert page(client, auth)["items"][0]["read_at"] is None
