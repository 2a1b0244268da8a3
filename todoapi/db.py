"""Database binding: a proxy set up by the app factory, never at import time."""

import fcntl
import itertools
import math
import os
import re
import select
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from flask import Flask, has_request_context
from peewee import (
    Database,
    DatabaseProxy,
    OperationalError,
    PostgresqlDatabase,
    ProgrammingError,
    SqliteDatabase,
    Value,
    _savepoint,
)
from playhouse.db_url import parse
from playhouse.migrations import Runner
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

db = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Serialises concurrent `migrate` runs (two release steps racing) on PostgreSQL.
_MIGRATION_LOCK_ID = 7_261_504

# Enough for every thread of a worker (gunicorn's gthread), the RQ worker and the CLI.
SQLITE_POOL_SIZE = 64
# How long a writer waits for SQLite's write lock before "database is locked" (then 503).
SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
    "synchronous": "normal",
}


# A hung PostgreSQL (stopped, its host's kernel still ACKing) closes nothing, so no error and no
# TCP keepalive ever ends a wait for it, and libpq ignores connect_timeout under a wait callback.
# Every round trip therefore waits in `_wait_with_deadline`; at the deadline psycopg2 closes the
# connection (the pool then discards it) and the request gets 503. The deadline depends on what is
# awaited, which tells a silent server from a slow query without a server-side statement_timeout:
# - 1.5 s for a handshake, the pool's checkout `SELECT 1` or check-in rollback, and /health/db. A
#   live server answers these in milliseconds and every request starts with one: 503 within 2 s.
# - 10 s for statements in a web request: the slowest request the benchmark saw (a heavy user's
#   search) took ~3 s at p99, and gunicorn kills a worker at 30 s.
# - 10 min for statements elsewhere: worker jobs, the CLI, a migration waiting on its lock.
HANDSHAKE_SECONDS = 1.5
# A silent server and a statement waiting for another transaction's lock (an account being deleted,
# a migration rewriting a table) look alike from here, and a request's first statement may wait
# under the handshake deadline. So in requests the server itself ends a lock wait first
# (`lock_timeout`), and the request gets 503 without its process taking the server for gone.
REQUEST_LOCK_WAIT_SECONDS = 1.0
REQUEST_STATEMENT_SECONDS = 10.0
BACKGROUND_STATEMENT_SECONDS = 600.0
# After one wait ran out, round trips to that server started within this long fail at once rather
# than each waiting out its own deadline (peewee connects under one lock, so threads would queue).
SILENCE_BACKOFF_SECONDS = 1.0

_deadline_cap: ContextVar[float] = ContextVar("db_deadline_cap", default=math.inf)
_silent_until: dict[str, float] = {}
# Connections handed out without the pool's ping (see _PooledPostgresqlDatabase._is_closed): their
# next round trip, whatever it is, gets the handshake deadline, so a hung server is still noticed
# within 2 s.
_unverified: "weakref.WeakSet[Any]" = weakref.WeakSet()
# A connection checked in this recently, handed out again in a request, is not pinged: under load
# that is every request; an idle connection (when restarts and dropped connections happen) still is.
PING_AFTER_IDLE_SECONDS = 1.0


class DatabaseNotAnswering(psycopg2.OperationalError):
    """PostgreSQL did not answer a round trip in time (peewee maps it to its OperationalError)."""


@contextmanager
def answer_within(seconds: float) -> Iterator[None]:
    """Round trips inside finish within `seconds` from now, or raise `DatabaseNotAnswering`."""
    token = _deadline_cap.set(min(_deadline_cap.get(), time.monotonic() + seconds))
    try:
        yield
    finally:
        _deadline_cap.reset(token)


def _wait_with_deadline(conn: Any) -> None:
    """psycopg2's wait callback: poll the socket until the round trip completes or time runs out."""
    started = time.monotonic()
    if conn.status == psycopg2.extensions.STATUS_SETUP or conn in _unverified:
        _unverified.discard(conn)
        limit = HANDSHAKE_SECONDS
    else:
        limit = REQUEST_STATEMENT_SECONDS if has_request_context() else BACKGROUND_STATEMENT_SECONDS
    deadline = min(started + limit, _deadline_cap.get())
    if started < _silent_until.get(conn.dsn, 0.0):
        raise DatabaseNotAnswering("PostgreSQL stopped answering moments ago")
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        remaining = deadline - time.monotonic()
        poller = select.poll()  # the socket can change during a handshake (SSL, then plain)
        poller.register(conn.fileno(), events)
        if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
            now = time.monotonic()
            if now >= deadline:
                _silent_until[conn.dsn] = now + SILENCE_BACKOFF_SECONDS
                raise DatabaseNotAnswering(f"PostgreSQL did not answer within {now - started:.1f} s")


