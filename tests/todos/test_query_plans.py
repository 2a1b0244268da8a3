"""Speed by construction: list and stats queries are index-backed and cost a fixed number of queries."""

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from peewee import SQL, Select, fn

from tests.conftest import FAST_ARGON2, REDIS_URL, empty_postgres
from tests.helpers import sent_statements
from todoapi import create_app
from todoapi.db import _numbered, db
from todoapi.models import Todo, TodoTag, User
from todoapi.todos import services

VOCABULARY = ["home", "work", "errands", "later", "urgent", "health"]
SHAPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "done": {"done": True},
    "tag": {"tag": ["work"]},
    "two tags": {"tag": ["home", "urgent"]},
    "due range": {"due_after": date(2026, 12, 1), "due_before": date(2026, 12, 20)},
    "updated_since": {"updated_since": datetime(2026, 11, 1, tzinfo=UTC)},
    "priority": {"priority": 5},
    "search": {"q": "report"},
    "sorted by due date": {"sort": [("due_date", False), ("priority", True)]},
    "sorted by title": {"sort": [("title", False)]},
}


def seed(users: int, todos_each: int) -> list[int]:
    """Bulk rows for planner tests: many owners, so one owner's rows are a small slice."""
    rng = random.Random(7)
    ids = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db.atomic():
        for n in range(users):
            user = User.create(email=f"plan{n}@example.com", password_hash="x")
            ids.append(user.id)
            rows = []
            for i in range(todos_each):
                stamp = start + timedelta(minutes=n * todos_each + i)
                rows.append(
                    {
                        "user": user.id,
                        "title": f"task {i} report" if i % 10 == 0 else f"task {i}",
                        "description": "",
                        "done": rng.random() < 0.4,
                        "priority": rng.randint(1, 5),
                        "due_date": date(2026, 12, 1) + timedelta(days=rng.randint(0, 60))
                        if rng.random() < 0.3
                        else None,
                        "tags": [],
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                )
            Todo.insert_many(rows).execute()
            todo_ids = [todo.id for todo in Todo.select(Todo.id).where(Todo.user == user.id)]
            TodoTag.insert_many(
                [
                    {"todo": todo_id, "user": user.id, "tag": tag}
                    for todo_id in todo_ids
                    for tag in rng.sample(VOCABULARY, 2)
                ]
            ).execute()
    return ids


def explain(query: Any) -> str:
    return explain_sql(*query.sql())


def explain_sql(sql: str, params: Any) -> str:
    return "\n".join(row[0] for row in db.execute_sql("EXPLAIN " + sql, params).fetchall())


def explain_generic(sql: str, params: Any) -> str:
    """The plan a request's prepared statement runs: its generic plan (see `_prepared_name`)."""
    db.execute_sql("SET plan_cache_mode = force_generic_plan")
    db.execute_sql(f"PREPARE plan_check AS {_numbered(sql)}")
    try:
        arguments = ", ".join(["%s"] * len(params))
        return explain_sql(f"EXECUTE plan_check({arguments})", params)
    finally:
        db.execute_sql("DEALLOCATE plan_check")
        db.execute_sql("RESET plan_cache_mode")


def count_query(query: Any) -> Any:
    """The statement peewee's `query.count()` runs, unexecuted."""
    return Select([query.order_by().alias("_wrapped")], [fn.COUNT(SQL("1"))]).bind(db.obj)


@pytest.fixture
def postgres_app(postgres_url: str):
    empty_postgres(postgres_url)
    app = create_app({"TESTING": True, "DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL})
    with app.app_context():
        yield app
    db.obj.close_all()


def test_list_and_stats_queries_never_scan_the_whole_todos_table(postgres_app):
    owner = seed(users=80, todos_each=60)[17]
    db.execute_sql("ANALYZE")
    for shape, filters in SHAPES.items():
        args = {"skip": 0, "limit": 50, "sort": [("created_at", True)], **filters}
        values = services._filter_values(owner, args) | {"session": "a session id"}
        page = services.page_statement(values, args)  # what a request runs, its session check included
        count = explain(count_query(services.filtered_todos(owner, args)))
        for plan in (explain_sql(*page), explain_generic(*page), count):
            assert "Seq Scan on todos" not in plan, f"{shape}:\n{plan}"
            assert "Seq Scan on todo_tags" not in plan, f"{shape}:\n{plan}"
    for query in services.stats_queries(owner, date(2026, 12, 1)):
        plan = explain(query)
        assert "Seq Scan" not in plan, plan


@pytest.fixture
def count_queries(monkeypatch):
    """Counts statements sent to the database (wraps the real method: observes, fakes nothing)."""
    statements: list[str] = []
    database_class = type(db.obj)
    real = database_class.execute_sql

    def counting(self, sql, *args, **kwargs):
        statements.append(sql)
        return real(self, sql, *args, **kwargs)

    monkeypatch.setattr(database_class, "execute_sql", counting)
    return statements


@pytest.mark.parametrize("todos", [3, 100])
def test_a_page_of_todos_with_tags_costs_a_fixed_number_of_queries(client, auth, count_queries, todos):
    for i in range(todos):
        client.post("/todos", json={"title": f"t{i}", "tags": ["a", f"t{i % 7}"]}, headers=auth)
    count_queries.clear()
    page = client.get("/todos?limit=100&tag=a&sort=-priority,due_date", headers=auth).json
    assert len(page["items"]) == todos and all(len(todo["tags"]) == 2 for todo in page["items"])
    # The page, which checks the session too; the total when the page is full (a short first page is all).
    assert len(count_queries) == (2 if todos == 100 else 1), count_queries
    count_queries.clear()
    assert client.get("/todos?limit=100&tag=a&sort=-priority,due_date", headers=auth).json == page
    assert len(count_queries) == 1, count_queries  # the total is cached until the todos change


@pytest.fixture
def counted(postgres_url):
    """A client signed in on an empty PostgreSQL database, and every statement sent from then on."""
    empty_postgres(postgres_url)
    config = {"TESTING": True, "DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL}
    app = create_app({**config, "ARGON2_PARAMETERS": FAST_ARGON2, "LOGIN_RATE_LIMIT": "10000/minute"})
    statements = sent_statements(db.obj)
    client = app.test_client()
    credentials = {"email": "ann@example.com", "password": "correct horse battery"}
    assert client.post("/auth/register", json=credentials).status_code == 201
    auth = {"Authorization": f"Bearer {client.post('/auth/login', json=credentials).json['access_token']}"}
    yield client, auth, statements
    db.obj.close_all()


def test_round_trips_per_request_on_postgres(counted):
    """Each round trip costs ~0.2 ms of CPU under load (BENCHMARKS.md), so they are counted: reads
    check the session in their own query; a change makes its locked read (BEGIN and the session check
    riding along) and its writes with COMMIT; a create is one statement, the session check included."""
    client, auth, statements = counted
    ids = [
        client.post("/todos", json={"title": f"t{n}", "tags": ["x"]}, headers=auth).json["id"]
        for n in range(4)
    ]
    requests = {
        "GET /todos": (1, lambda n: client.get("/todos?tag=x", headers=auth)),
        "GET /todos/{id}": (1, lambda n: client.get(f"/todos/{ids[0]}", headers=auth)),
        "GET /me": (1, lambda n: client.get("/me", headers=auth)),
        "PATCH /todos/{id}": (
            2,
            lambda n: client.patch(f"/todos/{ids[0]}", json={"title": f"v{n}"}, headers=auth),
        ),
        "DELETE /todos/{id}": (2, lambda n: client.delete(f"/todos/{ids[1 + n]}", headers=auth)),
        "POST /todos": (1, lambda n: client.post("/todos", json={"title": "x", "tags": ["x"]}, headers=auth)),
    }
    for name, (expected, send) in requests.items():
        for n in range(3):  # the last one warm: its statements prepared, its connection trusted
            statements.clear()
            assert send(n).status_code < 300, name
        assert len(statements) == expected, (name, statements)


def test_a_lists_total_is_planned_for_its_values_while_its_page_runs_prepared(counted):
    """A prepared count got a generic plan after five runs; for the heavy user's two-tag list that
    plan took 4.5 s where one planned for the values takes 14 ms (BENCHMARKS.md)."""
    client, auth, statements = counted
    for n in range(12):
        assert (
            client.post("/todos", json={"title": f"t{n}", "tags": ["a", "b"]}, headers=auth).status_code
            == 201
        )
    statements.clear()
    for _ in range(7):  # past the five runs after which PostgreSQL may settle on a generic plan
        services.TOTALS.clear()
        page = client.get("/todos?tag=a&tag=b&limit=5", headers=auth)
        assert page.status_code == 200 and page.json["total"] == 12
    counts = [sql for sql in statements if "COUNT(" in sql]
    assert len(counts) == 7 and all(sql.startswith("SELECT COUNT(") for sql in counts), counts
    assert any("PREPARE " in sql and "todo_tags" in sql for sql in statements), statements


def test_a_create_reads_nothing_first_its_revision_bump_checks_the_session(client, auth, count_queries):
    """On both databases the write itself carries the session check: no separate SELECT ahead of it
    (PostgreSQL: one statement; SQLite: the bump changes nothing, and the create stops, when the
    session is gone)."""
    assert client.post("/todos", json={"title": "warm"}, headers=auth).status_code == 201
    count_queries.clear()
    assert client.post("/todos", json={"title": "x", "tags": ["a"]}, headers=auth).status_code == 201
    statements = [sql for sql in count_queries if sql.split()[0].upper() not in {"BEGIN", "COMMIT"}]
    assert not statements[0].upper().startswith("SELECT"), statements
    assert '"sessions"' in statements[0] and '"todo_revision"' in statements[0], statements
    assert not any('"sessions"' in sql for sql in statements[1:]), statements
