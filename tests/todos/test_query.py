"""GET /todos query parameters: q, priority, due range, updated_since, sort, total and Link paging.

Text stays ASCII: SQLite's LIKE folds ASCII case only. Titles that are sorted on are letters only, so
PostgreSQL's collation and Python's code-point order agree on them.
"""

import re
from datetime import UTC, datetime, timedelta, timezone
from itertools import chain
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import flask
import pytest
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from tests.helpers import assert_error
from todoapi.api import Blueprint
from todoapi.db import db, is_postgres, is_sqlite
from todoapi.todos.schemas import TodoQueryArgsSchema
from todoapi.todos.services import fold

LINK = re.compile(r'<([^>]*)>;\s*rel="([^"]+)"')


def seed(client, auth, specs):
    todos = []
    for spec in specs:
        response = client.post("/todos", json=spec, headers=auth)
        assert response.status_code == 201, response.json
        todos.append(response.json)
    return todos


def patch(client, auth, todo_id, changes):
    response = client.patch(f"/todos/{todo_id}", json=changes, headers=auth)
    assert response.status_code == 200, response.json
    return response.json


def listing(client, auth, params=()):
    response = client.get(f"/todos?{urlencode(list(params))}", headers=auth)
    assert response.status_code == 200, response.json
    return response


def titles(response):
    return [todo["title"] for todo in response.json["items"]]


def ids(response):
    return [todo["id"] for todo in response.json["items"]]


def flat(lists):
    return list(chain.from_iterable(lists))


def links(response):
    """`{rel: url}` from an RFC 8288 Link header; empty when there is none."""
    pairs = LINK.findall(response.headers.get("Link", ""))
    found = {rel: url for url, rel in pairs}
    assert len(found) == len(pairs), pairs
    return found


def page_args(url):
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# --- q ----------------------------------------------------------------------------------------------


def test_q_matches_title_or_description_ignoring_case(client, auth):
    seed(
        client,
        auth,
        [
            {"title": "Buy MILK"},
            {"title": "call mom", "description": "about the Milk run"},
            {"title": "walk the dog", "description": "around the park"},
        ],
    )
    for q in ("milk", "MILK", "mIlK", "ilk"):
        response = listing(client, auth, [("q", q)])
        assert titles(response) == ["call mom", "Buy MILK"], q
        assert response.json["total"] == 2
    assert titles(listing(client, auth, [("q", "PARK")])) == ["walk the dog"]
    assert titles(listing(client, auth, [("q", "the")])) == ["walk the dog", "call mom"]
    assert listing(client, auth, [("q", "zebra")]).json == {"items": [], "total": 0, "skip": 0, "limit": 50}


WILDCARD_TITLES = ["100% done", "100 percent", "a_b", "axb", "ab", "a\\b", "abc"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("%", ["100% done"]),  # unescaped: every todo
        ("0%", ["100% done"]),  # unescaped: also "100 percent"
        ("%%", []),  # unescaped: every todo
        ("0% d", ["100% done"]),
        ("_", ["a_b"]),  # unescaped: every todo
        ("a_b", ["a_b"]),  # unescaped: also "axb" and "a\b"
        ("a%b", []),  # unescaped: "a_b", "axb", "ab", "a\b", "abc"
        ("b_", []),  # unescaped: "abc"
        ("\\", ["a\\b"]),  # a lone escape character
        ("\\b", ["a\\b"]),  # unescaped (PostgreSQL's default escape): every title with a "b"
        ("a\\_", []),
    ],
)
def test_q_wildcards_match_literally(client, auth, q, expected):
    seed(client, auth, [{"title": title} for title in WILDCARD_TITLES])
    response = listing(client, auth, [("q", q)])
    assert sorted(titles(response)) == sorted(expected)
    assert response.json["total"] == len(expected)


def test_q_wildcards_in_descriptions_match_literally(client, auth):
    seed(
        client,
        auth,
        [
            {"title": "sale", "description": "50% off"},
            {"title": "five", "description": "50 off"},
            {"title": "snake", "description": "snake_case"},
            {"title": "camel", "description": "snakeXcase"},
        ],
    )
    assert titles(listing(client, auth, [("q", "0%")])) == ["sale"]
    assert titles(listing(client, auth, [("q", "E_C")])) == ["snake"]