class _CountedSavepoint(_savepoint):
    """A savepoint its database knows is open: peewee keeps only transactions on its stack."""

    def __enter__(self) -> Any:
        state = self.db._state
        state.savepoints = getattr(state, "savepoints", 0) + 1
        try:
            return super().__enter__()
        except BaseException:
            state.savepoints -= 1
            raise

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return super().__exit__(*exc_info)
        finally:
            self.db._state.savepoints -= 1


class _PooledPostgresqlDatabase(PooledPostgresqlDatabase):
    """The pool's round trips (`SELECT 1` at checkout, rollback at check-in) get the handshake deadline;
    a request's statements are prepared where a failed PREPARE aborts nothing (`execute_sql`); BEGIN
    rides along with the first statement after it, and COMMIT may ride along with the last
    (`execute_and_commit`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepared: weakref.WeakKeyDictionary[Any, OrderedDict[str, str]] = weakref.WeakKeyDictionary()
        self._unpreparable: set[str] = set()
        self._names = itertools.count(1)
        self._checked_in: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._begin_pending: weakref.WeakSet[Any] = weakref.WeakSet()  # connections owing a BEGIN
        self._committed: weakref.WeakSet[Any] = weakref.WeakSet()  # COMMIT already sent
        self._lock_timeouts: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def _initialize_connection(self, conn: Any) -> None:
        """At checkout: bound lock waits in requests, not elsewhere (a worker's scans meet on the
        notifications' unique index; a migration waits for the one before). Set for the session, so
        it costs a round trip once per connection, not per request (one process serves one way)."""
        wanted = f"'{round(REQUEST_LOCK_WAIT_SECONDS * 1000)}ms'" if has_request_context() else "DEFAULT"
        if self._lock_timeouts.get(conn, "DEFAULT") != wanted:
            with conn.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {wanted}")
            self._lock_timeouts[conn] = wanted

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        if has_request_context() and self._recently_used(conn):
            # Skip peewee's `SELECT 1`: a round trip on every request. The request's first
            # statement (a session or account lookup) gets the ping's deadline instead.
            _unverified.add(conn)
            return False
        with answer_within(HANDSHAKE_SECONDS):
            return bool(super()._is_closed(conn))

    def _recently_used(self, conn: Any) -> bool:
        idle = conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        return idle and time.monotonic() - self._checked_in.get(conn, -math.inf) < PING_AFTER_IDLE_SECONDS

    def _can_reuse(self, conn: Any) -> bool:
        # The pool rolls back a connection left in a transaction (a round trip, so under the
        # handshake deadline); an idle one, after every finished request, it takes back as it is.
        if conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            reusable = True
        else:
            with answer_within(HANDSHAKE_SECONDS):
                reusable = bool(super()._can_reuse(conn))
        self._checked_in[conn] = time.monotonic()
        return reusable

    def begin(self, isolation_level: Any = None) -> None:
        """BEGIN travels with the transaction's first statement instead of in a round trip of its own:
        a round trip costs ~40 µs of CPU here and as much in the server, and a write made six."""
        if isolation_level is None and self._isolation_level is None:
            self._begin_pending.add(self.connection())
        else:
            super().begin(isolation_level)

    def commit(self) -> None:
        # Nothing ran since BEGIN, or COMMIT went with the last statements: nothing left to commit.
        if not self._take_pending_begin() and not self._take(self._committed):
            super().commit()

    def rollback(self) -> None:
        # After a COMMIT sent early there is nothing to roll back (see `execute_and_commit`).
        if not self._take_pending_begin() and not self._take(self._committed):
            super().rollback()

    def savepoint(self, sid: Any = None) -> Any:
        return _CountedSavepoint(self, sid)

    def execute_and_commit(self, sql: str, params: Any, then: str | None = None) -> Any:
        """Run `sql` as the last statements of this thread's transaction, with its COMMIT in the same
        string; the transaction's own COMMIT is then not sent. Inside a savepoint (the outer
        transaction decides) or outside any transaction, `sql` just runs. `then`: a statement to
        run after the COMMIT, in the same string, whose rows the cursor holds."""
        after = f"; {then}" if then else ""
        if self.transaction_depth() != 1 or getattr(self._state, "savepoints", 0):
            return self.execute_sql(f"{sql}{after}", params)
        cursor = self.execute_sql(f"{sql}; COMMIT{after}", params)
        self._committed.add(self.connection())
        return cursor

    def _take_pending_begin(self) -> bool:
        return self._take(self._begin_pending)

    def _take(self, marked: "weakref.WeakSet[Any]") -> bool:
        """Whether this thread's connection is in `marked`, unmarking it."""
        conn = self._state.conn
        if conn is not None and conn in marked:
            marked.discard(conn)
            return True
        return False

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        """A request's statements run prepared where a failed PREPARE can abort nothing: outside
        transactions (its reads, a create's one statement) and as a transaction's first statement,
        BEGIN not yet sent (a change's locked read). PostgreSQL then plans each shape once per
        connection instead of on every request (planning a page costs more than running it)."""
        begin = self._take_pending_begin()
        if (
            sql.startswith(("SELECT ", "WITH "))
            and sql not in self._unpreparable
            and has_request_context()
            and (begin or not self.in_transaction())
            and not _planned_each_time.get()
        ):
            name = self._prepared_name(sql)
            if name is not None:
                arguments = ", ".join(["%s"] * len(params or ()))
                sql = f"EXECUTE {name}({arguments})" if arguments else f"EXECUTE {name}"
        if begin:
            # One query string, two statements: the transaction block BEGIN opens outlives it.
            sql = f"BEGIN; {sql}"
        return self._execute_cursor(sql, params)

    def _prepared_name(self, sql: str) -> str | None:
        """What `sql` is prepared as on this connection, preparing it first; None if it cannot be."""
        statements = self._prepared.setdefault(self.connection(), OrderedDict())
        name = statements.get(sql)
        if name is not None:
            statements.move_to_end(sql)
            return name
        name = f"todoapi_{next(self._names)}"
        # With the connection's first PREPARE (one round trip): PostgreSQL's default plans a
        # statement for its values for 5 runs, then keeps doing so whenever its generic plan looks
        # costlier than those; for a tag or search page it did so on every run, 0.07-0.2 ms of
        # planning for 0.03 of running. The generic plans ran as fast for a typical and the heavy
        # account alike (BENCHMARKS.md); what wants plans for its values runs in `planned_each_time`.
        # (A connection holds prepared statements once one PREPARE, and so the SET, succeeded.)
        generic = "" if statements else "SET plan_cache_mode = force_generic_plan; "
        try:
            super().execute_sql(f"{generic}PREPARE {name} AS {_numbered(sql)}")
        except ProgrammingError:  # e.g. a parameter whose type PostgreSQL cannot infer
            self._unpreparable.add(sql)
            return None
        statements[sql] = name
        if len(statements) > PREPARED_PER_CONNECTION:
            super().execute_sql(f"DEALLOCATE {statements.popitem(last=False)[1]}")
        return name


