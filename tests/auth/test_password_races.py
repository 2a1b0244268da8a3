"""A password change against what runs beside it: a PATCH /me that read the account before the change
committed, and a login whose password check ran before it. Neither may undo the change or keep a
session past it (the change is meant to lock out whoever knew the old password)."""

import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.auth.test_me import ANN, NEW_PASSWORD, PASSWORD, assert_unauthorized, bearer, log_in, sign_up
from tests.helpers import Background, waiting_on_locks
from tests.processes import wait_for
from todoapi.auth import services
from todoapi.models import Session, User

HOOK = {"webhook_url": "http://127.0.0.1:9/hook"}
ONE = {"limit": 1}


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(WEBHOOK_ALLOW_PRIVATE=True)  # a webhook on 127.0.0.1


def in_another_thread(app: Flask, send: Callable[[FlaskClient], Any]) -> Any:
    """A request from another client, on its own thread (and so its own connection), to its end."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(send(app.test_client())))
    thread.start()
    thread.join(30)
    return outcome[0]


def change_password(client: FlaskClient, token: str) -> Any:
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = client.patch("/me", json=body, headers=bearer(token))
    assert response.status_code == 200, response.json
    return response


def test_a_webhook_set_beside_a_password_change_does_not_undo_it(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook URL's check (a DNS look-up, as slow as its name server likes) runs after the
    request read the account; the owner changes the password meanwhile from another session."""
    attacker, owner = sign_up(client)["access_token"], log_in(client).json["access_token"]
    checked = services.check_webhook_url

    def slow_check(url: str, allow_private: bool) -> None:
        in_another_thread(app, lambda other: change_password(other, owner))
        checked(url, allow_private)

    monkeypatch.setattr(services, "check_webhook_url", slow_check)
    response = client.patch("/me", json=HOOK, headers=bearer(attacker))

    assert response.status_code == 200, response.json
    assert_unauthorized(log_in(client))
    assert log_in(client, password=NEW_PASSWORD).status_code == 200
    with app.app_context():
        assert User.get(User.email == ANN).webhook_url == HOOK["webhook_url"]


def test_todos_created_beside_a_webhook_change_keep_their_count_exact(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each todo change bumps the account's revision, which keys the cached `total`: a PATCH /me
    that wrote back the revision it read would let a later change land on a revision whose count
    is already cached, and the list would report that count."""
    auth = bearer(sign_up(client)["access_token"])
    client.post("/todos", json={"title": "one"}, headers=auth)
    checked = services.check_webhook_url

    def slow_check(url: str, allow_private: bool) -> None:
        def create_and_list(other: FlaskClient) -> Any:
            assert other.post("/todos", json={"title": "two"}, headers=auth).status_code == 201
            # A full page: its total is counted, and cached for this revision.
            return other.get("/todos", query_string=ONE, headers=auth).json["total"]

        assert in_another_thread(app, create_and_list) == 2
        checked(url, allow_private)

    monkeypatch.setattr(services, "check_webhook_url", slow_check)
    assert client.patch("/me", json=HOOK, headers=auth).status_code == 200
    gone = client.get("/todos", headers=auth).json["items"][0]["id"]
    assert client.delete(f"/todos/{gone}", headers=auth).status_code == 204

    assert client.get("/todos", query_string=ONE, headers=auth).json["total"] == 1


def test_a_login_checked_before_a_password_change_gets_no_session_after_it(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = sign_up(client)["access_token"]
    authenticate = services.authenticate

    def then_the_change(email: str, password: str) -> User:
        user = authenticate(email, password)  # the old password checked out...
        in_another_thread(app, lambda other: change_password(other, owner))  # ...then it changed
        return user

    monkeypatch.setattr(services, "authenticate", then_the_change)
    assert_unauthorized(log_in(client))
    with app.app_context():
        assert Session.select().count() == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.usefixtures("patient_requests")
def test_a_login_waits_for_a_password_change_under_way_and_gets_no_session(
    app: Flask, client: FlaskClient, database_url: str
) -> None:
    """PostgreSQL runs them side by side: the change holds the account's row (its new hash, its
    sessions deleted, not yet committed) while the login, its check passed, inserts its session."""
    sign_up(client)
    change = psycopg2.connect(database_url)
    try:
        with change.cursor() as cursor:
            cursor.execute("UPDATE users SET password_hash = 'changed' WHERE email = %s", (ANN,))
            cursor.execute("DELETE FROM sessions")
        login = Background(app, lambda other: log_in(other))
        wait_for(lambda: waiting_on_locks(change) == 1, 10, "the login to wait", interval=0.01)
        change.commit()
    finally:
        change.rollback()
        change.close()

    assert_unauthorized(login.result())
    with app.app_context():
        assert Session.select().count() == 0
