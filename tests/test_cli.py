"""Operator commands through Flask's CLI runner, on SQLite and PostgreSQL."""

from todoapi.db import db
from todoapi.models import Todo, TodoTag, User


def test_seed_creates_users_todos_and_tag_rows(app, client):
    result = app.test_cli_runner().invoke(
        args=[
            "seed",
            "--users",
            "3",
            "--todos",
            "40",
            "--heavy-todos",
            "2500",
            "--password",
            "seeded-password",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "created 3 users and 2580 todos" in result.output
    with app.app_context(), db.connection_context():
        assert User.select().count() == 3 and Todo.select().count() == 2580
        tagged = sum(len(todo.tags) for todo in Todo.select(Todo.tags))
        assert TodoTag.select().count() == tagged > 0
        heavy = User.get(User.email == "seed0@example.com")
        assert Todo.select().where(Todo.user == heavy).count() == 2500
    login = client.post("/auth/login", json={"email": "seed1@example.com", "password": "seeded-password"})
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json['access_token']}"}
    page = client.get("/todos?tag=work", headers=headers).json
    assert all("work" in todo["tags"] for todo in page["items"])


def test_create_user_and_migrate(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["create-user", "Ops@Example.com", "--password", "long-enough-pw"])
    assert created.exit_code == 0 and "ops@example.com" in created.output
    assert (
        runner.invoke(args=["create-user", "ops@example.com", "--password", "long-enough-pw"]).exit_code != 0
    )
    assert runner.invoke(args=["create-user", "x@example.com", "--password", "short"]).exit_code != 0
    migrated = runner.invoke(args=["migrate"])
    assert migrated.exit_code == 0 and "up to date" in migrated.output