def test_q_finds_text_as_it_is_now(client, auth):
    (todo,) = seed(client, auth, [{"title": "Alpha", "description": "first draft"}])
    assert titles(listing(client, auth, [("q", "alpha")])) == ["Alpha"]
    patch(client, auth, todo["id"], {"title": "Beta", "description": "Second DRAFT"})
    assert titles(listing(client, auth, [("q", "alpha")])) == []
    assert titles(listing(client, auth, [("q", "first")])) == []
    for q in ("BETA", "second", "draft"):
        assert titles(listing(client, auth, [("q", q)])) == ["Beta"], q


UNICODE_TEXTS = [
    "ÄRGER im Büro",
    "ärger",
    "Straße",
    "STRASSE",
    "ΣΊΣΥΦΟΣ",
    "σίσυφος",
    "İstanbul",
    "istanbul",
    "\u212a for kelvin",
    "café",
    "CAFÉ",
    "cafe\u0301",
    "😀 Smile",
]
UNICODE_QUERIES = [
    "ärger",
    "ÄRGER",
    "strasse",
    "straße",
    "σίσυφος",
    "ΣΊΣΥΦΟΣ",
    "İSTANBUL",
    "i\u0307stanbul",
    "K",
    "\u212a",
    "CAFÉ",
    "É",
    "\u0301",
    "smile",
    "😀",
]


def test_q_matches_as_postgresqls_ilike_on_both_databases(app, client, auth):
    """Beyond ASCII, `q` is exactly PostgreSQL's ILIKE, `lower(text) LIKE lower(pattern)`. SQLite,
    whose LIKE folds A-Z only, compares copies the application lowers with `fold`, which the
    PostgreSQL run holds equal to PostgreSQL's lower() on every text and query here (Python's
    str.lower is not: a word-final Σ, İ)."""
    todos = seed(
        client,
        auth,
        [{"title": text} for text in UNICODE_TEXTS]
        + [{"title": "x", "description": text} for text in UNICODE_TEXTS],
    )
    ilike = r"SELECT id FROM todos WHERE title ILIKE %s ESCAPE '\' OR description ILIKE %s ESCAPE '\'"
    with app.app_context():
        if is_postgres():
            texts = [*UNICODE_TEXTS, *UNICODE_QUERIES]
            lowered = [db.execute_sql("SELECT lower(%s)", (text,)).fetchone()[0] for text in texts]
            assert [fold(text) for text in texts] == lowered
        matched_any = False
        for q in UNICODE_QUERIES:
            if is_sqlite():
                expected = {
                    todo["id"]
                    for todo in todos
                    if fold(q) in fold(todo["title"]) or fold(q) in fold(todo["description"])
                }
            else:
                pattern = f"%{q}%"
                expected = {row[0] for row in db.execute_sql(ilike, (pattern, pattern)).fetchall()}
            found = set(ids(listing(client, auth, [("q", q), ("limit", 100)])))
            assert found == expected, q
            matched_any |= len(expected) > len([t for t in UNICODE_TEXTS if q in t]) * 2
    assert matched_any  # some query matched beyond its exact-case occurrences


@pytest.mark.parametrize(
    ("q", "title"), [("σίσυφοσ", "ΣΊΣΥΦΟΣ"), ("istanbul", "İSTANBUL"), ("İstanbul", "istanbul")]
)
def test_q_finds_the_same_todos_on_both_databases_where_python_lowers_otherwise(client, auth, q, title):
    """Found by a probe: SQLite lowered with str.lower (ς at a word's end, i with a combining dot)."""
    [todo] = seed(client, auth, [{"title": title}])
    assert ids(listing(client, auth, [("q", q)])) == [todo["id"]]


@pytest.mark.parametrize("q", ["ÄRGER", "ärger", "ÉMILE"])
def test_q_folds_case_beyond_ascii_on_both_databases(client, auth, q):
    seed(
        client,
        auth,
        [{"title": "Ärger im Büro"}, {"title": "x", "description": "chez émile"}, {"title": "y"}],
    )
    [found] = listing(client, auth, [("q", q)]).json["items"]
    assert q.lower() in (found["title"] + found["description"]).lower()


