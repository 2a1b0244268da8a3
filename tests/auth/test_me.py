"""GET, PATCH and DELETE /me: the caller's account, its time zone, password and deletion."""

from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.helpers import assert_error
from todoapi.models import Session, Todo, TodoTag, User

ANN = "ann@example.com"
BOB = "bob@example.com"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"


def sign_up(client: FlaskClient, email: str = ANN) -> dict[str, Any]:
    """Register through the API and log in; the login body, with both tokens."""
    created = client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.json
    response = log_in(client, email)
    assert response.status_code == 200, response.json
    return response.json


def log_in(client: FlaskClient, email: str = ANN, password: str = PASSWORD) -> TestResponse:
    return client.post("/auth/login", json={"email": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: TestResponse) -> None:
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_get_me_returns_the_account(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/me", headers=auth)

    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"id", "email", "timezone", "created_at", "webhook_url"}
    assert isinstance(body["id"], int)
    assert body["email"] == ANN
    assert body["timezone"] == "UTC"
    assert body["webhook_url"] is None
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None


def test_get_me_is_the_callers_own_account(
    client: FlaskClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    ann, bob = client.get("/me", headers=auth).json, client.get("/me", headers=other_auth).json

    assert (ann["email"], bob["email"]) == (ANN, BOB)
    assert ann["id"] != bob["id"]


# --- PATCH /me: time zone -----------------------------------------------------------------------


def test_patch_timezone(client: FlaskClient, auth: dict[str, str]) -> None:
    before = client.get("/me", headers=auth).json

    response = client.patch("/me", json={"timezone": "America/New_York"}, headers=auth)

    assert response.status_code == 200, response.json
    assert response.json == before | {"timezone": "America/New_York"}
    assert client.get("/me", headers=auth).json == response.json


def test_patch_with_an_empty_body_changes_nothing(client: FlaskClient, auth: dict[str, str]) -> None:
    before = client.get("/me", headers=auth).json

    response = client.patch("/me", json={}, headers=auth)

    assert response.status_code == 200, response.json
    assert response.json == before
    assert client.get("/me", headers=auth).json == before


PATCH_REJECTS = [
    pytest.param({"json": {"timezone": "Mars/Olympus"}}, 422, ("timezone",), id="tz-unknown"),
    pytest.param({"json": {"timezone": "../etc/passwd"}}, 422, ("timezone",), id="tz-path"),
    pytest.param({"json": {"timezone": 5}}, 422, ("timezone",), id="tz-number"),
    pytest.param({"json": {"timezone": None}}, 422, ("timezone",), id="tz-null"),
    pytest.param({"json": {"timezone": ""}}, 422, ("timezone",), id="tz-empty"),
    pytest.param(
        {"json": {"timezone": "localtime"}},
        422,
        ("timezone",),
        id="tz-localtime",
    ),
    pytest.param({"json": {"email": "new@example.com"}}, 422, ("email",), id="email"),
    pytest.param({"json": {"id": 99}}, 422, ("id",), id="id"),
    pytest.param(
        {"json": {"created_at": "2020-01-01T00:00:00+00:00"}}, 422, ("created_at",), id="created_at"
    ),
    pytest.param({"json": {"password_hash": "$argon2id$x"}}, 422, ("password_hash",), id="password_hash"),
    pytest.param({"json": {"webhook_secret": "whsec_x"}}, 422, ("webhook_secret",), id="webhook_secret"),
    pytest.param({"json": {"password": NEW_PASSWORD}}, 422, ("password",), id="password-not-a-field"),
    pytest.param(
        {"json": {"timezone": "America/New_York", "email": "new@example.com"}},
        422,
        ("email",),
        id="valid-tz-with-read-only-field",
    ),
    pytest.param(
        {"json": {"current_password": PASSWORD, "new_password": "p" * 7}}, 422, ("new_password",), id="new-7"
    ),
    pytest.param(
        {"json": {"current_password": PASSWORD, "new_password": "p" * 129}},
        422,
        ("new_password",),
        id="new-129",
    ),
    pytest.param(
        {"json": {"current_password": PASSWORD, "new_password": 12345678}},
        422,
        ("new_password",),
        id="new-number",
    ),
    pytest.param({"json": ["timezone", "America/New_York"]}, 422, ("_schema",), id="json-array"),
    pytest.param(
        {"data": '{"timezone": "America/New_York"', "content_type": "application/json"},
        400,
        ("_schema",),
        id="malformed-json",
    ),
    pytest.param(
        {"data": '{"timezone": "America/New_York"}', "content_type": "text/plain"}, 415, (), id="text-plain"
    ),
]


@pytest.mark.parametrize("request_kwargs, status, fields", PATCH_REJECTS)
def test_patch_rejects_and_changes_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    request_kwargs: dict[str, Any],
    status: int,
    fields: tuple[str, ...],
) -> None:
    before = client.get("/me", headers=auth).json

    response = client.patch("/me", headers=auth, **request_kwargs)

    assert_error(response, status, *fields)
    # Still 200 with this token: a password change would have ended the session.
    assert client.get("/me", headers=auth).json == before


# --- PATCH /me: password ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"current_password": "not the password", "new_password": NEW_PASSWORD}, id="wrong"),
        pytest.param({"current_password": f" {PASSWORD} ", "new_password": NEW_PASSWORD}, id="padded"),
        pytest.param(
            {"current_password": "not the password", "new_password": NEW_PASSWORD, "timezone": "Asia/Tokyo"},
            id="wrong-with-timezone",
        ),
        # The OpenAPI document (3.0) cannot tie the two fields together: each is optional there.
        pytest.param({"new_password": NEW_PASSWORD}, id="missing"),
        pytest.param({"new_password": NEW_PASSWORD, "timezone": "Asia/Tokyo"}, id="missing-with-timezone"),
    ],
)
def test_password_change_with_a_wrong_current_password_is_403(
    client: FlaskClient, body: dict[str, str]
) -> None:
    headers = bearer(sign_up(client)["access_token"])
    before = client.get("/me", headers=headers).json

    response = client.patch("/me", json=body, headers=headers)

    assert_error(response, 403)
    assert client.get("/me", headers=headers).json == before
    assert log_in(client, ANN, PASSWORD).status_code == 200
    assert_unauthorized(log_in(client, ANN, NEW_PASSWORD))


