"""Benchmark databases: created and seeded through the project's own CLI, cached between runs.

A dataset is complete when its marker (PostgreSQL: the database's COMMENT; SQLite: a JSON file
beside it) names the same seed parameters and the row counts agree. Each run first applies any
new migrations (`flask --app wsgi migrate`) and then removes what earlier runs added (todos past
the seeded ids, sessions, notifications, idempotency keys), so every run starts from the seed.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from bench.procs import ROOT

PREFIX = "bench"
PASSWORD = "benchmark-password"  # noqa: S105 - demo accounts in a throwaway database
PG_NAME = "todoapi_bench_{}"


@dataclass(frozen=True)
class Dataset:
    """`users` accounts with `todos` each; account 0 (the heavy user) holds `heavy` instead."""

    key: str
    users: int
    todos: int
    heavy: int = 0

    @property
    def total(self) -> int:
        return self.heavy + (self.users - 1) * self.todos if self.heavy else self.users * self.todos

    def seed_args(self) -> list[str]:
        return [
            "seed",
            *("--users", str(self.users), "--todos", str(self.todos)),
            *("--heavy-todos", str(self.heavy), "--password", PASSWORD, "--prefix", PREFIX),
        ]


# ~1M todos: 9,999 typical users with 90 each + one heavy user with 100,000.
LARGE = Dataset("large", users=10_000, todos=90, heavy=100_000)
# The scaling baseline: ~10k todos, the typical user holding the same 90.
SMALL = Dataset("small", users=111, todos=90)
QUICK_LARGE = Dataset("quick", users=500, todos=90, heavy=10_000)


def email(n: int) -> str:
    return f"{PREFIX}{n}@example.com"


class Database:
    """One seeded database of one kind ("postgres" or "sqlite")."""

    kind = ""

    def __init__(self, dataset: Dataset, name: str):
        self.dataset, self.name = dataset, name

    # -- overridden per kind ------------------------------------------------------------------
    @property
    def url(self) -> str:
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def create(self) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def read_marker(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def write_marker(self, marker: dict[str, Any]) -> None:
        raise NotImplementedError

    def run(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def after_seed(self) -> None:
        """Bring the fresh tables into the state a running service would see them in."""

    def after_cleanup(self, removed: int) -> None:
        """Tidy up after deleting rows a previous run added."""

    def backend_pids(self) -> list[int]:
        """Database server processes serving this database (none for SQLite)."""
        return []

    def clone(self, suffix: str) -> "Database":
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- shared --------------------------------------------------------------------------------
    def cli_env(self) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": self.url}
        env.pop("APP_ENV", None)
        return env

    def flask(self, *args: str, log: Path) -> None:
        with log.open("ab") as out:
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", *args],
                cwd=ROOT,
                env=self.cli_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def wanted_marker(self) -> dict[str, Any]:
        return {**asdict(self.dataset), "total": self.dataset.total, "prefix": PREFIX}

    def complete(self) -> dict[str, Any] | None:
        """The marker, if this database holds exactly the seed it names."""
        if not self.exists():
            return None
        marker = self.read_marker()
        if not marker or any(marker.get(k) != v for k, v in self.wanted_marker().items()):
            return None
        try:
            users = self.run("SELECT count(*) FROM users")[0][0]
            todos = self.run("SELECT count(*) FROM todos WHERE id <= %s", (marker["seed_max_id"],))[0][0]
        except Exception:  # a half-created database: not complete
            return None
        if users < self.dataset.users or todos != self.dataset.total:
            return None
        return marker

    def ensure(self, reseed: bool, log: Path, say: Any) -> dict[str, Any]:
        """Migrate, seed if needed (or when `reseed`), remove earlier runs' additions."""
        marker = None if reseed else self.complete()
        if marker is None:
            say(f"{self.kind}/{self.dataset.key}: seeding {self.dataset.total:,} todos (cached afterwards)")
            self.close()
            self.drop()
            self.create()
            self.flask("migrate", log=log)
            started = time.monotonic()
            self.flask(*self.dataset.seed_args(), log=log)
            seconds = round(time.monotonic() - started, 1)
            self.after_seed()
            marker = {
                **self.wanted_marker(),
                "seed_max_id": self.run("SELECT max(id) FROM todos")[0][0],
                "seed_users_max_id": self.run("SELECT max(id) FROM users")[0][0],
                "seeded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "seed_seconds": seconds,
                "seed_command": "flask --app wsgi " + " ".join(self.dataset.seed_args()),
            }
            self.write_marker(marker)
            say(f"{self.kind}/{self.dataset.key}: seeded in {seconds:.0f} s")
        else:
            self.flask("migrate", log=log)  # new migrations reach the cached database too
            say(f"{self.kind}/{self.dataset.key}: reusing the seed of {marker['seeded_at']}")
        self.cleanup(marker)
        return marker

    def cleanup(self, marker: dict[str, Any]) -> None:
        seed_max = marker["seed_max_id"]
        removed = self.run("SELECT count(*) FROM todos WHERE id > %s", (seed_max,))[0][0]
        for sql, params in (
            ("DELETE FROM deliveries", ()),
            ("DELETE FROM notifications", ()),
            ("DELETE FROM idempotency_keys", ()),
            ("DELETE FROM sessions", ()),
            ("DELETE FROM todo_tags WHERE todo_id > %s", (seed_max,)),
            ("DELETE FROM todos WHERE id > %s", (seed_max,)),
            ("DELETE FROM users WHERE id > %s", (marker["seed_users_max_id"],)),
        ):
            self.run(sql, params)
        self.after_cleanup(removed)

    def user_id(self, n: int) -> int:
        return int(self.run("SELECT id FROM users WHERE email = %s", (email(n),))[0][0])