def test_q_finds_changed_text_by_its_new_case_folding(client, auth):
    [todo] = seed(client, auth, [{"title": "plain", "description": "plain"}])
    patch(client, auth, todo["id"], {"title": "ÄRGER", "description": "Ωmega"})

    assert ids(listing(client, auth, [("q", "ärger")])) == [todo["id"]]
    assert ids(listing(client, auth, [("q", "ωMEGA")])) == [todo["id"]]
    assert ids(listing(client, auth, [("q", "plain")])) == []


def test_title_order_folds_case_beyond_ascii_on_both_databases(client, auth):
    # A-Z folding alone would put "Éb" (U+00C9) before "éa" (U+00E9).
    seed(client, auth, [{"title": "Éb"}, {"title": "éa"}])
    assert [todo["title"] for todo in listing(client, auth, [("sort", "title")]).json["items"]] == [
        "éa",
        "Éb",
    ]


@pytest.mark.parametrize("q", ["", " ", "   \t "])
def test_blank_q_is_ignored(client, auth, q):
    seed(client, auth, [{"title": "one"}, {"title": "two", "description": "x"}])
    assert listing(client, auth, [("q", q)]).json["total"] == 2


# --- priority ---------------------------------------------------------------------------------------


def test_priority_filter(client, auth):
    todos = seed(client, auth, [{"title": f"p{p}-{n}", "priority": p} for p in (1, 2, 3, 5) for n in (1, 2)])
    for priority in range(1, 6):
        response = listing(client, auth, [("priority", priority)])
        expected = [todo["id"] for todo in reversed(todos) if todo["priority"] == priority]
        assert ids(response) == expected
        assert response.json["total"] == len(expected)
    assert listing(client, auth, [("priority", 4)]).json["total"] == 0


# --- due_before / due_after -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], ["undated", "d11", "d10", "d09"]),
        ([("due_before", "2026-01-10")], ["d10", "d09"]),
        ([("due_after", "2026-01-10")], ["d11", "d10"]),
        ([("due_after", "2026-01-10"), ("due_before", "2026-01-10")], ["d10"]),
        ([("due_after", "2026-01-11"), ("due_before", "2026-01-09")], []),
        ([("due_after", "1999-01-01")], ["d11", "d10", "d09"]),
        ([("due_before", "2999-01-01")], ["d11", "d10", "d09"]),
        ([("due_before", "2026-01-08")], []),
    ],
)
def test_due_range_is_inclusive_and_excludes_undated(client, auth, params, expected):
    seed(
        client,
        auth,
        [
            {"title": "d09", "due_date": "2026-01-09"},
            {"title": "d10", "due_date": "2026-01-10"},
            {"title": "d11", "due_date": "2026-01-11"},
            {"title": "undated"},
        ],
    )
    response = listing(client, auth, params)
    assert titles(response) == expected
    assert response.json["total"] == len(expected)


# --- updated_since ----------------------------------------------------------------------------------


def spellings(instant):
    """The same instant written as a client might put it in a raw query string."""
    utc = instant.astimezone(UTC)
    plus_two = instant.astimezone(timezone(timedelta(hours=2))).isoformat()
    return {
        "utc offset, encoded": quote(utc.isoformat(), safe=":"),
        "Z": utc.replace(tzinfo=None).isoformat() + "Z",
        "no offset means UTC": utc.replace(tzinfo=None).isoformat(),
        "+02:00 encoded as %2B": quote(plus_two, safe=":"),
        "-05:00": instant.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        "raw + arrives as a space": plus_two,
    }


def test_updated_since_is_inclusive_in_every_spelling(client, auth):
    older, newer = seed(client, auth, [{"title": "older"}, {"title": "newer"}])
    bound = datetime.fromisoformat(newer["updated_at"])
    assert bound > datetime.fromisoformat(older["updated_at"])
    for name, raw in spellings(bound).items():
        response = client.get(f"/todos?updated_since={raw}", headers=auth)
        assert response.status_code == 200, (name, response.json)
        assert titles(response) == ["newer"], name
        assert response.json["total"] == 1, name
    for name, raw in spellings(bound + timedelta(microseconds=1)).items():
        assert client.get(f"/todos?updated_since={raw}", headers=auth).json["total"] == 0, name
    for name, raw in spellings(datetime.fromisoformat(older["updated_at"])).items():
        assert titles(client.get(f"/todos?updated_since={raw}", headers=auth)) == ["newer", "older"], name


