"""Bearer tokens on protected routes, refresh rotation, and sessions (logout ends only its own)."""

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from werkzeug.test import TestResponse

from tests.helpers import assert_error
from todoapi import housekeeping
from todoapi.auth.services import session_user
from todoapi.models import Session, User, utcnow
from todoapi.queue import enqueue, get_queue, get_redis

ANN = "ann@example.com"
PASSWORD = "correct horse battery"
WRONG_KEY = "an-attackers-guess-at-the-secret-key-0123456789"

# Every route that needs an access token, each with a body it would otherwise accept.
PROTECTED = [
    ("GET", "/me", None),
    ("GET", "/todos", None),
    ("PATCH", "/me", {"timezone": "Europe/Berlin"}),
    ("POST", "/todos", {"title": "planted by a forged token"}),
    ("POST", "/auth/logout", None),
    ("DELETE", "/me", None),
]


def sign_up(client: FlaskClient, email: str = ANN) -> dict[str, Any]:
    """Register through the API and log in; the login body, with both tokens."""
    created = client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.json
    return log_in(client, email)


def log_in(client: FlaskClient, email: str = ANN) -> dict[str, Any]:
    response = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.json
    return response.json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refresh(client: FlaskClient, token: str) -> TestResponse:
    return client.post("/auth/refresh", headers=bearer(token))


def assert_unauthorized(response: TestResponse) -> None:
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def b64url(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


# --- hostile or unusable Authorization headers --------------------------------------------------
# Each builder returns (the Authorization header to try, or None for no header) and the headers of
# a still-valid access token for the same account where one exists, to prove nothing changed.

Case = tuple[str | None, dict[str, str] | None]


def no_header(client: FlaskClient) -> Case:
    return None, None


def other_scheme(client: FlaskClient) -> Case:
    return "Token x", None


def garbage(client: FlaskClient) -> Case:
    return "Bearer not.a.jwt", None


def wrong_signature(client: FlaskClient) -> Case:
    access = sign_up(client)["access_token"]
    forged = jwt.encode(claims(access), WRONG_KEY, algorithm="HS256")
    return f"Bearer {forged}", bearer(access)


def alg_none(client: FlaskClient) -> Case:
    access = sign_up(client)["access_token"]
    forged = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims(access))}."
    return f"Bearer {forged}", bearer(access)


def tampered_payload(client: FlaskClient) -> Case:
    access = sign_up(client)["access_token"]
    header, _, signature = access.split(".")
    extended = claims(access) | {"exp": claims(access)["exp"] + 86_400}
    return f"Bearer {header}.{b64url(extended)}.{signature}", bearer(access)


def _resigned(client: FlaskClient, drop: tuple[str, ...] = (), **changes: Any) -> Case:
    """The account's access token with claims changed or dropped, signed with the real key."""
    access = sign_up(client)["access_token"]
    key = client.application.config["JWT_SECRET_KEY"]
    changed = {name: value for name, value in claims(access).items() if name not in drop} | changes
    return f"Bearer {jwt.encode(changed, key, algorithm='HS256')}", bearer(access)


def expired(client: FlaskClient) -> Case:
    now = int(time.time())
    return _resigned(client, iat=now - 7200, nbf=now - 7200, exp=now - 3600)


def not_yet_valid(client: FlaskClient) -> Case:
    now = int(time.time())
    return _resigned(client, nbf=now + 3600, exp=now + 7200)


def never_expires(client: FlaskClient) -> Case:
    return _resigned(client, drop=("exp",))


def unknown_type(client: FlaskClient) -> Case:
    return _resigned(client, type="id")


# Claims no row can hold: they must miss (401), not reach the database as an error.
def sub_beyond_any_id(client: FlaskClient) -> Case:
    return _resigned(client, sub="9" * 30)


def sub_beyond_a_serial(client: FlaskClient) -> Case:
    return _resigned(client, sub=str(2**31))


def sub_in_other_digits(client: FlaskClient) -> Case:
    return _resigned(client, sub="\u0661")  # ARABIC-INDIC DIGIT ONE: int() takes it


def sid_with_nul(client: FlaskClient) -> Case:
    return _resigned(client, sid="\x00" * 32)


def sid_with_lone_surrogate(client: FlaskClient) -> Case:
    return _resigned(client, sid="\ud800" * 32)


def refresh_as_access(client: FlaskClient) -> Case:
    tokens = sign_up(client)
    return f"Bearer {tokens['refresh_token']}", bearer(tokens["access_token"])


