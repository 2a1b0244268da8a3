"""Todo create / read / update / delete through the HTTP API, on SQLite and PostgreSQL."""

import gzip
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.helpers import assert_error


def create(client: FlaskClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/todos", json={"title": "Buy milk", **body}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def total(client: FlaskClient, auth: dict[str, str]) -> int:
    return client.get("/todos", headers=auth).json["total"]


def test_create_returns_the_todo_with_defaults_and_location(client, auth):
    response = client.post("/todos", json={"title": "Buy milk"}, headers=auth)
    assert response.status_code == 201
    todo = response.json
    assert set(todo) == {
        "id",
        "title",
        "description",
        "done",
        "priority",
        "due_date",
        "tags",
        "created_at",
        "updated_at",
    }
    assert todo | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "title": "Buy milk",
        "description": "",
        "done": False,
        "priority": 3,
        "due_date": None,
        "tags": [],
        "created_at": "",
        "updated_at": "",
    }
    created_at = datetime.fromisoformat(todo["created_at"])
    assert created_at.utcoffset() is not None
    assert todo["updated_at"] == todo["created_at"]
    assert response.headers["Location"].endswith(f"/todos/{todo['id']}")
    assert client.get(response.headers["Location"], headers=auth).json == todo


def test_create_normalises_text_and_tags(client, auth):
    todo = create(
        client,
        auth,
        title="  Pay rent  ",
        description="  by Friday \n",
        priority=5,
        due_date="2026-12-01",
        tags=[" Home", "bills", "home ", "  ", "BILLS", "a"],
    )
    assert todo["title"] == "Pay rent"
    assert todo["description"] == "by Friday"
    assert todo["priority"] == 5
    assert todo["due_date"] == "2026-12-01"
    assert todo["tags"] == ["a", "bills", "home"]


def test_lengths_are_measured_after_trimming(client, auth):
    todo = create(client, auth, title="  " + "x" * 200 + "  ", tags=[" " + "t" * 50 + " "])
    assert len(todo["title"]) == 200
    assert todo["tags"] == ["t" * 50]


TOO_MANY_TAGS = [f"tag{i}" for i in range(21)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"title": None}, "title"),
        ({"title": ["x"]}, "title"),
        ({"title": "nul\x00byte"}, "title"),
        ({"title": "x", "description": "nul\x00byte"}, "description"),
        ({"title": "x", "tags": ["nul\x00"]}, "tags"),
        ({"title": "x", "description": "d" * 10_001}, "description"),
        ({"title": "x", "description": None}, "description"),
        ({"title": "x", "priority": 0}, "priority"),
        ({"title": "x", "priority": 6}, "priority"),
        ({"title": "x", "priority": "3"}, "priority"),
        ({"title": "x", "priority": 3.5}, "priority"),
        ({"title": "x", "priority": True}, "priority"),
        ({"title": "x", "due_date": "2026-13-01"}, "due_date"),
        ({"title": "x", "due_date": "20261201"}, "due_date"),
        ({"title": "x", "due_date": "2026-12-01T10:00:00"}, "due_date"),
        ({"title": "x", "due_date": 20261201}, "due_date"),
        ({"title": "x", "tags": "home"}, "tags"),
        ({"title": "x", "tags": [1]}, "tags"),
        ({"title": "x", "tags": TOO_MANY_TAGS}, "tags"),
        ({"title": "x", "tags": ["t" * 51]}, "tags"),
        ({"title": "x", "tags": None}, "tags"),
        ({"title": "x", "done": True}, "done"),
        ({"title": "x", "done": False}, "done"),
        ({"title": "x", "id": 7}, "id"),
        ({"title": "x", "created_at": "2026-01-01T00:00:00+00:00"}, "created_at"),
        ({"title": "x", "updated_at": "2026-01-01T00:00:00+00:00"}, "updated_at"),
        ({"title": "x", "owner": 2}, "owner"),
    ],
)
def test_create_rejects_bad_input_and_stores_nothing(client, auth, body, field):
    response = client.post("/todos", json=body, headers=auth)
    assert_error(response, 422, field)
    assert total(client, auth) == 0


def test_twenty_tags_as_sent_are_allowed_and_then_deduplicated(client, auth):
    assert len(create(client, auth, tags=[f"tag{i}" for i in range(20)])["tags"]) == 20
    tags = [f"tag{i}" for i in range(18)] + ["TAG0", " tag1 "]
    assert len(create(client, auth, tags=tags)["tags"]) == 18


def test_more_than_twenty_tags_as_sent_are_refused_even_with_duplicates(client, auth):
    """The OpenAPI document's `maxItems: 20` counts the list as sent: it cannot count after trimming,
    lower-casing and de-duplicating, and the same item 21 times is what a client checking it refuses."""
    for tags in (["home"] * 21, ["", *[f"tag{i}" for i in range(20)]]):
        assert_error(client.post("/todos", json={"title": "x", "tags": tags}, headers=auth), 422, "tags")
    assert total(client, auth) == 0


