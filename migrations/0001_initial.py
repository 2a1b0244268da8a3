"""Users, their sessions, todos and the tag index."""

import datetime

from peewee import *


def up(migrator, db):
    class User(Model):
        id = AutoField()
        email = CharField(max_length=320)
        password_hash = CharField(max_length=255)
        timezone = CharField(max_length=64, default="UTC")
        webhook_url = TextField(null=True)
        webhook_secret = CharField(max_length=128, null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            database = db
            table_name = "users"

    class Session(Model):
        id = CharField(primary_key=True, max_length=32)
        user = ForeignKeyField(User, on_delete="CASCADE", index=True)
        refresh_jti = CharField(max_length=64)
        created_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            database = db
            table_name = "sessions"

    class Todo(Model):
        id = AutoField()
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        title = CharField(max_length=200)
        description = TextField(default="")
        done = BooleanField(default=False)
        priority = IntegerField(default=3)
        due_date = DateField(null=True)
        tags = JSONField(default=list)
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            database = db
            table_name = "todos"
            indexes = (
                (("user", "created_at", "id"), False),
                (("user", "updated_at", "id"), False),
                (("user", "due_date", "id"), False),
                (("user", "done", "id"), False),
            )

    class TodoTag(Model):
        todo = ForeignKeyField(Todo, on_delete="CASCADE", index=False)
        user = ForeignKeyField(User, on_delete="CASCADE", index=False)
        tag = CharField(max_length=50)

        class Meta:
            database = db
            table_name = "todo_tags"
            primary_key = CompositeKey("todo", "tag")
            indexes = ((("user", "tag", "todo"), False),)

    db.create_tables([User, Session, Todo, TodoTag])
    # Emails are stored lower-cased; the expression index makes uniqueness case-insensitive
    # even for rows written by hand, and serves `lower(email) = ?` lookups.
    db.execute_sql("CREATE UNIQUE INDEX users_email_lower ON users (lower(email))")


def down(migrator, db):
    for table in ("todo_tags", "todos", "sessions", "users"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
