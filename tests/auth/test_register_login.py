"""POST /auth/register and POST /auth/login: accounts, credentials and stored password hashes."""

from datetime import datetime
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.helpers import assert_error
from todoapi.auth import services
from todoapi.models import Session, User

ANN = "ann@example.com"
PASSWORD = "correct horse battery"
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
# Generated per request by design, so it is the one header two responses may not share.
PER_REQUEST_HEADERS = {"x-request-id"}


def create_account(client: FlaskClient, email: str = ANN, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.json
    return response.json


def login(client: FlaskClient, email: str = ANN, password: str = PASSWORD) -> TestResponse:
    return client.post("/auth/login", json={"email": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored_users(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        return list(User.select(User.email, User.password_hash).order_by(User.id).tuples())


def session_count(app: Flask) -> int:
    with app.app_context():
        return Session.select().count()


def error_fields(response: TestResponse) -> set[str]:
    """Field names under every location of a validation error."""
    return {field for fields in response.json.get("errors", {}).values() for field in fields}


def shared_headers(response: TestResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in PER_REQUEST_HEADERS}


# --- register ---------------------------------------------------------------------------------


def test_register_returns_the_account_with_a_normalised_email(app: Flask, client: FlaskClient) -> None:
    response = client.post("/auth/register", json={"email": "  Ann@Example.COM ", "password": PASSWORD})

    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == {"id", "email", "timezone", "created_at"}
    assert isinstance(body["id"], int)
    assert body["email"] == ANN
    assert body["timezone"] == "UTC"
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None
    assert stored_users(app)[0][0] == ANN


def test_register_stores_an_argon2id_hash_never_the_password(app: Flask, client: FlaskClient) -> None:
    create_account(client)

    [(email, password_hash)] = stored_users(app)
    assert email == ANN
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert services.hasher.check_needs_rehash(password_hash) is False


@pytest.mark.parametrize("duplicate", ["ANN@example.com", "  ann@EXAMPLE.com", ANN])
def test_register_duplicate_email_is_409_in_any_case(app: Flask, client: FlaskClient, duplicate: str) -> None:
    create_account(client)

    response = client.post("/auth/register", json={"email": duplicate, "password": "another password"})

    assert_error(response, 409)
    assert [email for email, _ in stored_users(app)] == [ANN]
    assert_error(login(client, ANN, "another password"), 401)


@pytest.mark.parametrize("length", [8, 128])
def test_register_accepts_password_length_bounds(client: FlaskClient, length: int) -> None:
    password = "p" * (length - 1) + "!"
    create_account(client, password=password)

    assert login(client, ANN, password).status_code == 200


def test_register_keeps_the_password_exactly_as_typed(client: FlaskClient) -> None:
    padded = f"  {PASSWORD}  "
    create_account(client, password=padded)

    assert_error(login(client, ANN, PASSWORD), 401)
    assert login(client, ANN, padded).status_code == 200


@pytest.mark.parametrize(
    "email",
    [
        "o'brien+todo@mail.example.co.uk",
        "{a|b}~c@example.io",
        "x@1.2.3.4",
        "a" * 64 + "@example.com",
        "ann@" + "b" * 63 + "." + "c" * 63 + ".example.org",
        "ann@xn-a-b.example",
    ],
)
def test_register_accepts_every_address_the_openapi_pattern_admits(client: FlaskClient, email: str) -> None:
    create_account(client, email=email)

    assert login(client, email).status_code == 200


BAD_EMAILS = [
    "ann@example",  # no dot in the domain
    "ann@localhost",
    "ann@[127.0.0.1]",  # an address literal
    '"ann smith"@example.com',  # a quoted local part
    "ann@exämple.com",  # not ASCII: `format: email`, not `idn-email`
    "änn@example.com",
    "ann@ab--c.example.com",  # `--` at positions 3-4 marks an IDNA label
    "ann..smith@example.com",
    ".ann@example.com",
    "ann@-example.com",
    "a" * 65 + "@example.com",  # local part over 64
    "ann@" + ("b" * 63 + ".") * 4 + "com",  # domain over 253
]


REGISTER_REJECTS = [
    *[
        pytest.param({"json": {"email": email, "password": PASSWORD}}, 422, ("email",), id=f"email-{n}")
        for n, email in enumerate(BAD_EMAILS)
    ],
    pytest.param({"json": {}}, 422, ("email", "password"), id="empty-object"),
    pytest.param({"json": {"password": PASSWORD}}, 422, ("email",), id="missing-email"),
    pytest.param({"json": {"email": ANN}}, 422, ("password",), id="missing-password"),
    pytest.param({"json": {"email": "not-an-email", "password": PASSWORD}}, 422, ("email",), id="bad-email"),
    pytest.param({"json": {"email": "   ", "password": PASSWORD}}, 422, ("email",), id="blank-email"),
    pytest.param({"json": {"email": 5, "password": PASSWORD}}, 422, ("email",), id="email-number"),
    pytest.param({"json": {"email": ANN, "password": "p" * 7}}, 422, ("password",), id="password-7"),
    pytest.param({"json": {"email": ANN, "password": "p" * 129}}, 422, ("password",), id="password-129"),
    pytest.param({"json": {"email": ANN, "password": 12345678}}, 422, ("password",), id="password-number"),
    pytest.param({"json": {"email": ANN, "password": None}}, 422, ("password",), id="password-null"),
    pytest.param(
        {"json": {"email": ANN, "password": PASSWORD, "admin": True}}, 422, ("admin",), id="unknown-field"
    ),
    pytest.param({"json": {"email": ANN, "password": PASSWORD, "id": 7}}, 422, ("id",), id="read-only-id"),
    pytest.param({"json": [ANN, PASSWORD]}, 422, ("_schema",), id="json-array"),
    pytest.param(
        {"data": '{"email": "ann@example.com", "password": ', "content_type": "application/json"},
        400,
        ("_schema",),
        id="malformed-json",
    ),
    pytest.param(
        {"data": f'{{"email": "{ANN}", "password": "{PASSWORD}"}}', "content_type": "text/plain"},
        415,
        (),
        id="text-plain",
    ),
    pytest.param({"data": {"email": ANN, "password": PASSWORD}}, 415, (), id="form-body"),
    pytest.param(
        {
            "data": '{"email": "ann@example.com", "password": "' + "p" * (1024 * 1024) + '"}',
            "content_type": "application/json",
        },
        413,
        (),
        id="over-1-mib",
    ),
]


@pytest.mark.parametrize("request_kwargs, status, fields", REGISTER_REJECTS)
def test_register_rejects_bad_bodies_and_stores_nothing(
    app: Flask, client: FlaskClient, request_kwargs: dict[str, Any], status: int, fields: tuple[str, ...]
) -> None:
    response = client.post("/auth/register", **request_kwargs)

    assert_error(response, status, *fields)
    assert stored_users(app) == []


def test_malformed_json_names_the_body_schema(client: FlaskClient) -> None:
    response = client.post("/auth/register", data="{not json", content_type="application/json")

    assert_error(response, 400)
    assert set(response.json["errors"]) == {"json"}
    assert set(response.json["errors"]["json"]) == {"_schema"}
    assert response.json["errors"]["json"]["_schema"]


# --- login ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"email": ANN, "password": PASSWORD}}, id="json"),
        pytest.param({"data": {"username": ANN, "password": PASSWORD, "grant_type": "password"}}, id="form"),
    ],
)
def test_login_returns_a_bearer_token_pair(
    app: Flask, client: FlaskClient, request_kwargs: dict[str, Any]
) -> None:
    account = create_account(client)

    response = client.post("/auth/login", **request_kwargs)

    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    key = app.config["JWT_SECRET_KEY"]
    access = jwt.decode(body["access_token"], key, algorithms=["HS256"])
    refresh = jwt.decode(body["refresh_token"], key, algorithms=["HS256"])
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["exp"] - access["iat"] == body["expires_in"]
    me = client.get("/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json["id"] == account["id"]
    assert session_count(app) == 1


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"email": "  Ann@EXAMPLE.com ", "password": PASSWORD}}, id="json"),
        pytest.param({"data": {"username": "ANN@Example.COM", "password": PASSWORD}}, id="form"),
    ],
)
def test_login_email_is_case_insensitive(client: FlaskClient, request_kwargs: dict[str, Any]) -> None:
    create_account(client)

    response = client.post("/auth/login", **request_kwargs)

    assert response.status_code == 200, response.json
    assert set(response.json) == TOKEN_KEYS


