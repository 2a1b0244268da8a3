"""Login rate limit: per (client address, email), every attempt counts, 429 with Retry-After, fails open.

Each test lowers LOGIN_RATE_LIMIT to 3 a minute and starts from an empty Redis database. The limit's
window starts at the first attempt (Redis-backed fixed window), so no test races a clock boundary.
"""

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from werkzeug.test import TestResponse

from tests.conftest import PASSWORD
from tests.helpers import assert_error

ANN, BOB = "ann@example.com", "bob@example.com"
LIMIT = 3
LIMIT_HEADERS = ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
OTHER_ADDRESS = {"REMOTE_ADDR": "10.1.2.3"}
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: connections are refused at once


@pytest.fixture
def app(make_app: Any, redis: Redis) -> Flask:
    """Three login attempts a minute, on a Redis database emptied for this test."""
    return make_app(LOGIN_RATE_LIMIT=f"{LIMIT}/minute")


@pytest.fixture
def accounts(client: FlaskClient) -> None:
    """Ann and Bob, registered without logging in (a login would already count)."""
    for email in (ANN, BOB):
        response = client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.json


def login(
    client: FlaskClient,
    email: str = ANN,
    password: str = PASSWORD,
    form: bool = False,
    environ: dict[str, str] | None = None,
) -> TestResponse:
    if form:
        return client.post(
            "/auth/login",
            data={"username": email, "password": password, "grant_type": "password"},
            environ_overrides=environ or {},
        )
    return client.post(
        "/auth/login", json={"email": email, "password": password}, environ_overrides=environ or {}
    )


def assert_limited(response: TestResponse) -> None:
    assert_error(response, 429)
    retry_after = response.headers.get("Retry-After", "")
    assert retry_after.isdigit(), f"Retry-After must be whole seconds, got {retry_after!r}"
    assert 1 <= int(retry_after) <= 60
    assert "access_token" not in response.get_data(as_text=True)


def assert_not_limited(response: TestResponse, status: int = 200) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    present = [name for name in LIMIT_HEADERS if name in response.headers]
    assert not present, f"limit headers on a {status}: {present}"


