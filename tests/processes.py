"""Real processes for the tests that run the service as a platform does.

Free loopback ports, polling with a deadline, the process table from /proc, a redis-server of a
test's own, and `sh -c` commands in process groups of their own that can be stopped or killed
along with everything they started.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
# The Procfile's process types and their commands, as a platform reads them.
PROCFILE = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())


def platform_environ(workdir: Path, database: str = "platform.db", **settings: str) -> dict[str, str]:
    """What a platform gives a process: SPEC's variables only (and `settings`), the project's
    virtualenv first on PATH, a SQLite file in `workdir`, a free port, production's secret check."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(workdir),
        "DATABASE_URL": f"sqlite:///{workdir / database}",
        "REDIS_URL": REDIS_URL,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "APP_ENV": "production",
        "JWT_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        **settings,
    }


def run_release(env: dict[str, str]) -> None:
    """The Procfile's `release` line, once, as a platform runs it before starting web and worker."""
    result = subprocess.run(
        ["sh", "-c", PROCFILE["release"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    """A loopback port that nothing listens on (until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def json_lines(text: str, context: str = "") -> list[dict[str, Any]]:
    """A process's log, every line of which must be a JSON object; `context` goes with a failure."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{context}") from None
    return lines


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    alive: tuple["ShellProcess", ...] = (),
    interval: float = 0.1,
) -> Any:
    """Poll until `predicate()` is truthy and return it; fail with `what` at the deadline, or as soon
    as one of the `alive` processes exits (with their logs either way)."""
    deadline = time.monotonic() + timeout
    while True:
        for process in alive:
            assert process.alive, f"exited with {process.process.returncode}:\n{process.output()}"
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "".join(f"\n{process.output()}" for process in alive)
            raise AssertionError(f"not within {timeout} s: {what}{logs}")
        time.sleep(interval)


# --- the process table ------------------------------------------------------------------------------


def processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # After the last ")": a command name may itself contain ") ".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found.append((int(entry.name), fields[0], int(fields[1]), int(fields[2])))
    return found


def live_children(pid: int) -> list[int]:
    """The direct children of `pid` that are not zombies, sorted."""
    return sorted(child for child, state, parent, _group in processes() if parent == pid and state != "Z")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    children: dict[int, list[int]] = {}
    for child, _state, parent, _group in processes():
        children.setdefault(parent, []).append(child)
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- servers and commands ---------------------------------------------------------------------------


class RedisServer:
    """A private redis-server that a test may stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # A short socket timeout: a ping that hangs is retried well within the deadline.
        probe = Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            wait_for(lambda: self._answers(probe), 10, f"redis-server to answer on port {self.port}")
        finally:
            probe.close()

    @staticmethod
    def _answers(client: Redis) -> bool:
        try:
            return bool(client.ping())
        except RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class ShellProcess:
    """`sh -c <command>` from the repository root, env only, in a process group of its own, output to
    a file."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", command],
                cwd=ROOT,
                env=env,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, tail: int = 8000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.log_path.name} (last {tail} chars) ---\n{text[-tail:]}"

    def group(self) -> list[int]:
        """The processes still running in the process group (zombies excluded)."""
        return [pid for pid, state, _, group in processes() if group == self.process.pid and state != "Z"]

    def wait_for_exit(self, timeout: float) -> bool:
        """True once the command and every process of its group have ended."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        deadline = time.monotonic() + 5
        while self.group() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.group()

    def horses(self) -> list[int]:
        """RQ work horses running below the command (each one leads a process group of its own)."""
        table = {pid: (state, group) for pid, state, _, group in processes()}
        return [
            pid
            for pid in descendants(self.process.pid)
            if table.get(pid, ("Z", 0))[1] == pid and table[pid][0] != "Z"
        ]

    def signal_group(self, signum: int) -> None:
        # The whole group, as a platform signals it: `sh`, the command and whatever it forked.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """A crash: SIGKILL to every process of the tree, work horses included (RQ puts each horse
        in a process group of its own, so the group alone would leave a horse running)."""
        self.signal_group(signal.SIGSTOP)  # nothing forks while the tree is walked
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM to the group and up to 20 s to exit, then `kill` whatever is left of the tree."""
        if self.alive:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill()