_planned_each_time: ContextVar[bool] = ContextVar("planned_each_time", default=False)


@contextmanager
def planned_each_time() -> Iterator[None]:
    """Statements inside run unprepared, so PostgreSQL plans each for its values: for counts over
    an account of any size, where the plan must fit the account and planning costs little beside
    running (and the result is cached per revision)."""
    token = _planned_each_time.set(True)
    try:
        yield
    finally:
        _planned_each_time.reset(token)


PREPARED_PER_CONNECTION = 64  # query shapes kept per connection (each holds a plan in the backend)
_PLACEHOLDER = re.compile(r"%[s%]")


def _numbered(sql: str) -> str:
    """psycopg2's `%s` placeholders as PostgreSQL's `$1, $2, …`; `%%` stays, for psycopg2 to unescape."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda match: f"${next(numbers)}" if match.group() == "%s" else "%%", sql)


class WriterQueue:
    """The writers of one SQLite file take turns here before they reach SQLite's write lock.

    A writer that finds SQLite's lock taken sleeps in its busy handler in growing steps (1, 2, 5 …
    100 ms) and is not woken when the lock frees; with a worker's threads writing at once, writes'
    p99 went from ~35 ms to 150-570 ms (BENCHMARKS.md, "SQLite's write tails"). Here a process's
    writers queue on a thread lock, and its one writer at a time on `flock(2)` of `<file>-writers`
    with the other processes of the host (the RQ worker and the CLI included): each is woken as the
    one before finishes. Only that one thread per process waits on `flock` without a bound; the
    kernel drops a dead process's lock. The others wait at most `wait_seconds` (SQLite's own busy
    timeout), then get SQLite's "database is locked". SQLite's lock still decides who writes; this
    only orders the arrivals."""

    _by_path: "dict[str, WriterQueue]" = {}
    _by_path_lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path + "-writers"
        self.wait_seconds = SQLITE_BUSY_TIMEOUT_MS / 1000
        self._after_fork()

    def _after_fork(self) -> None:
        # A child must not share its parent's open file (one flock for both) or a lock held at fork.
        self._threads = threading.Lock()
        self._held = threading.local()
        self._fd: int | None = None

    @classmethod
    def for_file(cls, database: str) -> "WriterQueue":
        """The queue of this process for `database`'s file (an in-memory database needs none)."""
        if database in ("", ":memory:") or database.startswith("file:"):
            return NO_QUEUE
        path = os.path.realpath(database)
        with cls._by_path_lock:
            queue = cls._by_path.get(path)
            if queue is None:
                queue = cls._by_path[path] = cls(path)
            return queue

    def holds(self) -> bool:
        return getattr(self._held, "value", False)

    def acquire(self) -> None:
        """Wait for this thread's turn to write (a no-op if it has it)."""
        if self.holds():
            return
        if not self._threads.acquire(timeout=self.wait_seconds):
            raise OperationalError("database is locked")
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as error:
            # The database's directory is gone or read-only: the database is unreachable (503),
            # as SQLite itself would say when it could not open the file.
            self._threads.release()
            raise OperationalError(f"unable to open the writers' lock: {error.strerror}") from error
        except BaseException:
            self._threads.release()
            raise
        self._held.value = True

    def release(self) -> None:
        """End this thread's turn (a no-op if it has none)."""
        if not self.holds():
            return
        self._held.value = False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        finally:
            self._threads.release()


