"""Request logs, X-Request-ID, secrets kept out of logs, job log lines, security headers, /metrics.

In-process, against the real app on both databases and real Redis. The same JSON rendering, over a
real gunicorn with several workers, is in test_metrics_gunicorn.py.
"""

import io
import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from werkzeug.test import TestResponse

from tests.conftest import PASSWORD
from tests.helpers import assert_error
from tests.webhook_receiver import Receiver
from todoapi.notifications import jobs
from todoapi.ops.logs import JsonLinesHandler, configure_logging, request_id_var
from todoapi.ops.metrics import KNOWN_METHODS, NOTIFICATIONS
from todoapi.queue import AppSimpleWorker, enqueue, get_queue, get_redis

REQUEST_LOGGER = "todoapi.request"
LOG_FIELDS = {"time", "level", "method", "path", "status", "duration_ms", "request_id", "user_id"}
VALID_ID = re.compile(r"[\x21-\x7e]{1,128}")
ANN = "ann@example.com"
CLOSED_HOOK = "http://127.0.0.1:9/hook"  # the discard port: nothing listens, connections are refused


# --- helpers ---------------------------------------------------------------------------------------


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def request_records(
    caplog: pytest.LogCaptureFixture, request_id: str | None = None
) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == REQUEST_LOGGER
        and (request_id is None or getattr(record, "request_id", None) == request_id)
    ]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the app's own JSON handler writes (to stderr in production), captured from here on."""
    configure_logging()  # idempotent: the handler every app shares
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, JsonLinesHandler)]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def parse_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def restart(buffer: io.StringIO) -> None:
    buffer.seek(0)
    buffer.truncate()