def test_updated_since_sees_a_todo_again_after_it_changes(client, auth):
    first, second = seed(client, auth, [{"title": "first"}, {"title": "second"}])
    after_both = (datetime.fromisoformat(second["updated_at"]) + timedelta(microseconds=1)).isoformat()
    assert listing(client, auth, [("updated_since", after_both)]).json["total"] == 0
    changed = patch(client, auth, first["id"], {"done": True})
    response = listing(client, auth, [("updated_since", after_both)])
    assert ids(response) == [first["id"]] and response.json["total"] == 1
    bound = changed["updated_at"]
    assert ids(listing(client, auth, [("updated_since", bound)])) == [first["id"]]
    patch(client, auth, second["id"], {"tags": ["sync"]})
    assert sorted(ids(listing(client, auth, [("updated_since", bound)]))) == [first["id"], second["id"]]


def sync_pages(client, auth, since, limit, after_first_page=lambda: None):
    """The README's sync recipe: pages by `updated_since`, oldest change first; {id: updated_at}."""
    seen: dict[int, str] = {}
    while True:
        params = [("sort", "updated_at"), ("limit", limit), *([("updated_since", since)] if since else [])]
        items = listing(client, auth, params).json["items"]
        if not seen:
            after_first_page()
        seen.update({item["id"]: item["updated_at"] for item in items})
        if len(items) < limit:
            return seen
        since = items[-1]["updated_at"]


def test_syncing_page_by_page_misses_no_todo_when_a_read_one_changes_meanwhile(client, auth):
    # With skip, a change to a todo already read moves it behind the rest and shifts one unread
    # todo onto a page already passed; paging by updated_since does not.
    todos = seed(client, auth, [{"title": f"t{n}"} for n in range(7)])
    changed = []
    seen = sync_pages(
        client, auth, None, 3, lambda: changed.append(patch(client, auth, todos[0]["id"], {"priority": 5}))
    )
    assert sorted(seen) == sorted(todo["id"] for todo in todos)
    assert seen[todos[0]["id"]] == changed[0]["updated_at"]
    assert sync_pages(client, auth, max(seen.values()), 3).keys() == {todos[0]["id"]}
    skip_pages = [ids(listing(client, auth, [("sort", "updated_at"), ("limit", 3), ("skip", 0)]))]
    patch(client, auth, skip_pages[0][0], {"priority": 4})
    skip_pages += [
        ids(listing(client, auth, [("sort", "updated_at"), ("limit", 3), ("skip", n)])) for n in (3, 6)
    ]
    assert len(set(chain(*skip_pages))) < len(todos)  # what the recipe avoids


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "1700000000",
        "2026-13-01T00:00:00",
        "2026-01-01T25:00:00",
        "2026-01-01T10:00:00+25:00",
    ],
)
def test_bad_updated_since_is_422(client, auth, value):
    assert_error(
        client.get("/todos", query_string={"updated_since": value}, headers=auth),
        422,
        "updated_since",
        location="query",
    )


@pytest.mark.parametrize(
    ("value", "matches_all"),
    [("0001-01-01T00:00:00+01:00", True), ("9999-12-31T23:59:59-01:00", False)],
)
def test_updated_since_at_the_edge_of_time_is_not_a_500(app, client, auth, value, matches_all):
    """Valid ISO 8601 whose UTC value is outside Python's datetime range once overflowed into a 500."""
    app.config["PROPAGATE_EXCEPTIONS"] = False  # see the response a client would get, not the exception
    seed(client, auth, [{"title": "a"}])
    response = client.get("/todos", query_string={"updated_since": value}, headers=auth)
    if response.status_code == 422:
        assert_error(response, 422, "updated_since", location="query")
    else:
        assert response.status_code == 200, response.json
        assert response.json["total"] == (1 if matches_all else 0)


# --- sort -------------------------------------------------------------------------------------------