def after_logout(client: FlaskClient) -> Case:
    access = sign_up(client)["access_token"]
    assert client.post("/auth/logout", headers=bearer(access)).status_code == 204
    return f"Bearer {access}", None


def deleted_user(client: FlaskClient) -> Case:
    access = sign_up(client)["access_token"]
    assert client.delete("/me", headers=bearer(access)).status_code == 204
    return f"Bearer {access}", None


@pytest.mark.parametrize(
    "build",
    [
        no_header,
        other_scheme,
        garbage,
        wrong_signature,
        alg_none,
        tampered_payload,
        expired,
        not_yet_valid,
        never_expires,
        unknown_type,
        sub_beyond_any_id,
        sub_beyond_a_serial,
        sub_in_other_digits,
        sid_with_nul,
        sid_with_lone_surrogate,
        refresh_as_access,
        after_logout,
        deleted_user,
    ],
)
def test_protected_routes_reject_unusable_tokens(client: FlaskClient, build: Callable[..., Case]) -> None:
    authorization, still_valid = build(client)
    headers = {} if authorization is None else {"Authorization": authorization}

    for method, path, body in PROTECTED:
        response = client.open(path, method=method, json=body, headers=headers)
        assert_unauthorized(response)

    if still_valid is not None:
        me = client.get("/me", headers=still_valid)
        assert me.status_code == 200, me.json
        assert me.json["timezone"] == "UTC"
        assert client.get("/todos", headers=still_valid).json["total"] == 0


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PATCH", "/me", {"timezone": "Mars/Olympus"}),
        ("PATCH", "/me", {"email": "x@example.com"}),
        ("POST", "/todos", {}),
        ("POST", "/todos", {"title": "x", "done": True}),
    ],
)
def test_missing_token_wins_over_a_bad_body(client: FlaskClient, method: str, path: str, body: Any) -> None:
    assert_unauthorized(client.open(path, method=method, json=body))


def test_token_type_from_login_works_as_the_auth_scheme(client: FlaskClient) -> None:
    tokens = sign_up(client)

    response = client.get(
        "/me", headers={"Authorization": f"{tokens['token_type']} {tokens['access_token']}"}
    )

    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    "shape, works",
    [
        ("BEARER {token}", True),
        ("bearer {token}", True),
        ("Basic dXNlcjpwYXNz, Bearer {token}", True),
        ("Bearer {token},", True),
        ("Bearer", False),
        ("Bearer {token} extra", False),
        ("Bearer {token}, Bearer {token}", False),
        ("{token}", False),
        ("Bearer{token}", False),
    ],
)
def test_authorization_header_shapes(client: FlaskClient, shape: str, works: bool) -> None:
    token = sign_up(client)["access_token"]

    response = client.get("/me", headers={"Authorization": shape.format(token=token)})

    if works:
        assert response.status_code == 200, response.json
    else:
        assert_unauthorized(response)


# --- reads whose own query checks the session (login_required_in_query) --------------------------


def _reads_of(client: FlaskClient, access: str) -> tuple[list[str], str, str]:
    """Every shape of read that checks the session in its own query, for an account with two todos:
    the paths, one todo's path and its ETag."""
    headers = bearer(access)
    ids = [
        client.post("/todos", json={"title": f"secret {n}", "tags": ["x"]}, headers=headers).json["id"]
        for n in range(2)
    ]
    etag = client.get(f"/todos/{ids[0]}", headers=headers).headers["ETag"]
    paths = [
        "/todos",  # a short first page: its own total
        "/todos?limit=1",  # a full page: the total too
        "/todos?skip=5&limit=1",  # an empty page past the end
        "/todos?tag=x&sort=-priority,due_date",
        "/todos?q=secret",
        "/todos?tag=none",  # nothing matches
        f"/todos/{ids[0]}",
        "/todos/999999",  # no such todo
    ]
    return paths, f"/todos/{ids[0]}", etag


@pytest.mark.parametrize("end", ["logout", "delete account"])
def test_reads_that_check_the_session_themselves_refuse_an_ended_one(client: FlaskClient, end: str) -> None:
    access = sign_up(client)["access_token"]
    paths, one, etag = _reads_of(client, access)
    for path in paths:
        assert client.get(path, headers=bearer(access)).status_code in {200, 404}, path

    if end == "logout":
        assert client.post("/auth/logout", headers=bearer(access)).status_code == 204
    else:
        assert client.delete("/me", headers=bearer(access)).status_code == 204

    for path in paths:
        response = client.get(path, headers=bearer(access))
        assert_unauthorized(response)
        assert b"secret" not in response.get_data(), path
    # 401 wins over every other answer a live session would have had.
    assert_unauthorized(client.get(one, headers=bearer(access) | {"If-None-Match": etag}))
    assert_unauthorized(client.get("/todos?limit=0&sort=nonsense", headers=bearer(access)))