class _NoQueue(WriterQueue):
    """An in-memory database is one connection's own: every writer always has its turn."""

    def __init__(self) -> None:
        pass

    def holds(self) -> bool:
        return True

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


NO_QUEUE = _NoQueue()


def _forget_writer_queues_after_fork() -> None:
    for queue in WriterQueue._by_path.values():
        queue._after_fork()
    WriterQueue._by_path_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_writer_queues_after_fork)

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _PooledSqliteDatabase(PooledSqliteDatabase):
    """Every transaction, from BEGIN to COMMIT or ROLLBACK, and every write outside one takes its
    turn in the file's `WriterQueue`."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.writers = WriterQueue.for_file(database)

    def begin(self, lock_type: Any = None) -> None:
        self.writers.acquire()
        try:
            super().begin(lock_type)
        except BaseException:
            self.writers.release()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.writers.release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.writers.release()

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if not sql.startswith(_WRITES) or self.writers.holds():
            return super().execute_sql(sql, params)
        self.writers.acquire()
        try:
            return super().execute_sql(sql, params)
        finally:
            self.writers.release()


def open_database(url: str, timeout_seconds: int = 2) -> Database:
    """Build (not connect) the database named by a `DATABASE_URL`."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        params = parse(url) | {
            "max_connections": 20,
            "stale_timeout": 300,
            "timeout": timeout_seconds,  # wait for a free pooled connection, then fail
            "connect_timeout": timeout_seconds,  # libpq's, moot while the wait callback is set
            "keepalives": 1,
            "keepalives_idle": 30,
        }
        if not params.get("database"):
            raise ValueError(f"DATABASE_URL names no database: {url.split('@')[-1]!r}")
        psycopg2.extensions.set_wait_callback(_wait_with_deadline)  # process-wide, idempotent
        # The driver decodes json columns (a page's tags) with orjson: a fifth of the stdlib's cost.
        psycopg2.extras.register_default_json(globally=True, loads=orjson.loads)
        psycopg2.extras.register_default_jsonb(globally=True, loads=orjson.loads)
        return _PooledPostgresqlDatabase(**params)
    if url.startswith("sqlite:///"):
        # Connections are kept between requests (any thread may take one back out): opening one
        # and setting its pragmas cost ~350 µs, more than the rest of a typical request.
        return _PooledSqliteDatabase(
            **parse(url),
            pragmas=SQLITE_PRAGMAS,
            max_connections=SQLITE_POOL_SIZE,
            timeout=timeout_seconds,  # wait for a free pooled connection, then fail
            check_same_thread=False,
        )
    raise ValueError(f"DATABASE_URL must start with sqlite:/// or postgresql://, got {url.split(':')[0]!r}")


