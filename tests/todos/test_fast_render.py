"""The hot paths render todos without marshmallow: the bodies must stay what the schema documents,
and cached totals/stats must follow every change."""

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from todoapi.models import Todo
from todoapi.todos.schemas import TodoSchema
from todoapi.todos.services import todo_json

TAG = st.text(alphabet="abcxyz-", min_size=1, max_size=10)
BODIES = st.fixed_dictionaries(
    {
        "title": st.text(
            alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
        ).filter(str.strip),
        "description": st.text(max_size=30).map(lambda text: text.replace("\x00", "")),
        "priority": st.integers(1, 5),
        "due_date": st.none() | st.dates(date(1, 1, 1), date(9999, 12, 31)).map(date.isoformat),
        "tags": st.lists(TAG, max_size=4),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_rendered_todo_equals_the_schema_dump(app, client, auth, body):
    created = client.post("/todos", json=body, headers=auth)
    assert created.status_code == 201, created.json
    with app.app_context():
        todo = Todo.get_by_id(created.json["id"])
        assert todo_json(todo) == TodoSchema().dump(todo)
    listed = client.get("/todos?limit=1", headers=auth).json["items"][0]
    assert listed == created.json == client.get(f"/todos/{created.json['id']}", headers=auth).json


@pytest.mark.parametrize(
    "stamp",
    [
        datetime(2026, 3, 1, 9, 30, 5, 120_000, tzinfo=UTC),  # PostgreSQL writes .12
        datetime(2026, 3, 1, 9, 30, 5, 0, tzinfo=UTC),  # no fraction at all
        datetime(2026, 3, 1, 9, 30, 5, 7, tzinfo=UTC),
    ],
)
def test_read_paths_render_stored_instants_as_the_schema_does(app, client, auth, stamp):
    """Pages and one-todo reads take dates and timestamps as the database's text: every fraction
    must come out as the schema writes it from the model."""
    created = client.post("/todos", json={"title": "t", "due_date": "2026-03-02"}, headers=auth).json
    with app.app_context():
        Todo.update(created_at=stamp, updated_at=stamp).where(Todo.id == created["id"]).execute()
        expected = TodoSchema().dump(Todo.get_by_id(created["id"]))
    assert expected["created_at"] == expected["updated_at"] == stamp.isoformat()
    assert expected["due_date"] == "2026-03-02"
    assert client.get(f"/todos/{created['id']}", headers=auth).json == expected
    assert client.get("/todos", headers=auth).json["items"] == [expected]


def _total(client, auth, query=""):
    response = client.get(f"/todos?limit=1{query}", headers=auth)
    assert response.status_code == 200
    return response.json["total"]


def test_totals_follow_every_change(client, auth):
    ids = [
        client.post("/todos", json={"title": f"t{n}", "tags": ["a"]}, headers=auth).json["id"]
        for n in range(3)
    ]
    assert (_total(client, auth), _total(client, auth, "&tag=a"), _total(client, auth, "&done=true")) == (
        3,
        3,
        0,
    )
    client.post("/todos", json={"title": "t3"}, headers=auth)
    assert (_total(client, auth), _total(client, auth, "&tag=a")) == (4, 3)
    assert client.patch(f"/todos/{ids[0]}", json={"tags": [], "done": True}, headers=auth).status_code == 200
    assert (_total(client, auth, "&tag=a"), _total(client, auth, "&done=true")) == (2, 1)
    assert client.delete(f"/todos/{ids[1]}", headers=auth).status_code == 204
    assert (_total(client, auth), _total(client, auth, "&tag=a"), _total(client, auth, "&skip=1")) == (
        3,
        1,
        3,
    )
    stats = client.get("/stats", headers=auth).json
    assert (stats["total"], stats["done"], stats["by_tag"]) == (3, 1, {"a": 1})
    client.post("/todos", json={"title": "t4", "tags": ["b"]}, headers=auth)
    stats = client.get("/stats", headers=auth).json
    assert (stats["total"], stats["by_tag"]) == (4, {"a": 1, "b": 1})


@pytest.mark.parametrize("other_first", [True, False])
def test_totals_are_per_user(client, auth, other_auth, other_first):
    if other_first:
        assert _total(client, other_auth, "&q=x") == 0
    for n in range(2):
        client.post("/todos", json={"title": f"x{n}"}, headers=auth)
    assert _total(client, auth, "&q=x") == 2
    assert _total(client, other_auth, "&q=x") == 0


def test_a_pages_tags_come_out_as_sent_whatever_their_characters(client, auth):
    """A page embeds each row's stored tags text as it is (PostgreSQL: jsonb's text): quotes,
    backslashes, control characters and characters beyond ASCII must still make valid JSON that
    reads back as the tags the todo was created with."""
    tags = ['say "hi"', "back\\slash", "tab\there", "\x01ctl", "ünï", "日本", "😀", "line\u2028sep"]
    created = client.post("/todos", json={"title": "t", "tags": tags}, headers=auth)
    assert created.status_code == 201, created.json
    assert sorted(created.json["tags"]) == created.json["tags"] and len(created.json["tags"]) == len(tags)
    for path in ("/todos", f"/todos?tag={tags[4]}", "/todos?sort=-priority,due_date"):
        page = client.get(path, headers=auth)
        assert page.status_code == 200 and page.json["items"] == [created.json], path
    assert client.get(f"/todos/{created.json['id']}", headers=auth).json == created.json