@pytest.fixture
def four(client, auth):
    """Every sort key gives these four a different order; updated_at order: Cherry, apricot, apple, Banana."""
    todos = seed(
        client,
        auth,
        [
            {"title": "Banana", "priority": 2, "due_date": "2026-05-02"},
            {"title": "apple", "priority": 5},
            {"title": "Cherry", "priority": 1, "due_date": "2026-05-01"},
            {"title": "apricot", "priority": 4, "due_date": "2026-05-03"},
        ],
    )
    patch(client, auth, todos[1]["id"], {"description": "touched"})
    patch(client, auth, todos[0]["id"], {"description": "touched"})
    return todos


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("title", ["apple", "apricot", "Banana", "Cherry"]),  # case-sensitive order would put capitals first
        ("-title", ["Cherry", "Banana", "apricot", "apple"]),
        ("priority", ["Cherry", "Banana", "apricot", "apple"]),
        ("-priority", ["apple", "apricot", "Banana", "Cherry"]),
        ("due_date", ["Cherry", "Banana", "apricot", "apple"]),  # undated last
        ("-due_date", ["apricot", "Banana", "Cherry", "apple"]),  # undated last here too
        ("created_at", ["Banana", "apple", "Cherry", "apricot"]),
        ("-created_at", ["apricot", "Cherry", "apple", "Banana"]),
        ("updated_at", ["Cherry", "apricot", "apple", "Banana"]),
        ("-updated_at", ["Banana", "apple", "apricot", "Cherry"]),
        (" -priority ", ["apple", "apricot", "Banana", "Cherry"]),
    ],
)
def test_sort_by_each_key_both_ways(client, auth, four, sort, expected):
    assert titles(listing(client, auth, [("sort", sort)])) == expected


def test_default_sort_is_newest_created_first(client, auth, four):
    assert titles(listing(client, auth)) == ["apricot", "Cherry", "apple", "Banana"]


def test_multi_key_sort(client, auth):
    seed(
        client,
        auth,
        [
            {"title": "a", "priority": 5, "due_date": "2026-05-02"},
            {"title": "b", "priority": 5, "due_date": "2026-05-01"},
            {"title": "c", "priority": 5},
            {"title": "d", "priority": 3, "due_date": "2026-05-01"},
            {"title": "e", "priority": 3},
            {"title": "f", "priority": 3, "due_date": "2026-05-01"},
            {"title": "g", "priority": 3},
        ],
    )
    for sort, expected in [
        ("-priority,due_date", "bacfdge"),
        ("due_date,-priority", "bfdacge"),
        ("-due_date,title", "abdfceg"),
    ]:
        assert titles(listing(client, auth, [("sort", sort)])) == list(expected), sort


def test_title_sort_ignores_case_and_ties_break_newest_first(client, auth):
    seed(client, auth, [{"title": "same"}, {"title": "beta"}, {"title": "SAME"}, {"title": "Same"}])
    assert titles(listing(client, auth, [("sort", "title")])) == ["beta", "Same", "SAME", "same"]
    assert titles(listing(client, auth, [("sort", "-title")])) == ["Same", "SAME", "same", "beta"]


@pytest.mark.parametrize("sort", ["priority", "-priority", "due_date", "-due_date", "title", "-title"])
def test_ties_always_break_by_newest_id(client, auth, sort):
    todos = seed(client, auth, [{"title": "tie", "priority": 2, "due_date": "2026-05-01"} for _ in range(5)])
    assert ids(listing(client, auth, [("sort", sort)])) == [todo["id"] for todo in reversed(todos)]
    pages = [ids(listing(client, auth, [("sort", sort), ("limit", 2), ("skip", skip)])) for skip in (0, 2, 4)]
    assert flat(pages) == [todo["id"] for todo in reversed(todos)]


@pytest.mark.parametrize("sort", ["due_date", "-due_date", "priority,due_date", "-priority,-due_date"])
def test_undated_todos_sort_last_newest_first(client, auth, sort):
    seed(
        client,
        auth,
        [
            {"title": "none1"},
            {"title": "late", "due_date": "2026-12-31"},
            {"title": "none2"},
            {"title": "early", "due_date": "2026-01-01"},
            {"title": "none3"},
        ],
    )
    dated = ["late", "early"] if sort.endswith("-due_date") else ["early", "late"]
    assert titles(listing(client, auth, [("sort", sort)])) == [*dated, "none3", "none2", "none1"]


