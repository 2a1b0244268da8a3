"""Which gunicorn worker class: the repository's gthread worker against sync, measured.

Seeds one typical user (90 todos) in a fresh PostgreSQL database through the CLI, then, for each
class in turn and for `--rounds` rounds, serves it with the repository's gunicorn.conf.py (only
the worker class changed, through GUNICORN_CMD_ARGS) next to the bare-Flask ceiling, and drives each
endpoint with wrk (16 connections). Reports server CPU per request (gunicorn tree + the database's
backends) and p50/p99, as medians over the rounds.

    .venv/bin/python bench/worker_class.py [--rounds 3] [--seconds 6]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import ROOT, Gunicorn, http, ticks_delta_ms, ticks_of
from bench.run import parse_wrk

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "todoapi_bench_workers"
CLASSES = {"gthread": "", "sync": "--worker-class sync"}
PASSWORD = "benchmark-password"  # noqa: S105 - the seeded demo accounts


def psql(sql: str, database: str = "postgres") -> str:
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + database
    return subprocess.run(["psql", url, "-Atc", sql], check=True, capture_output=True, text=True).stdout


def backends() -> list[int]:
    return [
        int(pid)
        for pid in psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}'").split()  # noqa: S608
    ]


def wrk(base_url: str, path: str, token: str, seconds: int, method: str = "GET", body: str = "") -> dict:
    """One wrk run of a fixed request; the BENCH_JSON summary that wrk/report.lua prints."""
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(ROOT / "bench" / "wrk"),
        **{"BENCH_PATH": path, "BENCH_TOKEN": token, "BENCH_METHOD": method, "BENCH_BODY": body},
    }
    argv = ["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", str(ROOT / "bench/wrk/fixed.lua"), base_url]
    output = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def measure(server: Gunicorn, path: str, token: str, seconds: int, db: bool, **body: str) -> dict[str, float]:
    wrk(server.base_url, path, token, 1, **body)  # warm-up
    pids = [server.pid, *server.workers(), *(backends() if db else [])]
    before = ticks_of(pids)
    summary = wrk(server.base_url, path, token, seconds, **body)
    errors = sum(summary["errors"].values())
    if errors:
        raise RuntimeError(f"{errors} errors on {path}: {summary['errors']}")
    latency = summary["latency_us"]
    return {
        "cpu": ticks_delta_ms(before, ticks_of(pids)) / summary["requests"],
        "p50": latency["p50"] / 1000,
        "p99": latency["p99"] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    python = sys.executable
    psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    psql(f"CREATE DATABASE {DATABASE}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + DATABASE
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:6379/13",
        "PYTHONPATH": str(ROOT),
    }
    flask = [python, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    seed = ["seed", "--users", "2", "--todos", "90", "--prefix", "wc", "--password", PASSWORD]
    subprocess.run([*flask, *seed], cwd=ROOT, env=env, check=True, capture_output=True)
    logs = Path(tempfile.mkdtemp(prefix="todoapi-workers-"))
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in CLASSES}
    for round_ in range(args.rounds):
        for name, extra in CLASSES.items():
            server_env = {**env, "GUNICORN_CMD_ARGS": extra, "WEB_CONCURRENCY": "2"}
            ceiling = Gunicorn(
                "ceiling", "bench.ceiling:app", server_env, logs / f"ceiling-{name}.log", python
            )
            app = Gunicorn("app", "wsgi:app", server_env, logs / f"app-{name}.log", python)
            for server in (ceiling, app):
                server.start()
                server.wait_ready()
            try:
                login = {"email": "wc1@example.com", "password": PASSWORD}
                token = http("POST", app.base_url + "/auth/login", body=login).json()["access_token"]
                first = http("GET", app.base_url + "/todos?limit=1", token=token).json()["items"][0]["id"]
                cases = {
                    "ceiling": (ceiling, "/todos", {}),
                    "GET /todos?limit=50": (app, "/todos?limit=50", {}),
                    "GET /todos/{id}": (app, f"/todos/{first}", {}),
                    "GET /stats": (app, "/stats", {}),
                    "PATCH /todos/{id}": (
                        app,
                        f"/todos/{first}",
                        {"method": "PATCH", "body": '{"priority": 2}'},
                    ),
                }
                for label, (server, path, body) in cases.items():
                    result = measure(server, path, token, args.seconds, server is app, **body)
                    results[name].setdefault(label, []).append(result)
                    print(f"round {round_ + 1} {name:8} {label:22} {result}", flush=True)
            finally:
                for server in (ceiling, app):
                    server.stop()
            time.sleep(1)
    print(
        "\n| endpoint | " + " | ".join(f"{name} CPU ms/req | {name} p50 / p99 ms" for name in CLASSES) + " |"
    )
    print("| --- |" + " ---: | ---: |" * len(CLASSES))
    for label in results["gthread"]:
        cells = []
        for name in CLASSES:
            runs = results[name][label]
            median = {key: statistics.median(run[key] for run in runs) for key in ("cpu", "p50", "p99")}
            cells.append(f"{median['cpu']:.3f} | {median['p50']:.1f} / {median['p99']:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    psql(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    main()
