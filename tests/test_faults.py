"""Faults done for real against the service as a platform runs it.

A PostgreSQL cluster of this module's own (initdb'd in a temporary directory, run as the `postgres` OS
user on a free loopback port) and a redis-server of its own, both stopped and started again on the
same port by the tests; the Procfile's `release` then `web` line (gunicorn, WEB_CONCURRENCY=2) and
`python worker.py`, each `sh -c` from the repository root with the environment only, in a process
group of its own. The machine's shared PostgreSQL and Redis are never touched.

SPEC, "Operations": if the database is down, requests fail fast with 503 (in the one error shape) and
the service recovers by itself when it returns; if Redis is down, todo CRUD keeps working, readiness
names Redis, and notifications catch up once it is back, without restarting the worker. Faults: the
database stopped (`pg_ctl stop -m immediate`) and frozen (SIGSTOP), Redis stopped, a gunicorn worker
SIGKILLed while requests flow.
"""

import contextlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
import psycopg2
import pytest
from flask import Flask

from tests.processes import (
    PROCFILE,
    RedisServer,
    ShellProcess,
    descendants,
    free_port,
    live_children,
    pid_alive,
    run_release,
    wait_for,
)
from tests.test_procfile import gunicorn_master
from todoapi.db import open_database

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
AS_ROOT = os.geteuid() == 0
PASSWORD = "fault tolerant password"


def _postgres_user_exists() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


# --- PostgreSQL and Redis of our own ----------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if AS_ROOT else command


class PgCluster:
    """A throwaway cluster, owned by `postgres`, in a temporary directory of its own."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are root-only (0700), `postgres` could not enter.
        self.dir = Path(tempfile.mkdtemp(prefix="todoapi-faults-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.running = False

    def init(self) -> None:
        if AS_ROOT:
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self._run(
            [
                str(PG_BIN / "initdb"),
                *("-D", str(self.data), "-U", "postgres", "-A", "trust"),
                *("-E", "UTF8", "--locale=C", "--no-sync"),
            ]
        )

    def _run(self, command: list[str], timeout: float = 60) -> None:
        result = subprocess.run(
            _as_postgres(command),
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # the postmaster must not share pytest's process group
        )
        assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"

    def pg_ctl(self, *args: str) -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self.pg_ctl("-l", str(self.dir / "postgres.log"), "-w", "-t", "30", "-o", options, "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "-t", "30", "stop")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> Any:
        return psycopg2.connect(self.url(database), connect_timeout=5)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: kill the postmaster and its children
            with contextlib.suppress(ValueError, OSError):
                postmaster = int(pid_file.read_text().split()[0])
                for pid in [postmaster, *descendants(postmaster)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- HTTP -----------------------------------------------------------------------------------------


class Api:
    def __init__(self, port: str) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None, timeout: float = 15
    ) -> tuple[int, Any, float]:
        """(status, JSON body or None, seconds taken)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        elapsed = time.monotonic() - started
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, payload, elapsed

    def user(self) -> tuple[str, str]:
        """A new account (timezone UTC, the default); returns (email, access token)."""
        email = f"fault-{uuid.uuid4().hex[:10]}@example.com"
        status, body, _ = self.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
        assert status == 201, body
        return email, self.login(email)

    def login(self, email: str) -> str:
        status, body, _ = self.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
        assert status == 200, body
        return str(body["access_token"])

    def serving(self) -> bool:
        try:
            return self.call("GET", "/health", timeout=2)[0] == 200
        except OSError:
            return False


