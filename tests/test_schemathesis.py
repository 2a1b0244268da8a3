"""schemathesis against the OpenAPI document of a real server: the Procfile's `release` then `web` line
(gunicorn, SQLite), `sh -c` from the repository root with the environment only, and an account made
over HTTP (register + login) whose bearer token goes with every request.

One run covers every operation but the three that end the session it runs with (`POST /auth/logout`,
`DELETE /me`; `POST /auth/refresh` needs a refresh token): `-c all`, a fixed seed and a bounded number
of examples. Those three get a short run of their own, each with an account of its own.

SPEC, "Operations": `/openapi.json` is an OpenAPI 3 spec that matches the real responses.
What the run found is listed in FINDINGS and pinned by the deterministic tests at the end.
"""

import base64
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema_rs
import pytest

from tests.processes import PROCFILE, ROOT, platform_environ, run_release
from todoapi.todos.schemas import SORT_KEYS

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SEED = 20_261_128
MAX_EXAMPLES = 15  # per operation and phase; with -c all the run takes about a minute
PASSWORD = "schemathesis password"
CORE_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
# Operations that end the session (or the account) the main run authenticates with.
SESSION_ENDING = ("POST /auth/logout", "DELETE /me", "POST /auth/refresh")


# A conditional PATCH/DELETE whose If-Match is any string but the current ETag answers 412: the
# SPEC's behaviour, documented, yet "schema-valid request rejected" to positive_data_acceptance.
CONFIG = """
[[operations]]
include-path = "/todos/{todo_id}"
include-method = ["PATCH", "DELETE"]
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "401", "403", "404", "409", "412", "429"]
"""

# Two creates with one Idempotency-Key and different bodies answer 422 (SPEC). schemathesis draws
# keys from a small pool ("0" again and again), so a valid key is made unique per request, as the
# tool itself advises for unique fields. Keys that are not valid stay as generated.
HOOKS = r"""
import itertools
import re

import schemathesis

VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
SERIAL = itertools.count()


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        headers["Idempotency-Key"] = f"{key[:200]}.{next(SERIAL)}"
"""


# --- findings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    check: str
    code: str
    operation: str
    message: str
    method: str
    url: str
    request_headers: str
    request_body: str
    status: int | None
    content_type: str
    response_body: str

    def json_body(self) -> Any:
        try:
            return json.loads(self.response_body)
        except ValueError:
            return None

    def errors(self, location: str) -> dict[str, Any]:
        body = self.json_body()
        errors = body.get("errors", {}) if isinstance(body, dict) else {}
        found = errors.get(location, {}) if isinstance(errors, dict) else {}
        return found if isinstance(found, dict) else {}

    def __str__(self) -> str:
        return (
            f"[{self.code} {self.check}] {self.operation}: {self.message!r}"
            f"\n    request: {self.method} {self.url} headers={self.request_headers} body={self.request_body}"
            f"\n    response: {self.status} {self.content_type} {self.response_body}"
        )


def _decode(content: Any, limit: int = 400) -> str:
    if isinstance(content, dict) and "$base64" in content:
        return base64.b64decode(content["$base64"]).decode(errors="replace")[:limit]
    return "" if content is None else str(content)[:limit]


def read_findings(report: Path) -> list[Finding]:
    """Every failed check in schemathesis' NDJSON event stream, with its request and response."""
    findings: dict[tuple[Any, ...], Finding] = {}
    for line in report.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario:
            continue
        recorder = scenario["recorder"]
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"] != "failure":
                    continue
                failure = check["failure_info"]["failure"]
                interaction = recorder.get("interactions", {}).get(case_id) or {}
                request, response = interaction.get("request") or {}, interaction.get("response") or {}
                headers = response.get("headers") or {}
                finding = Finding(
                    check=check["name"],
                    code=failure.get("code", ""),
                    operation=failure.get("operation", ""),
                    message=failure.get("message", "") or failure.get("title", ""),
                    method=request.get("method", ""),
                    url=request.get("uri", "")[:600],
                    request_headers=json.dumps(request.get("headers") or {})[:300],
                    request_body=_decode(request.get("body")),
                    status=response.get("status_code"),
                    content_type=(headers.get("content-type") or [""])[0],
                    response_body=_decode(response.get("content")),
                )
                findings.setdefault(
                    (finding.check, finding.operation, finding.message, finding.status), finding
                )
    return list(findings.values())