def test_a_long_tag_list_is_refused_by_its_length_before_its_items_are_read(client, auth):
    """200,000 tags fit in a 1 MiB body: the list's length is checked first, and the answer names
    that limit, not each bad item."""
    response = client.post("/todos", json={"title": "x", "tags": [7] * 200_000}, headers=auth)
    assert_error(response, 422, "tags")
    assert response.json["errors"]["json"]["tags"] == ["At most 20 tags."]
    assert total(client, auth) == 0


def test_a_tag_lower_cases_to_no_more_characters_than_it_has(client, auth):
    """`"İ".lower()` is two characters (i and a combining dot): 50 of them would not fit the limit."""
    todo = create(client, auth, tags=["İ" * 50, "İstanbul"])
    assert todo["tags"] == ["i" * 50, "istanbul"]
    assert client.get("/todos?tag=İSTANBUL", headers=auth).json["total"] == 1


def test_a_title_of_any_unicode_whitespace_is_blank(client, auth):
    for blank in ("\u3000", "\x1c\x85\xa0", "\u2028\t"):
        assert_error(client.post("/todos", json={"title": blank}, headers=auth), 422, "title")
    assert create(client, auth, title="\u3000x\u3000")["title"] == "x"
    assert create(client, auth, title="\ufeff")["title"] == "\ufeff"  # not whitespace to str.strip()


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('{"title": "x",}', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        ("title=x", "text/plain", 415),
        ("title=x", "application/x-www-form-urlencoded", 415),
        ("null", "application/json", 422),
        ("[]", "application/json", 422),
        ('"x"', "application/json", 422),
    ],
)
def test_create_rejects_unreadable_bodies(client, auth, data, content_type, status):
    response = client.post("/todos", data=data, content_type=content_type, headers=auth)
    assert_error(response, status)
    if status == 400:
        assert response.json["errors"] == {"json": {"_schema": ["Invalid JSON body."]}}
    assert total(client, auth) == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br, gzip"])
def test_a_compressed_body_is_415_not_read_as_plain(client, auth, encoding):
    body = gzip.compress(b'{"title": "x"}') if encoding == "gzip" else b'{"title": "x"}'
    headers = auth | {"Content-Encoding": encoding}
    response = client.post("/todos", data=body, content_type="application/json", headers=headers)

    assert_error(response, 415)
    assert "Content-Encoding" in response.json["message"]
    assert total(client, auth) == 0
    identity = auth | {"Content-Encoding": "identity"}
    assert client.post("/todos", json={"title": "x"}, headers=identity).status_code == 201


def test_oversized_body_is_413_and_stores_nothing(client, auth):
    body = '{"title": "x", "description": "' + "d" * (1024 * 1024) + '"}'
    response = client.post("/todos", data=body, content_type="application/json", headers=auth)
    assert_error(response, 413)
    assert total(client, auth) == 0


def test_patch_changes_only_given_fields_and_moves_updated_at(client, auth):
    todo = create(client, auth, description="keep", tags=["home"], due_date="2026-12-01")
    response = client.patch(f"/todos/{todo['id']}", json={"done": True, "priority": 1}, headers=auth)
    assert response.status_code == 200
    patched = response.json
    assert patched["done"] is True and patched["priority"] == 1
    assert patched["description"] == "keep" and patched["tags"] == ["home"]
    assert patched["due_date"] == "2026-12-01"
    assert patched["created_at"] == todo["created_at"]
    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(todo["updated_at"])
    assert client.get(f"/todos/{todo['id']}", headers=auth).json == patched


def test_every_change_moves_updated_at(client, auth):
    todo = create(client, auth)
    stamps = [todo["updated_at"]]
    for title in ("a", "b", "c", "d"):
        stamps.append(
            client.patch(f"/todos/{todo['id']}", json={"title": title}, headers=auth).json["updated_at"]
        )
    parsed = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert parsed == sorted(parsed) and len(set(parsed)) == len(parsed)


def test_patch_due_date_null_clears_it(client, auth):
    todo = create(client, auth, due_date="2026-12-01")
    response = client.patch(f"/todos/{todo['id']}", json={"due_date": None}, headers=auth)
    assert response.status_code == 200 and response.json["due_date"] is None


def test_empty_patch_changes_nothing(client, auth):
    todo = create(client, auth)
    response = client.patch(f"/todos/{todo['id']}", json={}, headers=auth)
    assert response.status_code == 200
    assert response.json == todo


def test_patch_with_the_same_values_keeps_updated_at(client, auth):
    todo = create(client, auth, priority=4)
    response = client.patch(f"/todos/{todo['id']}", json={"priority": 4, "title": "Buy milk"}, headers=auth)
    assert response.json == todo