@pytest.mark.usefixtures("accounts")
def test_the_attempt_after_the_limit_is_429_with_retry_after(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        assert_not_limited(login(client))
    limited = login(client)
    assert_limited(limited)
    # Still an ordinary response of this service: request id and security headers.
    assert limited.headers["X-Request-ID"]
    assert limited.headers["X-Content-Type-Options"] == "nosniff"
    assert limited.headers["Cache-Control"] == "no-store"
    assert limited.content_type == "application/json"
    # The right password does not get through either while the window lasts.
    assert_limited(login(client))


@pytest.mark.usefixtures("accounts")
def test_successful_and_failed_attempts_all_count(client: FlaskClient) -> None:
    assert_not_limited(login(client, password="wrong password"), 401)
    assert_not_limited(login(client), 200)
    assert_not_limited(login(client, password="another wrong one"), 401)
    assert_limited(login(client))
    assert_limited(login(client, password="wrong password"))


@pytest.mark.usefixtures("accounts")
def test_failures_alone_lock_the_pair_out_even_for_the_right_password(client: FlaskClient) -> None:
    for attempt in range(LIMIT):
        assert_not_limited(login(client, password=f"guess number {attempt}"), 401)
    assert_limited(login(client))


@pytest.mark.usefixtures("accounts")
def test_an_unknown_email_is_limited_like_a_known_one(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        assert_not_limited(login(client, email="nobody@example.com"), 401)
    assert_limited(login(client, email="nobody@example.com"))


@pytest.mark.usefixtures("accounts")
def test_another_email_from_the_same_address_is_not_limited(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        login(client)
    assert_limited(login(client))
    assert_not_limited(login(client, email=BOB), 200)
    assert_not_limited(login(client, email="carol@example.com"), 401)


@pytest.mark.usefixtures("accounts")
def test_the_same_email_from_another_address_is_not_limited(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        login(client)
    assert_limited(login(client))
    # The other address has a bucket of its own, and fills it independently.
    for _ in range(LIMIT):
        assert_not_limited(login(client, environ=OTHER_ADDRESS), 200)
    assert_limited(login(client, environ=OTHER_ADDRESS))
    assert_not_limited(login(client, environ={"REMOTE_ADDR": "10.1.2.4"}), 200)


@pytest.mark.usefixtures("accounts")
def test_an_ipv6_clients_64_shares_one_bucket(client: FlaskClient) -> None:
    """A host is commonly handed a whole IPv6 /64: a fresh address per attempt is no fresh bucket."""
    for host in range(1, LIMIT + 1):
        assert_not_limited(login(client, environ={"REMOTE_ADDR": f"2001:db8:1:2::{host}"}), 200)
    assert_limited(login(client, environ={"REMOTE_ADDR": "2001:db8:1:2:ffff:ffff:ffff:ffff"}))
    assert_not_limited(login(client, environ={"REMOTE_ADDR": "2001:db8:1:3::1"}), 200)  # another /64


@pytest.mark.usefixtures("accounts")
def test_an_ipv4_address_inside_ipv6_counts_as_itself(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        login(client, environ=OTHER_ADDRESS)
    assert_limited(login(client, environ={"REMOTE_ADDR": f"::ffff:{OTHER_ADDRESS['REMOTE_ADDR']}"}))


def forwarded(address: str) -> dict[str, str]:
    """A request through one router at 10.0.0.1 that appended the client's address."""
    return {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": f"203.0.113.9, {address}"}


@pytest.mark.usefixtures("accounts")
def test_forwarded_for_is_ignored_unless_proxies_are_trusted(client: FlaskClient) -> None:
    # A client cannot get fresh buckets by inventing X-Forwarded-For addresses.
    for attempt in range(LIMIT):
        assert_not_limited(login(client, environ={"HTTP_X_FORWARDED_FOR": f"198.51.100.{attempt}"}), 200)
    assert_limited(login(client, environ={"HTTP_X_FORWARDED_FOR": "198.51.100.99"}))


def test_behind_a_trusted_router_each_client_address_has_its_own_bucket(make_app: Any, redis: Redis) -> None:
    app = make_app(LOGIN_RATE_LIMIT=f"{LIMIT}/minute", TRUSTED_PROXY_HOPS=1)
    client = app.test_client()
    assert client.post("/auth/register", json={"email": ANN, "password": PASSWORD}).status_code == 201
    for _ in range(LIMIT):
        assert_not_limited(login(client, environ=forwarded("198.51.100.7")), 200)
    assert_limited(login(client, environ=forwarded("198.51.100.7")))
    # Another client behind the same router is not locked out of Ann's account by the first one;
    # the entry before the router's (203.0.113.9, sent by the client itself) is not believed.
    assert_not_limited(login(client, environ=forwarded("198.51.100.8")), 200)


@pytest.mark.usefixtures("accounts")
def test_email_case_and_whitespace_variants_share_one_bucket(client: FlaskClient) -> None:
    for variant in ("Ann@Example.COM", "  ann@example.com  ", "ANN@EXAMPLE.COM"):
        assert_not_limited(login(client, email=variant), 200)
    assert_limited(login(client, email=ANN))
    assert_limited(login(client, email=" aNN@eXample.com"))
    assert_not_limited(login(client, email=BOB), 200)


@pytest.mark.usefixtures("accounts")
def test_form_logins_count_and_share_the_bucket_with_json(client: FlaskClient) -> None:
    assert_not_limited(login(client, form=True), 200)
    assert_not_limited(login(client, password="wrong password", form=True), 401)
    assert_not_limited(login(client, email="ANN@example.com"), 200)  # JSON
    assert_limited(login(client, form=True))
    assert_limited(login(client))
    assert_not_limited(login(client, email=BOB, form=True), 200)


@pytest.mark.usefixtures("accounts")
def test_form_only_attempts_reach_the_limit(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        assert_not_limited(login(client, email=" Bob@Example.com", form=True), 200)
    assert_limited(login(client, email=BOB, form=True))


def _comparable(response: TestResponse) -> dict[str, str]:
    headers = dict(response.headers)
    headers.pop("X-Request-ID")  # per request by design
    return headers


@pytest.mark.usefixtures("accounts")
def test_unknown_email_and_wrong_password_answer_identically(client: FlaskClient) -> None:
    unknown = login(client, email="nobody@example.com", password="whatever-it-is")
    wrong = login(client, email=ANN, password="whatever-it-is")
    assert_not_limited(unknown, 401)
    assert_not_limited(wrong, 401)
    assert unknown.get_data() == wrong.get_data()
    assert _comparable(unknown) == _comparable(wrong)
    # A success says nothing about counters either.
    assert_not_limited(login(client, email=BOB), 200)
    # The second attempt: remaining counts differ nowhere in the answer.
    again_unknown = login(client, email="nobody@example.com", password="whatever-it-is")
    again_wrong = login(client, email=ANN, password="whatever-it-is")
    assert again_unknown.get_data() == again_wrong.get_data() == wrong.get_data()
    assert _comparable(again_unknown) == _comparable(again_wrong) == _comparable(wrong)


@pytest.mark.usefixtures("accounts")
def test_the_limit_applies_to_login_only(client: FlaskClient) -> None:
    tokens = login(client).json
    for _ in range(LIMIT - 1):
        login(client)
    assert_limited(login(client))
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    for index in range(LIMIT + 2):
        created = client.post(
            "/auth/register", json={"email": f"user{index}@example.com", "password": PASSWORD}
        )
        assert_not_limited(created, 201)
        assert_not_limited(client.get("/me", headers=bearer), 200)
        assert_not_limited(client.get("/health"), 200)
        assert_not_limited(client.get("/todos", headers=bearer), 200)
    refresh = tokens["refresh_token"]
    for _ in range(LIMIT + 2):
        rotated = client.post("/auth/refresh", headers={"Authorization": f"Bearer {refresh}"})
        assert_not_limited(rotated, 200)
        refresh = rotated.json["refresh_token"]
    # ...and login is still limited for Ann at this address.
    assert_limited(login(client))


def test_login_fails_open_when_redis_is_down(make_app: Any) -> None:
    client = make_app(REDIS_URL=DEAD_REDIS, LOGIN_RATE_LIMIT="1/minute").test_client()
    created = client.post("/auth/register", json={"email": ANN, "password": PASSWORD})
    assert created.status_code == 201, created.json
    for _ in range(6):
        response = login(client)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.json["token_type"] == "bearer"
    for form in (False, True):
        assert_not_limited(login(client, password="wrong password", form=form), 401)