@dataclass(frozen=True)
class Probe:
    """What a deterministic check of a known finding gets to look at."""

    server: "Server"
    spec: dict[str, Any]
    auth: dict[str, str]

    def schema(self, name: str) -> dict[str, Any]:
        return dict(self.spec["components"]["schemas"][name])

    def parameter(self, path: str, method: str, name: str) -> dict[str, Any]:
        operation = self.spec["paths"][path]
        for parameter in [*operation.get("parameters", []), *operation[method].get("parameters", [])]:
            if "$ref" in parameter:
                parameter = self.spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
            if parameter["name"] == name:
                return dict(parameter)
        raise KeyError(name)


@dataclass(frozen=True)
class Known:
    name: str
    matches: Callable[[Finding], bool]  # is this finding of schemathesis' one of these?
    present: Callable[[Probe], bool]  # does it still reproduce (whatever this run's draws hit)?


# What schemathesis finds and is not fixed yet, each with a strict xfail on the run's tests. A run's
# draws vary with the server's state, so a run may miss some of them: `present` reproduces each one
# deterministically, which keeps the strict xfails stable.
#
# Found and fixed so far, each pinned by a deterministic test at the end of this file (F1-F9):
#   F1 500 on an id beyond 64 bits (OverflowError in sqlite3)
#   F2 If-Match documented `required: true` though optional
#   F3 PATCH request bodies documented as required
#   F4 `sort` documented as any string (then: keys repeated within it)
#   F5 todo body limits undocumented: tags count and length, NUL characters, blank titles
#   F6 Idempotency-Key pattern unanchored and not ECMA-262
#   F7 a request line over gunicorn's limit_request_line answered with gunicorn's text/html 414
#   F8 POST /auth/register `email` documented as any string
#   F9 PATCH /me `timezone` and `webhook_url` documented as any string (then: `new_password`
#      without `current_password` answered 422, a pairing OpenAPI 3.0 cannot state)
FINDINGS: tuple[Known, ...] = ()
CORE_FINDINGS: tuple[Known, ...] = ()  # those of FINDINGS that fail one of the CORE_CHECKS


class KnownFindings(AssertionError):
    """Raised when all that fails is in FINDINGS: the strict xfails below expect exactly this."""


def judge(findings: list[Finding], output: str, known: tuple[Known, ...], probe: Probe) -> None:
    unknown = [f for f in findings if not any(k.matches(f) for k in FINDINGS)]
    if unknown:
        raise AssertionError(
            "schemathesis found problems not in FINDINGS:\n"
            + "\n".join(str(f) for f in unknown)
            + f"\n\n{output[-20000:]}"
        )
    found = {k.name for f in findings for k in FINDINGS if k.matches(f)}
    present = {k.name for k in known if k.present(probe)}
    if findings or present:
        raise KnownFindings(
            "found by this run:\n  "
            + "\n  ".join(sorted(found))
            + "\nstill reproducing:\n  "
            + "\n  ".join(sorted(present))
            + "\n\n"
            + "\n".join(str(f) for f in findings)
        )


# --- the server and the runs ----------------------------------------------------------------------


