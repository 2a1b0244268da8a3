"""GET /todos: paging, order, done and tag filters, query validation."""

import pytest

from tests.helpers import assert_error


def seed(client, auth, specs):
    ids = []
    for spec in specs:
        response = client.post("/todos", json=spec, headers=auth)
        assert response.status_code == 201
        ids.append(response.json["id"])
    return ids


def titles(page):
    return [todo["title"] for todo in page["items"]]


def test_empty_list_has_the_page_shape(client, auth):
    assert client.get("/todos", headers=auth).json == {"items": [], "total": 0, "skip": 0, "limit": 50}


def test_newest_first_with_skip_and_limit(client, auth):
    seed(client, auth, [{"title": f"t{i}"} for i in range(7)])
    page = client.get("/todos?skip=2&limit=3", headers=auth).json
    assert titles(page) == ["t4", "t3", "t2"]
    assert (page["total"], page["skip"], page["limit"]) == (7, 2, 3)
    assert titles(client.get("/todos?skip=6&limit=3", headers=auth).json) == ["t0"]
    assert client.get("/todos?skip=50", headers=auth).json["items"] == []


def test_pages_cover_every_todo_once(client, auth):
    ids = seed(client, auth, [{"title": f"t{i}"} for i in range(11)])
    seen = []
    for skip in range(0, 11, 4):
        seen += [todo["id"] for todo in client.get(f"/todos?skip={skip}&limit=4", headers=auth).json["items"]]
    assert seen == sorted(ids, reverse=True)


def test_done_filter(client, auth):
    first, _ = seed(client, auth, [{"title": "finished"}, {"title": "open"}])
    client.patch(f"/todos/{first}", json={"done": True}, headers=auth)
    assert titles(client.get("/todos?done=true", headers=auth).json) == ["finished"]
    assert titles(client.get("/todos?done=false", headers=auth).json) == ["open"]
    assert client.get("/todos?done=false", headers=auth).json["total"] == 1


def test_tags_filter_requires_every_tag(client, auth):
    seed(
        client,
        auth,
        [
            {"title": "both", "tags": ["home", "urgent"]},
            {"title": "home only", "tags": ["home"]},
            {"title": "none"},
        ],
    )
    assert titles(client.get("/todos?tag=home", headers=auth).json) == ["home only", "both"]
    page = client.get("/todos?tag=home&tag=urgent", headers=auth).json
    assert titles(page) == ["both"] and page["total"] == 1
    assert titles(client.get("/todos?tag=HOME&tag=%20urgent", headers=auth).json) == ["both"]
    assert client.get("/todos?tag=home&tag=missing", headers=auth).json["total"] == 0


ODD_TAGS = ["a'b", 'c"d', "e\\f", "{g}", "h,i", "null", "%_", "grüße", "日本"]


def test_tags_with_quotes_braces_and_wildcards_find_their_todos(client, auth):
    """Tag rows are written from the tag list as one array parameter on PostgreSQL."""
    created = client.post("/todos", json={"title": "odd", "tags": ODD_TAGS}, headers=auth)
    assert created.status_code == 201, created.json
    assert created.json["tags"] == sorted(ODD_TAGS)
    client.post("/todos", json={"title": "plain", "tags": ["g", "ab"]}, headers=auth)
    for tag in ODD_TAGS:
        page = client.get("/todos", query_string={"tag": tag}, headers=auth).json
        assert titles(page) == ["odd"], tag
    by_tag = client.get("/stats", headers=auth).json["by_tag"]
    assert by_tag == {**dict.fromkeys(ODD_TAGS, 1), "g": 1, "ab": 1}


def test_filters_combine_and_total_counts_all_matches(client, auth):
    ids = seed(client, auth, [{"title": f"t{i}", "tags": ["work"]} for i in range(5)])
    for todo_id in ids[:3]:
        client.patch(f"/todos/{todo_id}", json={"done": True}, headers=auth)
    page = client.get("/todos?tag=work&done=true&limit=2", headers=auth).json
    assert page["total"] == 3 and titles(page) == ["t2", "t1"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("skip=-1", "skip"),
        ("skip=1.5", "skip"),
        ("done=maybe", "done"),
        ("done=1", "done"),
        ("tag=" + "t" * 51, "tag"),
        ("tag=nul%00byte", "tag"),
        ("&".join(f"tag=t{i}" for i in range(9)), "tag"),  # at most 8: the request line stays bounded
    ],
)
def test_bad_query_parameters_are_422(client, auth, query, field):
    assert_error(client.get(f"/todos?{query}", headers=auth), 422, field, location="query")


def test_limit_bounds_are_inclusive(client, auth):
    assert client.get("/todos?limit=1", headers=auth).status_code == 200
    assert client.get("/todos?limit=100", headers=auth).json["limit"] == 100


def test_too_many_tag_filters_says_how_many_are_allowed(client, auth):
    response = client.get("/todos?" + "&".join(f"tag=t{i}" for i in range(9)), headers=auth)

    assert_error(response, 422, "tag", location="query")
    assert response.json["errors"]["query"]["tag"] == ["At most 8 tag filters."]
