"""Todo rules and queries. Every query is scoped to its owner."""

import hashlib
import json
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

import orjson
from peewee import (
    OP,
    SQL,
    Case,
    Cast,
    Expression,
    IntegrityError,
    JSONField,
    ModelSelect,
    ModelUpdate,
    Node,
    NodeList,
    Select,
    Value,
    fn,
)

from todoapi.db import (
    Slot,
    Statement,
    compile_once,
    db,
    dialect,
    execute_together,
    fill,
    for_update,
    is_postgres,
    is_sqlite,
    planned_each_time,
    sql_for,
    write_transaction,
)
from todoapi.errors import NotFound, PreconditionFailed, Unauthorized, Unprocessable
from todoapi.models import (
    DESCRIPTION_FOLDED,
    MAX_ID,
    TITLE_FOLDED,
    IdempotencyKey,
    Session,
    Todo,
    TodoTag,
    User,
    utcnow,
)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
SORT_COLUMNS: dict[str, Any] = {
    "created_at": Todo.created_at,
    "updated_at": Todo.updated_at,
    "priority": Todo.priority,
    "due_date": Todo.due_date,
    "title": fn.LOWER(Todo.title),
}
# SQLite's lower() folds A-Z only: there the application keeps lowered copies (migration 0008).
FOLDED_COPIES = {"title": TITLE_FOLDED, "description": DESCRIPTION_FOLDED}
_COPY_OF = {source: copy.name for source, copy in FOLDED_COPIES.items()}  # "title": "title_folded"
_SOURCE_OF = {copy: source for source, copy in _COPY_OF.items()}


def fold(text: str) -> str:
    """The lowered copy SQLite keeps of a title or description, and the search text's form there:
    PostgreSQL's lower() (which keeps them there), each character's own lowercase. Python's
    str.lower differs twice: a word-final Σ becomes ς, and İ becomes i with a combining dot."""
    text = text.replace("\u0130", "i")  # İ
    if "\u03a3" in text:  # Σ: one character at a time, so that none becomes ς
        return "".join(char.lower() for char in text)
    return text.lower()


def folded_copies(values: dict[str, Any]) -> dict[Any, str]:
    """The lowered copies of a todo's text (`values` by field name), by column: SQLite's to write."""
    return {copy: fold(values[source]) for source, copy in FOLDED_COPIES.items()}


def _sort_column(key: str) -> Any:
    return FOLDED_COPIES["title"] if key == "title" and is_sqlite() else SORT_COLUMNS[key]


# Checks a todo's current state against the client's If-Match; None when none was sent.
Precondition = Callable[[Todo], bool] | None
# The first response to a keyed create: (body, Location).
Render = Callable[[Todo], tuple[dict[str, Any], str]]


class Caller(Protocol):
    """Who the token names: a read that also requires their session to exist answers for the session
    check (`login_required_in_query`); one that finds rows says so with `seen()`."""

    user_id: int
    session_id: str

    def seen(self) -> None: ...

    def account(self) -> User: ...


def _session_is_live(user: Any, session: Any) -> Node:
    """Whether `session` is a live session of `user`: uncorrelated, so evaluated once per query."""
    return fn.EXISTS(Session.select(SQL("1")).where((Session.id == session) & (Session.user == user)))


@dataclass(frozen=True)
class Replay:
    """A stored response to send again instead of creating a second todo."""

    status: int
    body: dict[str, Any]
    location: str


def _next_timestamp(previous: datetime | None = None) -> datetime:
    """Now, but strictly after `previous`, so `updated_at` moves on every change."""
    now = utcnow()
    if previous is not None and now <= previous:
        now = previous + timedelta(microseconds=1)
    return now


# PostgreSQL stamps a change with its own clock, read once the change holds the owner's row (its
# revision bump, kept to commit). One owner's changes are then stamped in the order they commit,
# whichever process or machine served them, so `updated_since=<the latest updated_at seen>` misses
# none. SQLite runs one write transaction at a time and stamps inside it.
_CLOCK = SQL("clock_timestamp() AT TIME ZONE 'UTC'")