class Postgres(Database):
    kind = "postgres"

    def __init__(self, dataset: Dataset, name: str, admin_url: str):
        super().__init__(dataset, name)
        self.admin_url = admin_url
        self._conn: Any = None

    @property
    def url(self) -> str:
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{self.name}"))

    def _admin(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.admin_url, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def exists(self) -> bool:
        return bool(self._admin("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)))

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        assert self.name.startswith("todoapi_bench_"), self.name  # never anyone else's database
        self.close()
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def read_marker(self) -> dict[str, Any] | None:
        rows = self._admin(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (self.name,)
        )
        try:
            return json.loads(rows[0][0]) if rows and rows[0][0] else None
        except ValueError:
            return None

    def write_marker(self, marker: dict[str, Any]) -> None:
        text = json.dumps(marker).replace("'", "''")
        self._admin(f"COMMENT ON DATABASE \"{self.name}\" IS '{text}'")

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.url, connect_timeout=5)
            self._conn.autocommit = True
        return self._conn

    def run(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection().cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.executemany(sql, rows)
            cur.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def after_seed(self) -> None:
        # What autovacuum does soon after a bulk load on a live server: statistics and the
        # visibility map (index-only scans), so plans are the steady-state ones.
        self.run("VACUUM (ANALYZE)")

    def after_cleanup(self, removed: int) -> None:
        if removed:
            self.run("VACUUM (ANALYZE) todos, todo_tags")

    def backend_pids(self) -> list[int]:
        rows = self._admin("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,))
        return [int(row[0]) for row in rows]

    def clone(self, suffix: str) -> "Postgres":
        copy = Postgres(self.dataset, f"{self.name}_{suffix}", self.admin_url)
        copy.drop()
        self.close()
        for attempt in range(20):  # the service's pooled connections may take a moment to go
            try:
                self._admin(f'CREATE DATABASE "{copy.name}" TEMPLATE "{self.name}" STRATEGY FILE_COPY')
                break
            except psycopg2.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        return copy

    def server_version(self) -> str:
        return str(self._admin("SHOW server_version")[0][0])


class Sqlite(Database):
    kind = "sqlite"

    def __init__(self, dataset: Dataset, name: str, path: Path):
        super().__init__(dataset, name)
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"  # an absolute path: sqlite:////abs/file.db

    @property
    def marker_path(self) -> Path:
        return self.path.with_name(self.path.name + ".seeded.json")

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def drop(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm", ".seeded.json"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def read_marker(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.marker_path.read_text()))
        except (OSError, ValueError):
            return None

    def write_marker(self, marker: dict[str, Any]) -> None:
        self.marker_path.write_text(json.dumps(marker, indent=2) + "\n")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._conn.execute("PRAGMA foreign_keys = ON")
        return self._conn

    def run(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql.replace("%s", "?"), params).fetchall()

    def run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN")
        conn.executemany(sql.replace("%s", "?"), rows)
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def after_seed(self) -> None:
        # No ANALYZE: the service never runs it, so the planner works as in production.
        self.run("PRAGMA wal_checkpoint(TRUNCATE)")

    def clone(self, suffix: str) -> "Sqlite":
        copy = Sqlite(self.dataset, f"{self.name}_{suffix}", self.path.with_name(f"{self.name}_{suffix}.db"))
        copy.drop()
        source = sqlite3.connect(self.path)
        target = sqlite3.connect(copy.path)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return copy


def make(kind: str, dataset: Dataset, data_dir: Path, admin_url: str) -> Database:
    if kind == "postgres":
        return Postgres(dataset, PG_NAME.format(dataset.key), admin_url)
    return Sqlite(dataset, f"todoapi_bench_{dataset.key}", data_dir / f"{dataset.key}.db")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
