"""Conditional requests (ETag, If-None-Match, If-Match) and idempotent creates, on SQLite and PostgreSQL."""

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from werkzeug.test import TestResponse

from tests.helpers import assert_error
from todoapi import housekeeping
from todoapi.db import db
from todoapi.models import IdempotencyKey, Todo, utcnow
from todoapi.queue import enqueue, get_queue, get_redis
from todoapi.todos import services as todo_services

BODY = {"title": "Pay rent", "priority": 4, "tags": ["home"], "due_date": "2026-12-01"}


def create(client: FlaskClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/todos", json={"title": "Buy milk", **body}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def read(client: FlaskClient, auth: dict[str, str], todo_id: int) -> tuple[dict[str, Any], str]:
    """The todo and its ETag, as a client sees them."""
    response = client.get(f"/todos/{todo_id}", headers=auth)
    assert response.status_code == 200, response.json
    return response.json, response.headers["ETag"]


def total(client: FlaskClient, auth: dict[str, str]) -> int:
    return client.get("/todos", headers=auth).json["total"]


def stored(app: Flask, model: type[Todo] | type[IdempotencyKey]) -> int:
    """Rows in a table, whoever owns them: proof that nothing was written behind the API's back."""
    with app.app_context():
        return model.select().count()


# --- ETag / If-None-Match -----------------------------------------------------------------------


@pytest.fixture
def todo(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    return create(client, auth, title="Water plants", tags=["home"])


def test_get_sends_a_strong_etag_that_is_stable(client, auth, todo):
    response = client.get(f"/todos/{todo['id']}", headers=auth)
    etag = response.headers["ETag"]
    assert re.fullmatch(r'"[^"]+"', etag), etag
    assert response.get_etag() == (etag.strip('"'), False)
    assert client.get(f"/todos/{todo['id']}", headers=auth).headers["ETag"] == etag


@pytest.mark.parametrize(
    "if_none_match, status",
    [
        pytest.param(lambda etag: etag, 304, id="current"),
        pytest.param(lambda etag: f'"not-the-etag", {etag}', 304, id="list holding the current one"),
        pytest.param(lambda etag: "*", 304, id="star"),
        pytest.param(lambda etag: '"not-the-etag"', 200, id="another"),
        pytest.param(lambda etag: etag[:-1] + 'x"', 200, id="almost the current one"),
    ],
)
def test_if_none_match(client, auth, todo, if_none_match, status):
    body, etag = read(client, auth, todo["id"])
    response = client.get(f"/todos/{todo['id']}", headers={**auth, "If-None-Match": if_none_match(etag)})
    assert response.status_code == status
    if status == 304:
        assert response.get_data() == b""
    else:
        assert response.json == body and response.headers["ETag"] == etag


def test_not_modified_repeats_the_etag(client, auth, todo):
    _, etag = read(client, auth, todo["id"])
    response = client.get(f"/todos/{todo['id']}", headers={**auth, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers.get("ETag") == etag


def test_if_none_match_uses_weak_comparison(client, auth, todo):
    _, etag = read(client, auth, todo["id"])
    response = client.get(f"/todos/{todo['id']}", headers={**auth, "If-None-Match": f"W/{etag}"})
    assert response.status_code == 304


def test_a_change_gives_a_new_etag_and_the_old_one_stops_matching(client, auth, todo):
    before_body, before = read(client, auth, todo["id"])
    patched = client.patch(f"/todos/{todo['id']}", json={"title": "Water the plants"}, headers=auth)
    assert patched.status_code == 200
    after = patched.headers["ETag"]
    assert after != before
    assert read(client, auth, todo["id"]) == (patched.json, after)

    stale = client.get(f"/todos/{todo['id']}", headers={**auth, "If-None-Match": before})
    assert stale.status_code == 200
    assert stale.json["title"] == "Water the plants" and stale.json != before_body
    fresh = client.get(f"/todos/{todo['id']}", headers={**auth, "If-None-Match": after})
    assert fresh.status_code == 304


def test_a_patch_that_changes_nothing_keeps_the_etag(client, auth, todo):
    _, before = read(client, auth, todo["id"])
    patched = client.patch(
        f"/todos/{todo['id']}", json={"title": todo["title"], "tags": todo["tags"]}, headers=auth
    )
    assert patched.status_code == 200 and patched.headers["ETag"] == before
    again = client.get(f"/todos/{todo['id']}", headers={**auth, "If-None-Match": before})
    assert again.status_code == 304


# --- If-Match on PATCH and DELETE --------------------------------------------------------------


def write(
    client: FlaskClient, method: str, todo_id: int, headers: dict[str, str], title: str = "Changed"
) -> TestResponse:
    if method == "patch":
        return client.patch(f"/todos/{todo_id}", json={"title": title}, headers=headers)
    return client.delete(f"/todos/{todo_id}", headers=headers)


def assert_written(client: FlaskClient, auth: dict[str, str], method: str, todo_id: int, response) -> None:
    if method == "patch":
        assert response.status_code == 200, response.json
        assert response.json["title"] == "Changed"
        assert read(client, auth, todo_id) == (response.json, response.headers["ETag"])
    else:
        assert response.status_code == 204, response.json
        assert response.get_data() == b""
        assert client.get(f"/todos/{todo_id}", headers=auth).status_code == 404


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_writes_without_if_match_proceed(client, auth, todo, method):
    response = write(client, method, todo["id"], auth)
    assert response.status_code != 428
    assert_written(client, auth, method, todo["id"], response)


@pytest.mark.parametrize("if_match", ["{current}", "*", '"not-the-etag", {current}'])
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_writes_with_a_matching_if_match_proceed(client, auth, todo, method, if_match):
    _, etag = read(client, auth, todo["id"])
    headers = {**auth, "If-Match": if_match.format(current=etag)}
    assert_written(client, auth, method, todo["id"], write(client, method, todo["id"], headers))


MALFORMED = ['"', '"unclosed', 'W/"unclosed', '"a"b"', ",", "two words", '"x" garbage', ""]


KINDS = ["stale", "bogus", "weak form of the current one", "empty-quoted", *MALFORMED]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_writes_with_a_non_matching_if_match_fail_and_change_nothing(client, auth, todo, method, kind):
    _, first = read(client, auth, todo["id"])
    client.patch(f"/todos/{todo['id']}", json={"priority": 5}, headers=auth)
    snapshot = read(client, auth, todo["id"])
    if_match = {
        "stale": first,
        "bogus": '"not-the-etag"',
        # If-Match uses strong comparison (RFC 9110 13.1.1): a weak validator never matches.
        "weak form of the current one": f"W/{snapshot[1]}",
        "empty-quoted": '""',
    }.get(kind, kind)  # a malformed list names no entity-tag, so none matches
    response = write(client, method, todo["id"], {**auth, "If-Match": if_match})
    assert_error(response, 412)
    assert read(client, auth, todo["id"]) == snapshot


@pytest.mark.parametrize("if_match", ["{current}", "*", '"not-the-etag"'])
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_if_match_on_another_users_todo_is_404_not_412(client, auth, other_auth, todo, method, if_match):
    snapshot = read(client, auth, todo["id"])
    headers = {**other_auth, "If-Match": if_match.format(current=snapshot[1])}
    response = write(client, method, todo["id"], headers, title="Hijacked")
    missing = write(client, method, 999_999, headers, title="Hijacked")
    assert_error(response, 404)
    assert response.json == missing.json
    assert read(client, auth, todo["id"]) == snapshot


def test_if_match_prevents_a_lost_update(client, auth, todo):
    _, etag = read(client, auth, todo["id"])
    first = client.patch(f"/todos/{todo['id']}", json={"title": "Mine"}, headers={**auth, "If-Match": etag})
    second = client.patch(
        f"/todos/{todo['id']}", json={"title": "Theirs"}, headers={**auth, "If-Match": etag}
    )
    assert first.status_code == 200
    assert_error(second, 412)
    assert read(client, auth, todo["id"]) == (first.json, first.headers["ETag"])


def test_openapi_documents_304_and_412_and_never_428(client):
    operations = client.get("/openapi.json").json["paths"]["/todos/{todo_id}"]
    responses = {method: set(operations[method]["responses"]) for method in ("get", "patch", "delete")}
    assert "304" in responses["get"]
    assert "412" in responses["patch"] and "412" in responses["delete"]
    assert all("428" not in documented for documented in responses.values()), responses


# --- Idempotency-Key on POST /todos ------------------------------------------------------------


def post_keyed(
    client: FlaskClient, auth: dict[str, str], key: str, body: Any = BODY, raw: str | None = None
) -> TestResponse:
    headers = {**auth, "Idempotency-Key": key}
    if raw is not None:
        return client.post("/todos", data=raw, content_type="application/json", headers=headers)
    return client.post("/todos", json=body, headers=headers)


def assert_replay(replay: TestResponse, first: TestResponse) -> None:
    assert replay.status_code == first.status_code == 201
    assert replay.json == first.json
    assert replay.headers["Location"] == first.headers["Location"]
    assert replay.headers["Idempotent-Replayed"] == "true"


def assert_fresh(response: TestResponse) -> None:
    assert response.status_code == 201, response.json
    assert response.headers["Location"].endswith(f"/todos/{response.json['id']}")
    assert "Idempotent-Replayed" not in response.headers


def test_a_retry_replays_the_first_response_and_creates_nothing(client, auth):
    first = post_keyed(client, auth, "retry-1")
    assert_fresh(first)
    assert first.json["title"] == BODY["title"] and first.json["tags"] == BODY["tags"]
    for _ in range(3):
        assert_replay(post_keyed(client, auth, "retry-1"), first)
    assert total(client, auth) == 1


def test_equal_json_bodies_match_whatever_their_key_order_and_whitespace(client, auth):
    first = post_keyed(client, auth, "k", raw='{"title": "Pay rent", "priority": 4}')
    assert_fresh(first)
    replay = post_keyed(client, auth, "k", raw='{\n  "priority":4,\n\t"title":"Pay rent"\n}\n')
    assert_replay(replay, first)
    assert total(client, auth) == 1


@pytest.mark.parametrize(
    "other_body",
    [
        {**BODY, "title": "Pay rent!"},
        {**BODY, "title": BODY["title"].upper()},
        {**BODY, "description": "by Friday"},
        {key: value for key, value in BODY.items() if key != "priority"},
    ],
)
def test_the_same_key_with_another_body_is_422_and_creates_nothing(client, auth, other_body):
    first = post_keyed(client, auth, "k")
    response = post_keyed(client, auth, "k", other_body)
    assert_error(response, 422, "Idempotency-Key", location="headers")
    assert "Idempotent-Replayed" not in response.headers
    assert total(client, auth) == 1
    assert_replay(post_keyed(client, auth, "k"), first)


def test_keys_are_scoped_per_user(client, auth, other_auth):
    ann = post_keyed(client, auth, "shared-key")
    bob = post_keyed(client, other_auth, "shared-key")
    assert_fresh(ann)
    assert_fresh(bob)
    assert bob.json["id"] != ann.json["id"]
    assert bob.headers["Location"] != ann.headers["Location"]
    assert client.get(ann.headers["Location"], headers=other_auth).status_code == 404
    assert total(client, auth) == 1 and total(client, other_auth) == 1
    assert_replay(post_keyed(client, other_auth, "shared-key"), bob)
    assert_replay(post_keyed(client, auth, "shared-key"), ann)
    # Bob's key with another body is his own business: Ann's identical key still replays.
    assert_error(post_keyed(client, other_auth, "shared-key", {"title": "x"}), 422, location="headers")
    assert_replay(post_keyed(client, auth, "shared-key"), ann)


def test_a_replay_after_the_todo_changed_returns_the_first_response(client, auth):
    first = post_keyed(client, auth, "k")
    changed = client.patch(first.headers["Location"], json={"title": "Renamed", "done": True}, headers=auth)
    assert changed.status_code == 200
    replay = post_keyed(client, auth, "k")
    assert_replay(replay, first)
    assert replay.json["title"] == BODY["title"] and replay.json["done"] is False
    assert client.get(first.headers["Location"], headers=auth).json == changed.json
    assert total(client, auth) == 1


def test_keys_survive_a_restart(app, make_app, client, auth):
    first = post_keyed(client, auth, "durable")
    previous = db.obj
    restarted = make_app().test_client()
    if hasattr(previous, "close_all"):  # the old process is gone, and its pooled connections with it
        previous.close_all()
    else:
        previous.close()
    assert_replay(post_keyed(restarted, auth, "durable"), first)
    assert total(restarted, auth) == 1
    assert stored(app, Todo) == 1


@pytest.mark.parametrize(
    "age_hours, same_body, outcome",
    [
        (23, True, "replay"),
        (23, False, "rejected"),
        (25, True, "new todo"),
        (25, False, "new todo"),
    ],
)
def test_keys_expire_after_24_hours(app, client, auth, age_hours, same_body, outcome):
    first = post_keyed(client, auth, "k")
    with app.app_context():
        aged = utcnow() - timedelta(hours=age_hours)
        assert IdempotencyKey.update(created_at=aged).execute() == 1
    body = BODY if same_body else {**BODY, "title": "Something else"}
    response = post_keyed(client, auth, "k", body)
    if outcome == "replay":
        assert_replay(response, first)
        assert total(client, auth) == 1
    elif outcome == "rejected":
        assert_error(response, 422, "Idempotency-Key", location="headers")
        assert total(client, auth) == 1
    else:
        assert_fresh(response)
        assert response.json["id"] != first.json["id"] and response.json["title"] == body["title"]
        assert total(client, auth) == 2
        # The key now stands for the new response, for a fresh 24 hours.
        assert_replay(post_keyed(client, auth, "k", body), response)
        assert stored(app, IdempotencyKey) == 1


@pytest.mark.parametrize("key", ["", "k" * 256, " ", "two words", "caf\u00e9"])
def test_bad_keys_are_422_and_store_nothing(app, client, auth, key):
    response = post_keyed(client, auth, key)
    assert_error(response, 422, "Idempotency-Key", location="headers")
    assert total(client, auth) == 0
    assert stored(app, IdempotencyKey) == 0


def test_a_key_of_255_characters_is_accepted(client, auth):
    first = post_keyed(client, auth, "k" * 255)
    assert_fresh(first)
    assert_replay(post_keyed(client, auth, "k" * 255), first)


@pytest.mark.parametrize(
    "bad_body, field",
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x", "done": True}, "done"),
        ({"title": "x", "priority": 9}, "priority"),
    ],
)
def test_a_rejected_body_stores_no_key(app, client, auth, bad_body, field):
    rejected = post_keyed(client, auth, "k", bad_body)
    assert_error(rejected, 422, field)
    assert stored(app, IdempotencyKey) == 0
    assert total(client, auth) == 0
    corrected = post_keyed(client, auth, "k", {"title": "x"})
    assert_fresh(corrected)
    assert_replay(post_keyed(client, auth, "k", {"title": "x"}), corrected)


# --- Concurrent retries ------------------------------------------------------------------------

RACERS = 8


def race(app: Flask, send: Callable[[FlaskClient], TestResponse]) -> list[TestResponse]:
    """Send one request from each of RACERS threads at once, each with its own client."""
    barrier = threading.Barrier(RACERS, timeout=30)

    def one(_: int) -> TestResponse:
        client = app.test_client()
        barrier.wait()
        return send(client)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def test_concurrent_retries_create_exactly_one_todo(app, client, auth):
    for round_ in range(5):
        key, body = f"race-{round_}", {**BODY, "title": f"Race {round_}"}
        responses = race(app, lambda racer: post_keyed(racer, auth, key, body))  # noqa: B023

        statuses = [response.status_code for response in responses]
        assert statuses == [201] * RACERS, [response.json for response in responses]
        assert len({json.dumps(response.json, sort_keys=True) for response in responses}) == 1
        assert len({response.headers["Location"] for response in responses}) == 1
        replayed = [response.headers.get("Idempotent-Replayed") for response in responses]
        assert replayed.count(None) == 1 and replayed.count("true") == RACERS - 1, replayed
        with app.app_context():
            assert Todo.select().where(Todo.title == body["title"]).count() == 1
            assert IdempotencyKey.select().where(IdempotencyKey.key == key).count() == 1
        assert client.get(responses[0].headers["Location"], headers=auth).json == responses[0].json
    assert total(client, auth) == 5


def test_expired_keys_are_purged_in_batches_and_live_ones_kept(app, client, auth, other_auth, redis):
    """A key past its 24 hours holds a stored response nobody can replay any more."""
    kept = post_keyed(client, auth, "fresh")

    def age(prefix: str) -> int:
        aged = utcnow() - timedelta(hours=25)
        return IdempotencyKey.update(created_at=aged).where(IdempotencyKey.key.startswith(prefix)).execute()

    for n in range(5):
        post_keyed(client, other_auth if n % 2 else auth, f"old-{n}")
    post_keyed(client, auth, "later")
    with app.app_context():
        assert age("old-") == 5
        assert housekeeping.purge_expired_keys(batch_size=2) == 5
        assert sorted(row.key for row in IdempotencyKey.select()) == ["fresh", "later"]
        # The worker's hourly clean-up does the same.
        assert age("later") == 1
        job = enqueue(housekeeping.purge_expired)
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
        assert job is not None and job.return_value() == {"idempotency_keys": 1, "sessions": 0}
        assert [row.key for row in IdempotencyKey.select()] == ["fresh"]
    assert_replay(post_keyed(client, auth, "fresh"), kept)


def test_a_keyed_create_whose_account_is_deleted_meanwhile_is_401_not_500(app, client, auth, monkeypatch):
    """The account goes between the request's session check and its key's insert: the insert
    fails on the account's foreign key, not on the key's unique index, so there is no first
    response to replay."""
    fingerprint = todo_services._fingerprint

    def account_deleted_meanwhile(body: Any) -> str:
        other = threading.Thread(target=lambda: app.test_client().delete("/me", headers=auth))
        other.start()
        other.join(30)
        return fingerprint(body)

    monkeypatch.setattr(todo_services, "_fingerprint", account_deleted_meanwhile)
    response = post_keyed(client, auth, "k-1")

    assert_error(response, 401)
    assert stored(app, Todo) == stored(app, IdempotencyKey) == 0