def test_a_read_that_checks_the_session_itself_wants_the_session_of_that_account(
    client: FlaskClient,
) -> None:
    """A token naming one account's session and another account (only the key could sign it)."""
    bob = sign_up(client, "bob@example.com")["access_token"]
    paths, _, _ = _reads_of(client, bob)
    ann = sign_up(client)["access_token"]
    key = client.application.config["JWT_SECRET_KEY"]
    crossed = jwt.encode(claims(ann) | {"sub": claims(bob)["sub"]}, key, algorithm="HS256")

    for path in paths:
        assert_unauthorized(client.get(path, headers=bearer(crossed)))
    assert client.get("/todos", headers=bearer(bob)).json["total"] == 2


@pytest.mark.parametrize("token", ["logged out", "crossed"])
def test_changes_that_check_the_session_themselves_refuse_a_dead_or_foreign_one(
    client: FlaskClient, token: str
) -> None:
    ann = sign_up(client)
    todo = client.post("/todos", json={"title": "keep"}, headers=bearer(ann["access_token"])).json
    if token == "logged out":
        stale = log_in(client)["access_token"]
        assert client.post("/auth/logout", headers=bearer(stale)).status_code == 204
    else:  # Bob's session, naming Ann's account (only the key could sign it)
        bob = sign_up(client, "bob@example.com")["access_token"]
        key = client.application.config["JWT_SECRET_KEY"]
        stale = jwt.encode(claims(bob) | {"sub": claims(ann["access_token"])["sub"]}, key, algorithm="HS256")
    path = f"/todos/{todo['id']}"

    assert_unauthorized(client.patch(path, json={"title": "changed"}, headers=bearer(stale)))
    assert_unauthorized(client.patch(path, json={"title": ""}, headers=bearer(stale)))  # not 422
    assert_unauthorized(client.patch(path, json={"done": True}, headers=bearer(stale) | {"If-Match": '"x"'}))
    assert_unauthorized(client.delete(path, headers=bearer(stale)))
    assert_unauthorized(client.delete("/todos/999999", headers=bearer(stale)))  # not 404
    assert_unauthorized(client.post("/todos", json={"title": "new", "tags": ["x"]}, headers=bearer(stale)))
    assert_unauthorized(client.post("/todos", json={"title": ""}, headers=bearer(stale)))  # not 422
    keyed = bearer(stale) | {"Idempotency-Key": "k1"}
    assert_unauthorized(client.post("/todos", json={"title": "new"}, headers=keyed))

    live = bearer(ann["access_token"])
    assert client.get(path, headers=live).json == todo
    assert client.get("/todos", headers=live).json["items"] == [todo]
    assert client.get("/stats", headers=live).json["by_tag"] == {}
    with client.application.app_context():
        assert User.get_by_id(int(claims(ann["access_token"])["sub"])).todo_revision == 1  # the first create


def test_a_live_session_reads_an_empty_page_with_its_total(client: FlaskClient) -> None:
    access = sign_up(client)["access_token"]
    _reads_of(client, access)

    page = client.get("/todos?skip=5&limit=1", headers=bearer(access))

    assert page.status_code == 200, page.json
    assert page.json == {"items": [], "total": 2, "skip": 5, "limit": 1}
    assert client.get("/todos?tag=none", headers=bearer(access)).json["total"] == 0


# --- refresh ------------------------------------------------------------------------------------


def test_refresh_rotates_the_pair(client: FlaskClient) -> None:
    first = sign_up(client)

    response = refresh(client, first["refresh_token"])

    assert response.status_code == 200, response.json
    second = response.json
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["token_type"] == "bearer" and second["expires_in"] == 3600
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert client.get("/me", headers=bearer(second["access_token"])).status_code == 200

    assert_unauthorized(refresh(client, first["refresh_token"]))

    third = refresh(client, second["refresh_token"])
    assert third.status_code == 200, third.json
    assert client.get("/me", headers=bearer(third.json["access_token"])).status_code == 200


