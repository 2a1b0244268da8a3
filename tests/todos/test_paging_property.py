"""Paging through any filter and sort visits every matching todo exactly once, in the SPEC's order.

The expected result comes from a plain-Python model of the SPEC's rules. Datasets are built to
have many equal sort keys (few priorities, titles that differ only in case, few due dates and many
undated todos), so the order rests on the null and tie-break rules as much as on the keys.
"""

import re
import uuid
from datetime import datetime
from functools import cmp_to_key
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LINK = re.compile(r'<([^>]*)>;\s*rel="([^"]+)"')
# Letters only: PostgreSQL's collation and Python's code-point order agree on lower-cased letters.
TITLES = ["alpha", "Alpha", "ALPHA", "alphabet", "beta", "Beta"]
DESCRIPTIONS = ["", "", "notes on alpha", "50% off", "snake_case"]
DATES = ["2026-03-01", "2026-03-02", "2026-03-03"]
TAGS = ["home", "work", "urgent"]
QUERIES = ["alpha", "ALPH", "bet", "a", "ET", "50%", "e_c", "%", "_", "notes", "zzz"]
SORT_KEYS = ["created_at", "updated_at", "priority", "due_date", "title"]

todo_specs = st.lists(
    st.fixed_dictionaries(
        {
            "title": st.sampled_from(TITLES),
            "description": st.sampled_from(DESCRIPTIONS),
            "priority": st.integers(1, 3),
            "due_date": st.one_of(st.none(), st.none(), st.sampled_from(DATES)),
            "tags": st.lists(st.sampled_from(TAGS), unique=True, max_size=3),
            "done": st.booleans(),
            "touched": st.booleans(),
        }
    ),
    min_size=6,
    max_size=18,
)
FILTERS = {
    "done": st.booleans(),
    "tag": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True),
    "priority": st.integers(1, 3),
    "due_after": st.sampled_from(["2026-02-28", *DATES]),
    "due_before": st.sampled_from([*DATES, "2026-03-04"]),
    "q": st.sampled_from(QUERIES),
}


@st.composite
def queries(draw, todos, first_key, filter_name):
    """One page walk's filters, sort and page size around a given first sort key and filter.

    Hypothesis draws from short lists lean towards their first elements, so the test body hands
    every sort key and every filter its turn explicitly; the rest is drawn.
    """
    strategies = FILTERS | {"updated_since": st.sampled_from([todo["updated_at"] for todo in todos])}
    names = {filter_name, draw(st.one_of(st.none(), st.sampled_from(list(strategies))))} - {None}
    filters = {name: draw(strategies[name]) for name in names}
    if first_key is None:
        return filters, None, draw(st.integers(1, 7))
    others = [key for key in SORT_KEYS if key != first_key]
    keys = [first_key, *draw(st.lists(st.sampled_from(others), max_size=2, unique=True))]
    return filters, [(key, draw(st.booleans())) for key in keys], draw(st.integers(1, 7))


def instant(text):
    return datetime.fromisoformat(text)


def matches(todo, filters):
    due = todo["due_date"]
    text = (todo["title"] + "\n" + todo["description"]).lower()
    since = instant(filters["updated_since"]) if "updated_since" in filters else None
    return (
        ("done" not in filters or todo["done"] == filters["done"])
        and all(tag in todo["tags"] for tag in filters.get("tag", []))
        and ("priority" not in filters or todo["priority"] == filters["priority"])
        and ("due_after" not in filters or (due is not None and due >= filters["due_after"]))
        and ("due_before" not in filters or (due is not None and due <= filters["due_before"]))
        and ("updated_since" not in filters or instant(todo["updated_at"]) >= since)
        and ("q" not in filters or filters["q"].lower() in text)
    )


