"""Processes the harness starts, and what /proc says about them (Linux only).

CPU is read as user+system clock ticks from /proc/<pid>/stat (all threads of a process are
included), memory as VmRSS from /proc/<pid>/status. Only processes started here are ever
signalled, by their own pid.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a live process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def processes_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def ticks_of(pids: list[int]) -> dict[int, int]:
    result = {}
    for pid in pids:
        ticks = cpu_ticks(pid)
        if ticks is not None:
            result[pid] = ticks
    return result


def ticks_delta_ms(before: Mapping[int, int], after: Mapping[int, int]) -> float:
    """CPU spent between two snapshots by the processes alive at the second one (new ones count
    in full: they started in between)."""
    ticks = sum(value - before.get(pid, 0) for pid, value in after.items())
    return ticks * 1000 / CLK_TCK


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of the whole machine, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def children_cpu_ms() -> float:
    """CPU of every child this process has reaped so far (wrk, after it exits)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 30) -> Response:
    """One request with the standard library (setup and sanity checks, never the load)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"loopback only: {url}")
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked above
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback only
            return Response(answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read(), dict(error.headers))


class Service:
    """A long-running child process with its output in a log file; stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, dict(env), log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def statuses_since(self, offset: int) -> dict[str, int]:
        """HTTP statuses from the app's JSON request log lines written after `offset`."""
        counts: Counter[str] = Counter()
        with self.log_path.open("rb") as log:
            log.seek(offset)
            for line in log:
                if b'"todoapi.request"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    counts[str(json.loads(line)["status"])] += 1
        return dict(sorted(counts.items()))


class Gunicorn(Service):
    """`gunicorn -c gunicorn.conf.py <app>` from the repository root, bound to loopback."""

    def __init__(self, name: str, app_spec: str, env: Mapping[str, str], log_path: Path, python: str):
        self.port = free_port()
        env = {**env, "PORT": str(self.port)}
        # The repository's gunicorn.conf.py; only the bind address is narrowed to loopback.
        argv = [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"]
        super().__init__(name, [*argv, app_spec], env, log_path)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        return children(self.pid)

    def tree_ticks(self) -> dict[int, int]:
        return ticks_of([self.pid, *self.workers()])

    def wait_ready(self, path: str = "/health", timeout: float = 60) -> None:
        """Until `path` answers 200 and the number of workers has held for a second."""
        deadline = time.monotonic() + timeout
        workers: list[int] = []
        steady_since = time.monotonic()
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            now_workers = self.workers()
            if now_workers != workers:
                workers, steady_since = now_workers, time.monotonic()
            try:
                ready = http("GET", self.base_url + path, timeout=2).status == 200
            except OSError:
                ready = False
            if ready and workers and time.monotonic() - steady_since >= 1:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout}s:\n{self.log_tail()}")