class Server:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = platform_environ(
            workdir,
            "schemathesis.db",
            # Webhook URLs are taken as given: no DNS look-up leaves the machine.
            WEBHOOK_ALLOW_PRIVATE="true",
            LOGIN_RATE_LIMIT="100000/minute",
            PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        )
        self.base = f"http://127.0.0.1:{self.env['PORT']}"
        self.log_path = workdir / "web.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        run_release(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", PROCFILE["web"]],
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.output()
            with contextlib.suppress(OSError):
                if self.call("GET", "/health")[0] == 200:
                    return
            assert time.monotonic() < deadline, "web did not answer /health in 30 s\n" + self.output()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def output(self, tail: int = 6000) -> str:
        return "--- web log ---\n" + self.log_path.read_text(errors="replace")[-tail:]

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, Any]:
        """(status, content type, parsed JSON body or text)."""
        sent = dict(headers or {}) | ({"Content-Type": "application/json"} if body is not None else {})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, content_type, raw = response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as error:
            status, content_type, raw = error.code, error.headers["Content-Type"], error.read()
        try:
            return status, content_type or "", json.loads(raw) if raw else None
        except ValueError:
            return status, content_type or "", raw.decode(errors="replace")

    def account(self) -> dict[str, str]:
        """A new account, registered and logged in over HTTP: its access and refresh tokens."""
        email = f"st-{uuid.uuid4().hex[:10]}@example.com"
        status, _, body = self.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
        assert status == 201, body
        status, _, tokens = self.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
        assert status == 200, tokens
        return {"access": tokens["access_token"], "refresh": tokens["refresh_token"]}

    def schemathesis(self, name: str, *args: str, config: str = "") -> tuple[int, str, list[Finding]]:
        """`schemathesis run` as a subprocess; (exit code, output, findings from its NDJSON report)."""
        rundir = self.workdir / name
        rundir.mkdir()
        (rundir / "schemathesis.toml").write_text(config)
        (rundir / "hooks.py").write_text(HOOKS)
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                *("--config-file", "schemathesis.toml", "--no-color", "run", f"{self.base}/openapi.json"),
                *("--seed", str(SEED), "--generation-database", "none", "--request-timeout", "10"),
                *("--report", "ndjson", "--report-ndjson-path", "events.ndjson"),
                *args,
            ],
            cwd=rundir,  # reports and any state stay in the run's own directory
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(rundir / "hooks.py"), "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=240,
        )
        output = result.stdout + result.stderr
        report = rundir / "events.ndjson"
        findings = read_findings(report) if report.exists() else []
        return result.returncode, output, findings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("schemathesis"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@dataclass
class Run:
    returncode: int
    output: str
    findings: list[Finding]


@pytest.fixture(scope="module")
def main_run(server: Server) -> Run:
    token = server.account()["access"]
    exclusions = [arg for operation in SESSION_ENDING for arg in ("--exclude-name", operation)]
    returncode, output, findings = server.schemathesis(
        "main",
        *("-H", f"Authorization: Bearer {token}", "-c", "all", "--continue-on-failure"),
        *("--max-examples", str(MAX_EXAMPLES), *exclusions),
        config=CONFIG,
    )
    assert "Loaded specification" in output, output  # the run itself worked
    assert returncode == 0 or findings, output
    return Run(returncode, output, findings)


@pytest.fixture(scope="module")
def probe(server: Server) -> Probe:
    auth = {"Authorization": f"Bearer {server.account()['access']}"}
    return Probe(server, server.call("GET", "/openapi.json")[2], auth)


def test_no_server_errors_and_every_response_matches_the_spec(main_run: Run, probe: Probe) -> None:
    """The five conformance checks: no 5xx, documented status codes, content types, headers, bodies."""
    core = [f for f in main_run.findings if f.check in CORE_CHECKS]
    judge(core, main_run.output, CORE_FINDINGS, probe)


def test_schemathesis_all_checks_exit_code_0(main_run: Run, probe: Probe) -> None:
    judge(main_run.findings, main_run.output, FINDINGS, probe)
    assert main_run.returncode == 0, main_run.output


def test_session_ending_operations_conform_each_with_an_account_of_its_own(server: Server) -> None:
    logout, delete, refresh = server.account(), server.account(), server.account()
    config = f"""
[[operations]]
include-name = "POST /auth/logout"
headers = {{ Authorization = "Bearer {logout["access"]}" }}

[[operations]]
include-name = "DELETE /me"
headers = {{ Authorization = "Bearer {delete["access"]}" }}

[[operations]]
include-name = "POST /auth/refresh"
headers = {{ Authorization = "Bearer {refresh["refresh"]}" }}
"""
    inclusions = [arg for operation in SESSION_ENDING for arg in ("--include-name", operation)]
    returncode, output, findings = server.schemathesis(
        "session", "-c", "all", "--continue-on-failure", "--max-examples", "10", *inclusions, config=config
    )
    assert returncode == 0, output + "\n".join(str(f) for f in findings)
    assert "3 selected" in output, output
    # Each did its work once, then its token stopped working.
    assert server.call("GET", "/me", headers={"Authorization": f"Bearer {logout['access']}"})[0] == 401
    assert server.call("GET", "/me", headers={"Authorization": f"Bearer {delete['access']}"})[0] == 401
    assert (
        server.call("POST", "/auth/refresh", headers={"Authorization": f"Bearer {refresh['refresh']}"})[0]
        == 401
    )


# --- the findings, pinned: deterministic requests, fixed when these XPASS -------------------------


def test_ids_beyond_64_bits_are_not_found_not_a_server_error(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.account()['access']}"}
    huge = 2**63
    outcomes = {
        (method, path): server.call(method, path, {} if method == "PATCH" else None, auth)[0]
        for method, path in [
            ("GET", f"/todos/{huge}"),
            ("PATCH", f"/todos/{huge}"),
            ("DELETE", f"/todos/{huge}"),
            ("POST", f"/notifications/{huge}/read"),
        ]
    }
    assert set(outcomes.values()) == {404}, outcomes


def test_openapi_documents_if_match_as_optional(server: Server) -> None:
    spec = server.call("GET", "/openapi.json")[2]
    parameters = spec.get("components", {}).get("parameters", {})
    for method in ("patch", "delete"):
        for parameter in spec["paths"]["/todos/{todo_id}"][method].get("parameters", []):
            resolved = parameters[parameter["$ref"].rsplit("/", 1)[1]] if "$ref" in parameter else parameter
            if resolved["name"] == "If-Match":
                assert not resolved.get("required", False), (method, resolved)
    # ...as the server does: no If-Match, the change goes through.
    auth = {"Authorization": f"Bearer {server.account()['access']}"}
    status, _, todo = server.call("POST", "/todos", {"title": "no If-Match"}, auth)
    assert status == 201
    assert server.call("PATCH", f"/todos/{todo['id']}", {"done": True}, auth)[0] == 200
    assert server.call("DELETE", f"/todos/{todo['id']}", None, auth)[0] == 204


def test_patch_bodies_are_documented_as_optional(probe: Probe) -> None:
    """F3: a PATCH without a body changes nothing, and the document says the body may be left out."""
    for path in ("/todos/{todo_id}", "/me"):
        assert probe.spec["paths"][path]["patch"]["requestBody"].get("required") is False, path
    assert probe.server.call("PATCH", "/me", headers=probe.auth)[0] == 200


def test_openapi_idempotency_key_pattern_admits_only_what_the_api_accepts(server: Server) -> None:
    spec = server.call("GET", "/openapi.json")[2]
    [header] = [p for p in spec["paths"]["/todos"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    pattern = header["schema"]["pattern"]
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    assert re.search(pattern, "é0") is None


def _admits(schema: dict[str, Any], value: Any) -> bool:
    """Whether the OpenAPI document's schema admits a value, judged as schemathesis judges it."""
    return bool(jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value))


def test_sort_is_documented_as_the_api_checks_it(probe: Probe) -> None:
    """F4: each key at most once (a repeated key is 422), which the pattern says with a lookahead."""
    schema = probe.parameter("/todos", "get", "sort")["schema"]
    for sort in [
        "title",
        "-priority,due_date",
        ",".join(f"-{key}" for key in SORT_KEYS),
        "title,-title",
        "priority,priority",
        "created_at,title,-created_at",
        "due_date,priority,title,due_date",
        "bogus",
        "",
        "title,",
        "-",
    ]:
        status = probe.server.call("GET", f"/todos?{urlencode({'sort': sort})}", headers=probe.auth)[0]
        assert status in (200, 422), (sort, status)
        assert (status == 200) == _admits(schema, sort), (sort, status)


def test_todo_bodies_document_the_limits_the_api_enforces(probe: Probe) -> None:
    """F5: what the schema admits is created, what it refuses is 422; tags count as sent."""
    for name in ("TodoCreate", "TodoUpdate"):
        tags = probe.schema(name)["properties"]["tags"]
        assert (tags["maxItems"], tags["items"]["maxLength"]) == (20, 50), tags
    bodies: list[dict[str, Any]] = [
        {"title": "x" * 200, "description": "d" * 10_000},
        {"title": " x ", "tags": ["İ" * 50] * 20},  # one tag once de-duplicated, 50 characters
        {"title": "\u3000x\ufeff", "tags": ["", "  "]},
        {"title": "x" * 201},
        {"title": "\u3000\u2028 \x85"},  # whitespace only, as str.strip() sees it
        {"title": "nul\x00"},
        {"title": "x", "description": "nul\x00"},
        {"title": "x", "tags": ["a"] * 21},
        {"title": "x", "tags": ["t" * 51]},
        {"title": "x", "tags": ["nul\x00"]},
    ]
    create, update = probe.schema("TodoCreate"), probe.schema("TodoUpdate")
    status, _, todo = probe.server.call("POST", "/todos", {"title": "to update"}, probe.auth)
    assert status == 201, todo
    for body in bodies:
        created = probe.server.call("POST", "/todos", body, probe.auth)[0]
        assert (created == 201, created in (201, 422)) == (_admits(create, body), True), (body, created)
        updated = probe.server.call("PATCH", f"/todos/{todo['id']}", body, probe.auth)[0]
        assert (updated == 200, updated in (200, 422)) == (_admits(update, body), True), (body, updated)


def test_register_email_is_documented_as_the_api_checks_it(probe: Probe) -> None:
    """F8: `format: email` and a pattern; an address they admit is registered, any other is 422."""
    schema = probe.schema("UserRegister")["properties"]["email"]
    assert schema["format"] == "email" and schema["pattern"].startswith("^"), schema
    tag = uuid.uuid4().hex[:8]
    for email in [
        f"f8-{tag}@example.com",
        f"o'brien+{tag}@mail.example.co.uk",
        f"{tag}.{'a' * 55}@example.com",  # a local part of 64
        f"{tag}.{'a' * 56}@example.com",
        f"{tag}@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 61}",  # a domain of 253
        f"{tag}@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 62}",
        "000",
        f"{tag}@localhost",
        f"{tag}@[127.0.0.1]",
        f'"{tag} x"@example.com',
        f"{tag}@exämple.com",
        f"{tag}@ab--c.example.com",
        f"{tag}..x@example.com",
    ]:
        status, _, body = probe.server.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
        assert status in (201, 422), (email, body)
        assert (status == 201) == _admits(schema, email), (email, body)


def test_me_timezone_and_webhook_url_are_documented_as_the_api_checks_them(probe: Probe) -> None:
    """F9: a pattern naming every IANA zone; an absolute http(s) URL. (The server under test allows
    private and plain-http webhook targets, so no host is looked up: SPEC's SSRF guard is a further
    documented 422 where it is on.)"""
    properties = probe.schema("UserUpdate")["properties"]
    cases = {
        "timezone": [
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+1",
            "UTC",
            "Mars/Olympus",
            "europe/berlin",
            "Etc/GMT+",
            "localtime",
            "",
        ],
        "webhook_url": [
            "https://hooks.example.com/todo?x=1&y=%20#f",
            "HTTP://127.0.0.1:8080/hook",
            "http://[::1]:8080/",
            "https://x:65535",
            "https://x:65536/",
            "https://x:0/",
            "http://[1.2.3.4]/",
            "https://user@hooks.example.com/",
            "https://hooks.example.com/a b",
            "https://hooks.example.com/%zz",
            "ftp://hooks.example.com/",
            "//hooks.example.com/",
            "https://",
        ],
    }
    for field, values in cases.items():
        for value in values:
            status, _, body = probe.server.call("PATCH", "/me", {field: value}, probe.auth)
            assert status in (200, 422), (field, value, body)
            assert (status == 200) == _admits(properties[field], value), (field, value, body)


ASTRAL = "\U0001f600"  # four bytes of UTF-8: twelve characters once percent-encoded


def test_every_request_line_the_spec_allows_fits_the_server(probe: Probe) -> None:
    """F7: every query parameter of GET /todos at its documented bound, each character the longest
    to percent-encode, is one request line within gunicorn's limit_request_line (8190, raised from
    4094): answered by the API, never by gunicorn's text/html 414. One tag more is a JSON 422."""
    schemas = {
        parameter["name"]: parameter["schema"]
        for parameter in probe.spec["paths"]["/todos"]["get"]["parameters"]
        if parameter["in"] == "query"
    }
    tags, since = schemas["tag"], schemas["updated_since"]
    worst: dict[str, Any] = {
        "skip": schemas["skip"]["maximum"],
        "limit": schemas["limit"]["maximum"],
        "done": False,
        "tag": [ASTRAL * tags["items"]["maxLength"]] * tags["maxItems"],
        "q": ASTRAL * schemas["q"]["maxLength"],
        "priority": schemas["priority"]["maximum"],
        "due_before": "2026-12-31",
        "due_after": "2026-12-31",
        "updated_since": "2026-11-28T10:24:51." + "1" * (since["maxLength"] - 26) + "+01:00",
        "sort": ",".join(f"-{key}" for key in SORT_KEYS),  # each key once: the longest there is
    }
    assert set(worst) == set(schemas), "a parameter without a bound in this test"
    for name, value in worst.items():
        assert _admits(schemas[name], value), (name, value)
    worst["done"] = "false"
    query = urlencode(worst, doseq=True)
    assert len(f"GET /todos?{query} HTTP/1.1") <= 8190

    status, content_type, body = probe.server.call("GET", f"/todos?{query}", headers=probe.auth)
    assert (status, content_type) == (200, "application/json"), body

    query = urlencode(worst | {"tag": worst["tag"] + worst["tag"][:1]}, doseq=True)
    status, content_type, body = probe.server.call("GET", f"/todos?{query}", headers=probe.auth)
    assert (status, content_type) == (422, "application/json"), body
    assert set(body["errors"]["query"]) == {"tag"}, body


def test_a_query_string_too_long_for_the_server_is_refused_in_the_json_error_shape(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.account()['access']}"}
    query = "&".join(f"tag={'t' * 50}" for _ in range(90))  # 90 tags of 50 chars: each one schema-valid
    status, content_type, body = server.call("GET", f"/todos?{query}", headers=auth)
    assert status < 500
    assert content_type.startswith("application/json"), (status, content_type, body)
    assert isinstance(body, dict) and body.get("code") == status, body
