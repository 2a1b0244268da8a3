"""todoapi benchmark: one command, both databases, every number the performance issue asks for.

    .venv/bin/python bench/run.py            # the full run (1M todos; long)
    .venv/bin/python bench/run.py --quick    # a smoke test of the harness (small data, short runs)

For each database (PostgreSQL, SQLite) it: seeds (or reuses) the datasets through the project's
CLI; serves the ceiling app and the service with the repository's gunicorn.conf.py on loopback;
drives each endpoint with wrk from a separate process; reads server CPU from /proc around every
wrk run; soaks with a mixed load while sampling RSS; times the due-soon scan; writes
bench/results/<timestamp>-<db>.json and prints PASS/FAIL per target. See bench/README.md.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import datasets, procs, report
from bench.datasets import PASSWORD, PREFIX, Database, Dataset, email
from bench.procs import ROOT, Gunicorn, Service, http

BENCH = ROOT / "bench"
LUA_DIR = BENCH / "wrk"
RESULTS = BENCH / "results"
PYTHON = sys.executable

LIST_PATHS = {
    "list": "/todos?limit=50",
    "list_tag": "/todos?limit=50&tag=work",
    "list_q": "/todos?limit=50&q=review",  # "review" is one of the seed's title words
    "list_sort": "/todos?limit=50&sort=-priority,due_date",
}
POST_BODY = json.dumps(
    {
        "title": "bench post",
        "description": "created by the benchmark",
        "priority": 3,
        "due_date": None,
        "tags": ["work", "bench"],
    }
)
TYPICAL, HEAVY, WRITER = 1, 0, 2  # account numbers: bench1@, bench0@ (100k todos), bench2@
FIRST_LOGIN_USER = 3  # login benchmarks rotate over accounts 3.. so the token holders stay put


@dataclass
class Config:
    quick: bool
    dbs: list[str]
    duration: int
    warmup: int
    connections: int
    threads: int
    timeout: int
    soak_minutes: float
    large: Dataset
    small: Dataset
    reseed: bool
    scan: bool
    profile: list[str]
    repeat: int
    data_dir: Path
    pg_admin_url: str
    redis_url: str
    keep_logs: bool
    command: str = ""
    stamp: str = ""
    update_benchmarks: bool = False
    report_only: list[Path] = field(default_factory=list)
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="todoapi-bench-")))

    @property
    def soak_first_seconds(self) -> float:
        return min(60.0, self.soak_minutes * 30)


@dataclass(frozen=True)
class Spec:
    """One wrk run: what to request, as whom, and with which Lua script."""

    key: str
    label: str
    method: str = "GET"
    path: str = "/"
    body: str = ""
    token: str = ""
    script: str = "fixed"
    read: bool = True
    env: dict[str, str] = field(default_factory=dict)
    min_seconds: int = 0  # slow endpoints (login) need a longer run to complete enough requests
    timeout: int = 0  # wrk's per-request timeout when not the default


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# --- wrk ------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed; install it (Debian: apt-get install wrk)")
    return found


def wrk_argv(cfg: Config, base_url: str, script: str, seconds: float, timeout: int = 0) -> list[str]:
    return [
        "wrk",
        *("-t", str(cfg.threads), "-c", str(cfg.connections), "-d", f"{max(1, round(seconds))}s"),
        *("--timeout", f"{timeout or cfg.timeout}s", "--latency"),
        *("-s", str(LUA_DIR / f"{script}.lua"), base_url),
    ]


def wrk_env(cfg: Config, spec: Spec) -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_METHOD": spec.method,
        "BENCH_PATH": spec.path,
        "BENCH_TOKEN": spec.token,
        "BENCH_BODY": spec.body,
        "BENCH_THREADS": str(cfg.threads),
        "BENCH_PREFIX": PREFIX,
        "BENCH_PASSWORD": PASSWORD,
        **spec.env,
    }


def parse_wrk(output: str) -> dict[str, Any]:
    match = re.search(r"^BENCH_JSON (.+)$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{output}")
    return dict(json.loads(match.group(1)))


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    server: dict[int, int]
    db: dict[int, int]
    pg_all: dict[int, int]
    machine: tuple[int, int]
    children_ms: float
    at: float


def snapshot(server: Gunicorn, db: Database | None, extra: list[int] | None = None) -> Snapshot:
    db_pids = db.backend_pids() if db is not None else []
    pg_all = procs.processes_named("postgres") if db is not None and db.kind == "postgres" else []
    return Snapshot(
        server=procs.ticks_of([server.pid, *server.workers(), *(extra or [])]),
        db=procs.ticks_of(db_pids),
        pg_all=procs.ticks_of(pg_all),
        machine=procs.machine_ticks(),
        children_ms=procs.children_cpu_ms(),
        at=time.monotonic(),
    )


def cpu_between(before: Snapshot, after: Snapshot) -> dict[str, float]:
    gunicorn = procs.ticks_delta_ms(before.server, after.server)
    db = procs.ticks_delta_ms(before.db, after.db)
    tick_ms = 1000 / procs.CLK_TCK
    busy = (after.machine[0] - before.machine[0]) * tick_ms
    total = (after.machine[1] - before.machine[1]) * tick_ms
    wrk = after.children_ms - before.children_ms
    return {
        "gunicorn": round(gunicorn, 1),
        "db": round(db, 1),
        "server": round(gunicorn + db, 1),
        "pg_all_processes": round(procs.ticks_delta_ms(before.pg_all, after.pg_all), 1),
        "wrk": round(wrk, 1),
        "machine_busy": round(busy, 1),
        "machine_capacity": round(total, 1),
        # Everything busy that was neither the service, its database backends nor wrk: the
        # other tenants of a shared machine (and this harness, which mostly sleeps).
        "others": round(max(0.0, busy - gunicorn - db - wrk), 1),
    }


def summarise(spec: Spec, raw: dict[str, Any], cpu: dict[str, float]) -> dict[str, Any]:
    requests = int(raw["requests"])
    seconds = raw["duration_us"] / 1e6
    lat = {name: round(value / 1000, 3) for name, value in raw["latency_us"].items()}
    errors = raw["errors"]
    return {
        "key": spec.key,
        "label": spec.label,
        "method": spec.method,
        "read": spec.read,
        "requests": requests,
        "seconds": round(seconds, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "latency_ms": lat,
        "p99_over_p50": round(lat["p99"] / lat["p50"], 2) if lat["p50"] else None,
        "errors": errors,
        "error_count": sum(errors.values()),
        "cpu_ms": cpu,
        "cpu_ms_per_request": round(cpu["server"] / requests, 4) if requests else None,
    }


def wait_idle(server: Gunicorn, db: Database | None, timeout: float = 120) -> float:
    """Until the service (and its database backends) stop burning CPU: requests still queued
    from the previous wrk run (slow logins) must not be billed to the next one."""
    started = time.monotonic()
    pids = [server.pid, *server.workers(), *(db.backend_pids() if db is not None else [])]
    last = procs.ticks_of(pids)
    while time.monotonic() - started < timeout:
        time.sleep(0.3)
        now = procs.ticks_of(pids)
        # under 5 % of one core over the window: idle (the master's own housekeeping is less)
        if procs.ticks_delta_ms(last, now) < 0.3 * 1000 * 0.05:
            break
        last = now
    return round(time.monotonic() - started, 1)


def measure(
    cfg: Config,
    server: Gunicorn,
    db: Database | None,
    spec: Spec,
    warmup: int = 0,
    tag: str = "",
    seconds: int = 0,
) -> dict[str, Any]:
    wait_idle(server, db)
    sanity = sanity_check(server, spec)
    env = wrk_env(cfg, spec)
    if warmup:
        argv = wrk_argv(cfg, server.base_url, spec.script, warmup, spec.timeout)
        subprocess.run(argv, env=env, capture_output=True, check=False)
    seconds = seconds or max(cfg.duration, spec.min_seconds)
    for attempt in range(UNBALANCED_RERUNS + 1):
        idle_wait_s = wait_idle(server, db)
        offset = server.log_size()
        before = snapshot(server, db)
        done = subprocess.run(
            wrk_argv(cfg, server.base_url, spec.script, seconds, spec.timeout),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 120,
        )
        after = snapshot(server, db)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed for {spec.key}: {done.stderr}\n{done.stdout}")
        share = busiest_worker_share(server, before, after)
        if share is None or share <= BALANCED_SHARE or attempt == UNBALANCED_RERUNS:
            break
        say(f"  {tag or spec.key}: one worker did {share:.0%} of the workers' CPU; measured again")
    result = summarise(spec, parse_wrk(done.stdout), cpu_between(before, after))
    result["sanity"] = sanity
    result["idle_wait_before_s"] = idle_wait_s
    result["server_statuses"] = server.statuses_since(offset)
    result["busiest_worker_share"] = share
    result["unbalanced_reruns"] = attempt
    say(
        f"  {tag or spec.key:<20} {result['rps']:>8.1f} req/s  p50 {result['latency_ms']['p50']:>7.2f} ms  "
        f"p99 {result['latency_ms']['p99']:>7.2f} ms  errors {result['error_count']}  "
        f"cpu {report.fmt(result['cpu_ms_per_request'], 3)} ms/req  "
        f"(others on the machine: {result['cpu_ms']['others'] / 1000 / max(result['seconds'], 1):.2f} cores)"
    )
    if not result["requests"]:
        say(f"  {spec.key}: no request completed in {seconds} s (recorded; the machine may be saturated)")
    return result


def pair_seconds(cfg: Config) -> int:
    """Length of the ceiling run before each endpoint: half an endpoint's."""
    return max(2, cfg.duration // 2)


# wrk opens its 16 keep-alive connections at once and the workers race to accept them: now and
# then one worker gets nearly all, and the run measures one process's GIL with the other idle
# (~2,500 instead of ~6,500 req/s for the ceiling, CPU/request up by half). Such a run is measured
# again, at most twice; the last one counts whatever its balance, and the JSON keeps the share.
BALANCED_SHARE = report.BALANCED_SHARE
UNBALANCED_RERUNS = 2


def busiest_worker_share(server: Gunicorn, before: Snapshot, after: Snapshot) -> float | None:
    """The busiest worker's part of the workers' CPU between the snapshots (None: one worker)."""
    workers = server.workers()
    spent = [after.server.get(pid, 0) - before.server.get(pid, 0) for pid in workers]
    if len(workers) < 2 or sum(spent) <= 0:
        return None
    return round(max(spent) / sum(spent), 3)


def sanity_check(server: Gunicorn, spec: Spec) -> dict[str, Any]:
    """One request through the standard library before the load: the endpoint answers 2xx."""
    if spec.script == "login":
        answer = http("POST", server.base_url + "/auth/login", body={"email": email(3), "password": PASSWORD})
    elif spec.script == "patch":
        first = spec.env["BENCH_IDS"].split(",")[0]
        answer = http("PATCH", f"{server.base_url}/todos/{first}", spec.token, {"title": "bench sanity"})
    else:
        body = spec.body.encode() if spec.body else None
        answer = http(spec.method, server.base_url + spec.path, spec.token or None, body)
    if not 200 <= answer.status < 300:
        raise RuntimeError(f"{spec.key}: {spec.method} {spec.path} answered {answer.status}: {answer.body!r}")
    out: dict[str, Any] = {"status": answer.status, "bytes": len(answer.body)}
    with contextlib.suppress(ValueError):
        payload = answer.json()
        if isinstance(payload, dict) and "items" in payload:
            out.update(items=len(payload["items"]), total=payload["total"])
        elif isinstance(payload, list):
            out.update(items=len(payload))
        elif isinstance(payload, dict) and "total" in payload:
            out.update(total=payload["total"])
    return out


# --- servers ------------------------------------------------------------------------------------


def app_env(cfg: Config, db: Database | None, secret: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        APP_ENV="production",
        JWT_SECRET_KEY=secret,
        REDIS_URL=cfg.redis_url,
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="metrics-", dir=cfg.run_dir),
        JWT_ACCESS_MINUTES="240",  # tokens outlive the longest soak
    )
    if db is not None:
        env["DATABASE_URL"] = db.url
    return env