@pytest.mark.parametrize("current", [PASSWORD, "not the password"])
def test_current_password_alone_changes_nothing(client: FlaskClient, current: str) -> None:
    headers = bearer(sign_up(client)["access_token"])
    before = client.get("/me", headers=headers).json

    response = client.patch("/me", json={"current_password": current}, headers=headers)

    assert response.status_code == 200, response.json
    assert response.json == before
    assert client.get("/me", headers=headers).json == before  # the session goes on
    assert log_in(client, ANN, PASSWORD).status_code == 200


def test_password_change_ends_every_session(client: FlaskClient) -> None:
    laptop = sign_up(client)
    phone = log_in(client).json

    response = client.patch(
        "/me",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(laptop["access_token"]),
    )

    assert response.status_code == 200, response.json
    assert set(response.json) == {"id", "email", "timezone", "created_at", "webhook_url"}
    for session in (laptop, phone):
        assert_unauthorized(client.get("/me", headers=bearer(session["access_token"])))
        assert_unauthorized(client.post("/auth/refresh", headers=bearer(session["refresh_token"])))
    assert_unauthorized(log_in(client, ANN, PASSWORD))
    fresh = log_in(client, ANN, NEW_PASSWORD)
    assert fresh.status_code == 200, fresh.json
    assert client.get("/me", headers=bearer(fresh.json["access_token"])).json["email"] == ANN


# --- DELETE /me ---------------------------------------------------------------------------------


def test_delete_me_removes_the_account_and_everything_it_owns(
    app: Flask, client: FlaskClient, other_auth: dict[str, str]
) -> None:
    auth = bearer(sign_up(client)["access_token"])
    ann_id = client.get("/me", headers=auth).json["id"]
    for title in ("one", "two"):
        created = client.post("/todos", json={"title": title, "tags": ["home", "work"]}, headers=auth)
        assert created.status_code == 201, created.json
    bobs = client.post("/todos", json={"title": "bob's", "tags": ["home"]}, headers=other_auth).json

    response = client.delete("/me", headers=auth)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert_unauthorized(client.get("/me", headers=auth))
    assert_unauthorized(log_in(client, ANN, PASSWORD))
    with app.app_context():
        assert not User.select().where(User.id == ann_id).exists()
        assert Todo.select().where(Todo.user == ann_id).count() == 0
        assert TodoTag.select().where(TodoTag.user == ann_id).count() == 0
        assert Session.select().where(Session.user == ann_id).count() == 0
    assert client.get(f"/todos/{bobs['id']}", headers=other_auth).json == bobs
    assert client.get("/todos", headers=other_auth).json["total"] == 1
    assert client.get("/me", headers=other_auth).status_code == 200


def test_a_deleted_accounts_email_can_register_again(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.delete("/me", headers=auth).status_code == 204

    response = client.post("/auth/register", json={"email": ANN, "password": NEW_PASSWORD})

    assert response.status_code == 201, response.json
    assert response.json["email"] == ANN
