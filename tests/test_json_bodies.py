"""Bodies that are JSON to a lenient reader but not to RFC 8259, or that exhaust one: every endpoint
that reads JSON answers 400 in the error shape and changes nothing."""

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.helpers import assert_error
from todoapi.models import Session, Todo, User

PASSWORD = "correct horse battery"

# Raw bodies, each with a `{field}` slot where an endpoint's field goes.
HOSTILE = {
    # The standard library decodes the escape into a str no encoder will write (UnicodeEncodeError).
    "lone-surrogate": '{{"{field}": "a\\ud800"}}',
    "lone-low-surrogate": '{{"{field}": "\\udc00a"}}',
    # RecursionError in the standard library, at ~10 KB of body.
    "deep-nesting": '{{"{field}": ' + "[" * 5000 + "]" * 5000 + "}}",
    # ValueError past Python's 4,300-digit limit for int().
    "huge-number": '{{"{field}": ' + "9" * 5000 + "}}",
    "nan": '{{"{field}": NaN}}',
    "infinity": '{{"{field}": -Infinity}}',
}


class Endpoint(NamedTuple):
    method: str
    path: str  # `{id}`: a todo of the caller's
    field: str  # the one to poison
    rest: dict[str, Any]  # the rest of an otherwise valid body
    headers: dict[str, str]


ENDPOINTS = [
    Endpoint("POST", "/auth/register", "password", {"email": "bob@example.com"}, {}),
    Endpoint("POST", "/auth/register", "email", {"password": PASSWORD}, {}),
    Endpoint("POST", "/auth/login", "password", {"email": "ann@example.com"}, {}),
    Endpoint("POST", "/auth/login", "email", {"password": PASSWORD}, {}),
    Endpoint("PATCH", "/me", "new_password", {"current_password": PASSWORD}, {}),
    Endpoint("PATCH", "/me", "timezone", {}, {}),
    Endpoint("POST", "/todos", "title", {}, {}),
    Endpoint("POST", "/todos", "title", {}, {"Idempotency-Key": "k-1"}),
    Endpoint("POST", "/todos", "tags", {"title": "t"}, {}),
    Endpoint("PATCH", "/todos/{id}", "description", {}, {}),
]


def body(template: str, field: str, rest: dict[str, Any]) -> str:
    poisoned = template.format(field=field)
    if not rest:
        return poisoned
    return json.dumps(rest)[:-1] + ", " + poisoned[1:]


@pytest.fixture
def kept(client: FlaskClient, auth: dict[str, str]) -> int:
    """A todo of the caller's, for an endpoint's `{id}`."""
    todo = client.post("/todos", json={"title": "kept", "tags": ["a"]}, headers=auth)
    assert todo.status_code == 201
    return int(todo.json["id"])


def send(
    client: FlaskClient, auth: dict[str, str], endpoint: Endpoint, todo_id: int, **body: Any
) -> TestResponse:
    """`endpoint`'s request, its body given as `json=` or `data=`."""
    path = endpoint.path.format(id=todo_id)
    return client.open(path, method=endpoint.method, headers=auth | endpoint.headers, **body)


def snapshot(app: Flask) -> tuple[Any, ...]:
    with app.app_context():
        return (
            list(User.select().order_by(User.id).tuples()),
            list(Session.select().order_by(Session.id).tuples()),
            list(Todo.select().order_by(Todo.id).tuples()),
        )


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_json_beyond_rfc_8259_is_400_and_changes_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], kept: int, kind: str, endpoint: Endpoint
) -> None:
    before = snapshot(app)
    poisoned = body(HOSTILE[kind], endpoint.field, endpoint.rest)

    response = send(client, auth, endpoint, kept, data=poisoned, content_type="application/json")

    assert_error(response, 400, "_schema")
    assert snapshot(app) == before


def test_a_hostile_login_body_still_counts_against_the_limit(
    make_app: Callable[..., Flask], redis: Any
) -> None:
    app = make_app(LOGIN_RATE_LIMIT="2/minute")
    client = app.test_client()
    deep = "[" * 5000 + "]" * 5000
    answers = [
        client.post("/auth/login", data=deep, content_type="application/json").status_code for _ in range(3)
    ]

    assert answers == [400, 400, 429]


def test_json_within_the_limits_still_reads(client: FlaskClient, auth: dict[str, str]) -> None:
    # An astral character escaped as its surrogate pair is one character, not two lone halves.
    created = client.post(
        "/todos",
        data='{"title": "\\ud83d\\ude00 ok", "priority": 5}',
        content_type="application/json",
        headers=auth,
    )

    assert created.status_code == 201, created.json
    assert created.json["title"] == "\U0001f600 ok"


@pytest.mark.parametrize("unknown", [21, 60_000])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_of_many_unknown_fields_gets_a_422_that_names_twenty(
    app: Flask, client: FlaskClient, auth: dict[str, str], kept: int, unknown: int, endpoint: Endpoint
) -> None:
    """60,000 unknown fields fit in 1 MiB: the answer stays short, and nothing changes."""
    before = snapshot(app)
    sent = endpoint.rest | {f"x{n}": n for n in range(unknown)}

    response = send(client, auth, endpoint, kept, json=sent)

    assert_error(response, 422)
    errors = response.json["errors"]["json"]
    assert errors.pop("_schema") == [f"{unknown} unknown fields; the first 20 are listed."]
    assert len(errors) == 20 and set(errors) <= set(sent) - set(endpoint.rest)
    assert all(messages == ["Unknown field."] for messages in errors.values())
    assert len(response.get_data()) < 2000
    assert snapshot(app) == before


def test_twenty_unknown_fields_are_each_named_as_before(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post("/todos", json={"title": "t"} | {f"x{n}": n for n in range(20)}, headers=auth)
    assert_error(response, 422)
    assert response.json["errors"]["json"] == {f"x{n}": ["Unknown field."] for n in range(20)}