@pytest.mark.parametrize(
    "sort",
    [
        "bogus",
        "Title",
        "id",
        "-",
        "",
        ",",
        "title,",
        "priority,,title",
        "title,-title",
        "priority,priority",
        "-due_date,due_date",
        "--title",
        "title;priority",
    ],
)
def test_bad_sort_is_422(client, auth, sort):
    seed(client, auth, [{"title": "a"}])
    response = client.get("/todos", query_string={"sort": sort}, headers=auth)
    assert_error(response, 422, "sort", location="query")


# --- validation of the other filters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("priority=0", "priority"),
        ("priority=6", "priority"),
        ("priority=x", "priority"),
        ("priority=", "priority"),
        ("priority=3.5", "priority"),
        ("priority=-1", "priority"),
        ("priority=%2B3", "priority"),  # +3: int() takes it, a URL would not write it
        ("priority=%203", "priority"),
        ("priority=%EF%BC%93", "priority"),  # FULLWIDTH DIGIT THREE
        ("limit=%D9%A1", "limit"),  # ARABIC-INDIC DIGIT ONE
        ("skip=%EF%BC%91", "skip"),
        ("due_before=2026-13-01", "due_before"),
        ("due_before=20261201", "due_before"),
        ("due_before=tomorrow", "due_before"),
        ("due_before=2026-02-30", "due_before"),
        ("due_before=", "due_before"),
        ("due_after=2026-13-01", "due_after"),
        ("due_after=20261201", "due_after"),
        ("due_after=tomorrow", "due_after"),
        ("due_after=2026-1-01", "due_after"),
        ("due_after=2026-12-01T00:00:00", "due_after"),
        ("q=" + "q" * 201, "q"),
        ("q=nul%00byte", "q"),
        ("updated_since=2026-01-01T00:00:00." + "1" * 39 + "%2B01:00", "updated_since"),  # 65 characters
    ],
)
def test_bad_filters_are_422(client, auth, query, field):
    assert_error(client.get(f"/todos?{query}", headers=auth), 422, field, location="query")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "tag=b&tag=a&limit=5&limit=7&done=true&unknown=1",  # repeated: a list, or the first value
        "q=x&q=y&sort=-priority,due_date&skip=3",
        "tag=&priority=2&due_before=2026-01-31",
        "limit=0&limit=5&priority=9&tag=" + "t" * 80,  # invalid: the same messages
    ],
)
def test_the_query_loads_exactly_as_webargs_own_loader_gives_it(app, query):
    """Our parser loads the query string as a plain dict (api.Parser.load_querystring); webargs'
    stock parser wraps it in a MultiDictProxy. What the schema loads from either must not differ."""

    def parse(parser):
        with app.test_request_context(f"/todos?{query}"):
            try:
                return parser.parse(schema, flask.request, location="query")
            except HTTPException as error:
                return error.code, error.data["messages"]

    schema = TodoQueryArgsSchema()
    ours, stock = parse(Blueprint.ARGUMENTS_PARSER), parse(FlaskParser())
    assert ours == stock
    assert ours != {} and ("limit" in ours or ours[0] == 422)