def test_concurrent_refreshes_with_one_token_have_one_winner(app: Flask, client: FlaskClient) -> None:
    racers = 6
    token = sign_up(client)["refresh_token"]
    start = threading.Barrier(racers)

    def race(_: int) -> tuple[int, str | None]:
        own_client = app.test_client()
        start.wait()
        response = refresh(own_client, token)
        return response.status_code, (response.json or {}).get("refresh_token")

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(race, range(racers)))

    assert sorted(status for status, _ in results) == [200] + [401] * (racers - 1), results
    [winner] = [new_token for status, new_token in results if status == 200]
    assert refresh(client, winner).status_code == 200


# A refresh attempt's token, and the session's real tokens where it should survive the attempt.
RefreshCase = tuple[str, dict[str, Any] | None]


def access_token_instead(client: FlaskClient) -> RefreshCase:
    tokens = sign_up(client)
    return tokens["access_token"], tokens


def already_rotated(client: FlaskClient) -> RefreshCase:
    tokens = sign_up(client)
    assert refresh(client, tokens["refresh_token"]).status_code == 200
    return tokens["refresh_token"], None


def refresh_after_logout(client: FlaskClient) -> RefreshCase:
    tokens = sign_up(client)
    assert client.post("/auth/logout", headers=bearer(tokens["access_token"])).status_code == 204
    return tokens["refresh_token"], None


def refresh_of_deleted_user(client: FlaskClient) -> RefreshCase:
    tokens = sign_up(client)
    assert client.delete("/me", headers=bearer(tokens["access_token"])).status_code == 204
    return tokens["refresh_token"], None


def forged_refresh(client: FlaskClient) -> RefreshCase:
    tokens = sign_up(client)
    return jwt.encode(claims(tokens["refresh_token"]), WRONG_KEY, algorithm="HS256"), tokens


def refresh_without_jti(client: FlaskClient) -> RefreshCase:
    # Signed with the real key: only the missing jti is wrong, and the session must not rotate.
    tokens = sign_up(client)
    stripped = {name: value for name, value in claims(tokens["refresh_token"]).items() if name != "jti"}
    key = client.application.config["JWT_SECRET_KEY"]
    return jwt.encode(stripped, key, algorithm="HS256"), tokens


def refresh_with_unusable_jti(client: FlaskClient) -> RefreshCase:
    tokens = sign_up(client)
    key = client.application.config["JWT_SECRET_KEY"]
    changed = claims(tokens["refresh_token"]) | {"jti": "\x00\ud800"}
    return jwt.encode(changed, key, algorithm="HS256"), tokens


@pytest.mark.parametrize(
    "build",
    [
        access_token_instead,
        already_rotated,
        refresh_after_logout,
        refresh_of_deleted_user,
        forged_refresh,
        refresh_without_jti,
        refresh_with_unusable_jti,
    ],
)
def test_refresh_rejects(client: FlaskClient, build: Callable[..., RefreshCase]) -> None:
    token, session = build(client)

    assert_unauthorized(refresh(client, token))

    if session is not None:
        # The session's real refresh token was not spent by the rejected attempt.
        assert refresh(client, session["refresh_token"]).status_code == 200


def test_refresh_without_a_token_is_401(client: FlaskClient) -> None:
    assert_unauthorized(client.post("/auth/refresh"))


# --- sessions -----------------------------------------------------------------------------------


def test_each_login_is_its_own_session_and_logout_ends_only_that_one(client: FlaskClient) -> None:
    laptop = sign_up(client)
    phone = log_in(client)
    assert claims(laptop["access_token"])["sid"] != claims(phone["access_token"])["sid"]
    for session in (laptop, phone):
        assert client.get("/me", headers=bearer(session["access_token"])).status_code == 200

    response = client.post("/auth/logout", headers=bearer(laptop["access_token"]))

    assert response.status_code == 204
    assert response.get_data() == b""
    assert_unauthorized(client.get("/me", headers=bearer(laptop["access_token"])))
    assert_unauthorized(refresh(client, laptop["refresh_token"]))
    assert client.get("/me", headers=bearer(phone["access_token"])).status_code == 200
    rotated = refresh(client, phone["refresh_token"])
    assert rotated.status_code == 200, rotated.json
    assert client.get("/todos", headers=bearer(rotated.json["access_token"])).status_code == 200