def test_unknown_email_and_wrong_password_are_indistinguishable(app: Flask, client: FlaskClient) -> None:
    create_account(client)

    unknown = login(client, "nobody@example.com", PASSWORD)
    wrong = login(client, ANN, "not the password")

    assert_error(unknown, 401)
    assert_error(wrong, 401)
    assert unknown.json == wrong.json
    assert shared_headers(unknown) == shared_headers(wrong)
    assert unknown.headers["WWW-Authenticate"] == "Bearer"
    assert session_count(app) == 0


def test_unknown_email_is_checked_against_a_real_looking_hash(app: Flask) -> None:
    # The decoy must cost what a real verification costs: same algorithm, same parameters.
    decoy = services._decoy_hash()

    assert decoy.startswith("$argon2id$")
    assert services.hasher.check_needs_rehash(decoy) is False
    assert decoy == services._decoy_hash()


def test_login_rehashes_a_password_stored_with_outdated_parameters(app: Flask, client: FlaskClient) -> None:
    create_account(client)
    current = services.hasher
    outdated = PasswordHasher(
        time_cost=current.time_cost, memory_cost=current.memory_cost // 2, parallelism=current.parallelism
    ).hash(PASSWORD)
    assert current.check_needs_rehash(outdated)
    with app.app_context():
        User.update(password_hash=outdated).where(User.email == ANN).execute()

    response = login(client)

    assert response.status_code == 200, response.json
    [(_, rehashed)] = stored_users(app)
    assert rehashed != outdated
    assert rehashed.startswith("$argon2id$")
    assert services.hasher.check_needs_rehash(rehashed) is False
    assert services.hasher.verify(rehashed, PASSWORD)


