"""migrations/ is the schema's only author: idempotent, complete, and indexed as the models say."""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from peewee import AutoField, IntegrityError
from playhouse.migrations import Runner
from playhouse.schema_diff import diff_models

from tests.conftest import PASSWORD
from todoapi.db import MIGRATIONS_DIR, db, is_postgres, migrate, open_database
from todoapi.models import MODELS, Session, Todo, TodoTag, User
from todoapi.notifications import services


def test_schema_matches_the_models(app):
    with app.app_context():
        assert migrate(db.obj) == []  # already applied by the fixtures: a second run is a no-op
        diff = diff_models(db.obj, MODELS)
        # The lowered copies for `?q=` and the title order (migrations 0007, 0008): not modelled.
        kept = [("todos", "title_folded"), ("todos", "description_folded")]
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


PLAIN = '"id" INTEGER NOT NULL PRIMARY KEY'
AUTOINCREMENT = f"{PLAIN} AUTOINCREMENT"


def test_ids_are_declared_as_migrated(app):
    """Every table's own id is never reused (SQLite: AUTOINCREMENT, migration 0009), but the
    runner's bookkeeping's; and the models declare their ids as the migrations made them."""
    with app.app_context():
        if not is_postgres():
            plain = db.execute_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND sql LIKE '%\"id\" INTEGER NOT NULL PRIMARY KEY%' AND sql NOT LIKE '%AUTOINCREMENT%'"
            ).fetchall()
            assert plain == [("schema_migration",)]
        for model in MODELS:
            if not isinstance(model._meta.primary_key, AutoField):
                continue
            declared, _ = model._schema._create_table(safe=False).query()
            if is_postgres():
                assert '("id" SERIAL NOT NULL PRIMARY KEY, ' in declared, declared
                continue
            [stored] = db.execute_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (model._meta.table_name,)
            ).fetchone()
            assert stored.startswith(f'CREATE TABLE "{model._meta.table_name}" ({AUTOINCREMENT}, '), stored
            assert declared.startswith(f'CREATE TABLE "{model._meta.table_name}" ({AUTOINCREMENT}, '), (
                declared
            )


# --- 0009: SQLite's tables rebuilt with AUTOINCREMENT --------------------------------------------------

REBUILT = ("users", "todos", "idempotency_keys", "notifications", "deliveries")
BEFORE_0009 = "0008_sqlite_folded_text"
NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)


def migrated_until(path: Path, last: str) -> None:
    database = open_database(f"sqlite:///{path}")
    with database.connection_context():
        Runner(database, str(MIGRATIONS_DIR)).up(last)
    database.close_all()


