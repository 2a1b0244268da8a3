"""Bulk demo data for benchmarks: N users x M todos, inserted in batches (minutes for a million)."""

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from todoapi.auth.services import hasher
from todoapi.db import db, is_postgres
from todoapi.models import Todo, TodoTag, User, utcnow
from todoapi.todos.services import folded_copies

VOCABULARY = [
    "home",
    "work",
    "errands",
    "health",
    "finance",
    "family",
    "garden",
    "reading",
    "travel",
    "urgent",
]
WORDS = ["call", "buy", "fix", "plan", "write", "read", "clean", "book", "pay", "send", "review", "report"]
BATCH = 2_000


def _todo_rows(user_id: int, count: int, rng: random.Random, today: date) -> Iterator[dict[str, Any]]:
    now = utcnow()
    for i in range(count):
        stamp = now - timedelta(seconds=count - i)
        due = today + timedelta(days=rng.randint(-10, 30)) if rng.random() < 0.3 else None
        tags = sorted(rng.sample(VOCABULARY, rng.choice((0, 1, 1, 2, 3))))
        yield {
            "user": user_id,
            "title": f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}",
            "description": f"{rng.choice(WORDS)} the {rng.choice(VOCABULARY)} things"
            if rng.random() < 0.5
            else "",
            "done": rng.random() < 0.4,
            "priority": rng.randint(1, 5),
            "due_date": due,
            "tags": tags,
            "created_at": stamp,
            "updated_at": stamp,
        }


def _insert_todos(rows: list[dict[str, Any]]) -> None:
    if is_postgres():
        ids = [row[0] for row in Todo.insert_many(rows).returning(Todo.id).tuples().execute()]
    else:
        # SQLite's lowered copies are the application's to write (migration 0008).
        # One statement, one writer: SQLite assigns consecutive rowids ending at the last one.
        last = Todo.insert_many([{**row, **folded_copies(row)} for row in rows]).execute()
        ids = list(range(last - len(rows) + 1, last + 1))
    tags = [
        {"todo": todo_id, "user": row["user"], "tag": tag, "created_at": row["created_at"]}
        for todo_id, row in zip(ids, rows, strict=True)
        for tag in row["tags"]
    ]
    for start in range(0, len(tags), BATCH):
        TodoTag.insert_many(tags[start : start + BATCH]).execute()


def seed(
    users: int,
    todos_per_user: int,
    password: str,
    heavy_todos: int = 0,
    prefix: str = "seed",
    seed_value: int = 1,
) -> dict[str, int]:
    """Create `users` accounts (`{prefix}{n}@example.com`, one password) with `todos_per_user` each;
    the first account gets `heavy_todos` instead when given. Returns what was created."""
    rng = random.Random(seed_value)  # noqa: S311 - demo data, reproducible on purpose
    password_hash = hasher.hash(password)  # one hash for all: argon2 per user would take hours
    today = utcnow().date()
    created = {"users": 0, "todos": 0}
    for n in range(users):
        with db.atomic():
            user = User.create(email=f"{prefix}{n}@example.com", password_hash=password_hash)
            count = heavy_todos if (n == 0 and heavy_todos) else todos_per_user
            batch: list[dict[str, Any]] = []
            for row in _todo_rows(user.id, count, rng, today):
                batch.append(row)
                if len(batch) == BATCH:
                    _insert_todos(batch)
                    batch = []
            if batch:
                _insert_todos(batch)
        created["users"] += 1
        created["todos"] += count
    return created
