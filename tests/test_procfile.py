"""The Procfile run the way a platform runs it: `sh -c` from the repository root, env only, then HTTP."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Worker

from tests.conftest import REDIS_URL
from tests.processes import PROCFILE, ROOT, free_port, live_children, platform_environ, run_release, wait_for
from tests.webhook_receiver import Receiver

DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture
def platform_env(tmp_path: Path) -> dict[str, str]:
    """Only SPEC variables, with the project's virtualenv first on PATH."""
    return platform_environ(tmp_path)


def repository_copy(path: Path) -> Path:
    """The files a platform and `make run` read from the repository root, copied to `path`, so that
    a test can give them a `.env` of its own; `todoapi` itself still comes from the installation."""
    for name in ("Procfile", "wsgi.py", "worker.py", "gunicorn.conf.py", "scripts/run.py"):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, path / name)
    return path


def start(line: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sh", "-c", line],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return process.stdout.read().decode(errors="replace") if process.stdout else ""


def call(port: str, method: str, path: str, body: dict | None = None, token: str | None = None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until_serving(port: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, stop(process)
        try:
            if call(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("web did not answer /health within 30 s:\n" + stop(process))


@pytest.fixture
def released(platform_env: dict[str, str]) -> Iterator[dict[str, str]]:
    for _ in range(2):  # the release step must be idempotent
        run_release(platform_env)
    yield platform_env


def test_release_then_web_serves_the_api_on_port_with_web_concurrency_workers(released):
    web = start(PROCFILE["web"], released)
    try:
        port = released["PORT"]
        wait_until_serving(port, web)
        assert wait_for_workers(gunicorn_master(web.pid), 2) == 2
        assert (
            call(port, "POST", "/auth/register", {"email": "ann@example.com", "password": "password1"})[0]
            == 201
        )
        status, tokens = call(
            port, "POST", "/auth/login", {"email": "ann@example.com", "password": "password1"}
        )
        assert status == 200
        status, todo = call(port, "POST", "/todos", {"title": "over HTTP"}, tokens["access_token"])
        assert status == 201
        assert call(port, "GET", f"/todos/{todo['id']}", token=tokens["access_token"]) == (200, todo)
        # The Dockerfile's HEALTHCHECK, run as it is against this server.
        healthcheck = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[[^\n]*\])", DOCKERFILE, re.S).group(1))
        assert subprocess.run(healthcheck, env=released, timeout=10).returncode == 0
    finally:
        stop(web)


def wait_for_workers(master: int, expected: int) -> int:
    deadline, count = time.monotonic() + 15, 0
    while time.monotonic() < deadline:
        count = len(
            subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        )
        if count == expected:
            break
        time.sleep(0.2)
    return count


def gunicorn_master(shell_pid: int) -> int:
    """`sh -c` may exec gunicorn or keep itself as the parent; find the master either way."""
    children = subprocess.run(["pgrep", "-P", str(shell_pid)], capture_output=True, text=True).stdout.split()
    return int(children[0]) if children and "sh" in Path(f"/proc/{shell_pid}/comm").read_text() else shell_pid


def test_worker_line_starts_an_rq_worker(released):
    redis = Redis.from_url(REDIS_URL)
    before = {worker.name for worker in Worker.all(connection=redis)}
    worker = start(PROCFILE["worker"], released)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert worker.poll() is None, stop(worker)
            if {w.name for w in Worker.all(connection=redis)} - before:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no RQ worker registered within 20 s")
    finally:
        output = stop(worker)
    assert worker.returncode in (0, -signal.SIGTERM), output


def notification_counts(port: str) -> dict[tuple[str, str], float]:
    """`todoapi_notifications_total` from web's /metrics, by (channel, outcome)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.labels["channel"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "todoapi_notifications_total"
    }


@pytest.mark.parametrize("metrics_dir", [False, True], ids=["platform", "image"])
def test_web_metrics_count_what_the_worker_line_delivered(
    released: dict[str, str], redis: Redis, tmp_path: Path, metrics_dir: bool
) -> None:
    """Web and worker share nothing but the SPEC's variables (on a platform they may run on two
    machines), yet web's /metrics counts the worker's notifications. With the Dockerfile's
    PROMETHEUS_MULTIPROC_DIR (each container its own), the worker, which forks a work horse per
    job, leaves no file per job there."""
    env = {**released, "NOTIFY_INTERVAL_SECONDS": "1", "WEBHOOK_ALLOW_PRIVATE": "true"}
    web_env, worker_env = dict(env), dict(env)
    if metrics_dir:
        web_env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "web-metrics")
        worker_env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "worker-metrics")
        (tmp_path / "worker-metrics").mkdir()
    port = env["PORT"]
    web = start(PROCFILE["web"], web_env)
    worker = None
    try:
        with Receiver() as receiver:
            wait_until_serving(port, web)
            account = {"email": "ann@example.com", "password": "password1"}
            assert call(port, "POST", "/auth/register", account)[0] == 201
            token = call(port, "POST", "/auth/login", account)[1]["access_token"]
            assert call(port, "PATCH", "/me", {"webhook_url": receiver.url}, token)[0] == 200
            due = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
            assert call(port, "POST", "/todos", {"title": "Pay rent", "due_date": due}, token)[0] == 201
            assert notification_counts(port) == {}

            worker = start(PROCFILE["worker"], worker_env)
            wait_for(lambda: receiver.calls, 30, "the worker to deliver the webhook")
            expected = {("inbox", "created"): 1.0, ("webhook", "delivered"): 1.0}
            counted = wait_for(
                lambda: (counts := notification_counts(port)) == expected and counts, 15, "web to count them"
            )
            for _ in range(4):  # whichever web worker answers
                assert notification_counts(port) == counted
            if metrics_dir:
                assert worker.poll() is None
                assert list((tmp_path / "worker-metrics").iterdir()) == []
    finally:
        outputs = [stop(process) for process in (worker, web) if process is not None]
    assert worker.returncode in (0, -signal.SIGTERM), outputs[0]


def test_web_line_reads_dotenv_under_the_real_environment(released: dict[str, str], tmp_path: Path) -> None:
    """gunicorn's own settings come from `.env` as the app's do; real variables still win. (PORT is in
    both: were `.env` ignored, gunicorn would bind 8000, which another server here may hold.)"""
    root = repository_copy(tmp_path / "repo")
    (root / ".env").write_text(f"PORT={free_port()}\nWEB_CONCURRENCY=1\n")
    env = {name: value for name, value in released.items() if name != "WEB_CONCURRENCY"}
    web = start(PROCFILE["web"], env, cwd=root)
    try:
        wait_until_serving(env["PORT"], web)
        master = gunicorn_master(web.pid)
        time.sleep(1)  # without .env's 1, at least 2 workers have been forked by now
        assert len(live_children(master)) == 1
    finally:
        stop(web)
