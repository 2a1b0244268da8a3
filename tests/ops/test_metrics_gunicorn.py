"""A real gunicorn with three workers, started from the Procfile with environment variables only.

Checks what only a real multi-process server shows: stderr as JSON lines (gunicorn's own too), no
secrets in the server's output, request counts that are exact whichever worker answers the scrape,
kept-alive connections spread evenly over the workers, and counters from an RQ worker process
appearing in web's /metrics through Redis (the worker shares no directory with web).

One server per pytest process (session scope): starting gunicorn costs seconds, and no other
module talks to it.
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from tests.processes import ROOT, json_lines, live_children, platform_environ, run_release
from tests.test_procfile import PROCFILE, gunicorn_master, stop, wait_for_workers
from tests.webhook_receiver import Receiver

WORKERS = 3
LOG_FIELDS = {"time", "level", "method", "path", "status", "duration_ms", "request_id", "user_id"}
PASSWORD = "server pass phrase 4410"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Server:
    port: str
    env: dict[str, str]
    stdout: Path
    stderr: Path
    master: int
    metrics_dir: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """stderr's lines, every one of which must be a JSON object, gunicorn's own included."""
        return json_lines(self.stderr.read_text())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def call(
    server: Server,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on a new connection (urllib does not reuse connections)."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def scrape(server: Server) -> Samples:
    reply = call(server, "GET", "/metrics")
    assert reply.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (n, label_set), value in samples.items() if n == name and wanted <= label_set)


def request_key(endpoint: str) -> tuple[str, frozenset[tuple[str, str]]]:
    labels = {"endpoint": endpoint, "method": "GET", "status": "200"}
    return "http_requests_total", frozenset(labels.items())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(server: Server, email: str) -> dict[str, Any]:
    assert call(server, "POST", "/auth/register", {"email": email, "password": PASSWORD}).status == 201
    login = call(server, "POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert login.status == 200, login.body
    tokens: dict[str, Any] = login.json()
    return tokens


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("gunicorn")
    metrics_dir = home / "metrics"  # fresh: gunicorn.conf.py creates it
    env = platform_environ(
        home,
        "web.db",
        WEB_CONCURRENCY=str(WORKERS),
        WEBHOOK_ALLOW_PRIVATE="true",
        LOGIN_RATE_LIMIT="1000/minute",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    run_release(env)
    stdout, stderr = home / "web.out", home / "web.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            ["sh", "-c", PROCFILE["web"]], cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=err
        )
    try:
        server = Server(env["PORT"], env, stdout, stderr, 0, metrics_dir)
        _wait_until_serving(server, process)
        server.master = gunicorn_master(process.pid)
        assert wait_for_workers(server.master, WORKERS) == WORKERS, server.output()
        yield server
    finally:
        stop(process)


def _wait_until_serving(server: Server, process: subprocess.Popen[bytes]) -> None:
    # Not /health: the exact-count test below is the only one that touches it.
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while datetime.now(UTC) < deadline:
        assert process.poll() is None, server.output()
        try:
            if call(server, "GET", "/openapi.json").status == 200:
                return
        except OSError:
            threading.Event().wait(0.2)
    raise AssertionError("gunicorn did not answer within 30 s:\n" + server.output())


# --- logs ------------------------------------------------------------------------------------------


def test_request_log_lines_are_json_on_stderr_one_per_request(server: Server) -> None:
    ids = {name: f"gunicorn-{name}-{uuid.uuid4().hex}" for name in ("anon", "me", "missing", "invalid")}
    tokens = sign_up(server, f"log-{uuid.uuid4().hex[:8]}@example.com")
    me = call(server, "GET", "/me", headers={**bearer(tokens["access_token"]), "X-Request-ID": ids["me"]})
    assert me.status == 200
    anon = call(server, "GET", "/health/db", headers={"X-Request-ID": ids["anon"]})
    missing = call(server, "GET", "/no/such/page", headers={"X-Request-ID": ids["missing"]})
    invalid = call(server, "POST", "/todos", {"title": ""}, headers=bearer(tokens["access_token"]))
    generated = call(server, "GET", "/health/db", headers={"X-Request-ID": "x" * 129})
    assert (anon.status, missing.status, invalid.status, generated.status) == (200, 404, 422, 200)
    assert me.headers["X-Request-ID"] == ids["me"] and anon.headers["X-Request-ID"] == ids["anon"]
    assert missing.headers["X-Request-ID"] == ids["missing"]
    assert generated.headers["X-Request-ID"] != "x" * 129
    for reply in (me, anon, missing, invalid, generated):
        assert reply.headers["X-Content-Type-Options"] == "nosniff"

    lines = server.json_lines()
    gunicorn = [line["message"] for line in lines if line["logger"] == "gunicorn.error"]
    assert gunicorn[0].startswith("Starting gunicorn"), gunicorn
    assert sum(message.startswith("Booting worker") for message in gunicorn) == WORKERS, gunicorn
    requests = [line for line in lines if line.get("logger") == "todoapi.request"]
    expected = [
        (ids["me"], "GET", "/me", 200, me.json()["id"]),
        (ids["anon"], "GET", "/health/db", 200, None),
        (ids["missing"], "GET", "/no/such/page", 404, None),
        (invalid.headers["X-Request-ID"], "POST", "/todos", 422, me.json()["id"]),
        (generated.headers["X-Request-ID"], "GET", "/health/db", 200, None),
    ]
    for request_id, method, path, status, user in expected:
        matching = [line for line in requests if line["request_id"] == request_id]
        assert len(matching) == 1, (request_id, matching)
        [line] = matching
        assert line.keys() >= LOG_FIELDS, line
        assert line["level"] == "INFO"
        assert datetime.fromisoformat(line["time"]).tzinfo is not None
        assert (line["method"], line["path"], line["status"], line["user_id"]) == (method, path, status, user)
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0


def test_secrets_never_reach_the_server_output(server: Server) -> None:
    email = f"secret-{uuid.uuid4().hex[:8]}@example.com"
    first, second, guessed = "first server phrase 1188", "second server phrase 2299", "a guess 3377 ok"
    assert call(server, "POST", "/auth/register", {"email": email, "password": first}).status == 201
    json_login = call(server, "POST", "/auth/login", {"email": email, "password": first})
    form_login = call(
        server, "POST", "/auth/login", form={"username": email, "password": first, "grant_type": "password"}
    )
    assert json_login.status == form_login.status == 200
    tokens = [json_login.json(), form_login.json()]
    refreshed = call(server, "POST", "/auth/refresh", headers=bearer(tokens[0]["refresh_token"]))
    assert refreshed.status == 200
    tokens.append(refreshed.json())
    access = bearer(refreshed.json()["access_token"])
    webhook = call(server, "PATCH", "/me", {"webhook_url": "http://127.0.0.1:9/hook"}, headers=access)
    assert webhook.status == 200, webhook.body
    whsec = webhook.json()["webhook_secret"]
    changed = call(
        server, "PATCH", "/me", {"current_password": first, "new_password": second}, headers=access
    )
    assert changed.status == 200, changed.body
    assert call(server, "POST", "/auth/login", {"email": email, "password": guessed}).status == 401
    assert (
        call(server, "POST", "/auth/login", {"email": "nobody@example.com", "password": guessed}).status
        == 401
    )
    again = call(server, "POST", "/auth/login", {"email": email, "password": second})
    assert again.status == 200
    tokens.append(again.json())

    output = server.output()
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    paths = {record.get("path") for record in logged}
    assert "/auth/refresh" in paths, "the request log is missing; the check would be vacuous"
    # Every line formatted, gunicorn's own as much as ours.
    assert "--- Logging error ---" not in output, output
    secrets = [first, second, guessed, whsec, whsec.removeprefix("whsec_"), server.env["JWT_SECRET_KEY"]]
    secrets += [token[kind] for token in tokens for kind in ("access_token", "refresh_token")]
    leaked = [index for index, secret in enumerate(secrets) if secret in output]
    assert not leaked, f"secrets #{leaked} appear in the server output"


# --- metrics across workers ------------------------------------------------------------------------


def test_request_counts_are_exact_whichever_worker_answers(server: Server) -> None:
    requests, connections = 60, 6
    key = (
        "http_requests_total",
        frozenset({"endpoint": "/health", "method": "GET", "status": "200"}.items()),
    )
    assert scrape(server).get(key, 0.0) == 0, "only this test requests /health"

    with ThreadPoolExecutor(connections) as pool:
        statuses = list(pool.map(lambda _: call(server, "GET", "/health").status, range(requests)))
    assert statuses == [200] * requests

    workers = set(
        subprocess.run(["pgrep", "-P", str(server.master)], capture_output=True, text=True).stdout.split()
    )
    writers = {path.stem.rsplit("_", 1)[-1] for path in server.metrics_dir.glob("counter_*.db")}
    assert len(workers & writers) >= 2, f"requests did not spread over workers: {workers=} {writers=}"

    metrics_key = (
        "http_requests_total",
        frozenset({"endpoint": "/metrics", "method": "GET", "status": "200"}.items()),
    )
    first_scrape = scrape(server)
    scrapes_before = first_scrape[metrics_key]
    assert first_scrape[key] == requests
    for index in range(1, 9):  # new connections: several workers answer the scrape
        samples = scrape(server)
        assert samples[key] == requests
        assert samples[metrics_key] == scrapes_before + index  # each earlier scrape counted once
        assert total(samples, "http_request_duration_seconds_count", endpoint="/health") == requests
        assert (
            total(samples, "http_request_duration_seconds_bucket", endpoint="/health", le="+Inf") == requests
        )


# --- connections ---------------------------------------------------------------------------------


def connections_held(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to `port` each process holds, from /proc."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            established.add(f"socket:[{fields[9]}]")
    held = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        held[pid] = sum(1 for fd in fds.iterdir() if os.readlink(fd) in established)
    return held


def test_a_pool_of_kept_alive_connections_spreads_evenly_over_the_workers(server: Server) -> None:
    # A client pool (wrk, a router) opens its connections at once; all of them wait in the
    # listening socket's backlog until the workers, woken together, accept them.
    port, per_worker = int(server.port), 6
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(per_worker * WORKERS)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(lambda client: client.connect(), clients))
        # One request on each, all sent before any answer is read (a worker thread waits for a new
        # connection's first request); each is answered only once a worker has accepted it.
        for client in clients:
            client.request("GET", "/openapi.json")
        for client in clients:
            response = client.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("Connection", "").lower() != "close"
        held = connections_held(live_children(server.master), port)
        assert sum(held.values()) == len(clients), held
        assert max(held.values()) - min(held.values()) <= 1, held
    finally:
        for client in clients:
            client.close()


# --- an RQ worker process, sharing only Redis and the database with web -----------------------------

WORKER_SCRIPT = """
import sys

