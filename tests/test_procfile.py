"""The Procfile run the way a platform runs it: `sh -c` from the repository root, env only, then HTTP."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker

from tests.conftest import REDIS_URL
from tests.processes import PROCFILE, ROOT, free_port, run_release

DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture
def platform_env(tmp_path: Path) -> dict[str, str]:
    """Only SPEC variables, with the project's virtualenv first on PATH."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'platform.db'}",
        "REDIS_URL": REDIS_URL,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "APP_ENV": "production",
        "JWT_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
    }


def start(line: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sh", "-c", line],
        cwd=ROOT,
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
