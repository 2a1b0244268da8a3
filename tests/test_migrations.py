"""migrations/ is the schema's only author: idempotent, complete, and indexed as the models say."""

from peewee import IntegrityError
from playhouse.migrations import Runner
from playhouse.schema_diff import diff_models

from todoapi.db import MIGRATIONS_DIR, db, is_postgres, migrate
from todoapi.models import MODELS, Session, Todo, TodoTag, User


def test_schema_matches_the_models(app):
    with app.app_context():
        assert migrate(db.obj) == []  # already applied by the fixtures: a second run is a no-op
        diff = diff_models(db.obj, MODELS)
        # PostgreSQL's lowered copies for `?q=` (migration 0007): computed by the database, not modelled.
        kept = [("todos", "title_folded"), ("todos", "description_folded")] if is_postgres() else []
        assert sorted(diff.drop_columns) == sorted(kept), str(diff)
        diff.drop_columns.clear()
        assert not diff, str(diff)
        applied = {name for name, _ in Runner(db.obj, str(MIGRATIONS_DIR)).applied().items()}
        assert applied == {path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py")}


def test_access_path_indexes_exist(app):
    with app.app_context():
        indexes = {
            index.name: index.columns
            for table in ("todos", "todo_tags", "users")
            for index in db.get_indexes(table)
        }
        expected = {
            "todo_user_id_created_at_id": ["user_id", "created_at", "id"],
            "todo_user_id_due_date_id": ["user_id", "due_date", "id"],
            "todo_user_id_done_id": ["user_id", "done", "id"],
            "todotag_user_id_tag_created_at_todo_id": ["user_id", "tag", "created_at", "todo_id"],
        }
        for name, columns in expected.items():
            assert indexes[name] == columns, name
        assert {"users_email_lower", "todos_user_urgency", "todos_user_title"} <= set(indexes)


def test_email_uniqueness_is_case_insensitive_in_the_database(app):
    with app.app_context():
        User.create(email="ann@example.com", password_hash="x")
        try:
            with db.atomic():
                User.insert(email="ANN@example.com", password_hash="x").execute()
        except IntegrityError:
            pass
        else:
            raise AssertionError("a second account differing only in case was stored")
        assert User.select().count() == 1


def test_cascade_deletes_follow_the_user(app, client, auth):
    client.post("/todos", json={"title": "x", "tags": ["a", "b"]}, headers=auth)
    with app.app_context():
        User.delete().execute()
        assert (Todo.select().count(), TodoTag.select().count(), Session.select().count()) == (0, 0, 0)
        assert is_postgres() != app.config["DATABASE_URL"].startswith("sqlite")