from todoapi.notifications.jobs import scan_due_soon
from todoapi.ops.logs import request_id_var
from todoapi.queue import AppSimpleWorker, enqueue, get_queue, get_redis
from wsgi import app

with app.app_context():
    token = request_id_var.set(sys.argv[1])
    try:
        job = enqueue(scan_due_soon)
    finally:
        request_id_var.reset(token)
    assert job is not None, "the queue refused the job"
    AppSimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
"""


@dataclass
class WorkerRun:
    before: Samples
    tokens: dict[str, Any]
    receiver: Receiver
    request_id: str
    stderr: str


@pytest.fixture
def worker_run(server: Server, redis: Redis) -> Iterator[WorkerRun]:
    """A due-soon todo with a webhook, then a scan job run to the end by a separate worker process."""
    with Receiver() as receiver:
        tokens = sign_up(server, f"worker-{uuid.uuid4().hex[:8]}@example.com")
        access = bearer(tokens["access_token"])
        assert call(server, "PATCH", "/me", {"webhook_url": receiver.url}, headers=access).status == 200
        due = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()  # due soon across midnight too
        assert (
            call(server, "POST", "/todos", {"title": "Pay rent", "due_date": due}, headers=access).status
            == 201
        )
        before = scrape(server)
        request_id = f"worker-{uuid.uuid4().hex}"
        worker = subprocess.run(
            [sys.executable, "-c", WORKER_SCRIPT, request_id],
            cwd=ROOT,
            env={name: value for name, value in server.env.items() if name != "PROMETHEUS_MULTIPROC_DIR"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert worker.returncode == 0, worker.stderr
        yield WorkerRun(before, tokens, receiver, request_id, worker.stderr)


def test_a_job_in_a_worker_process_notifies_and_logs_under_its_request_id(
    server: Server, worker_run: WorkerRun
) -> None:
    inbox = call(server, "GET", "/notifications", headers=bearer(worker_run.tokens["access_token"]))
    [item] = inbox.json()["items"]
    assert [delivery["status"] for delivery in item["deliveries"]] == ["delivered"]
    assert len(worker_run.receiver.calls) == 1
    lines = [json.loads(line) for line in worker_run.stderr.splitlines() if line.startswith("{")]
    created = [line for line in lines if line["logger"] == "todoapi.notifications.services"]
    attempts = [line for line in lines if line["logger"] == "todoapi.notifications.jobs"]
    assert len(created) == 1 and len(attempts) == 1, lines
    assert created[0]["request_id"] == attempts[0]["request_id"] == worker_run.request_id
    assert server.env["JWT_SECRET_KEY"] not in worker_run.stderr


def test_the_worker_process_counters_appear_in_web_metrics(server: Server, worker_run: WorkerRun) -> None:
    assert len(worker_run.receiver.calls) == 1  # precondition: one webhook delivered by the worker process
    for _ in range(5):  # whichever web worker answers
        after = scrape(server)
        names = {name for name, _ in after}
        assert "todoapi_notifications_total" in names, "web's /metrics shows no notification counters"
        sent = total(after, "todoapi_notifications_total", channel="webhook") - total(
            worker_run.before, "todoapi_notifications_total", channel="webhook"
        )
        assert sent == 1