@contextlib.contextmanager
def serve(cfg: Config, name: str, app_spec: str, env: dict[str, str]) -> Iterator[Gunicorn]:
    server = Gunicorn(name, app_spec, env, cfg.run_dir / f"{name}.log", PYTHON)
    server.start()
    try:
        server.wait_ready()
        say(f"{name}: gunicorn pid {server.pid}, workers {server.workers()} on {server.base_url}")
        yield server
    finally:
        server.stop()


def login(server: Gunicorn, n: int) -> str:
    answer = http("POST", server.base_url + "/auth/login", body={"email": email(n), "password": PASSWORD})
    if answer.status != 200:
        raise RuntimeError(f"login as {email(n)} answered {answer.status}: {answer.body!r}")
    return str(answer.json()["access_token"])


def list_specs(prefix: str, token: str) -> list[Spec]:
    return [
        Spec(f"{prefix}.{key}", f"GET {path}", path=path, token=token) for key, path in LIST_PATHS.items()
    ]


# --- phases -------------------------------------------------------------------------------------


def large_specs(cfg: Config, server: Gunicorn, tokens: dict[str, str]) -> tuple[list[Spec], dict[str, str]]:
    """Every endpoint run against the large dataset, and the environment of the soak's mix."""
    items = http("GET", server.base_url + "/todos?limit=1", tokens["typical"]).json()["items"]
    typical_id = items[0]["id"]
    writer_page = http("GET", server.base_url + "/todos?limit=100", tokens["writer"]).json()["items"]
    writer_ids = ",".join(str(item["id"]) for item in writer_page)
    users = str(cfg.large.users)
    specs = [
        Spec("health", "GET /health", path="/health"),
        *list_specs("typical", tokens["typical"]),
        Spec("typical.get", "GET /todos/{id}", path=f"/todos/{typical_id}", token=tokens["typical"]),
        Spec("typical.stats", "GET /stats", path="/stats", token=tokens["typical"]),
        *list_specs("heavy", tokens["heavy"]),
        Spec("heavy.stats", "GET /stats", path="/stats", token=tokens["heavy"]),
        Spec(
            "writer.patch",
            "PATCH /todos/{id}",
            method="PATCH",
            script="patch",
            token=tokens["writer"],
            read=False,
            env={"BENCH_IDS": writer_ids},
        ),
        Spec(
            "writer.post",
            "POST /todos",
            method="POST",
            path="/todos",
            body=POST_BODY,
            token=tokens["writer"],
            read=False,
        ),
        Spec(
            "login",
            "POST /auth/login",
            method="POST",
            path="/auth/login",
            script="login",
            read=False,
            env={"BENCH_USERS": users, "BENCH_FIRST_USER": str(FIRST_LOGIN_USER)},
            # 16 concurrent argon2 hashes share the CPU and finish together: a short run
            # on a busy machine can end before any completes.
            min_seconds=20,
            timeout=60,
        ),
    ]
    soak_env = {
        "BENCH_TOKEN_TYPICAL": tokens["typical"],
        "BENCH_TOKEN_HEAVY": tokens["heavy"],
        "BENCH_TOKEN_WRITER": tokens["writer"],
        "BENCH_LIST_PATHS": " ".join(LIST_PATHS.values()),
        "BENCH_TYPICAL_ID": str(typical_id),
        "BENCH_IDS": writer_ids,
        "BENCH_USERS": users,
        "BENCH_FIRST_USER": str(FIRST_LOGIN_USER),
    }
    return specs, soak_env


