"""Ratios, the issue's targets (PASS / FAIL / NOT MEASURED), markdown tables, py-spy hotspots."""

import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

LIST_KEYS = ("list", "list_tag", "list_q", "list_sort")
SCALING_KEYS = (*LIST_KEYS, "stats")
LIST_CPU_LIMIT = 2.5  # x ceiling, typical user's list variants
ITEM_CPU_LIMIT = 2.0  # x ceiling, GET /todos/{id}, PATCH, POST
SCALING_LIMIT = 1.3
HEAVY_P99_MS = 50.0
TAIL_LIMIT = 4.0  # p99 / p50
RSS_LIMIT_PCT = 10.0
SCAN_SECONDS = 10.0  # "completes in seconds"
BALANCED_SHARE = 0.7  # bench/run.py measures a run again when one worker did more of the work
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
DB_TITLE = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _round_cpu(run: dict[str, Any]) -> list[float | None]:
    """CPU ms/request of each round, in the order they ran."""
    if "per_round" in run:
        return [r["cpu_ms_per_request"] for r in run["per_round"]]
    return [run["cpu_ms_per_request"]]


def _paired(numerators: list[float | None], denominators: list[float | None]) -> dict[str, Any] | None:
    """Ratios of runs measured back to back, one per round: their median and range."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True) if a is not None and b)
    if not ratios:
        return None
    return {
        "ratio": round(statistics.median(ratios), 2),
        "range": [round(ratios[0], 2), round(ratios[-1], 2)],
    }


def add_ratios(result: dict[str, Any]) -> None:
    """x ceiling: the median over rounds of each round's CPU/request divided by the ceiling run right
    before it; results from before the paired runs fall back to median CPU / the ceiling's median.
    Scaling: the median over rounds of large / small, measured back to back in each round."""
    ceiling = result["ceiling"]["cpu_ms_per_request"]
    paired = "paired_ceiling" in result
    for run in result.get("small_runs", {}).values():
        run["ceiling_ratio"] = _ratio(run["cpu_ms_per_request"], ceiling)
    for run in result.get("runs", {}).values():
        pair = _paired(_round_cpu(run), run["paired_ceiling_cpu_ms"]) if paired else None
        run["ceiling_ratio"] = pair["ratio"] if pair else _ratio(run["cpu_ms_per_request"], ceiling)
        run["ceiling_ratio_range"] = pair["range"] if pair else None
    if "soak" in result:
        result["soak"]["ceiling_ratio"] = _ratio(result["soak"]["cpu_ms_per_request"], ceiling)
    scaling = {}
    for key in SCALING_KEYS:
        large = result.get("runs", {}).get(f"typical.{key}")
        small = result.get("small_runs", {}).get(f"typical.{key}")
        if large and small:
            pair = _paired(_round_cpu(large), _round_cpu(small)) if paired else None
            scaling[key] = {
                "small_cpu_ms": small["cpu_ms_per_request"],
                "large_cpu_ms": large["cpu_ms_per_request"],
                "ratio": pair["ratio"]
                if pair
                else _ratio(large["cpu_ms_per_request"], small["cpu_ms_per_request"]),
                "range": pair["range"] if pair else None,
            }
    result["scaling"] = scaling


def _check(name: str, values: dict[str, Any], ok: Any, unit: str = "") -> dict[str, Any]:
    if not values or any(v is None for v in values.values()):
        return {"target": name, "status": "NOT MEASURED", "values": values}
    passed = all(ok(v) for v in values.values())
    detail = ", ".join(f"{k} {v}{unit}" for k, v in values.items())
    return {"target": name, "status": "PASS" if passed else "FAIL", "values": values, "detail": detail}


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    runs = result.get("runs", {})
    targets = []

    def ratios(keys: list[str]) -> dict[str, Any]:
        return {key: runs[key]["ceiling_ratio"] for key in keys if key in runs}

    targets.append(
        _check(
            f"typical user's list + tag/q/sort <= {LIST_CPU_LIMIT}x ceiling CPU/request",
            ratios([f"typical.{k}" for k in LIST_KEYS]),
            lambda v: v <= LIST_CPU_LIMIT,
            "x",
        )
    )
    targets.append(
        _check(
            f"GET /todos/{{id}}, PATCH, POST <= {ITEM_CPU_LIMIT}x ceiling CPU/request",
            ratios(["typical.get", "writer.patch", "writer.post"]),
            lambda v: v <= ITEM_CPU_LIMIT,
            "x",
        )
    )
    targets.append(
        _check(
            f"scaling: typical list/stats CPU in the large DB <= {SCALING_LIMIT}x the small DB's",
            {k: v["ratio"] for k, v in result.get("scaling", {}).items()},
            lambda v: v <= SCALING_LIMIT,
            "x",
        )
    )
    targets.append(
        _check(
            f"heavy user: every list variant p99 <= {HEAVY_P99_MS:g} ms",
            {
                f"heavy.{k}": round(runs[f"heavy.{k}"]["latency_ms"]["p99"], 1)
                for k in LIST_KEYS
                if f"heavy.{k}" in runs
            },
            lambda v: v <= HEAVY_P99_MS,
            " ms",
        )
    )
    targets.append(
        _check(
            f"p99 <= {TAIL_LIMIT:g}x p50 on every read endpoint",
            {k: r["p99_over_p50"] for k, r in runs.items() if r["read"]},
            lambda v: v <= TAIL_LIMIT,
            "x",
        )
    )
    every = {
        "ceiling": result["ceiling"],
        **({"ceiling (paired runs)": result["paired_ceiling"]} if "paired_ceiling" in result else {}),
        **{f"small:{k}": r for k, r in result.get("small_runs", {}).items()},
        **runs,
    }
    if "soak" in result:
        every["soak"] = result["soak"]
    errors = {k: r["error_count"] for k, r in every.items()}
    target = _check("zero errors (socket errors + status >= 400), every run", errors, lambda v: v == 0)
    if target["status"] != "NOT MEASURED":
        bad = {k: v for k, v in errors.items() if v}
        target["detail"] = "none" if not bad else ", ".join(f"{k} {v}" for k, v in bad.items())
    targets.append(target)

    argon2 = result.get("argon2", {})
    service, defaults = argon2.get("service", {}), argon2.get("argon2_cffi_defaults", {})
    login = runs.get("login")
    if service and login:
        names = ("time_cost", "memory_cost", "parallelism")
        kept = all(service[n] >= defaults[n] for n in names)
        targets.append(
            {
                "target": "login bound by argon2, parameters not below argon2-cffi's defaults",
                "status": "PASS" if kept else "FAIL",
                "values": {"logins_per_s": login["rps"], **{n: service[n] for n in names}},
                "detail": f"{login['rps']} logins/s; "
                + ", ".join(f"{n}={service[n]} (default {defaults[n]})" for n in names),
            }
        )
    else:
        targets.append({"target": "login / argon2", "status": "NOT MEASURED", "values": {}})

    soak = result.get("soak")
    rss_name = (
        f"RSS of each gunicorn worker and the RQ worker within {RSS_LIMIT_PCT:g} % (end vs first minute)"
    )
    if soak:
        target = _check(
            rss_name,
            {k: v["change_pct"] for k, v in soak["rss"].items()},
            lambda v: abs(v) <= RSS_LIMIT_PCT,
            " %",
        )
        target["detail"] = (
            f"{soak['rss_first_at_s']:g} s vs {soak['rss_last_at_s']:g} s of a "
            f"{result['settings']['soak_minutes']:g}-minute soak: " + target.get("detail", "")
        )
        targets.append(target)
    else:
        targets.append({"target": rss_name, "status": "NOT MEASURED", "values": {}, "detail": "no soak"})

    scan = result.get("scan")
    scan_name = (
        f"due-soon scan: many due soon in < {SCAN_SECONDS:g} s; cost follows the number due, not the table"
    )
    if scan:
        many, few_large, few_small = scan["scenarios"][0], scan["scenarios"][1], scan["scenarios"][-1]
        fast = many["scan_s"] < SCAN_SECONDS and many["scan_found"] == many["due_soon"]
        size_free = few_large["scan_s"] <= 3 * few_small["scan_s"] + 0.1
        targets.append(
            {
                "target": scan_name,
                "status": "PASS" if fast and size_free else "FAIL",
                "values": {
                    "many": many["scan_s"],
                    "few_large_table": few_large["scan_s"],
                    "few_small_table": few_small["scan_s"],
                },
                "detail": (
                    f"{many['due_soon']:,} due in {many['table_todos']:,}: {many['scan_s']} s; "
                    f"{few_large['due_soon']} due in {few_large['table_todos']:,}: {few_large['scan_s']} s; "
                    f"{few_small['due_soon']} due in {few_small['table_todos']:,}: {few_small['scan_s']} s"
                ),
            }
        )
    else:
        targets.append({"target": scan_name, "status": "NOT MEASURED", "values": {}})
    return targets


# --- markdown -----------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _who(key: str) -> str:
    return {"typical": "typical", "heavy": "heavy", "writer": "writer"}.get(key.split(".")[0], "-")


def _endpoint_rows(runs: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for key, run in runs.items():
        lat = run["latency_ms"]
        rows.append(
            f"| {run['label']} | {_who(key)} | {fmt(run['rps'], 1)} "
            f"| {fmt(lat['p50'])} | {fmt(lat['p99'])} | "
            f"{fmt(run['p99_over_p50'])} | {run['error_count']} | {_cpu_cell(run)} | "
            f"{_ratio_cell(run.get('ceiling_ratio'), run.get('ceiling_ratio_range'))} |"
        )
    return rows


def _cpu_cell(run: dict[str, Any]) -> str:
    spread = run.get("cpu_ms_per_request_range")
    cell = fmt(run["cpu_ms_per_request"], 3)
    return f"{cell} ({fmt(spread[0], 2)}..{fmt(spread[1], 2)})" if spread else cell


def _ratio_cell(ratio: float | None, spread: list[float] | None) -> str:
    cell = fmt(ratio)
    return f"{cell} ({fmt(spread[0])}..{fmt(spread[1])})" if spread and spread[0] != spread[1] else cell


HEADER = (
    "| endpoint | user | req/s | p50 ms | p99 ms | p99/p50 | errors | server CPU ms/req | x ceiling |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def rounds_note(result: dict[str, Any]) -> str:
    repeat = result["settings"].get("repeat", 1)
    seconds = result["settings"]["duration_s"]
    if repeat <= 1:
        return f"Each endpoint: one wrk run of {seconds} s."
    note = (
        f"Each endpoint: {repeat} rounds of {seconds} s, the ceiling and the small dataset interleaved "
        "with the large one; the tables give medians (req/s, percentiles, CPU/request; CPU's min..max "
        "across rounds in brackets) and the error total. Login: one run."
    )
    if "paired_ceiling" in result:
        note += (
            f" Before each endpoint in each round, a {result['settings']['pair_seconds']} s "
            "run of the ceiling: x ceiling is the median over rounds of the endpoint's CPU/request divided "
            "by that run's (min..max in brackets), and scaling the median over rounds of large / small, "
            "measured back to back."
        )
        runs = [result["ceiling"], result["paired_ceiling"], *result.get("runs", {}).values()]
        rounds = [r for run in runs for r in run.get("per_round", [run])]
        if any("busiest_worker_share" in r for r in rounds):  # recorded since bcdcd2b
            note += (
                f" A run where one gunicorn worker did over {BALANCED_SHARE:.0%} of the workers' CPU "
                "(wrk's connections all accepted by one worker) was measured again, at most twice: "
                f"{sum(r['unbalanced_reruns'] for r in rounds)} such re-runs in this run."
            )
    return note


def shared_note(result: dict[str, Any]) -> str:
    """How much of the machine other tenants took during the measured runs."""
    runs = [result["ceiling"], *result.get("small_runs", {}).values(), *result.get("runs", {}).values()]
    runs += [result["paired_ceiling"]] if "paired_ceiling" in result else []
    shares = [
        r["cpu_ms"]["others"] / r["cpu_ms"]["machine_capacity"]
        for r in runs
        if r["cpu_ms"].get("machine_capacity")
    ]
    if not shares:
        return ""
    cores = result["machine"]["nproc"]
    mean = sum(shares) / len(shares) * cores
    return (
        f"Shared machine: during the measured runs other processes (not this service, its database "
        f"backends or wrk) used {mean:.2f} of the {cores} cores on average "
        f"(from {min(shares) * cores:.2f} to {max(shares) * cores:.2f}); req/s and latencies suffer from "
        f"that, CPU per request much less."
    )


def markdown_db(result: dict[str, Any]) -> str:
    title = DB_TITLE.get(result["db"], result["db"])
    large, small = result["datasets"]["large"], result["datasets"]["small"]
    out = [
        f"### {title} ({result['mode']} run, {result['started_at']})",
        "",
        f"Large dataset: {large['users']:,} users, {large['total']:,} todos (heavy user {large['heavy']:,}); "
        f"seeded {large['seeded_at']} in {large['seed_seconds']:g} s. "
        f"Small dataset: {small['users']:,} users, {small['total']:,} todos. "
        f"Typical user: {large['todos']} todos in both. gunicorn workers: {result.get('workers')}.",
        "",
        shared_note(result),
        "",
        rounds_note(result),
        "",
        "| target | result | measured |",
        "| --- | --- | --- |",
    ]
    for target in result["targets"]:
        out.append(f"| {target['target']} | **{target['status']}** | {target.get('detail', '')} |")
    out += ["", HEADER]
    ceiling = result["ceiling"]
    out += _endpoint_rows({"ceiling": {**ceiling, "ceiling_ratio": 1.0}})
    out += _endpoint_rows(result.get("runs", {}))
    out += [
        "",
        "Server CPU = user+system CPU of the gunicorn master and workers"
        + (
            " plus the PostgreSQL backends serving the benchmark database"
            if result["db"] == "postgres"
            else ""
        )
        + ", divided by the requests wrk completed.",
        "",
        "Scaling (typical user, same account size, CPU ms/request):",
        "",
        "| endpoint | small DB | large DB | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, row in result.get("scaling", {}).items():
        label = "GET /stats" if key == "stats" else f"GET {LIST_LABELS.get(key, key)}"
        out.append(
            f"| {label} | {fmt(row['small_cpu_ms'], 3)} "
            f"| {fmt(row['large_cpu_ms'], 3)} | {_ratio_cell(row['ratio'], row.get('range'))} |"
        )
    soak = result.get("soak")
    if soak:
        out += [
            "",
            f"Soak: {result['settings']['soak_minutes']:g} min of mixed load, {fmt(soak['rps'], 1)} req/s, "
            f"p50 {fmt(soak['latency_ms']['p50'])} ms, p99 {fmt(soak['latency_ms']['p99'])} ms, "
            f"{soak['error_count']} errors, {fmt(soak['cpu_ms_per_request'], 3)} CPU ms/req; "
            f"{soak.get('notifications_created', 0):,} notifications created by the worker.",
            "",
            "RSS is the minimum of 10 readings over the 5 s before each mark (the baseline: a login "
            "in flight adds argon2's 64 MiB for its duration); the highest reading is the peak.",
            "",
            f"| process | RSS at {soak['rss_first_at_s']:g} s "
            f"| RSS at {soak['rss_last_at_s']:g} s | change | peak during the soak |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, row in soak["rss"].items():
            out.append(
                f"| {name} | {fmt(row['first_kib'])} KiB | {fmt(row['last_kib'])} KiB "
                f"| {fmt(row['change_pct'], 1)} % | {fmt(row.get('max_peak_kib'))} KiB |"
            )
    scan = result.get("scan")
    if scan:
        out += [
            "",
            "Due-soon scan (`scan_due_soon` with an injected now; the CLI column is "
            "`flask --app wsgi notify-due --dry-run` end to end, process start included):",
            "",
            "| todos in table | due soon | scan s (found) | dry run s | re-scan s | CLI --dry-run s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in scan["scenarios"]:
            out.append(
                f"| {row['table_todos']:,} | {row['due_soon']:,} "
                f"| {row['scan_s']:.3f} ({row['scan_found']:,}) | "
                f"{row['dry_run_s']:.3f} | {row['rescan_s']:.3f} | {row['cli_dry_run_s']:.2f} |"
            )
    profile = result.get("profile", {})
    if profile:
        keys = list(profile)
        out += [
            "",
            "Profile (py-spy --gil on every worker during an extra run; % of samples with a frame in "
            "the category, categories overlap):",
            "",
            "| category | " + " | ".join(keys) + " |",
            "| --- |" + " ---: |" * len(keys),
        ]
        names = list(dict.fromkeys(name for key in keys for name in profile[key].get("suspects", {})))
        for name in names:
            cells = [fmt(profile[key].get("suspects", {}).get(name), 1) for key in keys]
            out.append(f"| {name} | " + " | ".join(f"{c} %" if c != "-" else c for c in cells) + " |")
        for key in keys:
            top = ", ".join(f"`{h['frame']}` {h['pct']} %" for h in profile[key]["self"][:6])
            out.append(f"\nTop self time, {key} ({profile[key]['samples']} samples): {top}.")
    argon2 = result.get("argon2", {})
    if argon2:
        service = argon2["service"]
        out += [
            "",
            f"Login: argon2id (`todoapi.auth.services.hasher`) time_cost={service['time_cost']}, "
            f"memory_cost={service['memory_cost']} KiB, parallelism={service['parallelism']} "
            f"(argon2-cffi {argon2.get('argon2_cffi')} defaults: {argon2['argon2_cffi_defaults']}); "
            f"seeded hashes: `{'$'.join(argon2.get('seeded_hash_prefix', []))}`.",
        ]
    return "\n".join(out) + "\n"


LIST_LABELS = {
    "list": "/todos?limit=50",
    "list_tag": "/todos?limit=50&tag=work",
    "list_q": "/todos?limit=50&q=review",
    "list_sort": "/todos?limit=50&sort=-priority,due_date",
}


def machine_markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    cleaned = {**machine["versions"]}
    cleaned["wrk"] = cleaned.get("wrk", "").split(" [")[0].removeprefix("wrk ")
    versions = ", ".join(f"{k} {v}" for k, v in cleaned.items())
    conf = machine.get("gunicorn_conf", {})
    settings = result["settings"]
    return "\n".join(
        [
            f"- Command: `{result['command']}`",
            f"- Machine: {machine['nproc']} cores ({machine['cpu_model']}), kernel {machine['kernel']}; "
            f"load average at start {' '.join(machine['loadavg_at_start'])}. `free -h`:",
            "",
            "```",
            # older results lost the header's indentation
            (" " * 15 if machine["free_h"].startswith("total") else "") + machine["free_h"],
            "```",
            f"- Versions: {versions}.",
            f"- Code: commit {machine['git_commit']}"
            + (" with uncommitted changes to the app" if machine["app_code_modified"] else "")
            + f"; gunicorn.conf.py: {conf}.",
            f"- wrk: {settings['connections']} connections, {settings['wrk_threads']} threads, "
            f"{settings['duration_s']} s per endpoint after {settings['warmup_s']} s of warm-up, "
            f"timeout {settings['wrk_timeout_s']} s.",
        ]
    )


def markdown(results: list[dict[str, Any]]) -> str:
    if not results:
        return ""
    parts = [machine_markdown(results[0]), ""]
    parts += [markdown_db(result) for result in results]
    return "\n".join(parts)


def console(result: dict[str, Any]) -> str:
    return "\n" + markdown_db(result)


def update_benchmarks(path: Path, summary: str) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{summary.rstrip()}\n{END}{tail}")


# --- py-spy -------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _package(file: str) -> str:
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/todoapi/" in file or file.startswith("todoapi/"):
        return "todoapi." + file.split("todoapi/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python" in file:
        return "stdlib:" + file.split("/lib/python", 1)[1].split("/", 1)[1].split("/", 1)[0].removesuffix(
            ".py"
        )
    return file or "?"


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['func']} ({file})"


# The usual suspects: the share of samples with any frame matching (inclusive).
SUSPECTS = {
    # layers: all of Flask (the rest is gunicorn's HTTP handling), and the view with its decorators
    # (JWT, argument parsing, serialisation); Flask minus view = request hooks, routing, response
    "Flask app, all (Flask.wsgi_app)": r"^Flask\.wsgi_app \(",
    "view incl. decorators (MethodView.dispatch_request)": r"^MethodView\.dispatch_request \(",
    "request log line (JSON logging)": r"^Logger\.(info|_log|handle) \(",
    "metrics (prometheus_client)": r"\(prometheus_client/",
    "JWT verification + session/user query": r"^verify_jwt_in_request \(",
    "query-string / body parsing (webargs, marshmallow load)": r"^Parser\.parse \(",
    "response serialisation (marshmallow dump)": r"^Schema\.dump \(",
    "JSON encoding": r"^(JSONEncoder\.encode|DefaultJSONProvider\.(dumps|response)) \(",
    "SQL building (peewee Context)": r"^(Context\.sql|Context\.parse|BaseQuery\.sql) \(",
    "SQL execution (cursor.execute)": r"^Database\._execute_cursor \(",
    "rows to model instances": r"^(BaseModelCursorWrapper|ModelObjectCursorWrapper|CursorWrapper)\.",
    "COUNT for `total`": r"^SelectBase\.count \(",
    "connection pool checkout/return": r"^(Database\.connect|Database\.close|PooledDatabase\.\w+) \(",
    # the ETag work itself, not the decorator's wrapper around the whole view
    "ETag (flask-smorest)": r"^(EtagMixin\.(_\w+|check_etag|set_etag)|_get_etag_ctx) \(flask_smorest/etag",
    "argon2": r"\(argon2/",
}


def hotspots(files: list[Path], top: int = 20) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's raw (collapsed stack) output, recorded with
    --gil: only threads running Python count, so idle pool threads and selectors do not."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    suspects: Counter[str] = Counter()
    patterns = {name: re.compile(pattern) for name, pattern in SUSPECTS.items()}
    total = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [f for f in stack.split(";") if "(" in f]
            if not frames:
                continue
            total += count
            own[_short(frames[-1])] += count
            match = _FRAME.match(frames[-1].strip())
            packages[_package(match["file"]) if match else "?"] += count
            unique = {_short(f) for f in frames}
            for frame in unique:
                inclusive[frame] += count
            for name, pattern in patterns.items():
                if any(pattern.search(frame) for frame in unique):
                    suspects[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return (
            [{"frame": k, "pct": round(v * 100 / total, 1)} for k, v in counter.most_common(top)]
            if total
            else []
        )

    return {
        "samples": total,
        "self": share(own),
        "inclusive": share(inclusive),
        "self_by_package": share(packages),
        "suspects": {k: round(v * 100 / total, 1) for k, v in suspects.most_common()} if total else {},
    }