def metric_samples(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Sum of `name` over every label set that includes `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, label_set), v in samples.items() if n == name and wanted <= label_set)


def tomorrow() -> str:
    """Due soon in UTC whether or not midnight passes during the test."""
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


def create_todo(client: FlaskClient, auth: dict[str, str], due: str | None = None) -> int:
    response = client.post("/todos", json={"title": "Pay rent", "due_date": due}, headers=auth)
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def user_id(client: FlaskClient, auth: dict[str, str]) -> int:
    return int(client.get("/me", headers=auth).json["id"])


def drain(app: Flask) -> None:
    with app.app_context():
        AppSimpleWorker([get_queue()], connection=get_redis()).work(burst=True)


def enqueue_traced(app: Flask, func: Callable[..., Any], request_id: str) -> None:
    """Enqueue as code running under request `request_id` does."""
    with app.app_context():
        token = request_id_var.set(request_id)
        try:
            job = enqueue(func)
        finally:
            request_id_var.reset(token)
        assert job is not None
        assert job.meta["request_id"] == request_id


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


# --- request log -----------------------------------------------------------------------------------


def test_one_request_log_line_per_request_with_every_field(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    json_log: io.StringIO,
) -> None:
    me = user_id(client, auth)
    todo_id = create_todo(client, auth)
    refresh = client.post("/auth/login", json={"email": ANN, "password": PASSWORD}).json["refresh_token"]
    caplog.set_level(logging.INFO)
    caplog.clear()
    restart(json_log)
    cases: list[tuple[str, str, dict[str, Any], int, int | None]] = [
        # method, path (+ query), request options, expected status, expected user_id
        ("GET", "/health", {}, 200, None),
        ("GET", f"/todos/{todo_id}", {"headers": auth}, 200, me),
        ("GET", "/todos?sort=title&limit=5", {"headers": auth}, 200, me),
        ("PATCH", f"/todos/{todo_id}", {"headers": auth, "json": {"title": ""}}, 422, me),
        ("GET", "/todos/999999", {"headers": auth}, 404, me),
        ("GET", "/no/such/route", {}, 404, None),
        ("GET", "/me", {}, 401, None),
        ("GET", "/me", {"headers": {"Authorization": "Bearer not.a.token"}}, 401, None),
        ("POST", "/auth/login", {"json": {"email": ANN, "password": "wrong password"}}, 401, None),
        ("POST", "/auth/refresh", {"headers": {"Authorization": f"Bearer {refresh}"}}, 200, me),
    ]
    sent = []
    for method, target, options, status, expected_user in cases:
        request_id = new_id()
        headers = {**options.pop("headers", {}), "X-Request-ID": request_id}
        response = client.open(target, method=method, headers=headers, **options)
        assert response.status_code == status, (target, response.get_data(as_text=True))
        assert response.headers["X-Request-ID"] == request_id
        sent.append((request_id, method, target.split("?")[0], status, expected_user))

    assert len(request_records(caplog)) == len(cases), "exactly one request line per request"
    rendered = [line for line in parse_lines(json_log) if line.get("logger") == REQUEST_LOGGER]
    assert len(rendered) == len(cases)
    for request_id, method, path, status, expected_user in sent:
        [record] = request_records(caplog, request_id)
        assert record.levelno == logging.INFO
        assert (record.method, record.path, record.status) == (method, path, status)
        assert record.user_id == expected_user, (method, path)
        assert isinstance(record.duration_ms, int | float) and record.duration_ms >= 0

        [line] = [line for line in rendered if line["request_id"] == request_id]
        assert line.keys() >= LOG_FIELDS, line
        assert line["level"] == "INFO"
        # UTC, to the millisecond: 2026-12-05T07:42:02.123+00:00
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"]), line
        assert abs(datetime.fromisoformat(line["time"]).timestamp() - time.time()) < 60
        assert (line["method"], line["path"], line["status"], line["user_id"]) == (
            method,
            path,
            status,
            expected_user,
        )
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0


@pytest.fixture
def sole_handler(json_log: io.StringIO) -> JsonLinesHandler:
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, JsonLinesHandler)]
    return handler


@contextmanager
def alone(handler: logging.Handler) -> Iterator[None]:
    """`handler` as the only one on the root logger, as under gunicorn: pytest's capture handlers
    (added for each phase of a test) set aside meanwhile."""
    root = logging.getLogger()
    kept = root.handlers
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = kept


REQUEST_FIELDS = [
    {
        "method": "GET",
        "path": "/todos",
        "status": 200,
        "duration_ms": 1.25,
        "request_id": "a" * 32,
        "user_id": 7,
    },
    {
        "method": "POST",
        "path": "/auth/login",
        "status": 401,
        "duration_ms": 0,
        "request_id": "x-1",
        "user_id": None,
    },
    {
        "method": "GET",
        "path": '/todos/\u00e4\u00df"q\u2028',
        "status": 404,
        "duration_ms": 12.5,
        "request_id": "~",
        "user_id": 1,
    },
]


@pytest.mark.parametrize("fields", REQUEST_FIELDS)
def test_the_request_line_written_directly_is_the_formatters_line(
    sole_handler: JsonLinesHandler, fields: dict[str, Any]
) -> None:
    record = logging.getLogger(REQUEST_LOGGER).makeRecord(
        REQUEST_LOGGER, logging.INFO, __file__, 1, "request", (), None, extra=dict(fields)
    )
    assert sole_handler.request_line(fields, record.created) == sole_handler.format(record)


def test_with_our_handler_alone_the_request_line_skips_the_logger(
    client: FlaskClient,
    auth: dict[str, str],
    sole_handler: JsonLinesHandler,
    json_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = user_id(client, auth)
    restart(json_log)

    def no_record(record: logging.LogRecord) -> None:
        raise AssertionError("the request line went through the logger")

    monkeypatch.setattr(logging.getLogger(REQUEST_LOGGER), "handle", no_record)
    request_id = new_id()
    with alone(sole_handler):
        response = client.get("/todos?limit=5", headers={**auth, "X-Request-ID": request_id})
    assert response.status_code == 200
    [line] = parse_lines(json_log)
    assert line.keys() == LOG_FIELDS | {"logger", "message"}
    assert (line["logger"], line["message"], line["level"]) == (REQUEST_LOGGER, "request", "INFO")
    assert (line["method"], line["path"], line["status"]) == ("GET", "/todos", 200)
    assert (line["request_id"], line["user_id"]) == (request_id, me)
    assert datetime.fromisoformat(line["time"]).tzinfo is not None


def test_any_other_handler_or_filter_gets_the_request_line_through_logging(
    client: FlaskClient,
    sole_handler: JsonLinesHandler,
    json_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    def look(record: logging.LogRecord) -> bool:
        seen.append(record)
        return True

    request_logger = logging.getLogger(REQUEST_LOGGER)
    other = Collect()
    root = logging.getLogger()
    for attach, detach in (
        (lambda: root.addHandler(other), lambda: root.removeHandler(other)),
        (lambda: request_logger.addHandler(other), lambda: request_logger.removeHandler(other)),
        (lambda: request_logger.addFilter(look), lambda: request_logger.removeFilter(look)),
    ):
        seen.clear()
        restart(json_log)
        with alone(sole_handler):
            attach()
            try:
                assert client.get("/health").status_code == 200
            finally:
                detach()
        assert [record.name for record in seen if record.name == REQUEST_LOGGER] == [REQUEST_LOGGER]
        assert [line["path"] for line in parse_lines(json_log)] == ["/health"]

    restart(json_log)
    request_logger.setLevel(logging.WARNING)
    try:
        with alone(sole_handler):
            assert client.get("/health").status_code == 200
    finally:
        request_logger.setLevel(logging.NOTSET)
    assert parse_lines(json_log) == []


def test_the_query_string_stays_out_of_the_request_log(
    client: FlaskClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    request_id = new_id()
    response = client.get("/todos?q=hunter2-in-the-query", headers={**auth, "X-Request-ID": request_id})
    assert response.status_code in (200, 422)
    [record] = request_records(caplog, request_id)
    assert record.path == "/todos"
    assert "hunter2" not in everything_logged(caplog.records)


def test_a_crash_is_logged_once_as_500_and_carries_the_request_id(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    app.add_url_rule("/explode", "explode", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production
    caplog.set_level(logging.INFO)
    request_id = new_id()
    response = app.test_client().get("/explode", headers={"X-Request-ID": request_id})
    assert_error(response, 500)
    assert response.headers["X-Request-ID"] == request_id
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    [record] = request_records(caplog, request_id)
    assert (record.method, record.path, record.status, record.user_id) == ("GET", "/explode", 500, None)


# --- X-Request-ID ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offered",
    ["abc-123", "x" * 128, "req:1/2=3;trace@host", "0123456789abcdef0123456789abcdef", "~!#$%&'*+-.^_`|"],
    ids=["simple", "128-chars", "punctuation", "hex", "symbols"],
)
def test_a_valid_request_id_is_echoed_and_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, offered: str
) -> None:
    caplog.set_level(logging.INFO)
    response = client.get("/health", headers={"X-Request-ID": offered})
    assert response.headers["X-Request-ID"] == offered
    [record] = request_records(caplog)
    assert record.request_id == offered