def _median(values: list[Any], digits: int = 3) -> Any:
    present = sorted(v for v in values if v is not None)
    return round(statistics.median(present), digits) if present else None


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Several measurements of one endpoint: medians of the rates, percentiles and CPU/request,
    sums of requests and errors, and every round kept compactly."""
    if len(rounds) == 1:
        return {**rounds[0], "rounds": 1}
    cpu = [r["cpu_ms_per_request"] for r in rounds]
    out = dict(rounds[0])
    statuses: dict[str, int] = {}
    for r in rounds:
        for status, n in r["server_statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    out.update(
        rounds=len(rounds),
        requests=sum(r["requests"] for r in rounds),
        seconds=round(sum(r["seconds"] for r in rounds), 2),
        rps=_median([r["rps"] for r in rounds], 1),
        latency_ms={k: _median([r["latency_ms"][k] for r in rounds]) for k in rounds[0]["latency_ms"]},
        p99_over_p50=_median([r["p99_over_p50"] for r in rounds], 2),
        errors={k: sum(r["errors"][k] for r in rounds) for k in rounds[0]["errors"]},
        error_count=sum(r["error_count"] for r in rounds),
        cpu_ms={k: round(sum(r["cpu_ms"][k] for r in rounds), 1) for k in rounds[0]["cpu_ms"]},
        cpu_ms_per_request=_median(cpu, 4),
        cpu_ms_per_request_range=[min(c for c in cpu if c is not None), max(c for c in cpu if c is not None)]
        if any(c is not None for c in cpu)
        else None,
        server_statuses=statuses,
        per_round=[
            {
                "rps": r["rps"],
                "p50": r["latency_ms"]["p50"],
                "p99": r["latency_ms"]["p99"],
                "cpu_ms_per_request": r["cpu_ms_per_request"],
                "errors": r["error_count"],
                "others_cores": round(r["cpu_ms"]["others"] / max(r["seconds"], 1e-9) / 1000, 2),
                "busiest_worker_share": r.get("busiest_worker_share"),
                "unbalanced_reruns": r.get("unbalanced_reruns", 0),
            }
            for r in rounds
        ],
    )
    return out


def bench_endpoints(
    cfg: Config, large: Database, small: Database, secret: str, result: dict[str, Any]
) -> None:
    """The ceiling, the small and the large dataset served side by side, so that the numbers that
    are compared (scaling, x ceiling) are measured back to back, in `cfg.repeat` rounds."""
    kind = large.kind
    with contextlib.ExitStack() as stack:
        ceiling = stack.enter_context(serve(cfg, "ceiling", "bench.ceiling:app", app_env(cfg, None, secret)))
        small_srv = stack.enter_context(serve(cfg, f"{kind}-small", "wsgi:app", app_env(cfg, small, secret)))
        env = app_env(cfg, large, secret)
        large_srv = stack.enter_context(serve(cfg, f"{kind}-large", "wsgi:app", env))
        result["workers"] = len(large_srv.workers())
        small_token = login(small_srv, TYPICAL)
        tokens = {
            who: login(large_srv, n)
            for who, n in (("typical", TYPICAL), ("heavy", HEAVY), ("writer", WRITER))
        }
        specs, soak_env = large_specs(cfg, large_srv, tokens)
        by_key = {spec.key: spec for spec in specs}
        small_specs = {
            spec.key: spec
            for spec in [
                *list_specs("typical", small_token),
                Spec("typical.stats", "GET /stats", path="/stats", token=small_token),
            ]
        }
        ceiling_spec = Spec("ceiling", "GET /todos (bare Flask, 50 fixed dicts)", path="/todos")
        # Each round: the ceiling, then every endpoint, reads first. Right before each endpoint a
        # shorter ceiling run of its own ("pair"), so that its ratio compares two runs seconds apart:
        # this VM's speed drifts by a third within minutes. Each typical read on the small dataset
        # runs right before the same read on the large one (the scaling ratio).
        plan: list[tuple[str, str, Gunicorn, Database | None, Spec, int]] = [
            ("ceiling", "ceiling", ceiling, None, ceiling_spec, 0)
        ]
        for spec in specs:
            plan.append(("pair", spec.key, ceiling, None, ceiling_spec, pair_seconds(cfg)))
            if spec.key in small_specs:
                plan.append(("small", spec.key, small_srv, small, small_specs[spec.key], 0))
            plan.append(("large", spec.key, large_srv, large, spec, 0))
        measured: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for round_no in range(cfg.repeat):
            if cfg.repeat > 1:
                say(f"{kind}: round {round_no + 1} of {cfg.repeat}")
            for bucket, key, server, db, spec, seconds in plan:
                if key == "login" and round_no < cfg.repeat - 1:
                    continue  # slow, and only its rate is asked for: once
                warmup = cfg.warmup if round_no == 0 else min(cfg.warmup, 1)
                tag = {"small": f"small:{key}", "pair": f"ceiling<{key}"}.get(bucket, key)
                measured.setdefault((bucket, key), []).append(
                    measure(cfg, server, db, spec, warmup=warmup, tag=tag, seconds=seconds)
                )
        result["ceiling"] = aggregate(measured.pop(("ceiling", "ceiling")))
        result["ceiling"]["workers"] = len(ceiling.workers())
        result["small_runs"] = {k: aggregate(v) for (b, k), v in measured.items() if b == "small"}
        result["runs"] = {k: aggregate(v) for (b, k), v in measured.items() if b == "large"}
        for key, run in result["runs"].items():
            run["paired_ceiling_cpu_ms"] = [m["cpu_ms_per_request"] for m in measured[("pair", key)]]
        pairs = [m for (bucket, _), runs in measured.items() if bucket == "pair" for m in runs]
        result["paired_ceiling"] = aggregate(pairs)
        ceiling.stop()
        small_srv.stop()
        if cfg.profile:
            result["profile"] = profile(cfg, large_srv, by_key)
        if cfg.soak_minutes > 0:
            result["soak"] = soak(cfg, large_srv, large, env, soak_env)


def soak(
    cfg: Config, server: Gunicorn, db: Database, env: dict[str, str], soak_env: dict[str, str]
) -> dict[str, Any]:
    """Mixed load for soak_minutes with the RQ worker running; RSS sampled along the way."""
    seconds = cfg.soak_minutes * 60
    say(f"soak: {cfg.soak_minutes:g} min of mixed load with the RQ worker (python worker.py) running")
    worker = Service("rq-worker", [PYTHON, "worker.py"], env, cfg.run_dir / f"{db.kind}-rq-worker.log")
    worker.start()
    spec = Spec("soak.mixed", "mixed load", script="mixed", env=soak_env)
    samples: list[dict[str, Any]] = []
    try:
        wait_idle(server, db)
        time.sleep(2)
        if not worker.alive():
            raise RuntimeError(f"the RQ worker exited:\n{worker.log_tail()}")
        offset = server.log_size()
        before = snapshot(server, db)
        worker_ticks = procs.cpu_ticks(worker.pid) or 0
        load = subprocess.Popen(
            wrk_argv(cfg, server.base_url, "mixed", seconds),
            env=wrk_env(cfg, spec),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        # Each sample is a window ending at its mark: the minimum is the baseline, the maximum
        # catches transients such as argon2's 64 MiB buffer during a login.
        window = min(RSS_WINDOW_S, seconds / 4)
        marks = sorted({cfg.soak_first_seconds, *range(30, int(seconds) - 2, 30), seconds - 2})
        for mark in marks:
            time.sleep(max(0.0, started + mark - window - time.monotonic()))
            samples.append(rss_window(server, worker, window, started))
        stdout, stderr = load.communicate(timeout=seconds + 120)
        after = snapshot(server, db)
        if load.returncode != 0:
            raise RuntimeError(f"wrk (soak) failed: {stderr}\n{stdout}")
        result = summarise(spec, parse_wrk(stdout), cpu_between(before, after))
        result["rq_worker_cpu_ms"] = round(
            ((procs.cpu_ticks(worker.pid) or 0) - worker_ticks) * 1000 / procs.CLK_TCK, 1
        )
        result["server_statuses"] = server.statuses_since(offset)
    finally:
        worker.stop()
    first = next(s for s in samples if s["t_s"] >= cfg.soak_first_seconds - 1)
    last = samples[-1]
    result["rss"] = {}
    for name, a in first["min_kib"].items():
        b = last["min_kib"].get(name)
        result["rss"][name] = {
            "first_kib": a,
            "last_kib": b,
            "change_pct": round((b - a) * 100 / a, 1) if a and b else None,
            "first_peak_kib": first["max_kib"][name],
            "last_peak_kib": last["max_kib"].get(name),
            "max_peak_kib": max(s["max_kib"].get(name) or 0 for s in samples),
        }
    result["rss_first_at_s"], result["rss_last_at_s"] = first["t_s"], last["t_s"]
    result["samples"] = samples
    result["notifications_created"] = db.run("SELECT count(*) FROM notifications")[0][0]
    say(
        f"  soak: {result['rps']:.1f} req/s, errors {result['error_count']}; RSS change: "
        + ", ".join(f"{name} {v['change_pct']}%" for name, v in result["rss"].items())
    )
    return result


RSS_WINDOW_S = 5.0


def rss_window(server: Gunicorn, worker: Service, seconds: float, started: float) -> dict[str, Any]:
    """VmRSS of every gunicorn worker and of the RQ worker, read 10 times over `seconds`."""
    readings: dict[str, list[int]] = {}
    for i in range(10):
        pids = {f"gunicorn worker {pid}": pid for pid in server.workers()}
        pids["rq worker"] = worker.pid
        for name, pid in pids.items():
            kib = procs.rss_kib(pid)
            if kib is not None:
                readings.setdefault(name, []).append(kib)
        if i < 9:
            time.sleep(seconds / 9)
    return {
        "t_s": round(time.monotonic() - started, 1),
        "min_kib": {name: min(values) for name, values in readings.items()},
        "max_kib": {name: max(values) for name, values in readings.items()},
    }


def profile(cfg: Config, server: Gunicorn, specs: dict[str, Spec]) -> dict[str, Any]:
    """py-spy on every worker during an extra, unmeasured wrk run per profiled endpoint."""
    pyspy = Path(PYTHON).with_name("py-spy")
    out: dict[str, Any] = {}
    for key in cfg.profile:
        spec = specs.get(key)
        if spec is None:
            say(f"profile: no endpoint {key!r} (choose among {', '.join(specs)})")
            continue
        files = []
        spies = []
        wait_idle(server, None)
        for pid in server.workers():
            mode = "-quick" if cfg.quick else ""
            path = RESULTS / f"{cfg.stamp}{mode}-{server.name}-{key}-{pid}.pyspy.txt"
            files.append(path)
            spies.append(
                subprocess.Popen(
                    [
                        *(str(pyspy), "record", "--pid", str(pid), "--duration", str(cfg.duration)),
                        *("--rate", "200", "--gil", "--format", "raw", "--output", str(path)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1)
        subprocess.run(
            wrk_argv(cfg, server.base_url, spec.script, cfg.duration),
            env=wrk_env(cfg, spec),
            capture_output=True,
            check=False,
        )
        for spy in spies:
            spy.wait(timeout=60)
        out[key] = report.hotspots([f for f in files if f.exists()])
        out[key]["raw_files"] = [str(f.relative_to(ROOT)) for f in files if f.exists()]
        say(f"  profiled {key}: top self " + ", ".join(h["frame"] for h in out[key]["self"][:3]))
    return out


# --- the due-soon scan --------------------------------------------------------------------------

SCAN_SNIPPET = """
import json, sys, time
from datetime import datetime
from wsgi import app
from todoapi.db import db
from todoapi.notifications.services import scan_due_soon