def init_db(app: Flask) -> None:
    db.initialize(open_database(app.config["DATABASE_URL"], app.config["DB_TIMEOUT_SECONDS"]))

    # Connections open lazily on the first query, so /health touches nothing; the
    # teardown returns a pooled connection (or closes SQLite's) after every request.
    @app.teardown_appcontext
    def _close_db(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()


def contention(error: BaseException) -> str | None:
    """What kind of wait for another transaction's locks ended this database error, if one did: the
    database answers, it is busy. PostgreSQL: a request's `lock_timeout`, or a deadlock it broke (a
    change holds its todo and waits for its account's row while another transaction holds the two
    the other way round). SQLite: its busy timeout."""
    # peewee raises its own error while handling the driver's (the driver's is its context).
    driver = error.__cause__ or error.__context__ or error
    if isinstance(driver, psycopg2.errors.LockNotAvailable | psycopg2.errors.DeadlockDetected):
        return type(driver).__name__
    if error.args and str(error.args[0]) == "database is locked":
        return "SQLite busy"
    return None


def dialect() -> str:
    """What SQL built once is cached under: the bound database's class."""
    return type(db.obj).__name__


def sql_for(query: Any, *params: Any) -> str:
    """The SQL of `query`, which must take exactly `params` in this order: the text can then run
    again with other values in their places. For queries every request runs, built once."""
    sql, actual = query.sql()
    if list(actual) != list(params):
        raise ValueError(f"the query takes {actual!r}, not {params!r}")
    return str(sql)


class Slot:
    """Stands in for a value while SQL that is built once is generated; passed to peewee as
    `Value(slot, converter=False)`, it comes out in the parameters as itself (see `fill`)."""

    __slots__ = ("name",)

    def __init__(self, name: Any) -> None:
        self.name = name

    def value(self) -> Value:
        return Value(self, converter=False)


def compile_once(query: Any) -> tuple[str, tuple[Any, ...]]:
    """A query's SQL and its parameters, with its `Slot`s in the places their values go."""
    sql, params = query.sql()
    return str(sql), tuple(params)


def fill(template: tuple[Any, ...], values: Any) -> list[Any]:
    """The parameters of `template` (from `compile_once`), each slot taking `values[slot.name]`,
    already converted as the column takes it."""
    return [values[param.name] if isinstance(param, Slot) else param for param in template]


Statement = tuple[str, Sequence[Any]]


def execute_together(*statements: Statement, commit: bool = False, then: str | None = None) -> Any:
    """Run `statements` in order; the cursor of the last. On PostgreSQL they go as one query string,
    one round trip (psycopg2 fills in the parameters itself); SQLite's driver takes one at a time.

    `commit`: these are the last statements of the (outermost) transaction, and nothing is read from
    them. On PostgreSQL the transaction's COMMIT then goes in the same string, saving a round trip;
    if a statement fails, the ones after it, COMMIT included, never run. `then` (PostgreSQL, with
    `commit`): a statement without parameters to run after the COMMIT; the cursor holds its rows."""
    if not is_postgres():
        cursor = None
        for sql, params in statements:
            cursor = db.execute_sql(sql, params)
        return cursor
    sql = "; ".join(sql for sql, _ in statements)
    params = [value for _, params in statements for value in params]
    return db.obj.execute_and_commit(sql, params, then) if commit else db.execute_sql(sql, params)


def is_postgres(database: Any = db) -> bool:
    target = database.obj if isinstance(database, DatabaseProxy) else database
    return isinstance(target, PostgresqlDatabase)


def is_sqlite(database: Any = db) -> bool:
    target = database.obj if isinstance(database, DatabaseProxy) else database
    return isinstance(target, SqliteDatabase)


def write_transaction() -> Any:
    """A transaction that takes the write lock at BEGIN on SQLite, so two writers that read
    first never deadlock on the upgrade; PostgreSQL locks rows as it goes (see `for_update`)."""
    return db.atomic("IMMEDIATE") if is_sqlite() else db.atomic()


def for_update(query: Any, strength: str = "UPDATE") -> Any:
    """Lock the selected rows until commit where the database can (SQLite: a transaction writing
    already has the whole file). `strength`: PostgreSQL's row lock, `FOR <strength>`."""
    return query.for_update(f"FOR {strength}") if is_postgres() else query


def pending_migrations(database: Database) -> list[str]:
    """The migrations in `migrations/` not yet applied to `database` (the release step's work)."""
    return [m.name for m in Runner(database, str(MIGRATIONS_DIR)).status() if m.path and not m.applied]


def migrate(database: Database) -> list[str]:
    """Apply pending migrations from `migrations/`; returns the names applied (idempotent)."""
    with database.connection_context():
        locked = is_postgres(database)
        if locked:
            database.execute_sql("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            return Runner(database, str(MIGRATIONS_DIR)).up()
        finally:
            if locked:
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