class RevisionCache:
    """Answers computed from one revision of a user's todos (process-local, bounded).

    Every change to a user's todos bumps `users.todo_revision` in its own transaction, and the
    revision is part of the key: after a change no request can reach the older entries, so what
    is served is exact for the revision the request read (and ages out of the bounded dict).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            return self._entries[key]
        except KeyError:
            pass
        value = compute()
        with self._lock:
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]  # the oldest insertion
            self._entries[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Counting a 100,000-todo account takes tens of milliseconds; its revision changes far less often.
TOTALS = RevisionCache(10_000)
STATS = RevisionCache(10_000)


def _bump(owner: Expression) -> ModelUpdate:
    """The revision bump of the account `owner` selects: every change to its todos runs one."""
    return User.update(todo_revision=User.todo_revision + 1).where(owner)


@lru_cache(maxsize=4)
def _bump_revision_sql(dialect: str) -> str:
    return sql_for(_bump(User.id == -1), 1, -1)


def _revision_bump(user_id: int) -> Statement:
    # Every write runs it (in the same round trip as another statement): its SQL is built once.
    return _bump_revision_sql(dialect()), (1, user_id)


def todo_json(todo: Todo) -> dict[str, Any]:
    """A todo as the API shows it: what `TodoSchema().dump` gives, without its per-field overhead
    (a list page is 50 of these; tests hold the two equal)."""
    return _row_json(tuple(getattr(todo, column.name) for column in TODO_COLUMNS))


def _utc_text(value: Any) -> str:
    """A UTC instant as the API writes it, from a model (aware datetime) or straight from the driver:
    naive UTC, or text (`_read_columns`). PostgreSQL's text drops a fraction's trailing zeros, where
    isoformat (and so SQLite's text) writes six digits."""
    if isinstance(value, str):
        if 19 < len(value) < 26:
            value = value.ljust(26, "0")
        return f"{value[:10]}T{value[11:]}+00:00"
    return str(value.isoformat()) if value.tzinfo is not None else f"{value.isoformat()}+00:00"


def _row_json(row: tuple[Any, ...], tags_as_text: bool = False) -> dict[str, Any]:
    """A todo's body from its TODO_COLUMNS values, as a model holds them or as the driver returns
    them (no peewee converters: half the cost of a page). SQLite hands back text for dates and
    JSON, and 0/1 for booleans.

    `tags_as_text`: the tags are the database's JSON text (`_page_statement`), embedded in the
    response as they are (an orjson Fragment) rather than parsed only to be encoded again: a page's
    bodies go straight to orjson. A single todo's body keeps the list: its ETag hashes the body, and
    must come out the same from a row as from the model a `PATCH` renders (PostgreSQL's text of a
    jsonb list spaces its items; the encoder does not)."""
    todo_id, title, description, done, priority, due_date, tags, created_at, updated_at = row[:9]
    if tags_as_text:
        tags = orjson.Fragment(tags)
    elif isinstance(tags, str):
        tags = json.loads(tags)
    return {
        "id": todo_id,
        "title": title,
        "description": description,
        "done": bool(done),
        "priority": priority,
        "due_date": due_date if due_date is None or isinstance(due_date, str) else due_date.isoformat(),
        "tags": tags,
        "created_at": _utc_text(created_at),
        "updated_at": _utc_text(updated_at),
    }


TAG_ROW_FIELDS: tuple[Any, ...] = (TodoTag.todo, TodoTag.user, TodoTag.tag, TodoTag.created_at)


@lru_cache(maxsize=64)
def _insert_tags_statement(dialect: str, count: int) -> tuple[str, tuple[Any, ...]]:
    rows = [{field: Slot((n, field.name)).value() for field in TAG_ROW_FIELDS} for n in range(count)]
    return compile_once(TodoTag.insert_many(rows))


@lru_cache(maxsize=4)
def _delete_tags_sql(dialect: str) -> str:
    return sql_for(TodoTag.delete().where(TodoTag.todo == -1), -1)


def _tag_rows(user_id: int, todo: Todo, replace: bool = False) -> list[Statement]:
    """The statements that give `todo` its tag rows (replacing the old ones), to run by the caller."""
    statements: list[Statement] = []
    if replace:
        statements.append((_delete_tags_sql(dialect()), (todo.id,)))
    if todo.tags:
        sql, template = _insert_tags_statement(dialect(), len(todo.tags))
        created_at = TodoTag.created_at.db_value(todo.created_at)
        values = {
            (n, field.name): value
            for n, tag in enumerate(todo.tags)
            for field, value in zip(TAG_ROW_FIELDS, (todo.id, user_id, tag, created_at), strict=True)
        }
        statements.append((sql, fill(template, values)))
    return statements


TODO_COLUMNS = (
    Todo.id,
    Todo.title,
    Todo.description,
    Todo.done,
    Todo.priority,
    Todo.due_date,
    Todo.tags,
    Todo.created_at,
    Todo.updated_at,
)
INSERTED_FIELDS = (Todo.user, *TODO_COLUMNS[1:])  # the owner and every column but the id


def _inserted_fields() -> tuple[Any, ...]:
    return (*INSERTED_FIELDS, *FOLDED_COPIES.values()) if is_sqlite() else INSERTED_FIELDS


def _written_names(names: Iterable[str]) -> tuple[str, ...]:
    """The columns a change of `names` writes on SQLite: with the lowered copies of the text."""
    return tuple(written for name in names for written in (name, _COPY_OF.get(name)) if written)


_FIELDS_BY_NAME = {field.name: field for field in (*Todo._meta.sorted_fields, *FOLDED_COPIES.values())}


def _read_columns(tags_as_text: bool) -> tuple[Any, ...]:
    """TODO_COLUMNS as a page or one todo selects them for `_row_json`. On PostgreSQL the dates and
    timestamps (and a page's tags) are cast to text in the query, so the driver hands over the
    server's ISO text (ISO is the DateStyle psycopg2's own date parsing needs too) without a
    converter per value; SQLite's driver gives text already. What the API shows is that text
    re-punctuated: a page skips building 100 datetimes only to format them again (~80 of a page's
    ~200 µs in the client), and casting in SQL rather than by a converter registered with the
    driver saves a Python call per value (~10 µs a page)."""
    if not is_postgres():
        return TODO_COLUMNS
    names = {"due_date", "created_at", "updated_at", *(("tags",) if tags_as_text else ())}
    return tuple(Cast(column, "text") if column.name in names else column for column in TODO_COLUMNS)


def _column_values(todo: Todo, fields: Iterable[Any]) -> dict[str, Any]:
    """`todo`'s values for `fields` as parameters, by field name. JSON goes as text: JSONField's
    converter wraps the value in SQL instead (SQLite: `json(?)`), and both columns take the text."""
    return {field.name: _column_value(todo, field) for field in fields}


def _column_value(todo: Todo, field: Any) -> Any:
    if isinstance(field, JSONField):
        return json.dumps(todo.tags, separators=(",", ":"))
    if field.name in _SOURCE_OF:  # a lowered copy (SQLite)
        return fold(todo.__data__[_SOURCE_OF[field.name]])
    return field.db_value(todo.__data__[field.name])


_STAMPS = ("created_at", "updated_at")  # names: `field in (fields)` would compare with peewee's SQL `==`


@lru_cache(maxsize=4)
def _insert_todo_statement(dialect: str) -> tuple[str, tuple[Any, ...]]:
    if not is_postgres():
        return compile_once(Todo.insert({field: Slot(field.name).value() for field in _inserted_fields()}))
    account, insert = _stamped_insert(User.id == Slot("user").value())
    return compile_once(insert.with_cte(account))


def _stamped_insert(owner: Expression) -> tuple[Any, Any]:
    """PostgreSQL: the revision bump of the account `owner` selects (a CTE), and the todo's INSERT
    fed by it, stamped with the database's clock as read once the bump holds the account's row
    (`_CLOCK`); nothing is inserted when `owner` selects no account. The INSERT returns the id and
    the stamp (`_stored`)."""
    account = _bump(owner).returning(User.id, _CLOCK.alias("now")).cte("account")
    values = [
        account.c.now
        if field.name in _STAMPS
        else Cast(Slot(field.name).value(), _INSERT_CASTS[field.name])
        if field.name in _INSERT_CASTS
        else Slot(field.name).value()
        for field in INSERTED_FIELDS[1:]
    ]
    insert = Todo.insert_from(Select([account], [account.c.id, *values]), fields=list(INSERTED_FIELDS))
    return account, insert.returning(Todo.id, Todo.created_at)


def _stored(todo: Todo, todo_id: int, stamp: datetime) -> None:
    """`todo` was inserted under `todo_id` and stamped `stamp` by PostgreSQL (`_stamped_insert`)."""
    todo.created_at = todo.updated_at = Todo.created_at.python_value(stamp)
    todo.stored_as(todo_id)


def _new_todo(user_id: int, data: dict[str, Any]) -> Todo:
    now = _next_timestamp()
    return Todo(user=user_id, created_at=now, updated_at=now, **data)  # the model's defaults fill in the rest


def _insert_todo(user_id: int, data: dict[str, Any], last: bool = False, bumped: bool = False) -> Todo:
    """Insert a todo and its tag rows, with the revision bump; `last`: nothing else follows in this
    transaction; `bumped` (SQLite): the revision was already bumped in it."""
    todo = _new_todo(user_id, data)
    # What Todo.create() does, with the INSERT's SQL built once (a third of a create's CPU).
    sql, template = _insert_todo_statement(dialect())
    insert = (sql, fill(template, _column_values(todo, _inserted_fields())))
    if is_postgres():  # the statement bumps the revision itself
        _stored(todo, *execute_together(insert).fetchone())
    else:
        cursor = execute_together(*(() if bumped else (_revision_bump(user_id),)), insert)
        todo.stored_as(cursor.fetchone()[0] if " RETURNING " in sql else cursor.lastrowid)
    if todo.tags:
        execute_together(*_tag_rows(user_id, todo), commit=last)
    return todo


# Typed where INSERT … SELECT would otherwise take the parameter as text.
_INSERT_CASTS = {"due_date": "date", "tags": "jsonb"}


def _live_owner() -> Expression:
    """The caller's account while their session is live: a create's session check (nothing is read
    before its revision bump)."""
    user, session = Slot("user").value(), Slot("session").value()
    return (User.id == user) & _session_is_live(user, session)


@lru_cache(maxsize=4)
def _bump_if_live_statement(dialect: str) -> tuple[str, tuple[Any, ...]]:
    return compile_once(_bump(_live_owner()))


@lru_cache(maxsize=4)
def _create_statement(dialect: str) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the revision bump, the todo and its tag rows in one statement, each step feeding
    the next, and none of it unless the caller's session is live."""
    user = Slot("user").value()
    account, insert = _stamped_insert(_live_owner())
    todo = insert.cte("todo")
    tag = fn.unnest(Cast(Slot("tag_list").value(), "varchar[]")).alias("tag")
    tag_rows = (
        TodoTag.insert_from(
            Select([todo, tag], [todo.c.id, user, SQL('"tag"'), todo.c.created_at]),
            fields=list(TAG_ROW_FIELDS),
        )
        .returning()
        .cte("tag_rows")
    )
    return compile_once(
        Select([todo], [todo.c.id, todo.c.created_at]).with_cte(account, todo, tag_rows).bind(db)
    )


def create_todo(caller: Caller, data: dict[str, Any]) -> Todo:
    """A new todo of the caller's, written only while the caller's session is live: the revision
    bump checks it. On PostgreSQL one statement does everything (a statement is its own
    transaction): one round trip instead of three."""
    if not is_postgres():
        with db.atomic():
            sql, template = _bump_if_live_statement(dialect())
            values = {"user": caller.user_id, "session": caller.session_id}
            if db.execute_sql(sql, fill(template, values)).rowcount != 1:
                raise Unauthorized("The session has ended.")  # as below; the atomic block rolls back
            caller.seen()
            return _insert_todo(caller.user_id, data, last=True, bumped=True)
    todo = _new_todo(caller.user_id, data)
    sql, template = _create_statement(dialect())
    values = {**_column_values(todo, INSERTED_FIELDS), "session": caller.session_id, "tag_list": todo.tags}
    row = db.execute_sql(sql, fill(template, values)).fetchone()
    if row is None:  # nothing written: login_required_in_query answers with the session check's 401
        raise Unauthorized("The session has ended.")
    caller.seen()
    _stored(todo, *row)
    return todo


def create_todo_once(
    user_id: int, data: dict[str, Any], key: str, request_body: Any, render: Render
) -> Todo | Replay:
    """Create a todo unless this user already used `key` in the last 24 h; then replay that response.

    The key row is inserted in the same transaction as the todo: a concurrent request with the
    same key blocks on the unique index until this one commits, then finds the stored response.
    """
    fingerprint = _fingerprint(request_body)
    with write_transaction():
        expired = utcnow() - IDEMPOTENCY_WINDOW
        IdempotencyKey.delete().where(
            (IdempotencyKey.user == user_id)
            & (IdempotencyKey.key == key)
            & (IdempotencyKey.created_at < expired)
        ).execute()
        try:
            with db.atomic():
                record = IdempotencyKey.create(user=user_id, key=key, fingerprint=fingerprint)
        except IntegrityError:
            first = IdempotencyKey.get_or_none((IdempotencyKey.user == user_id) & (IdempotencyKey.key == key))
            if first is None:  # not the key's unique index but the account's foreign key: deleted
                raise Unauthorized("The session has ended.") from None
            if first.fingerprint != fingerprint:
                raise Unprocessable(
                    "This Idempotency-Key was already used with a different request body.",
                    {"headers": {"Idempotency-Key": ["Already used with a different body."]}},
                ) from None
            # Committed rows are complete: the key and its response are written in one transaction.
            status, stored, location = cast(tuple[int, str, str], (first.status, first.body, first.location))
            return Replay(status, json.loads(stored), location)
        todo = _insert_todo(user_id, data)
        body, location = render(todo)
        record.status, record.body, record.location = 201, json.dumps(body), location
        record.save()
    return todo


def _fingerprint(request_body: Any) -> str:
    canonical = json.dumps(request_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _one_todo(query: "ModelSelect[Todo]") -> tuple[str, tuple[Any, ...]]:
    """`query` narrowed to one of the caller's todos, while the caller's session is live."""
    user, session = Slot("user").value(), Slot("session").value()
    return compile_once(
        query.where((Todo.user == user) & (Todo.id == Slot("id").value()) & _session_is_live(user, session))
    )


# Built once per dialect: every GET /todos/{id} runs the first, every change starts with the second.
@lru_cache(maxsize=4)
def _todo_by_id_statement(dialect: str) -> tuple[str, tuple[Any, ...]]:
    return _one_todo(Todo.select(*_read_columns(tags_as_text=False)))


@lru_cache(maxsize=4)
def _locked_todo_statement(dialect: str) -> tuple[str, tuple[Any, ...]]:
    return _one_todo(for_update(Todo.select()))


def _caller_row(
    caller: Caller, todo_id: int, statement: tuple[str, tuple[Any, ...]], execute: Callable[..., Any]
) -> tuple[Any, ...]:
    """The row `statement` (from `_one_todo`) finds through `execute`; NotFound when none, which may
    also mean a dead session: login_required_in_query tells the two apart."""
    if todo_id > MAX_ID:
        raise NotFound("Todo not found.")
    sql, template = statement
    values = {"user": caller.user_id, "session": caller.session_id, "id": todo_id}
    row = execute(sql, fill(template, values)).fetchone()
    if row is None:
        raise NotFound("Todo not found.")
    caller.seen()
    return cast(tuple[Any, ...], row)


def get_todo_json(caller: Caller, todo_id: int) -> dict[str, Any]:
    """One of the caller's todos as the API shows it, straight from the driver's row; the same query
    checks the caller's session."""
    return _row_json(_caller_row(caller, todo_id, _todo_by_id_statement(dialect()), db.execute_sql))


def _get_locked(caller: Caller, todo_id: int, precondition: Precondition) -> Todo:
    row = _caller_row(caller, todo_id, _locked_todo_statement(dialect()), db.execute_sql)
    todo = cast(Todo, Todo.from_row(row))
    if precondition is not None and not precondition(todo):
        raise PreconditionFailed("The todo has changed since you read it (If-Match does not match).")
    return todo


@lru_cache(maxsize=128)
def _update_todo_statement(dialect: str, names: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    # SQLite: one shape per set of changed fields, what `todo.save(only=…)` runs, built once.
    query = Todo.update({_FIELDS_BY_NAME[name]: Slot(name).value() for name in names})
    return compile_once(query.where(Todo.id == Slot("id").value()))


# The stamp a change's statement leaves in the session (set_config, kept by COMMIT): read after the
# COMMIT in the same round trip, since a query string answers with its last statement's rows.
_STAMP_SETTING = "todoapi.stamp"
_READ_STAMP = f"SELECT current_setting('{_STAMP_SETTING}')::timestamp"


@lru_cache(maxsize=128)
def _stamped_update_statement(dialect: str, names: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the owner's revision bump, then the todo's change of `names` stamped with the
    database's clock as read after the bump holds the owner's row (`_CLOCK`), in one statement."""
    account = _bump(User.id == Slot("user").value()).returning(_CLOCK.alias("now")).cte("account")
    after_previous = Todo.updated_at + SQL("interval '1 microsecond'")
    values = {_FIELDS_BY_NAME[name]: Slot(name).value() for name in names}
    query = (
        Todo.update({**values, Todo.updated_at: fn.GREATEST(account.c.now, after_previous)})
        .from_(account)
        .where(Todo.id == Slot("id").value())
        .with_cte(account)
        .returning(fn.set_config(_STAMP_SETTING, Cast(Todo.updated_at, "text"), False))
    )
    return compile_once(query)


def update_todo(
    caller: Caller, todo_id: int, changes: dict[str, Any], precondition: Precondition = None
) -> Todo:
    user_id = caller.user_id
    with write_transaction():
        todo = _get_locked(caller, todo_id, precondition)
        changed = {name: value for name, value in changes.items() if getattr(todo, name) != value}
        if not changed:
            return todo
        for name, value in changed.items():
            setattr(todo, name, value)
        tags = _tag_rows(user_id, todo, replace=True) if "tags" in changed else []
        if is_postgres():
            sql, template = _stamped_update_statement(dialect(), tuple(sorted(changed)))
            fields = [_FIELDS_BY_NAME[name] for name in changed]
            values = {**_column_values(todo, fields), "id": todo.id, "user": user_id}
            cursor = execute_together(*tags, (sql, fill(template, values)), commit=True, then=_READ_STAMP)
            todo.updated_at = Todo.updated_at.python_value(cursor.fetchone()[0])
            return todo
        # SQLite: this transaction is the only writer (BEGIN IMMEDIATE), so now is in commit order.
        todo.updated_at = _next_timestamp(todo.updated_at)
        names = _written_names((*sorted(changed), "updated_at"))
        sql, template = _update_todo_statement(dialect(), names)
        fields = [_FIELDS_BY_NAME[name] for name in names]
        execute_together(
            (sql, fill(template, {**_column_values(todo, fields), "id": todo.id})),
            *tags,
            _revision_bump(user_id),
            commit=True,
        )
    return todo


@lru_cache(maxsize=4)
def _delete_todo_sql(dialect: str) -> str:
    return sql_for(Todo.delete().where(Todo.id == -1), -1)


def delete_todo(caller: Caller, todo_id: int, precondition: Precondition = None) -> None:
    with write_transaction():
        todo = _get_locked(caller, todo_id, precondition)
        execute_together(
            (_delete_todo_sql(dialect()), (todo.id,)), _revision_bump(caller.user_id), commit=True
        )


# Where each filter's value goes, and through which column's converter.
FILTER_FIELDS: dict[str, Any] = {
    "done": Todo.done,
    "priority": Todo.priority,
    "due_before": Todo.due_date,
    "due_after": Todo.due_date,
    "updated_since": Todo.updated_at,
}


def _filter_values(user_id: int, args: dict[str, Any]) -> dict[str, Any]:
    """The owner and the filters in `args`, converted as the database takes them. Which names are
    present (and how many tags) is the query's shape; see `_page_statement`."""
    values: dict[str, Any] = {"user": user_id}
    for name, field in FILTER_FIELDS.items():
        if name in args:
            values[name] = field.db_value(args[name])
    if "q" in args:
        text = fold(args["q"]) if is_sqlite() else args["q"]  # PostgreSQL lowers it in the query
        escaped = text.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
        values["q"] = f"%{escaped}%"
    for position, tag in enumerate(args.get("tag", [])):
        values[f"tag{position}"] = tag
    return values


def _like(column: Any, operator: str, pattern: Node) -> Expression:
    # `\` escapes % and _ in the pattern, so they match literally.
    return Expression(column, operator, NodeList((pattern, SQL("ESCAPE"), Value("\\", converter=False))))


def _search(pattern: Node) -> Expression:
    """`q`: a case-insensitive substring of the title or the description. PostgreSQL's ILIKE is
    `lower(text) LIKE lower(pattern)`, lowering the text at every comparison; the lowered copies the
    database keeps (migration 0007) give the same answer without that. SQLite compares its lowered
    copies (0008) with the pattern `fold`ed in Python: its own lower() folds A-Z only."""
    if is_sqlite():  # peewee writes SQLite's LIKE as ILIKE (its LIKE is GLOB there)
        return _like(TITLE_FOLDED, OP.ILIKE, pattern) | _like(DESCRIPTION_FOLDED, OP.ILIKE, pattern)
    folded = fn.lower(pattern)
    return _like(TITLE_FOLDED, OP.LIKE, folded) | _like(DESCRIPTION_FOLDED, OP.LIKE, folded)


def _filtered(values: dict[str, Any]) -> "ModelSelect[Todo]":
    """The owner's todos matching every filter in `values` (from `_filter_values`; unordered, unpaged).
    Values go in unconverted (they already are), so a placeholder object may stand in for each."""

    def value(name: str) -> Value:
        return Value(values[name], converter=False)

    query = Todo.select().where(Todo.user == value("user"))
    if "done" in values:
        query = query.where(Todo.done == value("done"))
    if "priority" in values:
        query = query.where(Todo.priority == value("priority"))
    if "due_before" in values:
        query = query.where(Todo.due_date <= value("due_before"))
    if "due_after" in values:
        query = query.where(Todo.due_date >= value("due_after"))
    if "updated_since" in values:
        query = query.where(Todo.updated_at >= value("updated_since"))
    if "q" in values:
        query = query.where(_search(value("q")))
    if "tag0" in values:
        # The first tag joins its todo_tags rows, which a newest-first page walks in index order
        # (see _ordering); each further tag is one index probe; together they AND.
        query = query.join(TodoTag, on=(TodoTag.todo == Todo.id)).where(
            (TodoTag.user == value("user")) & (TodoTag.tag == value("tag0"))
        )
    position = 1
    while f"tag{position}" in values:
        carrying = TodoTag.select(TodoTag.todo).where(
            (TodoTag.user == value("user")) & (TodoTag.tag == value(f"tag{position}"))
        )
        query = query.where(Todo.id.in_(carrying))
        position += 1
    return query


def filtered_todos(user_id: int, args: dict[str, Any]) -> "ModelSelect[Todo]":
    """The caller's todos matching every filter in `args` (unordered, unpaged)."""
    return _filtered(_filter_values(user_id, args))


@lru_cache(maxsize=256)
def _page_statement(
    dialect: str, names: tuple[str, ...], sort: tuple[tuple[str, bool], ...]
) -> tuple[str, tuple[Any, ...]]:
    """A page's SQL for one shape (which filters, how many tags, which order), and its parameters
    with a `Slot` wherever a request's value goes. Building the SQL costs more than running it on
    a typical account, so it is built once per shape and process."""
    slots = {name: Slot(name) for name in (*names, "skip", "limit")}
    page, columns = _filtered(slots), _read_columns(tags_as_text=True)
    if "session" in slots:
        # The page checks the caller's session itself, and each row carries the account's revision
        # (what `total` is cached under): both subqueries are uncorrelated, so run once.
        user = slots["user"].value()
        page = page.where(_session_is_live(user, slots["session"].value()))
        columns = (*columns, User.select(User.todo_revision).where(User.id == user))
    page = (
        page.select(*columns)
        .order_by(*_ordering(list(sort), by_tag="tag0" in slots))
        .offset(slots["skip"].value())
        .limit(slots["limit"].value())
    )
    return compile_once(page)


def page_statement(values: dict[str, Any], args: dict[str, Any]) -> tuple[str, list[Any]]:
    """The SQL and parameters for the page of `args` over the todos `values` select."""
    sql, template = _page_statement(dialect(), tuple(values), tuple(args["sort"]))
    return sql, fill(template, {**values, "skip": args["skip"], "limit": args["limit"]})


NEWEST_FIRST = [("created_at", True)]


def _ordering(sort: list[tuple[str, bool]], by_tag: bool = False) -> Iterator[Node]:
    if by_tag and sort == NEWEST_FIRST:
        # The same order, named by the joined todo_tags row: its index serves it.
        yield TodoTag.created_at.desc()
        yield TodoTag.todo.desc()
        return
    for position, (key, descending) in enumerate(sort):
        column = _sort_column(key)
        if key != "due_date":
            yield column.desc() if descending else column.asc()
        elif position > 0 and is_sqlite():
            # Undated todos last either way. Both forms sort the same; SQLite's indexes cannot
            # say NULLS LAST, so after another key it gets the form its index has (migration 0005),
            # and as the first key the plain column its (user, due_date) index serves.
            yield Todo.due_date.is_null(True).asc()
            yield column.desc() if descending else column.asc()
        else:
            yield column.desc(nulls="LAST") if descending else column.asc(nulls="LAST")
    yield Todo.id.desc()  # a total order: pages never overlap or skip


PAGING_ARGS = {"skip", "limit", "sort"}


def list_todos(caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    """One page, JSON-ready, and the exact number of matches (cached per revision and filter); the
    page's query checks the caller's session."""
    values = _filter_values(caller.user_id, args)
    skip, limit = args["skip"], args["limit"]
    rows = db.execute_sql(*page_statement({**values, "session": caller.session_id}, args)).fetchall()
    if rows:
        caller.seen()
    items = [_row_json(row, tags_as_text=True) for row in rows]
    if skip == 0 and len(items) < limit:
        total = len(items)  # the whole match set is on this page
    else:
        # An empty page says nothing about the session: then the ordinary check gives the revision.
        revision = rows[0][len(TODO_COLUMNS)] if rows else caller.account().todo_revision
        filters = tuple(
            sorted((name, _hashable(value)) for name, value in args.items() if name not in PAGING_ARGS)
        )
        # The session id tells apart two accounts that got the same id (on SQLite, an id freed
        # before migration 0009 can come back once): a session belongs to one account.
        key = (caller.user_id, caller.session_id, revision, filters)
        total = TOTALS.get(key, lambda: _count(values))
    return {"items": items, "total": total, "skip": skip, "limit": limit}


def _count(values: dict[str, Any]) -> int:
    with planned_each_time():
        return int(_filtered(values).count())


def _hashable(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


def _count_when(condition: Node) -> Any:
    return fn.COALESCE(fn.SUM(Case(None, [(condition, 1)], 0)), 0)


def stats_queries(user_id: int, today: date) -> tuple[Any, Any]:
    """Per-priority counts (summed into the totals) and per-tag counts: two grouped queries."""
    tomorrow = today + timedelta(days=1)
    is_open = Todo.done == False  # noqa: E712 - a SQL expression, not a Python comparison
    by_priority = (
        Todo.select(
            Todo.priority,
            fn.COUNT(Todo.id).alias("total"),
            _count_when(Todo.done == True).alias("done"),  # noqa: E712
            _count_when(is_open & (Todo.due_date < today)).alias("overdue"),
            _count_when(is_open & (Todo.due_date == today)).alias("due_today"),
            _count_when(is_open & (Todo.due_date >= today) & (Todo.due_date <= tomorrow)).alias("due_soon"),
        )
        .where(Todo.user == user_id)
        .group_by(Todo.priority)
        .dicts()
    )
    by_tag = (
        TodoTag.select(TodoTag.tag, fn.COUNT(TodoTag.todo).alias("n"))
        .where(TodoTag.user == user_id)
        .group_by(TodoTag.tag)
        .order_by(TodoTag.tag)
        .tuples()
    )
    return by_priority, by_tag


def _revision_key(user: User) -> tuple[Any, ...]:
    # created_at tells apart two accounts that got the same id (SQLite: one freed before 0009).
    return (user.id, user.created_at, user.todo_revision)


def todo_stats(user: User, now: datetime | None = None) -> dict[str, Any]:
    """Counts for the caller, "today" being the owner's local date (cached per revision and day)."""
    today: date = (now or utcnow()).astimezone(ZoneInfo(user.timezone)).date()
    return cast(
        dict[str, Any], STATS.get((*_revision_key(user), today), lambda: _count_stats(user.id, today))
    )


def _count_stats(user_id: int, today: date) -> dict[str, Any]:
    with planned_each_time():
        rows, by_tag = (list(query) for query in stats_queries(user_id, today))
    totals = dict.fromkeys(("total", "done", "overdue", "due_today", "due_soon"), 0)
    by_priority = {str(priority): 0 for priority in range(1, 6)}
    for row in rows:
        by_priority[str(row["priority"])] = row["total"]
        for name in totals:
            totals[name] += int(row[name])
    return {
        **totals,
        "undone": totals["total"] - totals["done"],
        "by_priority": by_priority,
        "by_tag": dict(by_tag),
    }
