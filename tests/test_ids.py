"""No id is handed out twice, not even after the newest row was deleted: PostgreSQL's serial never
does, SQLite's AUTOINCREMENT (migration 0009) neither."""

from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD
from todoapi.models import User
from todoapi.notifications import services

NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)


def create_todo(client: FlaskClient, auth: dict[str, str], **headers: str) -> Any:
    body = {"title": "t", "due_date": NOW.date().isoformat()}
    response = client.post("/todos", json=body, headers={**auth, **headers})
    assert response.status_code == 201, response.json
    return response


def delete_todo(client: FlaskClient, auth: dict[str, str], todo_id: int) -> None:
    assert client.delete(f"/todos/{todo_id}", headers=auth).status_code == 204


def test_a_todo_after_the_newest_was_deleted_gets_a_new_id(client: FlaskClient, auth: dict[str, str]) -> None:
    first = create_todo(client, auth).json["id"]
    newest = create_todo(client, auth).json["id"]
    delete_todo(client, auth, newest)

    again = create_todo(client, auth).json["id"]

    assert first < newest < again


def test_a_replayed_location_never_names_another_users_todo(
    client: FlaskClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    keyed = create_todo(client, auth, **{"Idempotency-Key": "k-1"})
    delete_todo(client, auth, keyed.json["id"])
    others = create_todo(client, other_auth).json["id"]

    replay = create_todo(client, auth, **{"Idempotency-Key": "k-1"})

    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Location"] == keyed.headers["Location"] == f"/todos/{keyed.json['id']}"
    assert others > keyed.json["id"]
    assert client.get(replay.headers["Location"], headers=other_auth).status_code == 404


def test_an_account_after_the_newest_was_deleted_gets_a_new_id(client: FlaskClient) -> None:
    ids = []
    for email in ("ann@example.com", "bob@example.com"):
        response = client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.json
        ids.append(response.json["id"])
    token = client.post("/auth/login", json={"email": "bob@example.com", "password": PASSWORD}).json
    assert (
        client.delete("/me", headers={"Authorization": f"Bearer {token['access_token']}"}).status_code == 204
    )

    again = client.post("/auth/register", json={"email": "bob@example.com", "password": PASSWORD})

    assert again.status_code == 201, again.json
    assert ids[0] < ids[1] < again.json["id"]


def test_a_notification_after_the_newest_was_deleted_gets_new_ids(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    with app.app_context():
        User.update(webhook_url="https://hooks.example.com/x", webhook_secret="whsec_x").execute()

    def scan() -> tuple[int, int]:
        """(notification id, delivery id) of the one todo the scan notifies."""
        with app.app_context():
            report = services.scan_due_soon(now=NOW)
        [notified], [delivery] = report.notified, report.deliveries
        return notified["id"], delivery

    todo = create_todo(client, auth).json["id"]
    notification, delivery = scan()
    delete_todo(client, auth, todo)  # its notification and delivery go with it
    create_todo(client, auth)

    again = scan()

    assert client.get("/notifications", headers=auth).json["items"][0]["id"] == again[0]
    assert again[0] > notification and again[1] > delivery