LOGIN_REJECTS = [
    pytest.param({"json": {"email": ANN}}, 422, "password", id="json-missing-password"),
    pytest.param(
        {"data": {"username": ANN, "grant_type": "password"}}, 422, "password", id="form-no-password"
    ),
    pytest.param({"json": {"password": PASSWORD}}, 422, "email", id="json-missing-email"),
    pytest.param({"json": {"email": 5, "password": PASSWORD}}, 422, "email", id="email-number"),
    pytest.param(
        {"data": {"username": ANN, "password": PASSWORD, "grant_type": "client_credentials"}},
        422,
        "grant_type",
        id="wrong-grant-type",
    ),
    pytest.param(
        {"json": {"email": ANN, "password": PASSWORD, "remember": True}}, 422, "remember", id="unknown-field"
    ),
    pytest.param({"json": [ANN, PASSWORD]}, 422, "_schema", id="json-array"),
    pytest.param(
        {"data": f'{{"email": "{ANN}", "password": "{PASSWORD}"', "content_type": "application/json"},
        400,
        "_schema",
        id="malformed-json",
    ),
    pytest.param(
        {"data": f'{{"email": "{ANN}", "password": "{PASSWORD}"}}', "content_type": "text/plain"},
        415,
        None,
        id="text-plain",
    ),
]


@pytest.mark.parametrize(
    "request_kwargs, location",
    [({"json": {}}, "json"), ({"data": {"grant_type": "password"}}, "form")],
    ids=["json", "form"],
)
def test_login_without_anything_names_both_fields(
    client: FlaskClient, request_kwargs: dict[str, Any], location: str
) -> None:
    response = client.post("/auth/login", **request_kwargs)

    assert_error(response, 422, "email", "password", location=location)
    assert "username" in response.json["errors"][location]["email"][0]


def test_login_with_an_unreadable_body_names_both_accepted_types(client: FlaskClient) -> None:
    response = client.post("/auth/login", data="email=x", content_type="text/plain")

    assert_error(response, 415)
    assert "application/json" in response.json["message"]
    assert "application/x-www-form-urlencoded" in response.json["message"]


@pytest.mark.parametrize("request_kwargs, status, field", LOGIN_REJECTS)
def test_login_rejects_bad_bodies_and_opens_no_session(
    app: Flask, client: FlaskClient, request_kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    create_account(client)

    response = client.post("/auth/login", **request_kwargs)

    assert_error(response, status)
    if field is not None:
        assert field in error_fields(response), response.json
    assert session_count(app) == 0


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"email": "ann@example.com\u0000", "password": PASSWORD}}, id="json"),
        pytest.param({"data": {"username": "ann\u0000@example.com", "password": PASSWORD}}, id="form"),
    ],
)
def test_login_with_a_nul_in_the_email_is_a_clean_4xx(
    app: Flask, client: FlaskClient, request_kwargs: dict[str, Any]
) -> None:
    create_account(client)

    response = client.post("/auth/login", **request_kwargs)

    assert response.status_code in {401, 422}, response.get_data(as_text=True)
    assert_error(response, response.status_code)
    assert session_count(app) == 0


@pytest.mark.parametrize(
    "request_kwargs, location",
    [
        pytest.param({"json": {"email": ANN}}, "json", id="json"),
        pytest.param({"data": {"username": ANN}}, "form", id="form"),
    ],
)
def test_login_validation_errors_are_keyed_by_the_body_location(
    client: FlaskClient, request_kwargs: dict[str, Any], location: str
) -> None:
    response = client.post("/auth/login", **request_kwargs)

    assert_error(response, 422, "password", location=location)


def test_the_decoy_hash_is_made_before_the_first_unknown_email(app: Flask, client: FlaskClient) -> None:
    # Made at start: the first login for an unknown email spends one hash's time, like the others.
    assert services._decoy_hash.cache_info().currsize == 1
    misses = services._decoy_hash.cache_info().misses

    assert_error(client.post("/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}), 401)

    assert services._decoy_hash.cache_info().misses == misses