def test_patch_replaces_tags_and_the_tag_filter_follows(client, auth):
    todo = create(client, auth, tags=["home", "work"])
    response = client.patch(f"/todos/{todo['id']}", json={"tags": ["Errands", "home"]}, headers=auth)
    assert response.json["tags"] == ["errands", "home"]
    assert client.get("/todos?tag=work", headers=auth).json["total"] == 0
    assert client.get("/todos?tag=errands", headers=auth).json["total"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"description": None}, "description"),
        ({"done": None}, "done"),
        ({"done": 1}, "done"),
        ({"done": "true"}, "done"),
        ({"priority": None}, "priority"),
        ({"priority": 9}, "priority"),
        ({"tags": None}, "tags"),
        ({"tags": ["t" * 51]}, "tags"),
        ({"due_date": "tomorrow"}, "due_date"),
        ({"id": 99}, "id"),
        ({"created_at": "2026-01-01T00:00:00+00:00"}, "created_at"),
        ({"updated_at": "2026-01-01T00:00:00+00:00"}, "updated_at"),
        ({"title": "ok", "colour": "red"}, "colour"),
    ],
)
def test_patch_rejects_bad_input_and_changes_nothing(client, auth, body, field):
    todo = create(client, auth, tags=["home"], due_date="2026-12-01")
    response = client.patch(f"/todos/{todo['id']}", json=body, headers=auth)
    assert_error(response, 422, field)
    assert client.get(f"/todos/{todo['id']}", headers=auth).json == todo


def test_patch_rejects_unreadable_bodies(client, auth):
    todo = create(client, auth)
    assert_error(
        client.patch(f"/todos/{todo['id']}", data="{", content_type="application/json", headers=auth), 400
    )
    assert_error(
        client.patch(f"/todos/{todo['id']}", data="done", content_type="text/plain", headers=auth), 415
    )
    assert client.get(f"/todos/{todo['id']}", headers=auth).json == todo


def test_delete_removes_the_todo(client, auth):
    todo = create(client, auth, tags=["home"])
    response = client.delete(f"/todos/{todo['id']}", headers=auth)
    assert response.status_code == 204 and response.data == b""
    assert_error(client.get(f"/todos/{todo['id']}", headers=auth), 404)
    assert_error(client.delete(f"/todos/{todo['id']}", headers=auth), 404)
    assert client.get("/todos?tag=home", headers=auth).json["total"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/todos/999999",
        "/todos/0",
        "/todos/abc",
        "/todos/-1",
        "/todos/1.5",
        f"/todos/{2**31}",  # past PostgreSQL's serial
        f"/todos/{2**63}",  # past SQLite's rowid
        "/todos/\u0661",  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
    ],
)
def test_unknown_ids_are_404(client, auth, path):
    first = client.post("/todos", json={"title": "one"}, headers=auth).json
    assert first["id"] == 1
    for method in ("GET", "PATCH", "DELETE"):
        body = {} if method == "PATCH" else None
        assert_error(client.open(path, method=method, json=body, headers=auth), 404)
    assert_error(client.post(path.replace("/todos/", "/notifications/") + "/read", headers=auth), 404)
    assert client.get("/todos/1", headers=auth).json == first


class TestOwnership:
    """Another user's todo is indistinguishable from a missing one, on every route with an id."""

    def test_read(self, client, auth, other_auth):
        todo = create(client, auth)
        missing = client.get("/todos/999999", headers=other_auth)
        theirs = client.get(f"/todos/{todo['id']}", headers=other_auth)
        assert_error(theirs, 404)
        assert theirs.json == missing.json

    def test_update(self, client, auth, other_auth):
        todo = create(client, auth)
        assert_error(client.patch(f"/todos/{todo['id']}", json={"title": "mine"}, headers=other_auth), 404)
        assert_error(client.patch(f"/todos/{todo['id']}", json={}, headers=other_auth), 404)
        assert client.get(f"/todos/{todo['id']}", headers=auth).json == todo

    def test_delete(self, client, auth, other_auth):
        todo = create(client, auth)
        assert_error(client.delete(f"/todos/{todo['id']}", headers=other_auth), 404)
        assert client.get(f"/todos/{todo['id']}", headers=auth).json == todo

    def test_list_and_tag_filter_show_only_own_todos(self, client, auth, other_auth):
        create(client, auth, title="ann's", tags=["shared"])
        create(client, other_auth, title="bob's", tags=["shared"])
        for query in ("", "?tag=shared", "?done=false"):
            page = client.get(f"/todos{query}", headers=other_auth).json
            assert [todo["title"] for todo in page["items"]] == ["bob's"] and page["total"] == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/todos"),
        ("post", "/todos"),
        ("get", "/todos/1"),
        ("patch", "/todos/1"),
        ("delete", "/todos/1"),
    ],
)
def test_todo_routes_require_a_token(client, method, path):
    response = getattr(client, method)(path, json={"title": "x"} if method in {"post", "patch"} else None)
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_bad_token_wins_over_bad_body(client):
    response = client.post("/todos", json={"title": ""}, headers={"Authorization": "Bearer nonsense"})
    assert_error(response, 401)