def test_logout_with_a_refresh_token_is_401_and_ends_nothing(client: FlaskClient) -> None:
    tokens = sign_up(client)

    assert_unauthorized(client.post("/auth/logout", headers=bearer(tokens["refresh_token"])))

    assert client.get("/me", headers=bearer(tokens["access_token"])).status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200


# --- verified tokens are remembered per process; expiry and revocation still apply -----------


def test_a_token_that_worked_is_refused_once_it_expires(client: FlaskClient) -> None:
    access = sign_up(client)["access_token"]
    key = client.application.config["JWT_SECRET_KEY"]
    short_lived = jwt.encode(claims(access) | {"exp": int(time.time()) + 2}, key, algorithm="HS256")
    assert client.get("/me", headers=bearer(short_lived)).status_code == 200  # verified and remembered

    time.sleep(max(0.0, claims(short_lived)["exp"] - time.time()) + 0.1)

    response = client.get("/me", headers=bearer(short_lived))
    assert_unauthorized(response)
    assert response.json["message"] == "Token has expired."
    assert client.get("/me", headers=bearer(access)).status_code == 200


def test_a_remembered_token_does_not_vouch_for_a_tampered_copy(client: FlaskClient) -> None:
    access = sign_up(client)["access_token"]
    assert client.get("/todos", headers=bearer(access)).status_code == 200
    header, _, signature = access.split(".")
    other_user = f"{header}.{b64url(claims(access) | {'sub': '999'})}.{signature}"

    assert_unauthorized(client.get("/todos", headers=bearer(other_user)))
    assert_unauthorized(client.get("/todos", headers=bearer(access[:-2])))


def test_the_session_check_loads_the_account_as_stored(app: Flask, client: FlaskClient) -> None:
    tokens = sign_up(client)
    headers = bearer(tokens["access_token"])
    assert client.patch("/me", json={"timezone": "Asia/Tokyo"}, headers=headers).status_code == 200
    assert client.post("/todos", json={"title": "bumps the revision"}, headers=headers).status_code == 201
    token = claims(tokens["access_token"])

    with app.app_context():
        loaded = session_user(token["sid"], token["sub"])
        stored = User.get_by_id(int(token["sub"]))
        assert loaded is not None and loaded.__data__ == stored.__data__
        assert loaded.todo_revision == 1 and loaded.created_at.utcoffset() is not None
        assert not loaded._dirty  # a later save() writes only what changes
        assert session_user(token["sid"], "999999") is None


def refresh_expiry(token: str) -> datetime:
    """The `exp` of a token, read without checking it (the test only wants the date)."""
    return datetime.fromtimestamp(jwt.decode(token, options={"verify_signature": False})["exp"], UTC)


def test_a_session_records_when_its_newest_refresh_token_expires(app: Flask, client: FlaskClient) -> None:
    first = sign_up(client)
    with app.app_context():
        [recorded] = [session.expires_at for session in Session.select()]
    assert timedelta(0) <= recorded - refresh_expiry(first["refresh_token"]) < timedelta(seconds=5)

    time.sleep(1.1)  # a token's `exp` counts whole seconds
    second = refresh(client, first["refresh_token"]).json
    with app.app_context():
        [moved] = [session.expires_at for session in Session.select()]
    assert moved > recorded
    assert timedelta(0) <= moved - refresh_expiry(second["refresh_token"]) < timedelta(seconds=5)


def test_sessions_past_their_refresh_tokens_are_purged_and_no_others(
    app: Flask, client: FlaskClient, redis: Any
) -> None:
    """The worker's hourly clean-up. A session from before expiries were recorded has none: kept."""
    tokens = [sign_up(client)["access_token"], *(log_in(client)["access_token"] for _ in range(4))]
    with app.app_context():
        ids = [session.id for session in Session.select().order_by(Session.created_at)]
        past = utcnow() - timedelta(seconds=1)
        Session.update(expires_at=past).where(Session.id.in_(ids[:3])).execute()
        Session.update(expires_at=None).where(Session.id == ids[3]).execute()
        assert housekeeping.purge_expired_sessions(batch_size=2) == 3
        assert sorted(session.id for session in Session.select()) == sorted(ids[3:])
        Session.update(expires_at=past).where(Session.id == ids[4]).execute()
        job = enqueue(housekeeping.purge_expired)
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
        assert job is not None and job.return_value() == {"idempotency_keys": 0, "sessions": 1}
        assert [session.id for session in Session.select()] == [ids[3]]
    assert [client.get("/me", headers=bearer(token)).status_code for token in tokens] == [401] * 3 + [
        200,
        401,
    ]