def assert_error_shape(body: Any, code: int) -> None:
    """SPEC "Errors": {"code", "status", "message"[, "errors"]}, JSON."""
    assert isinstance(body, dict), body
    assert body["code"] == code, body
    assert isinstance(body["status"], str) and body["status"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert set(body) <= {"code", "status", "message", "errors"}, body


# --- the stack ------------------------------------------------------------------------------------


class Stack:
    def __init__(self, pg: PgCluster, redis_server: RedisServer, workdir: Path) -> None:
        self.pg, self.redis_server, self.workdir = pg, redis_server, workdir
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": str(workdir),
            "DATABASE_URL": pg.url("todoapi"),
            "REDIS_URL": redis_server.url,
            "PORT": str(free_port()),
            "WEB_CONCURRENCY": "2",
            "APP_ENV": "production",
            "JWT_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
            "NOTIFY_INTERVAL_SECONDS": "1",
            "LOGIN_RATE_LIMIT": "1000/minute",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        }
        self.api = Api(self.env["PORT"])
        self.services: list[ShellProcess] = []
        self.web: ShellProcess | None = None

    def release(self) -> None:
        run_release(self.env)

    def start(self, name: str) -> ShellProcess:
        log_path = self.workdir / f"{name}-{len(self.services) + 1}.log"
        service = ShellProcess(PROCFILE[name], self.env, log_path)
        self.services.append(service)
        return service

    def start_web(self) -> None:
        self.web = self.start("web")
        deadline = time.monotonic() + 30
        while not self.api.serving():
            assert self.web.alive, self.web.output()
            assert time.monotonic() < deadline, "web did not answer /health in 30 s\n" + self.web.output()
            time.sleep(0.2)
        wait_for(lambda: len(self.web_workers()) == 2, 15, "two gunicorn workers")

    def master(self) -> int:
        assert self.web is not None
        return gunicorn_master(self.web.process.pid)

    def web_workers(self) -> list[int]:
        return live_children(self.master())

    def logs(self) -> str:
        return "\n".join(service.output() for service in self.services)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        connection = self.pg.connect("todoapi")
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
        admin = cluster.connect("postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE todoapi")
        admin.close()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("faults-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(
    pg: PgCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    running = Stack(pg, redis_server, tmp_path_factory.mktemp("faults-stack"))
    try:
        running.release()
        running.start_web()
        yield running
    finally:
        for service in running.services:
            service.stop()


@pytest.fixture(autouse=True)
def _dependencies_up(stack: Stack) -> Iterator[None]:
    """Each test starts with both dependencies up, whatever the test before it left."""
    if not stack.pg.running:
        stack.pg.start()
    if not stack.redis_server.running:
        stack.redis_server.start()
    yield
    if stack.web is not None:
        assert stack.web.alive, "gunicorn exited\n" + stack.web.output()


# --- PostgreSQL down --------------------------------------------------------------------------------


def test_postgres_stopped_answers_503_fast_and_the_service_recovers_by_itself_losing_nothing(stack):
    api = stack.api
    email, token = api.user()
    acknowledged = []
    for index in range(20):
        status, todo, _ = api.call("POST", "/todos", {"title": f"before outage {index}"}, token)
        assert status == 201, todo
        acknowledged.append(todo["id"])

    stack.pg.stop("immediate")  # a crash: committed work survives only through the WAL
    try:
        # Twice over: both workers and their pooled connections (dead since the crash) answer.
        calls = [
            ("GET", "/todos", None),
            ("POST", "/todos", {"title": "during the outage"}),
            ("GET", f"/todos/{acknowledged[0]}", None),
            ("PATCH", f"/todos/{acknowledged[1]}", {"done": True}),
            ("DELETE", f"/todos/{acknowledged[2]}", None),
            ("GET", "/stats", None),
            ("GET", "/me", None),
        ]
        for method, path, body in calls * 2:
            status, payload, elapsed = api.call(method, path, body, token)
            assert status == 503, (method, path, status, payload)
            assert elapsed < 6, f"{method} {path} took {elapsed:.1f} s"
            assert_error_shape(payload, 503)
        status, payload, elapsed = api.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
        assert (status, elapsed < 6) == (503, True), (status, payload, elapsed)
        assert_error_shape(payload, 503)

        status, payload, elapsed = api.call("GET", "/health/db")
        assert status == 503, payload
        assert elapsed < 6
        assert payload["status"] == "error"
        assert isinstance(payload["db"], str) and payload["db"] and payload["db"] != "connected"

        status, payload, elapsed = api.call("GET", "/health/ready")
        assert status == 503, payload
        assert payload["checks"]["db"] != "ok"
        assert payload["checks"]["redis"] == "ok"
        assert elapsed < 6

        status, payload, _ = api.call("GET", "/health")
        assert (status, payload) == (200, {"status": "healthy"})
    finally:
        stack.pg.start()  # same port; nothing else is restarted

    def healthy_again() -> bool:
        return all(api.call("GET", "/todos?limit=100", token=token)[0] == 200 for _ in range(6))

    wait_for(healthy_again, 10, "requests to succeed again after PostgreSQL came back", interval=0.2)
    assert api.call("GET", "/health/db")[:2] == (200, {"status": "ok", "db": "connected"})

    status, page, _ = api.call("GET", "/todos?limit=100", token=token)
    assert status == 200
    assert sorted(item["id"] for item in page["items"]) == sorted(acknowledged)  # all there, nothing else
    assert not any(item["done"] for item in page["items"])  # the PATCH that got 503 changed nothing
    for todo_id in acknowledged:
        assert api.call("GET", f"/todos/{todo_id}", token=token)[0] == 200
    assert api.login(email)


def test_postgres_frozen_answers_503_within_the_bound_too(stack):
    """The database stops answering without closing anything (SIGSTOP to the postmaster and every
    backend: the kernel still accepts connections and ACKs, no byte comes back), the way a hung server
    looks. "503 within 2 s" and "fail fast" must not depend on the connection being refused."""
    api = stack.api
    _email, token = api.user()
    for _ in range(8):  # pooled connections in both workers
        assert api.call("GET", "/todos", token=token)[0] == 200
    postmaster = int((stack.pg.data / "postmaster.pid").read_text().split()[0])
    frozen = [postmaster, *descendants(postmaster)]
    outcomes: list[tuple[str, Any, float]] = []

    def probe(path: str) -> None:
        try:
            status, _payload, elapsed = api.call("GET", path, token=token, timeout=8)
            outcomes.append((path, status, round(elapsed, 1)))
        except OSError as exc:  # the client's own 8 s timeout
            outcomes.append((path, type(exc).__name__, 8.0))

    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        probes = [threading.Thread(target=probe, args=(path,)) for path in ["/health/db", "/todos"] * 2]
        for thread in probes:
            thread.start()
        for thread in probes:
            thread.join(timeout=15)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    wait_for(lambda: api.call("GET", "/todos", token=token)[0] == 200, 10, "recovery after the freeze")
    assert len(outcomes) == 4
    assert all(status == 503 and elapsed < 6 for _path, status, elapsed in outcomes), outcomes


def test_deadlines_tell_a_slow_statement_from_a_server_that_says_nothing(stack):
    """In process, on the cluster of this module: a statement that runs longer than a handshake may
    take still gets its answer, in a request and outside one. A server that completes TCP handshakes
    and then never says a word (a socket that listens and never accepts) fails the connection
    within SPEC's 2 s, and an attempt right after that fails at once instead of waiting again."""
    live = open_database(stack.pg.url("todoapi"))
    silent = socket.create_server(("127.0.0.1", 0))
    hung = open_database(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/todoapi")
    try:
        with Flask(__name__).test_request_context(), live.connection_context():
            assert live.execute_sql("SELECT 1 FROM pg_sleep(2)").fetchone() == (1,)
        with live.connection_context():
            assert live.execute_sql("SELECT 1 FROM pg_sleep(2)").fetchone() == (1,)

        started = time.monotonic()
        with pytest.raises(peewee.OperationalError):
            hung.connect()
        assert 1 < time.monotonic() - started < 2.5
        started = time.monotonic()
        with pytest.raises(peewee.OperationalError):
            hung.connect()
        assert time.monotonic() - started < 0.5
    finally:
        live.close_all()
        silent.close()


# --- Redis down -------------------------------------------------------------------------------------


def test_redis_stopped_todo_crud_works_and_readiness_names_redis(stack):
    api = stack.api
    stack.redis_server.stop()
    try:

        def timed(method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
            status, payload, elapsed = api.call(method, path, body, token)
            assert elapsed < 6, f"{method} {path} took {elapsed:.1f} s with Redis down"
            return status, payload

        email = f"no-redis-{uuid.uuid4().hex[:8]}@example.com"
        assert timed("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
        status, tokens = timed("POST", "/auth/login", {"email": email, "password": PASSWORD})
        assert status == 200, tokens
        token = tokens["access_token"]
        status, todo = timed("POST", "/todos", {"title": "while Redis is down", "tags": ["x"]}, token)
        assert status == 201, todo
        status, page = timed("GET", "/todos", token=token)
        assert status == 200 and [item["id"] for item in page["items"]] == [todo["id"]], page
        status, changed = timed("PATCH", f"/todos/{todo['id']}", {"done": True}, token)
        assert status == 200 and changed["done"] is True, changed
        assert timed("GET", f"/todos/{todo['id']}", token=token) == (200, changed)
        assert timed("DELETE", f"/todos/{todo['id']}", token=token)[0] == 204
        assert timed("GET", f"/todos/{todo['id']}", token=token)[0] == 404

        status, ready = timed("GET", "/health/ready")
        assert status == 503, ready
        assert ready["status"] == "error"
        assert ready["checks"]["db"] == "ok"
        assert isinstance(ready["checks"]["redis"], str) and ready["checks"]["redis"] != "ok"
        assert timed("GET", "/health/db") == (200, {"status": "ok", "db": "connected"})
        assert timed("GET", "/health") == (200, {"status": "healthy"})
    finally:
        stack.redis_server.start()
    wait_for(lambda: api.call("GET", "/health/ready")[0] == 200, 10, "/health/ready 200 once Redis is back")


def _due_soon_date() -> str:
    """Today in UTC (due soon for a UTC owner); tomorrow in the last minutes of the day, so that
    midnight passing during the test cannot take the todos out of the window."""
    now = datetime.now(UTC)
    late = now.hour == 23 and now.minute >= 58
    return (now.date() + timedelta(days=1 if late else 0)).isoformat()


def test_worker_rides_out_a_redis_outage_and_notifies_todos_made_during_it_exactly_once(stack):
    """`python worker.py` (NOTIFY_INTERVAL_SECONDS=1) keeps running while Redis is down; due-soon todos
    made meanwhile get exactly one notification each once Redis is back, with no restart."""
    worker = stack.start("worker")
    try:
        _notified_once_after_the_outage(stack, worker)
    finally:
        worker.stop()


def _notified_once_after_the_outage(stack: Stack, worker: ShellProcess) -> None:
    api = stack.api
    _email, token = api.user()

    def notifications(todo_ids: list[int]) -> dict[int, int]:
        rows = stack.sql(
            "SELECT todo_id, COUNT(*) FROM notifications WHERE todo_id = ANY(%s) GROUP BY todo_id",
            (todo_ids,),
        )
        return {int(todo_id): int(count) for todo_id, count in rows}

    def create_due_soon(title: str) -> int:
        status, todo, _ = api.call("POST", "/todos", {"title": title, "due_date": _due_soon_date()}, token)
        assert status == 201, todo
        return int(todo["id"])

    def alive() -> None:
        assert worker.alive, f"the worker exited with {worker.process.returncode}\n{worker.output()}"

    # The worker is up and scanning: a todo made now is notified.
    first = create_due_soon("before the outage")
    deadline = time.monotonic() + 30
    while notifications([first]) != {first: 1}:
        alive()
        assert time.monotonic() < deadline, "no notification within 30 s\n" + worker.output()
        time.sleep(0.2)
    python = gunicorn_master(worker.process.pid)  # `python worker.py`, whether or not `sh` exec'd it

    stack.redis_server.stop()
    try:
        during = [create_due_soon(f"during the outage {index}") for index in range(5)]
        outage_ends = time.monotonic() + 5  # several tick intervals without Redis
        while time.monotonic() < outage_ends:
            alive()
            time.sleep(0.2)
    finally:
        stack.redis_server.start()  # same port, empty

    deadline = time.monotonic() + 30
    while notifications(during) != dict.fromkeys(during, 1):
        alive()
        assert time.monotonic() < deadline, (
            f"not each notified once within 30 s: {notifications(during)}\n{worker.output()}"
        )
        time.sleep(0.3)
    time.sleep(3)  # a few more scans: still one each
    assert notifications([first, *during]) == dict.fromkeys([first, *during], 1)
    alive()
    assert pid_alive(python), "the worker process was replaced"


# --- a gunicorn worker killed --------------------------------------------------------------------------


def test_a_gunicorn_worker_killed_mid_request_is_replaced_and_serving_goes_on(stack):
    api = stack.api
    _email, token = api.user()
    for index in range(5):
        assert api.call("POST", "/todos", {"title": f"load {index}"}, token)[0] == 201
    master = stack.master()
    before = stack.web_workers()
    assert len(before) == 2

    outcomes: list[tuple[float, str]] = []  # (finished at, status or error name)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                outcome = str(api.call("GET", "/todos?limit=100", token=token, timeout=10)[0])
            except (OSError, http.client.HTTPException) as exc:  # the connection the killed worker held
                outcome = type(exc).__name__
            outcomes.append((time.monotonic(), outcome))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(outcomes) >= 20, 15, "requests flowing")
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        replaced = wait_for(
            lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(stack.web_workers()),
            15,
            "the master to replace the killed worker",
        )
        recovered_at = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

    assert pid_alive(master) and stack.master() == master
    assert before[1] in replaced and len(set(replaced) - set(before)) == 1
    assert all(outcome == "200" for at, outcome in outcomes if at < killed_at), outcomes
    # Only requests that the killed worker held may fail (one per client thread at most)...
    failed = [outcome for at, outcome in outcomes if outcome != "200"]
    assert len(failed) <= len(threads), failed
    # ...and once the replacement is up, every request succeeds.
    after = [outcome for at, outcome in outcomes if at > recovered_at + 0.5]
    assert after and all(outcome == "200" for outcome in after), after
    for _ in range(10):
        assert api.call("GET", "/todos?limit=100", token=token)[0] == 200
