"""All tables in one place: the migrations and the foreign-key graph want one module."""

from datetime import UTC, datetime
from typing import Any

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    JSONField,
    Model,
    NodeList,
    TextField,
    fn,
)

from todoapi.db import db, is_sqlite

# Row ids are PostgreSQL `serial` (int4): a larger id names nothing, and sent as a parameter it is an
# error, not an empty answer. SQLite's would go further, but no table gets there.
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTimeField(DateTimeField):
    """Stored as naive UTC on both databases; always read back as an aware UTC datetime."""

    def db_value(self, value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class RowIdField(AutoField):
    """An id never handed out twice, as PostgreSQL's serial: on SQLite `AUTOINCREMENT` (migration
    0009), without which a new row takes the id of the newest row deleted before it."""

    def ddl(self, ctx: Any) -> NodeList:
        ddl = super().ddl(ctx)
        return NodeList((ddl, SQL("AUTOINCREMENT"))) if is_sqlite(self.model._meta.database) else ddl


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Any:
        """A model from a `cls.select()` row as the driver returns it: what peewee's result wrapper
        does, without its per-query set-up (for queries whose SQL is built once)."""
        fields = cls._meta.sorted_fields
        values = {field.name: field.python_value(value) for field, value in zip(fields, row, strict=True)}
        instance = cls(__no_default__=1, **values)
        instance._dirty.clear()  # type: ignore[attr-defined]  # a later save() writes only what changes
        return instance

    def stored_as(self, pk: Any) -> None:
        """This instance was written by SQL of our own under `pk`: as after save(), a later save()
        writes only what changes."""
        self._pk = pk
        self._dirty.clear()  # type: ignore[attr-defined]


class User(BaseModel):
    id = RowIdField()
    # Stored trimmed and lower-cased; a unique index on lower(email) backs it (migration 0001).
    email = CharField(max_length=320)
    password_hash = CharField(max_length=255)
    timezone = CharField(max_length=64, default="UTC")
    webhook_url = TextField(null=True)
    webhook_secret = CharField(max_length=128, null=True)
    created_at = UTCDateTimeField(default=utcnow)
    # Bumped in the same transaction as every change to the user's todos (migration 0004).
    todo_revision = BigIntegerField(default=0)

    class Meta:
        table_name = "users"


User.add_index(User.index(fn.LOWER(User.email), unique=True, name="users_email_lower"))


class Session(BaseModel):
    """One login. Its tokens carry its id; deleting the row ends them all (logout, password change)."""

    id = CharField(primary_key=True, max_length=32)
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE", index=True)
    refresh_jti = CharField(max_length=64)
    created_at = UTCDateTimeField(default=utcnow)
    # When its newest refresh token expires (migration 0010; none for sessions from before it).
    expires_at = UTCDateTimeField(null=True, index=True)

    class Meta:
        table_name = "sessions"


class Todo(BaseModel):
    id = RowIdField()
    user = ForeignKeyField(User, backref="todos", on_delete="CASCADE", index=False)
    title = CharField(max_length=200)
    description = TextField(default="")
    done = BooleanField(default=False)
    priority = IntegerField(default=3)
    due_date = DateField(null=True)
    # The todo's tags as shown; `todo_tags` holds the same set as rows so that
    # "this user's todos carrying tag X" is an index lookup. Both are written together.
    tags = JSONField(default=list)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "todos"
        # Every list access path starts with the owner; `id` last gives the tie-break order.
        indexes = (
            (("user", "created_at", "id"), False),
            (("user", "updated_at", "id"), False),
            (("user", "due_date", "id"), False),
            (("user", "done", "id"), False),
        )


# Index-ordered pages for "most urgent first" and for title order; migration 0005 has each
# dialect's exact form (undated todos last).
Todo.add_index(
    Todo.index(Todo.user, Todo.priority.desc(), Todo.due_date, Todo.id.desc(), name="todos_user_urgency")
)
Todo.add_index(Todo.index(Todo.user, fn.LOWER(Todo.title), Todo.id, name="todos_user_title"))


def _database_kept(name: str) -> TextField:
    """A lowered copy of a todo's text, kept beside it: PostgreSQL computes it (migration 0007),
    SQLite has it written by `todos.services` (0008). Queries name it; the model neither selects
    nor writes it."""
    field = TextField()
    field.bind(Todo, name, set_attribute=False)
    return field


TITLE_FOLDED = _database_kept("title_folded")  # lower(title)
DESCRIPTION_FOLDED = _database_kept("description_folded")  # lower(description)


class TodoTag(BaseModel):
    todo = ForeignKeyField(Todo, backref="tag_rows", on_delete="CASCADE", index=False)
    user = ForeignKeyField(User, on_delete="CASCADE", index=False)
    tag = CharField(max_length=50)
    # The todo's created_at, copied (it never changes): a tag's newest-first page is an index range.
    created_at = UTCDateTimeField()

    class Meta:
        table_name = "todo_tags"
        primary_key = CompositeKey("todo", "tag")
        indexes = ((("user", "tag", "created_at", "todo"), False),)


class IdempotencyKey(BaseModel):
    """The first response to a keyed `POST /todos`, replayed for retries within 24 h."""

    id = RowIdField()
    user = ForeignKeyField(User, on_delete="CASCADE", index=False)
    key = CharField(max_length=255)
    fingerprint = CharField(max_length=64)
    status = IntegerField(null=True)
    body = TextField(null=True)
    location = TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "idempotency_keys"
        indexes = ((("user", "key"), True),)


# The due-soon scan walks open todos by due date across all users; the partial index keeps
# its cost proportional to the open todos due in the scan window, not to the table.
Todo.add_index(Todo.index(Todo.due_date, Todo.id, where=(Todo.done == False), name="todos_open_due_date"))  # noqa: E712


class Notification(BaseModel):
    """One per (todo, due date): the unique index is what makes "exactly once" hold."""

    id = RowIdField()
    user = ForeignKeyField(User, on_delete="CASCADE", index=False)
    todo = ForeignKeyField(Todo, on_delete="CASCADE", index=False)
    kind = CharField(max_length=32, default="due_soon")
    title = CharField(max_length=200)
    due_date = DateField()
    created_at = UTCDateTimeField(default=utcnow)
    read_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "notifications"
        indexes = (
            (("todo", "due_date"), True),
            (("user", "created_at", "id"), False),
        )


class Delivery(BaseModel):
    """A notification's trip through one channel (webhook, email), with its attempts."""

    id = RowIdField()
    notification = ForeignKeyField(Notification, backref="deliveries", on_delete="CASCADE", index=False)
    channel = CharField(max_length=16)
    status = CharField(max_length=16, default="pending")
    attempts = IntegerField(default=0)
    last_error = TextField(null=True)
    # Set while a job holds the delivery; lets a lost job be re-enqueued, and never two at once.
    lease_until = UTCDateTimeField(null=True)
    next_attempt_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "deliveries"
        indexes = (
            (("notification", "channel"), True),
            (("status", "next_attempt_at"), False),
        )


MODELS = [User, Session, Todo, TodoTag, IdempotencyKey, Notification, Delivery]