now = datetime.fromisoformat(sys.argv[1])
out = {}
with app.app_context(), db.connection_context():
    for name, kwargs in (("dry_run", {"dry_run": True}), ("scan", {}), ("rescan", {})):
        started = time.perf_counter()
        found = scan_due_soon(now=now, **kwargs)
        out[name + "_s"] = round(time.perf_counter() - started, 3)
        out[name + "_found"] = len(found.notified)
print("SCAN_JSON " + json.dumps(out))
"""


def _date_plus(db: Database, column: str, days: int) -> str:
    return f"{column} + {days}" if db.kind == "postgres" else f"date({column}, '+{days} days')"


def set_due_soon(db: Database, count: int, today: date) -> None:
    """Exactly `count` open todos due today or tomorrow (UTC, every seeded owner's zone), spread over
    the table; every other due date that falls in the scan's window is moved ten days on."""
    low, high = today - timedelta(days=2), today + timedelta(days=3)
    db.run(
        f"UPDATE todos SET due_date = {_date_plus(db, 'due_date', 10)} "  # noqa: S608 - constants only
        "WHERE due_date BETWEEN %s AND %s",
        (low.isoformat(), high.isoformat()),
    )
    db.run("DELETE FROM notifications")
    open_ids = [row[0] for row in db.run("SELECT id FROM todos WHERE NOT done ORDER BY id")]
    step = max(1, len(open_ids) // count)
    chosen = open_ids[::step][:count]
    days = (today.isoformat(), (today + timedelta(days=1)).isoformat())
    db.run_many("UPDATE todos SET due_date = %s WHERE id = %s", [(days[i % 2], i) for i in chosen])
    if db.kind == "postgres":
        db.run("VACUUM (ANALYZE) todos")


def time_scan(cfg: Config, db: Database, count: int, now: datetime) -> dict[str, Any]:
    set_due_soon(db, count, now.date())
    table = db.run("SELECT count(*) FROM todos")[0][0]
    db.close()
    env = db.cli_env()
    log = cfg.run_dir / f"{db.kind}-scan.log"
    with log.open("ab") as out:
        started = time.monotonic()
        cli = subprocess.run(
            [PYTHON, "-m", "flask", "--app", "wsgi", "notify-due", "--dry-run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        cli_seconds = time.monotonic() - started
        snippet = subprocess.run(
            [PYTHON, "-c", SCAN_SNIPPET, now.isoformat()],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=True,
        )
    match = re.search(r"^SCAN_JSON (.+)$", snippet.stdout, re.MULTILINE)
    assert match, snippet.stdout
    last_line = cli.stdout.strip().splitlines()[-1] if cli.stdout.strip() else ""
    result = {
        "table_todos": table,
        "due_soon": count,
        "cli_dry_run_s": round(cli_seconds, 3),
        "cli_dry_run_said": last_line,
        **json.loads(match.group(1)),
    }
    say(
        f"  scan: {table:,} todos, {count:,} due soon: scan {result['scan_s']:.3f} s "
        f"(found {result['scan_found']:,}), dry run {result['dry_run_s']:.3f} s, "
        f"re-scan {result['rescan_s']:.3f} s, CLI --dry-run {cli_seconds:.2f} s"
    )
    return result


def bench_scan(cfg: Config, large: Database, small: Database) -> dict[str, Any]:
    """The scan on copies of the seeded databases (the cached ones are never modified)."""
    now = datetime.now(UTC).replace(microsecond=0)
    due_many = 10_000 if not cfg.quick else 1_000
    scenarios: list[dict[str, Any]] = []
    for source, counts in ((large, (due_many, 100)), (small, (100,))):
        copy = source.clone("scan")
        try:
            scenarios.extend(time_scan(cfg, copy, count, now) for count in counts)
        finally:
            copy.drop()
    return {"now": now.isoformat(), "scenarios": scenarios}


# --- facts about the machine and the code -------------------------------------------------------


def argon2_parameters(db: Database, secret: str) -> dict[str, Any]:
    code = (
        "import json, argon2\n"
        "from wsgi import app\n"
        "from todoapi.auth import services\n"
        "h, d = services.hasher, argon2.PasswordHasher()\n"
        "names = ('time_cost', 'memory_cost', 'parallelism', 'hash_len', 'salt_len')\n"
        "print(json.dumps({'service': {n: getattr(h, n) for n in names},"
        " 'argon2_cffi_defaults': {n: getattr(d, n) for n in names},"
        " 'type': h.type.name}))\n"
    )
    env = {**db.cli_env(), "APP_ENV": "production", "JWT_SECRET_KEY": secret}
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    params = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    params["argon2_cffi"] = metadata.version("argon2-cffi")
    stored = db.run("SELECT password_hash FROM users WHERE email = %s", (email(TYPICAL),))[0][0]
    params["seeded_hash_prefix"] = stored.split("$")[1:4]
    return params


def gunicorn_settings(cfg: Config) -> dict[str, Any]:
    """The settings gunicorn.conf.py resolves to here (it is plain Python; evaluated in a child)."""
    env = {**os.environ, "PORT": "0", "PROMETHEUS_MULTIPROC_DIR": str(cfg.run_dir / "conf-check")}
    code = (
        "import json, runpy\n"
        "ns = runpy.run_path('gunicorn.conf.py')\n"
        "keys = ('workers', 'worker_class', 'threads', 'preload_app', 'keepalive', 'timeout')\n"
        "print(json.dumps({k: ns.get(k) for k in keys}))\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    with contextlib.suppress(ValueError, IndexError):
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"error": done.stderr[-500:]}


def machine_info(cfg: Config) -> dict[str, Any]:
    def run(*argv: str) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).rstrip()

    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    versions = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for dist in (
        "gunicorn",
        "flask",
        "peewee",
        "flask-smorest",
        "marshmallow",
        "werkzeug",
        "psycopg2-binary",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    if shutil.which("wrk"):  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
        versions["wrk"] = run("wrk", "-v").splitlines()[0].split(" [")[0].removeprefix("wrk ")
    if "postgres" in cfg.dbs:
        with contextlib.suppress(Exception):
            versions["postgresql"] = datasets.Postgres(
                cfg.small, "postgres", cfg.pg_admin_url
            ).server_version()
    dirty = run(
        "git",
        "-C",
        str(ROOT),
        "status",
        "--porcelain",
        "--",
        "todoapi",
        "migrations",
        "gunicorn.conf.py",
        "wsgi.py",
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "free_h": run("free", "-h"),
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "versions": versions,
        "git_commit": run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD").strip(),
        "app_code_modified": bool(dirty),
        "gunicorn_conf": gunicorn_settings(cfg),
        "env": {k: os.environ[k] for k in ("WEB_CONCURRENCY", "GUNICORN_THREADS") if k in os.environ},
    }


# --- one database, end to end -------------------------------------------------------------------


def bench_database(cfg: Config, kind: str, machine: dict[str, Any]) -> dict[str, Any]:
    say(f"=== {kind} ===")
    log = cfg.run_dir / f"{kind}-cli.log"
    large = datasets.make(kind, cfg.large, cfg.data_dir, cfg.pg_admin_url)
    small = datasets.make(kind, cfg.small, cfg.data_dir, cfg.pg_admin_url)
    secret = secrets.token_hex(20)  # 40 characters
    result: dict[str, Any] = {
        "db": kind,
        "mode": "quick" if cfg.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": cfg.command,
        "machine": machine,
        "settings": {
            "duration_s": cfg.duration,
            "pair_seconds": pair_seconds(cfg),
            "warmup_s": cfg.warmup,
            "connections": cfg.connections,
            "wrk_threads": cfg.threads,
            "wrk_timeout_s": cfg.timeout,
            "soak_minutes": cfg.soak_minutes,
            "repeat": cfg.repeat,
        },
        "datasets": {
            "large": large.ensure(cfg.reseed, log, say),
            "small": small.ensure(cfg.reseed, log, say),
        },
    }
    result["argon2"] = argon2_parameters(large, secret)
    large.close()
    small.close()
    say(
        f"{kind}: ceiling, small ({cfg.small.total:,} todos) and large ({cfg.large.total:,} todos) datasets, "
        f"{cfg.repeat} round(s)"
    )
    bench_endpoints(cfg, large, small, secret, result)
    large.close()
    small.close()
    if cfg.scan:
        say(f"{kind}: due-soon scan")
        result["scan"] = bench_scan(cfg, large, small)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    report.add_ratios(result)
    result["targets"] = report.evaluate(result)
    return result


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data, short runs: a smoke test")
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (full 10, quick 3)")
    parser.add_argument("--warmup", type=int, help="seconds of unmeasured load first (full 3, quick 1)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--timeout", type=int, default=5, help="wrk request timeout, seconds")
    parser.add_argument("--soak-minutes", type=float, help="mixed-load soak (full 10, quick 2); 0 skips it")
    parser.add_argument("--no-soak", action="store_true", help="same as --soak-minutes 0")
    parser.add_argument("--no-scan", action="store_true", help="skip the due-soon scan timing")
    parser.add_argument(
        "--repeat",
        type=int,
        help="rounds over every endpoint; medians are reported (full 3, quick 1; login runs once)",
    )
    parser.add_argument("--reseed", action="store_true", help="drop and seed the datasets again")
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated endpoint keys to profile with py-spy in an extra run (e.g. typical.list)",
    )
    parser.add_argument("--data-dir", type=Path, default=BENCH / ".data", help="where SQLite datasets live")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument(
        "--update-benchmarks", action="store_true", help="rewrite BENCHMARKS.md's results section"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs (printed path)")
    parser.add_argument(
        "--report-only",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="measure nothing: render the summary (and --update-benchmarks) from saved results",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    soak = (
        0.0
        if args.no_soak
        else (args.soak_minutes if args.soak_minutes is not None else (2 if quick else 10))
    )
    cfg = Config(
        quick=quick,
        dbs=["postgres", "sqlite"] if args.db == "both" else [args.db],
        duration=args.duration or (3 if quick else 10),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 3),
        connections=args.connections,
        threads=args.threads,
        timeout=args.timeout,
        soak_minutes=soak,
        large=datasets.QUICK_LARGE if quick else datasets.LARGE,
        small=datasets.SMALL,
        reseed=args.reseed,
        scan=not args.no_scan,
        profile=[key for key in args.profile.split(",") if key],
        repeat=max(1, args.repeat or (1 if quick else 3)),
        data_dir=args.data_dir.resolve(),
        pg_admin_url=args.pg_admin_url,
        redis_url=args.redis_url,
        keep_logs=args.keep_logs,
    )
    cfg.command = " ".join([".venv/bin/python", "bench/run.py", *argv])
    cfg.update_benchmarks = args.update_benchmarks
    cfg.report_only = args.report_only or []
    return cfg


def flush_redis(url: str) -> None:
    """The bench's own Redis database (DB 14 by default): rate-limit counters, queues, locks."""
    from redis import Redis

    Redis.from_url(url, socket_connect_timeout=2).flushdb()


def main(argv: list[str]) -> int:
    if sys.platform != "linux":
        raise SystemExit("the harness reads /proc: Linux only")
    cfg = parse_args(argv)
    if cfg.report_only:
        results = [json.loads(path.read_text()) for path in cfg.report_only]
        for result in results:  # verdicts, ratios and hotspots from today's rules
            report.add_ratios(result)
            result["targets"] = report.evaluate(result)
            for entry in result.get("profile", {}).values():
                files = [ROOT / name for name in entry.get("raw_files", [])]
                if files and all(f.exists() for f in files):
                    entry.update(report.hotspots(files))
        summary = report.markdown(results)
        print(summary)
        if cfg.update_benchmarks:
            report.update_benchmarks(ROOT / "BENCHMARKS.md", summary)
            say("BENCHMARKS.md results section rewritten")
        datasets.remove_tree(cfg.run_dir)
        return 0
    stamp = cfg.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    ensure_wrk()
    flush_redis(cfg.redis_url)
    machine = machine_info(cfg)
    say(f"mode {'quick' if cfg.quick else 'full'}; logs in {cfg.run_dir}")
    results = []
    failed = False
    try:
        for kind in cfg.dbs:
            result = bench_database(cfg, kind, machine)
            suffix = "-quick" if cfg.quick else ""
            path = RESULTS / f"{stamp}-{kind}{suffix}.json"
            path.write_text(json.dumps(result, indent=2, default=str) + "\n")
            say(f"{kind}: raw results in {path.relative_to(ROOT)}")
            print(report.console(result), flush=True)
            results.append(result)
    except BaseException:
        failed = True
        say(f"FAILED; server logs kept in {cfg.run_dir}")
        raise
    finally:
        if not failed and not cfg.keep_logs:
            datasets.remove_tree(cfg.run_dir)
        elif not failed:
            say(f"logs kept in {cfg.run_dir}")
    summary = report.markdown(results)
    suffix = "-quick" if cfg.quick else ""
    (RESULTS / f"{stamp}-summary{suffix}.md").write_text(summary)
    if cfg.update_benchmarks:
        report.update_benchmarks(ROOT / "BENCHMARKS.md", summary)
        say("BENCHMARKS.md results section rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