@pytest.mark.parametrize(
    "offered",
    [
        "x" * 129,
        "has space",
        " leading-space",
        "caf\xe9",  # latin-1 é, as WSGI carries a non-ASCII byte
        "caf\xc3\xa9",  # UTF-8 é as it arrives in the WSGI environ
        "",
    ],
    ids=["129-chars", "space", "leading-space", "latin1", "utf8", "empty"],
)
def test_an_invalid_request_id_is_replaced_by_a_generated_one(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, offered: str
) -> None:
    caplog.set_level(logging.INFO)
    response = client.get("/health", headers={"X-Request-ID": offered})
    echoed = response.headers["X-Request-ID"]
    assert echoed != offered and echoed.strip() != offered.strip()
    assert VALID_ID.fullmatch(echoed)
    [record] = request_records(caplog)
    assert record.request_id == echoed


def test_a_missing_request_id_is_generated_fresh_for_every_request(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    echoed = [client.get("/health").headers["X-Request-ID"] for _ in range(5)]
    assert len(set(echoed)) == 5
    assert all(VALID_ID.fullmatch(request_id) and len(request_id) >= 16 for request_id in echoed)
    assert [record.request_id for record in request_records(caplog)] == echoed


def test_error_responses_carry_the_request_id_too(
    client: FlaskClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    errors: list[tuple[Callable[..., TestResponse], str, dict[str, Any], int]] = [
        (client.get, "/no/such/route", {}, 404),
        (client.get, "/todos/424242", {"headers": auth}, 404),
        (client.post, "/todos", {"headers": auth, "json": {"title": ""}}, 422),
        (client.post, "/auth/register", {"json": {"email": "not-an-email", "password": "x"}}, 422),
        (client.get, "/me", {}, 401),
        (client.get, "/todos", {"headers": {"Authorization": "Bearer tampered"}}, 401),
        (client.put, "/todos", {"headers": auth}, 405),
    ]
    for call, path, options, status in errors:
        for offered in (new_id(), None, "bad id"):
            headers = {**options.get("headers", {}), **({"X-Request-ID": offered} if offered else {})}
            response = call(path, **{**options, "headers": headers})
            assert_error(response, status)
            echoed = response.headers.get("X-Request-ID")
            assert echoed and VALID_ID.fullmatch(echoed), (path, status, dict(response.headers))
            if offered == "bad id" or offered is None:
                assert echoed != offered
            else:
                assert echoed == offered
            [record] = request_records(caplog, echoed)
            assert record.status == status


# --- secrets ---------------------------------------------------------------------------------------


def everything_logged(records: list[logging.LogRecord]) -> str:
    """Messages, arguments, extras and tracebacks of every record."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.__dict__))
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.exc_text:
            parts.append(record.exc_text)
    return "\n".join(parts)


def drive_account_lifecycle(client: FlaskClient) -> dict[str, list[str]]:
    """Register, log in (JSON and form), refresh, set a webhook, change the password, fail a login.

    Returns every secret seen on the way, by kind.
    """
    first, second, guessed = "first pass phrase 7731", "second pass phrase 9914", "guessed pass phrase 5520"
    secrets: dict[str, list[str]] = {"password": [first, second, guessed], "token": [], "webhook": []}
    assert client.post("/auth/register", json={"email": ANN, "password": first}).status_code == 201

    json_login = client.post("/auth/login", json={"email": ANN, "password": first})
    form_login = client.post(
        "/auth/login", data={"username": ANN, "password": first, "grant_type": "password"}
    )
    assert json_login.status_code == form_login.status_code == 200
    for body in (json_login.json, form_login.json):
        secrets["token"] += [body["access_token"], body["refresh_token"]]

    refreshed = client.post(
        "/auth/refresh", headers={"Authorization": f"Bearer {json_login.json['refresh_token']}"}
    )
    assert refreshed.status_code == 200, refreshed.json
    secrets["token"] += [refreshed.json["access_token"], refreshed.json["refresh_token"]]
    bearer = {"Authorization": f"Bearer {refreshed.json['access_token']}"}

    webhook = client.patch("/me", json={"webhook_url": CLOSED_HOOK}, headers=bearer)
    assert webhook.status_code == 200, webhook.json
    secret = webhook.json["webhook_secret"]
    assert secret.startswith("whsec_")
    secrets["webhook"] += [secret, secret.removeprefix("whsec_")]

    changed = client.patch("/me", json={"current_password": first, "new_password": second}, headers=bearer)
    assert changed.status_code == 200, changed.json
    guess = {"current_password": guessed, "new_password": guessed}
    wrong_current = client.patch("/me", json=guess, headers=bearer)
    assert wrong_current.status_code == 401  # the password change ended this session

    failed = client.post("/auth/login", json={"email": ANN, "password": guessed})
    assert failed.status_code == 401
    again = client.post("/auth/login", json={"email": ANN, "password": second})
    assert again.status_code == 200
    secrets["token"] += [again.json["access_token"], again.json["refresh_token"]]
    wrong_current = client.patch(
        "/me", json=guess, headers={"Authorization": f"Bearer {again.json['access_token']}"}
    )
    assert wrong_current.status_code == 403
    return secrets


def test_passwords_tokens_and_keys_never_reach_the_logs(
    make_app: Any, caplog: pytest.LogCaptureFixture, redis: Redis, json_log: io.StringIO
) -> None:
    jwt_key = f"jwt-key-{uuid.uuid4().hex}-{uuid.uuid4().hex}"
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, JWT_SECRET_KEY=jwt_key)
    caplog.set_level(logging.DEBUG)  # everything, from every library
    secrets = drive_account_lifecycle(app.test_client())

    records = caplog.records
    assert request_records(caplog), "the capture saw nothing; the check below would be vacuous"
    logged = everything_logged(records) + json_log.getvalue()
    for kind in ("password", "token"):
        for secret in secrets[kind]:
            assert secret not in logged, f"a {kind} was logged"
    assert jwt_key not in logged
    # At the level the service runs at (INFO), the webhook secret stays out as well; DEBUG is
    # covered by test_the_webhook_secret_stays_out_of_debug_logs.
    at_info = everything_logged([record for record in records if record.levelno >= logging.INFO])
    at_info += json.dumps([line for line in parse_lines(json_log) if line["level"] != "DEBUG"])
    for secret in secrets["webhook"]:
        assert secret not in at_info


def test_the_webhook_secret_stays_out_of_debug_logs(
    make_app: Any, caplog: pytest.LogCaptureFixture, redis: Redis
) -> None:
    client = make_app(WEBHOOK_ALLOW_PRIVATE=True).test_client()
    caplog.set_level(logging.DEBUG)
    assert client.post("/auth/register", json={"email": ANN, "password": PASSWORD}).status_code == 201
    tokens = client.post("/auth/login", json={"email": ANN, "password": PASSWORD}).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = client.patch("/me", json={"webhook_url": CLOSED_HOOK}, headers=bearer)
    assert response.status_code == 200
    secret = response.json["webhook_secret"]
    assert request_records(caplog)
    logged = everything_logged(caplog.records)
    assert secret.removeprefix("whsec_") not in logged


# --- job log lines ---------------------------------------------------------------------------------


def test_job_log_lines_carry_the_request_id_they_were_enqueued_under(
    make_app: Any,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    json_log: io.StringIO,
) -> None:
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True)
    client = app.test_client()
    assert client.post("/auth/register", json={"email": ANN, "password": PASSWORD}).status_code == 201
    tokens = client.post("/auth/login", json={"email": ANN, "password": PASSWORD}).json
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.patch("/me", json={"webhook_url": CLOSED_HOOK}, headers=auth).status_code == 200
    todo_id = create_todo(client, auth, tomorrow())

    caplog.set_level(logging.INFO)
    restart(json_log)
    trace = new_id()
    enqueue_traced(app, jobs.scan_due_soon, trace)
    drain(app)  # the scan, then the webhook delivery it queued (which fails: nothing listens)

    created = [r for r in caplog.records if r.name == "todoapi.notifications.services"]
    attempts = [r for r in caplog.records if r.name == jobs.log.name]
    assert len(created) == 1 and f"todo_id={todo_id}" in created[0].getMessage()
    assert len(attempts) == 1 and "channel=webhook" in attempts[0].getMessage()
    assert created[0].request_id == trace
    assert attempts[0].request_id == trace

    lines = parse_lines(json_log)
    by_logger = {(line["logger"], line["message"].split(" ")[0]): line for line in lines}
    assert by_logger[("todoapi.notifications.services", "notification")]["request_id"] == trace
    assert by_logger[(jobs.log.name, "delivery")]["request_id"] == trace
    # Lines outside any job or request carry no stale id.
    assert request_id_var.get() is None


def test_a_job_enqueued_outside_any_request_logs_under_its_own_id(
    app: Flask, client: FlaskClient, auth: dict[str, str], redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    create_todo(client, auth, tomorrow())
    with app.app_context():
        job = enqueue(jobs.scan_due_soon)
    assert job is not None
    caplog.set_level(logging.INFO)
    drain(app)
    [created] = [r for r in caplog.records if r.name == "todoapi.notifications.services"]
    assert created.request_id == job.id


# --- security headers ------------------------------------------------------------------------------


def test_security_headers_on_every_response(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    refresh = client.post("/auth/login", json={"email": ANN, "password": PASSWORD}).json["refresh_token"]
    todo_id = create_todo(client, auth)
    cases: list[tuple[str, str, dict[str, Any], int, bool]] = [
        # method, path, options, status, must be no-store
        ("GET", "/health", {}, 200, False),
        ("GET", "/health/db", {}, 200, False),
        ("GET", "/docs", {}, 200, False),
        ("GET", "/openapi.json", {}, 200, False),
        ("GET", "/metrics", {}, 200, False),
        ("GET", "/no/such/route", {}, 404, False),
        ("GET", "/me", {}, 401, False),
        ("GET", "/me", {"headers": auth}, 200, True),
        ("GET", f"/todos/{todo_id}", {"headers": auth}, 200, True),
        ("GET", "/todos/987654", {"headers": auth}, 404, True),
        ("POST", "/todos", {"headers": auth, "json": {"title": ""}}, 422, True),
        ("GET", "/todos", {"headers": {"Authorization": "Bearer nope"}}, 401, True),
        ("POST", "/auth/register", {"json": {"email": "x@example.com", "password": PASSWORD}}, 201, True),
        ("POST", "/auth/register", {"json": {"email": "bad"}}, 422, True),
        ("POST", "/auth/login", {"json": {"email": ANN, "password": PASSWORD}}, 200, True),
        ("POST", "/auth/login", {"json": {"email": ANN, "password": "wrong pass"}}, 401, True),
        ("POST", "/auth/refresh", {"headers": {"Authorization": f"Bearer {refresh}"}}, 200, True),
        ("POST", "/auth/refresh", {}, 401, True),
    ]
    for method, path, options, status, no_store in cases:
        response = client.open(path, method=method, **options)
        where = f"{method} {path} -> {response.status_code}"
        assert response.status_code == status, where
        assert response.headers.get("X-Content-Type-Options") == "nosniff", where
        assert response.headers.get("X-Frame-Options") == "DENY", where
        assert "frame-ancestors" in response.headers.get("Content-Security-Policy", ""), where
        if no_store:
            assert "no-store" in response.headers.get("Cache-Control", ""), where


def test_a_conditional_304_on_an_authenticated_resource_is_no_store_too(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    todo_id = create_todo(client, auth)
    first = client.get(f"/todos/{todo_id}", headers=auth)
    assert first.headers.get("ETag")
    again = client.get(f"/todos/{todo_id}", headers={**auth, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert "no-store" in again.headers.get("Cache-Control", "")
    assert again.headers["X-Content-Type-Options"] == "nosniff"


# --- /metrics --------------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_with_a_latency_histogram(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    # The registry is per process and shared by every app the tests build: compare before and after.
    todo_id = create_todo(client, auth)
    before = metric_samples(client)
    assert client.get(f"/todos/{todo_id}", headers=auth).status_code == 200
    assert client.get(f"/todos/{todo_id}", headers=auth).status_code == 200
    assert client.get("/todos/999999", headers=auth).status_code == 404
    assert client.patch(f"/todos/{todo_id}", json={"title": ""}, headers=auth).status_code == 422
    assert client.post("/todos", json={"title": "second"}, headers=auth).status_code == 201
    assert client.get("/definitely/not/here").status_code == 404
    after = metric_samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    item = "/todos/<int:todo_id>"
    assert delta("http_requests_total", method="GET", endpoint=item, status="200") == 2
    assert delta("http_requests_total", method="GET", endpoint=item, status="404") == 1
    assert delta("http_requests_total", method="PATCH", endpoint=item, status="422") == 1
    assert delta("http_requests_total", method="POST", endpoint="/todos", status="201") == 1
    assert (
        delta("http_requests_total", method="GET", endpoint="/metrics", status="200") == 1
    )  # the first scrape
    # No label carries a concrete id or an unrouted path: the label set stays bounded.
    endpoints = {dict(labels).get("endpoint") for (name, labels) in after if name == "http_requests_total"}
    assert not any(re.search(r"/\d", endpoint or "") for endpoint in endpoints), endpoints
    assert not any("definitely" in (endpoint or "") for endpoint in endpoints), endpoints

    # The histogram: cumulative buckets ending in +Inf, count and sum for the item route.
    assert delta("http_request_duration_seconds_count", method="GET", endpoint=item) == 3
    assert delta("http_request_duration_seconds_bucket", method="GET", endpoint=item, le="+Inf") == 3
    assert delta("http_request_duration_seconds_sum", method="GET", endpoint=item) > 0
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in after.items()
        if name == "http_request_duration_seconds_bucket"
        and dict(labels).get("endpoint") == item
        and dict(labels).get("method") == "GET"
    )
    assert len(buckets) >= 5 and buckets[-1][0] == float("inf")
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "histogram buckets must be cumulative"


def test_methods_a_client_makes_up_share_one_label(client: FlaskClient) -> None:
    before = metric_samples(client)
    for method in ("FOOBAR", "BREW", "M-SEARCH"):
        assert client.open("/todos", method=method).status_code == 405
    after = metric_samples(client)

    delta = value(after, "http_requests_total", method="other", endpoint="unmatched", status="405") - value(
        before, "http_requests_total", method="other", endpoint="unmatched", status="405"
    )
    assert delta == 3
    methods = {dict(labels).get("method") for (name, labels) in after if name == "http_requests_total"}
    assert methods <= KNOWN_METHODS | {"other"}, methods
    assert not methods & {"FOOBAR", "BREW", "M-SEARCH"}


def test_queue_depth_counts_waiting_jobs(app: Flask, client: FlaskClient, redis: Redis) -> None:
    assert value(metric_samples(client), "todoapi_queue_depth", queue="default") == 0
    with app.app_context():
        for _ in range(3):
            assert enqueue(jobs.scan_due_soon) is not None
    assert value(metric_samples(client), "todoapi_queue_depth", queue="default") == 3
    drain(app)
    assert value(metric_samples(client), "todoapi_queue_depth", queue="default") == 0


def test_metrics_still_answer_when_redis_is_down(make_app: Any) -> None:
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    assert client.get("/health").status_code == 200
    samples = metric_samples(client)
    assert value(samples, "http_requests_total", method="GET", endpoint="/health", status="200") >= 1


def test_notification_counts_are_dropped_with_one_warning_per_redis_outage(
    make_app: Any, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    up, down = make_app(), make_app(REDIS_URL="redis://127.0.0.1:1/0")
    caplog.set_level(logging.WARNING, "todoapi.ops.metrics")

    def count(app: Flask, times: int) -> None:
        with app.app_context():
            for _ in range(times):
                NOTIFICATIONS.labels("webhook", "delivered").inc()  # as a job does: it must not raise

    count(up, 1)  # whatever an earlier test left, Redis answers now
    for outage in (1, 2):
        caplog.clear()
        count(down, 3)
        [warning] = [record for record in caplog.records if record.name == "todoapi.ops.metrics"]
        assert warning.exc_info is None and "redis unavailable" in warning.getMessage(), outage
        count(up, 1)
    counted = metric_samples(up.test_client())
    assert value(counted, "todoapi_notifications_total", channel="webhook", outcome="delivered") == 3
    assert not [name for name, _ in metric_samples(down.test_client()) if "notifications" in name]


def test_notifications_are_counted_by_channel_and_outcome(
    make_app: Any, redis: Redis, receiver: Receiver
) -> None:
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True)
    client = app.test_client()
    assert client.post("/auth/register", json={"email": ANN, "password": PASSWORD}).status_code == 201
    tokens = client.post("/auth/login", json={"email": ANN, "password": PASSWORD}).json
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.patch("/me", json={"webhook_url": receiver.url}, headers=auth).status_code == 200
    create_todo(client, auth, tomorrow())
    before = metric_samples(client)
    enqueue_traced(app, jobs.scan_due_soon, new_id())
    drain(app)
    # Preconditions: one notification, its webhook delivered once.
    [item] = client.get("/notifications", headers=auth).json["items"]
    assert [d["status"] for d in item["deliveries"]] == ["delivered"]
    assert len(receiver.calls) == 1
    after = metric_samples(client)
    assert any(
        name == "todoapi_notifications_total" and {"channel", "outcome"} <= dict(labels).keys()
        for name, labels in after
    ), "no todoapi_notifications_total samples"
    sent = total(after, "todoapi_notifications_total", channel="webhook") - total(
        before, "todoapi_notifications_total", channel="webhook"
    )
    assert sent == 1
