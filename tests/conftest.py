"""Fixtures: real SQLite and real PostgreSQL (a database of its own per run), real Redis.

Every test that takes `app` runs on both databases. Tables come only from `migrations/`.
"""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

import todoapi.db as db_module
from todoapi import create_app
from todoapi.db import db, migrate, open_database

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A Redis database of its own per xdist worker (queues, locks); TEST_REDIS_DB moves the block
# so that two test runs on one machine do not share queues.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('TEST_REDIS_DB', '1')) + _WORKER}"
TABLES = ("deliveries", "notifications", "idempotency_keys", "todo_tags", "todos", "sessions", "users")
PASSWORD = "correct horse battery"
# Still argon2id, with small costs: the suite hashes hundreds of passwords. Production
# parameters cannot be changed from the environment.
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_execute(sql: str) -> None:
    connection = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    database = open_database(f"sqlite:///{path}")
    migrate(database)
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test run (per xdist worker), migrated once, dropped at the end."""
    name = f"todoapi_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    url = _with_database(PG_ADMIN_URL, name)
    database = open_database(url)
    migrate(database)
    database.close_all()
    yield url
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_postgres(url: str) -> None:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "todo.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    return url


@pytest.fixture
def redis() -> Iterator[Redis]:
    """This worker's Redis database, emptied before the test."""
    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Build apps on this test's database; closes their connections afterwards."""

    def build(**overrides: object) -> Flask:
        config = {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "ARGON2_PARAMETERS": FAST_ARGON2,
            "JWT_SECRET_KEY": "a-test-suite-secret-of-more-than-32-characters",
            # Tests log in far more than 10 times a minute; the limit's own tests lower it.
            "LOGIN_RATE_LIMIT": "10000/minute",
            **overrides,
        }
        return create_app(config)

    yield build
    if db.obj is not None:
        close_all = getattr(db.obj, "close_all", None)
        close_all() if close_all else db.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def register(client: FlaskClient) -> Callable[..., dict[str, str]]:
    """Create an account through the API and log in; returns its Authorization header."""

    def _register(email: str = "ann@example.com", password: str = PASSWORD) -> dict[str, str]:
        created = client.post("/auth/register", json={"email": email, "password": password})
        assert created.status_code == 201, created.json
        login = client.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.json
        return {"Authorization": f"Bearer {login.json['access_token']}"}

    return _register


@pytest.fixture
def auth(register: Callable[..., dict[str, str]]) -> dict[str, str]:
    return register("ann@example.com")


@pytest.fixture
def other_auth(register: Callable[..., dict[str, str]]) -> dict[str, str]:
    return register("bob@example.com")


@pytest.fixture
def patient_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests wait for a test's own locks as long as it needs (tests/test_lock_waits.py has the
    bound a request puts on lock waits)."""
    monkeypatch.setattr(db_module, "REQUEST_LOCK_WAIT_SECONDS", 30.0)