@pytest.mark.parametrize("skip", [2**31, 2**63, 10**20])
def test_enormous_skip_is_not_a_500(app, client, auth, skip):
    """Offsets past the databases' integers once reached them (OverflowError, bigint out of range)."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    seed(client, auth, [{"title": "a"}])
    response = client.get(f"/todos?skip={skip}", headers=auth)
    if response.status_code == 422:
        assert_error(response, 422, "skip", location="query")
    else:
        assert response.status_code == 200, response.json
        assert response.json["items"] == [] and response.json["total"] == 1


# --- total and Link ---------------------------------------------------------------------------------


def test_total_counts_every_match_not_the_page(client, auth):
    seed(client, auth, [{"title": f"t{i}", "priority": 4 if i % 2 else 2} for i in range(9)])
    response = listing(client, auth, [("priority", 4), ("limit", 2), ("skip", 1)])
    assert len(response.json["items"]) == 2
    assert (response.json["total"], response.json["skip"], response.json["limit"]) == (4, 1, 2)
    assert listing(client, auth, [("priority", 4), ("skip", 10)]).json["total"] == 4


@pytest.mark.parametrize(
    ("skip", "limit", "prev", "next_"),
    [
        (0, 3, None, 3),
        (3, 3, 0, 6),
        (6, 3, 3, None),
        (2, 3, 0, 5),
        (1, 3, 0, 4),
        (4, 3, 1, None),
        (0, 6, None, 6),
        (6, 1, 5, None),
        (5, 1, 4, 6),
        (7, 3, 4, None),  # past the end: prev is the last page
        (100, 2, 5, None),
    ],
)
def test_link_header_has_next_and_prev_exactly_when_they_exist(client, auth, skip, limit, prev, next_):
    seed(client, auth, [{"title": f"t{i}"} for i in range(7)])
    found = links(listing(client, auth, [("skip", skip), ("limit", limit)]))
    assert set(found) == {rel for rel, target in (("prev", prev), ("next", next_)) if target is not None}
    for rel, target in (("prev", prev), ("next", next_)):
        if target is not None:
            assert page_args(found[rel]) == {"skip": [str(target)], "limit": [str(limit)]}


@pytest.mark.parametrize("params", [[], [("limit", 7)], [("limit", 100)], [("skip", 0), ("limit", 8)]])
def test_no_link_header_when_everything_fits_in_one_page(client, auth, params):
    seed(client, auth, [{"title": f"t{i}"} for i in range(7)])
    response = listing(client, auth, params)
    assert response.json["total"] == len(response.json["items"]) == 7
    assert "Link" not in response.headers


def test_no_link_header_on_an_empty_list(client, auth):
    assert "Link" not in listing(client, auth, [("limit", 1)]).headers


def test_link_urls_keep_every_filter_and_lead_to_the_right_pages(client, auth):
    marker = "50% & a_b +c/d?e#f=g"
    todos = seed(
        client,
        auth,
        [
            {"title": f"{marker} {name}", "tags": ["home", "work"], "priority": 1 + i % 3}
            for i, name in enumerate("abcdefgh")
        ]
        + [
            {"title": f"{marker} only home", "tags": ["home"]},
            {"title": "no marker", "tags": ["home", "work"]},
        ],
    )
    since = todos[1]["updated_at"].replace("+00:00", "+02:00")  # two hours before: every todo matches
    params = [
        ("tag", "home"),
        ("tag", "work"),
        ("q", marker),
        ("sort", "-priority,title"),
        ("updated_since", since),
        ("done", "false"),
        ("limit", 3),
    ]
    first = listing(client, auth, params)
    assert first.json["total"] == 8
    expected_filters = {name: [value for key, value in params if key == name] for name, _ in params[:-1]}

    walked, response, seen_urls = [], first, []
    while True:
        walked += titles(response)
        found = links(response)
        for url in found.values():
            args = page_args(url)
            assert {key: args[key] for key in expected_filters} == expected_filters
            assert urlsplit(url).path == "/todos"
        if "next" not in found:
            break
        seen_urls.append(found["next"])
        response = client.get(found["next"], headers=auth)
        assert response.status_code == 200
        assert "prev" in links(response)
    assert [page_args(url)["skip"] for url in seen_urls] == [["3"], ["6"]]

    by_skip = flat(titles(listing(client, auth, [*params, ("skip", skip)])) for skip in (0, 3, 6))
    by_rule = sorted(todos[:8], key=lambda todo: (-todo["priority"], todo["title"].lower(), -todo["id"]))
    assert walked == by_skip == [todo["title"] for todo in by_rule]

    backwards, found = [], links(response)
    while "prev" in found:
        response = client.get(found["prev"], headers=auth)
        backwards = titles(response) + backwards
        found = links(response)
    assert backwards == walked[:6]


# --- combinations and ownership ---------------------------------------------------------------------

WINNER = {
    "title": "Buy milk",
    "description": "",
    "priority": 4,
    "due_date": "2026-05-15",
    "tags": ["home", "work", "extra"],
}
# Each decoy misses exactly one filter of FILTERS.
DECOYS = {
    "done": {},
    "tag": {"tags": ["home"]},
    "q": {"title": "Buy bread"},
    "priority": {"priority": 3},
    "due_after": {"due_date": "2026-04-30"},
    "due_before": {"due_date": "2026-06-01"},
    "updated_since": {},
}


def filters(since):
    return {
        "done": [("done", "false")],
        "tag": [("tag", "home"), ("tag", "WORK")],
        "q": [("q", "MILK")],
        "priority": [("priority", 4)],
        "due_after": [("due_after", "2026-05-01")],
        "due_before": [("due_before", "2026-05-31")],
        "updated_since": [("updated_since", since)],
    }


@pytest.fixture
def intersection(client, auth):
    """Two todos that pass every filter, and one decoy per filter that fails only that one."""
    stale = seed(client, auth, [WINNER | DECOYS["updated_since"]])[0]
    first = seed(client, auth, [WINNER | {"description": "first"}])[0]
    since = first["updated_at"]
    assert datetime.fromisoformat(since) > datetime.fromisoformat(stale["updated_at"])
    decoys = {"updated_since": stale}
    for name, changes in DECOYS.items():
        if name != "updated_since":
            decoys[name] = seed(client, auth, [WINNER | changes])[0]
    patch(client, auth, decoys["done"]["id"], {"done": True})
    found_by_description = WINNER | {"title": "milk too", "description": "in the description: MILK"}
    second = seed(client, auth, [found_by_description])[0]
    second = patch(client, auth, second["id"], {"title": "second"})
    return [second, first], decoys, filters(since)


def test_all_filters_combined_return_exactly_the_intersection(client, auth, intersection):
    winners, _, every = intersection
    response = listing(client, auth, flat(every.values()))
    assert ids(response) == [todo["id"] for todo in winners]
    assert response.json["total"] == 2


@pytest.mark.parametrize("dropped", list(DECOYS))
def test_dropping_one_filter_lets_exactly_its_decoy_in(client, auth, intersection, dropped):
    winners, decoys, every = intersection
    params = flat(pairs for name, pairs in every.items() if name != dropped)
    response = listing(client, auth, [*params, ("sort", "-created_at")])
    assert sorted(ids(response)) == sorted([decoys[dropped]["id"], *(todo["id"] for todo in winners)])
    assert response.json["total"] == 3


def test_another_users_todos_never_appear_under_any_filter(client, auth, other_auth, intersection):
    winners, decoys, every = intersection
    mine = {todo["id"] for todo in [*winners, *decoys.values()]}
    theirs = {todo["id"] for todo in seed(client, other_auth, [WINNER, WINNER | {"description": "x"}])}
    patch(client, other_auth, min(theirs), {"title": "Buy milk again"})
    for params in [[], flat(every.values()), *every.values(), [("sort", "title")], [("q", "again")]]:
        response = listing(client, auth, params)
        assert set(ids(response)) <= mine, params
        assert response.json["total"] == len(response.json["items"]), params
        response = listing(client, other_auth, params)
        assert set(ids(response)) <= theirs, params
    assert listing(client, auth, [("q", "milk"), ("limit", 1)]).json["total"] == 8
    assert listing(client, auth, flat(every.values())).json["total"] == 2
    assert listing(client, other_auth, flat(every.values())).json["total"] == 2
    assert listing(client, other_auth, [("q", "again")]).json["total"] == 1


def test_one_query_shape_serves_each_request_with_its_own_values(client, auth, other_auth):
    """The page's SQL is built once per shape (filters, tag count, order); values differ per request."""
    mine = [{"title": "mine a", "priority": 2, "tags": ["x"]}, {"title": "mine b", "priority": 4}]
    seed(client, auth, mine)
    seed(client, other_auth, [{"title": "theirs a", "priority": 2, "tags": ["y"]}])
    cases = [
        (auth, [("priority", 2)], ["mine a"]),
        (auth, [("priority", 4)], ["mine b"]),
        (other_auth, [("priority", 2)], ["theirs a"]),
        (auth, [("tag", "x"), ("q", "mine")], ["mine a"]),
        (other_auth, [("tag", "y"), ("q", "a")], ["theirs a"]),
        (other_auth, [("tag", "x"), ("q", "mine")], []),
        (auth, [("q", "b"), ("skip", 0), ("limit", 1)], ["mine b"]),
        (auth, [("q", "mine"), ("skip", 1), ("limit", 1)], ["mine a"]),
    ]
    for headers, params, expected in cases:
        assert titles(listing(client, headers, params)) == expected, params