def compare(a, b, sort):
    for key, descending in sort:
        x, y = a[key], b[key]
        if key == "due_date" and (x is None or y is None):
            if (x is None) != (y is None):
                return 1 if x is None else -1  # undated last, whatever the direction
            continue
        if key == "title":
            x, y = x.lower(), y.lower()
        elif key in {"created_at", "updated_at"}:
            x, y = instant(x), instant(y)
        if x != y:
            ascending = -1 if x < y else 1
            return -ascending if descending else ascending
    return b["id"] - a["id"]


def model(todos, filters, sort):
    chosen = [todo for todo in todos if matches(todo, filters)]
    return sorted(chosen, key=cmp_to_key(lambda a, b: compare(a, b, sort or [("created_at", True)])))


def query_params(filters, sort):
    params = []
    for name, value in filters.items():
        if name == "tag":
            params += [("tag", tag) for tag in value]
        elif name == "done":
            params.append(("done", "true" if value else "false"))
        else:
            params.append((name, value))
    if sort is not None:
        params.append(("sort", ",".join(("-" if descending else "") + key for key, descending in sort)))
    return params


def links(response):
    pairs = LINK.findall(response.headers.get("Link", ""))
    found = {rel: url for url, rel in pairs}
    assert len(found) == len(pairs), pairs
    return found


def build(client, auth, specs, patch_order):
    """Create the todos, then finish or touch some in a random order; returns their final state."""
    todos = []
    for spec in specs:
        body = {name: spec[name] for name in ("title", "description", "priority", "due_date", "tags")}
        response = client.post("/todos", json=body, headers=auth)
        assert response.status_code == 201, response.json
        todos.append(response.json)
    for index in patch_order:
        changes = {"done": True} if specs[index]["done"] else {}
        if specs[index]["touched"]:
            changes["description"] = todos[index]["description"] + " (edited)"
        if changes:
            response = client.patch(f"/todos/{todos[index]['id']}", json=changes, headers=auth)
            assert response.status_code == 200, response.json
            todos[index] = response.json
    return todos


def walk_by_skip(client, auth, params, limit, total):
    items, skip = [], 0
    while True:
        query = urlencode([*params, ("skip", skip), ("limit", limit)])
        response = client.get(f"/todos?{query}", headers=auth)
        assert response.status_code == 200, response.json
        assert response.json["total"] == total
        assert len(response.json["items"]) == min(limit, total - skip)
        items += response.json["items"]
        skip += limit
        if skip >= total:
            return items


def walk_by_links(client, auth, params, limit, total):
    response = client.get("/todos?" + urlencode([*params, ("limit", limit)]), headers=auth)
    items, pages = [], 0
    while True:
        assert response.status_code == 200, response.json
        assert response.json["total"] == total
        found = links(response)
        assert ("prev" in found) == (pages > 0)
        items += response.json["items"]
        pages += 1
        if "next" not in found:
            break
        response = client.get(found["next"], headers=auth)
    assert pages == max(1, -(-total // limit))
    return items


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=todo_specs, data=st.data())
def test_paging_visits_every_match_once_in_order(client, register, specs, data):
    auth = register(f"u{uuid.uuid4().hex}@example.com")  # a fresh user: earlier examples' todos stay out
    patch_order = data.draw(st.permutations(range(len(specs))), label="patch order")
    todos = build(client, auth, specs, patch_order)
    filter_names = [None, *FILTERS, "updated_since"]
    offset = data.draw(st.integers(0, len(filter_names) - 1), label="filter offset")
    for turn, first_key in enumerate([*SORT_KEYS, None]):
        filter_name = filter_names[(turn + offset) % len(filter_names)]
        filters, sort, limit = data.draw(queries(todos, first_key, filter_name), label="query")
        expected = model(todos, filters, sort)
        params = query_params(filters, sort)
        for walk in (walk_by_skip, walk_by_links):
            items = walk(client, auth, params, limit, len(expected))
            assert [todo["id"] for todo in items] == [todo["id"] for todo in expected], walk.__name__
            assert items == expected