def snapshot(path: Path) -> dict[str, Any]:
    """The schema as SQLite stores it (less root pages), every row, each table's indexes and foreign
    keys as SQLite reports them, and the sequences; read through a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        sequence = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
        return {
            "schema": connection.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                " WHERE name != 'sqlite_sequence' ORDER BY type, name"
            ).fetchall(),
            "rows": {
                table: connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()  # noqa: S608
                for table in tables
                if table != "schema_migration"
            },
            # (name, unique, origin, partial) of each index, and every column of each.
            "indexes": {
                table: sorted(
                    (*index[1:], connection.execute(f'PRAGMA index_xinfo("{index[1]}")').fetchall())
                    for index in connection.execute(f'PRAGMA index_list("{table}")')
                )
                for table in tables
            },
            "foreign_keys": {
                table: connection.execute(f'PRAGMA foreign_key_list("{table}")').fetchall()
                for table in tables
            },
            "sequence": dict(connection.execute("SELECT name, seq FROM sqlite_sequence")) if sequence else {},
            "checks": (
                connection.execute("PRAGMA integrity_check").fetchall(),
                connection.execute("PRAGMA foreign_key_check").fetchall(),
            ),
        }
    finally:
        connection.close()


def with_autoincrement(schema: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [
        (kind, name, table, sql.replace(PLAIN, AUTOINCREMENT) if kind == "table" and name in REBUILT else sql)
        for kind, name, table, sql in schema
    ]


def log_in(client: FlaskClient, email: str) -> dict[str, str]:
    created = client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.json
    token = client.post("/auth/login", json={"email": email, "password": PASSWORD}).json["access_token"]
    return {"Authorization": f"Bearer {token}"}


def create_todo(client: FlaskClient, auth: dict[str, str], body: dict[str, Any], **headers: str) -> Any:
    response = client.post("/todos", json=body, headers={**auth, **headers})
    assert response.status_code == 201, response.json
    return response


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_0009_keeps_every_row_index_and_key_and_ids_continue_above_them(make_app, tmp_path):
    path = tmp_path / "before-0009.db"
    migrated_until(path, BEFORE_0009)
    # Today's code writes the rows, and its logins record a session's expiry (0010): the column
    # stands in for that migration while they are written, and goes again before 0009 runs.
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE sessions ADD COLUMN expires_at DATETIME")
    app = make_app(DATABASE_URL=f"sqlite:///{path}", WEBHOOK_ALLOW_PRIVATE=True)
    client = app.test_client()
    ann, bob = log_in(client, "ann@example.com"), log_in(client, "bob@example.com")
    assert (
        client.patch("/me", json={"webhook_url": "http://127.0.0.1:9/hook"}, headers=ann).status_code == 200
    )
    today = NOW.date().isoformat()
    for auth, tags in ((ann, ["home", "Work"]), (ann, []), (bob, ["x", "y", "z"]), (bob, ["home"])):
        create_todo(client, auth, {"title": f"{tags}", "tags": tags, "due_date": today})
    create_todo(client, ann, {"title": "undated", "tags": ["later"]})
    # The newest todo, deleted: its id is named only by the key's stored first response.
    keyed = create_todo(client, ann, {"title": "keyed"}, **{"Idempotency-Key": "k-1"})
    assert client.delete(keyed.headers["Location"], headers=ann).status_code == 204
    with app.app_context():
        report = services.scan_due_soon(now=NOW)
    assert (len(report.notified), len(report.deliveries)) == (4, 2)
    db.obj.close_all()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE sessions DROP COLUMN expires_at")
    before = snapshot(path)
    assert all(before["rows"][table] for table in (*REBUILT, "sessions", "todo_tags"))

    database = open_database(f"sqlite:///{path}")
    with database.connection_context():
        assert Runner(database, str(MIGRATIONS_DIR)).up(target="0009_ids_never_reused") == [
            "0009_ids_never_reused"
        ]
    database.close_all()

    after = snapshot(path)
    assert after["schema"] == with_autoincrement(before["schema"])
    assert after["schema"] != before["schema"]
    for part in ("rows", "indexes", "foreign_keys"):
        assert after[part] == before[part], part
    assert after["checks"] == ([("ok",)], [])
    largest = {table: max(row[0] for row in before["rows"][table]) for table in REBUILT}
    assert after["sequence"] == largest | {"todos": keyed.json["id"]}
    assert largest["todos"] < keyed.json["id"]

    database = open_database(f"sqlite:///{path}")
    assert migrate(database)[:1] == ["0010_session_expiry"]
    assert migrate(database) == []
    database.close_all()

    # The old sessions still work; new rows get ids above every id handed out before.
    app = make_app(DATABASE_URL=f"sqlite:///{path}", WEBHOOK_ALLOW_PRIVATE=True)
    client = app.test_client()
    todo = create_todo(client, ann, {"title": "after", "due_date": today}).json["id"]
    replay = create_todo(client, ann, {"title": "keyed"}, **{"Idempotency-Key": "k-1"})
    carol = client.post("/auth/register", json={"email": "carol@example.com", "password": PASSWORD})
    with app.app_context():
        report = services.scan_due_soon(now=NOW)
    [notified], [delivery] = report.notified, report.deliveries
    assert todo > keyed.json["id"]
    assert replay.headers["Location"] == keyed.headers["Location"]
    assert client.get(replay.headers["Location"], headers=ann).status_code == 404
    assert carol.json["id"] > largest["users"]
    assert notified["id"] > largest["notifications"] and delivery > largest["deliveries"]


def test_0009_down_restores_the_schema_as_it_was(tmp_path):
    path = tmp_path / "todo.db"
    migrated_until(path, BEFORE_0009)
    before = snapshot(path)
    database = open_database(f"sqlite:///{path}")
    with database.connection_context():
        runner = Runner(database, str(MIGRATIONS_DIR))
        assert runner.up(target="0009_ids_never_reused") == ["0009_ids_never_reused"]
        assert runner.down() == ["0009_ids_never_reused"]
    database.close_all()

    after = snapshot(path)

    assert after["schema"] == before["schema"] and after["indexes"] == before["indexes"]
    assert after["checks"] == ([("ok",)], []) and after["sequence"] == {}


def test_sqlite_lowered_copies_are_filled_in_for_existing_todos(tmp_path):
    """Migration 0008 on a database with todos from before it: their lowered copies, by str.lower."""
    database = open_database(f"sqlite:///{tmp_path / 'old.db'}")
    with database.connection_context():
        Runner(database, str(MIGRATIONS_DIR)).up(target="0007_folded_text")
        database.execute_sql(
            "INSERT INTO users (email, password_hash, timezone, created_at)"
            " VALUES ('a@b.c', 'x', 'UTC', '2026-01-01')"
        )
        database.execute_sql(
            "INSERT INTO todos (user_id, title, description, done, priority, tags, created_at, updated_at)"
            " VALUES (1, 'ÄRGER \u00c9', 'Ωmega', 0, 3, '[]', '2026-01-01', '2026-01-01')"
        )

        assert migrate(database)[:2] == ["0008_sqlite_folded_text", "0009_ids_never_reused"]

        row = database.execute_sql("SELECT title_folded, description_folded FROM todos").fetchone()
        assert row == ("ärger \u00e9", "ωmega")
        [index] = database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'todos_user_title'"
        ).fetchall()
        assert "title_folded" in index[0]


def test_0011_refolds_sqlites_copies_that_str_lower_made_unlike_postgresqls(tmp_path):
    """Only rows holding Σ or İ change: their copies become PostgreSQL's lower() of the text; down
    puts str.lower's back."""
    database = open_database(f"sqlite:///{tmp_path / 'old.db'}")
    texts = [("ΣΊΣΥΦΟΣ", "x"), ("x", "İSTANBUL"), ("ÄRGER", "Ωmega")]
    with database.connection_context():
        runner = Runner(database, str(MIGRATIONS_DIR))
        runner.up(target="0010_session_expiry")
        database.execute_sql(
            "INSERT INTO users (email, password_hash, timezone, created_at)"
            " VALUES ('a@b.c', 'x', 'UTC', '2026-01-01')"
        )
        for title, description in texts:
            database.execute_sql(
                "INSERT INTO todos (user_id, title, description, done, priority, tags, created_at,"
                " updated_at, title_folded, description_folded)"
                " VALUES (1, ?, ?, 0, 3, '[]', '2026-01-01', '2026-01-01', ?, ?)",
                (title, description, title.lower(), description.lower()),
            )

        def copies() -> list[tuple[str, str]]:
            return database.execute_sql(
                "SELECT title_folded, description_folded FROM todos ORDER BY id"
            ).fetchall()

        before = copies()
        assert runner.up() == ["0011_sqlite_fold_as_postgresql"]
        assert copies() == [("σίσυφοσ", "x"), ("x", "istanbul"), ("ärger", "ωmega")]
        assert runner.down() == ["0011_sqlite_fold_as_postgresql"]
        assert copies() == before
    database.close_all()
