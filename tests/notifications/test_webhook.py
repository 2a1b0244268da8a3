"""Webhooks: setting the URL on PATCH /me, and signed deliveries through real RQ to a real local receiver.

The receiver is a small HTTP server on 127.0.0.1, so apps here allow private targets
(WEBHOOK_ALLOW_PRIVATE) unless a test parametrizes `app` with False to exercise the guard.
"""

import base64
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import trustme
from flask import Flask
from flask.testing import FlaskClient
from rq import Retry, SimpleWorker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.helpers import assert_error
from tests.processes import free_port
from tests.webhook_receiver import Receiver
from todoapi.models import Delivery, Notification, User, utcnow
from todoapi.notifications import channels, jobs, services
from todoapi.queue import enqueue, get_queue, get_redis

NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)  # the scan's "now"; sending happens in real time
TODAY = NOW.date()
ANN = "ann@example.com"
NOTIFICATION_KEYS = {"id", "kind", "todo_id", "title", "due_date", "created_at", "read_at", "deliveries"}
SIGNATURE = re.compile(r"v1,([A-Za-z0-9+/]+={0,2})")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def app(make_app: Any, request: pytest.FixtureRequest) -> Flask:
    """Private targets allowed, unless parametrized indirectly with False."""
    return make_app(WEBHOOK_ALLOW_PRIVATE=getattr(request, "param", True))


GUARDED = pytest.mark.parametrize("app", [False], indirect=True, ids=["guarded"])


def other_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def set_webhook(client: FlaskClient, auth: dict[str, str], url: str | None) -> dict[str, Any]:
    response = client.patch("/me", json={"webhook_url": url}, headers=auth)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def stored_webhook(app: Flask, email: str = ANN) -> tuple[str | None, str | None]:
    with app.app_context():
        user = User.get(User.email == email)
        return user.webhook_url, user.webhook_secret


def set_webhook_in_db(app: Flask, url: str, secret: str, email: str = ANN) -> None:
    """A target the API would refuse, as if it had been set before the guard or DNS changed."""
    with app.app_context():
        User.update(webhook_url=url, webhook_secret=secret).where(User.email == email).execute()


def create_todo(client: FlaskClient, auth: dict[str, str], due: date, title: str = "Pay rent") -> int:
    response = client.post("/todos", json={"title": title, "due_date": due.isoformat()}, headers=auth)
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def queue_due_soon(app: Flask) -> list[int]:
    """Scan at NOW and queue the deliveries, as the repeating job does; the delivery ids."""
    with app.app_context():
        report = services.scan_due_soon(now=NOW)
        for delivery_id in report.deliveries:
            jobs.enqueue_delivery(delivery_id)
    return report.deliveries


def drain(app: Flask) -> None:
    """Run every queued job in-process, like a worker; RQ's retries stay scheduled (10 s+)."""
    with app.app_context():
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)


def backoff_over(app: Flask, delivery_id: int) -> None:
    """Move the delivery's next attempt to now, as if its backoff had been waited out."""
    with app.app_context():
        Delivery.update(next_attempt_at=utcnow()).where(Delivery.id == delivery_id).execute()


def retry(app: Flask, delivery_id: int) -> str:
    """Run the delivery job once more, as RQ's scheduled retry does once the backoff is over;
    "pending" when it asks for another."""
    backoff_over(app, delivery_id)
    with app.app_context():
        outcome = jobs.deliver(delivery_id)
    return "pending" if isinstance(outcome, Retry) else outcome


def scheduled_retries(app: Flask) -> dict[str, datetime]:
    """RQ's scheduled jobs: id -> when they are due."""
    with app.app_context():
        registry = get_queue().scheduled_job_registry
        return {job_id: registry.get_scheduled_time(job_id) for job_id in registry.get_job_ids()}


def the_delivery(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    [item] = client.get("/notifications", headers=auth).json["items"]
    [delivery] = item["deliveries"]
    assert delivery["channel"] == "webhook"
    return dict(delivery)


# --- PATCH /me -------------------------------------------------------------------------------------


def test_setting_a_webhook_url_shows_its_secret_once(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    first = set_webhook(client, auth, "http://127.0.0.1:8080/hook")
    me = client.get("/me", headers=auth).json
    unrelated = client.patch("/me", json={"timezone": "Europe/Berlin"}, headers=auth).json
    second = set_webhook(client, auth, "https://127.0.0.1/other")

    assert first["webhook_url"] == "http://127.0.0.1:8080/hook"
    assert first["webhook_secret"].startswith("whsec_")
    Webhook(first["webhook_secret"])  # a key the standardwebhooks package accepts
    assert me["webhook_url"] == "http://127.0.0.1:8080/hook" and "webhook_secret" not in me
    assert "webhook_secret" not in unrelated and unrelated["webhook_url"] == "http://127.0.0.1:8080/hook"
    assert second["webhook_url"] == "https://127.0.0.1/other"
    assert second["webhook_secret"].startswith("whsec_")
    assert second["webhook_secret"] != first["webhook_secret"]
    assert stored_webhook(app) == ("https://127.0.0.1/other", second["webhook_secret"])


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://[2002:808:808::]/hook",  # 6to4 around 8.8.8.8
        "https://[64:ff9b::808:808]/hook",  # NAT64 around 8.8.8.8
        "https://[::ffff:8.8.8.8]:8443/hook",
    ],
)
@pytest.mark.parametrize("app", [False], indirect=True)
def test_public_targets_are_taken(app: Flask, client: FlaskClient, auth: dict[str, str], url: str) -> None:
    response = client.patch("/me", json={"webhook_url": url}, headers=auth)

    assert response.status_code == 200, response.json
    assert response.json["webhook_url"] == url
    assert stored_webhook(app) == (url, response.json["webhook_secret"])


def test_null_removes_the_webhook(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    set_webhook(client, auth, "https://127.0.0.1/x")

    removed = set_webhook(client, auth, None)

    assert removed["webhook_url"] is None and "webhook_secret" not in removed
    assert client.get("/me", headers=auth).json["webhook_url"] is None
    assert stored_webhook(app) == (None, None)


REFUSED = [
    *[
        pytest.param(False, url, id=url)
        for url in (
            "http://example.com/x",
            "https://127.0.0.1/x",
            "https://10.0.0.5/",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://0.0.0.0/",
            "https://localhost/",
            "https://100.64.0.1/",  # carrier-grade NAT
            "https://100.100.100.200/",  # a cloud's metadata service, inside it
            "https://192.88.99.1/",  # 6to4 relay anycast
            "https://224.0.0.1/",  # multicast
            "https://198.18.0.1/",  # benchmarking
            "https://[2002:a9fe:a9fe::]/",  # 6to4 around 169.254.169.254
            "https://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
            "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
            "https://[64:ff9b:1::1]/",  # local-use NAT64
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
            "https://[fec0::1]/",  # site-local
            "https://[::127.0.0.1]/",  # IPv4-compatible
            "https://[ff02::1]/",  # multicast
            "https://[2001:db8::1]/",  # documentation
            "https://192.0.0.8/",  # IETF protocol assignments (global to Pythons before 3.11.10)
            "https://[::ffff:0:7f00:1]/",  # IPv4-translated 127.0.0.1 (likewise)
            "https://[::ffff:0:a9fe:a9fe]/",  # IPv4-translated 169.254.169.254
        )
    ],
    # Refused even where private targets are allowed.
    *[
        pytest.param(True, url, id=f"{url}-private-allowed")
        for url in ("ftp://x", "not a url", "https://user:pw@example.com/", "", "//example.com/x")
    ],
    pytest.param(False, "https://[::1/", id="unclosed-ipv6-bracket"),
    pytest.param(True, "http://127.0.0.1:99999/x", id="port-out-of-range"),
    # What the OpenAPI document's pattern for webhook_url refuses as well.
    pytest.param(True, "http://127.0.0.1:0/x", id="port-0"),
    pytest.param(True, "http://127.0.0.1/a b", id="space-in-path"),
    pytest.param(True, "http://127.0.0.1/x\n", id="trailing-newline"),
    pytest.param(True, "http://[::1/", id="unclosed-ipv6-bracket-private-allowed"),
]


@pytest.mark.parametrize("app, url", REFUSED, indirect=["app"])
def test_refused_webhook_urls_change_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], url: str
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a crash must show as the 500 a client gets
    secret = other_secret()
    set_webhook_in_db(app, "https://hooks.example.com/before", secret)

    response = client.patch("/me", json={"webhook_url": url, "timezone": "Europe/Berlin"}, headers=auth)

    assert_error(response, 422, "webhook_url")
    me = client.get("/me", headers=auth).json
    assert (me["webhook_url"], me["timezone"]) == ("https://hooks.example.com/before", "UTC")
    assert stored_webhook(app) == ("https://hooks.example.com/before", secret)


# --- deliveries --------------------------------------------------------------------------------------


def test_due_soon_todo_is_posted_signed(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    secret = receiver.secret = set_webhook(client, auth, receiver.url)["webhook_secret"]
    # Tomorrow (UTC, the owner's zone) is still due soon if the date changes during the test.
    todo_id = create_todo(client, auth, datetime.now(UTC).date() + timedelta(days=1))
    with app.app_context():
        enqueue(jobs.scan_due_soon)

    drain(app)

    [(headers, body)] = receiver.calls
    [item] = client.get("/notifications", headers=auth).json["items"]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] and headers["webhook-timestamp"].isdigit()
    signature = SIGNATURE.fullmatch(headers["webhook-signature"])
    assert signature and len(base64.b64decode(signature.group(1))) == 32
    payload = Webhook(secret).verify(body, headers)
    assert payload == json.loads(body)
    assert set(payload) == {"type", "timestamp", "data"} and payload["type"] == "todo.due_soon"
    assert datetime.fromisoformat(payload["timestamp"]).utcoffset() is not None
    data = payload["data"]
    assert set(data) == NOTIFICATION_KEYS
    assert {key: data[key] for key in NOTIFICATION_KEYS - {"deliveries"}} == {
        key: item[key] for key in NOTIFICATION_KEYS - {"deliveries"}
    }
    assert data["todo_id"] == todo_id and data["title"] == "Pay rent" and data["kind"] == "due_soon"
    assert [delivery["channel"] for delivery in data["deliveries"]] == ["webhook"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"Pay rent", b"Pay Rent"), headers)
    assert item["deliveries"] == [
        {"channel": "webhook", "status": "delivered", "attempts": 1, "last_error": None}
    ]

    with app.app_context():
        enqueue(jobs.scan_due_soon)
    drain(app)
    assert len(receiver.calls) == 1


def test_signature_verifies_when_the_server_zone_is_not_utc(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    secret = receiver.secret = set_webhook(client, auth, receiver.url)["webhook_secret"]
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"  # the host's zone, as on a developer's machine
    time.tzset()
    try:
        outcome = retry(app, delivery_id)
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()

    [(headers, body)] = receiver.calls
    assert Webhook(secret).verify(body, headers)["type"] == "todo.due_soon"
    assert outcome == "delivered"


FAILURES = [
    pytest.param("answer-500", "receiver answered HTTP 500", id="http-500"),
    pytest.param("closed-port", "connection failed", id="closed-port"),
    pytest.param("hang", "timed out", id="timeout"),
]


@pytest.mark.parametrize("failure, error", FAILURES)
def test_a_failed_attempt_is_recorded_and_retried_with_backoff(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    receiver: Receiver,
    redis: Any,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    error: str,
) -> None:
    url = receiver.url
    if failure == "answer-500":
        receiver.answers = [500]
    elif failure == "closed-port":
        url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    else:
        receiver.hang.set()
        monkeypatch.setattr(channels, "WEBHOOK_TIMEOUT", httpx.Timeout(0.5))
    set_webhook(client, auth, url)
    create_todo(client, auth, TODAY)
    queue_due_soon(app)

    drain(app)

    delivery = the_delivery(client, auth)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert error in delivery["last_error"]
    with app.app_context():
        queue = get_queue()
        [delivery_id] = [row.id for row in Delivery.select()]
        next_attempt_at = Delivery.get_by_id(delivery_id).next_attempt_at
        assert queue.count == 0 and queue.failed_job_registry.count == 0
    [due] = scheduled_retries(app).values()  # RQ's retry of the job, at the delivery's next attempt
    assert next_attempt_at <= due <= next_attempt_at + timedelta(seconds=2)
    assert next_attempt_at - utcnow() > timedelta(seconds=services.RETRY_INTERVALS[0] - 5)


def test_retries_reuse_the_webhook_id_until_delivered(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    secret = receiver.secret = set_webhook(client, auth, receiver.url)["webhook_secret"]
    receiver.answers = [500, 503]
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)

    drain(app)
    first = the_delivery(client, auth)
    second_outcome = retry(app, delivery_id)
    second = the_delivery(client, auth)
    third_outcome = retry(app, delivery_id)
    after = retry(app, delivery_id)

    assert (first["status"], first["attempts"]) == ("pending", 1) and "HTTP 500" in first["last_error"]
    assert second_outcome == "pending"
    assert (second["status"], second["attempts"]) == ("pending", 2) and "HTTP 503" in second["last_error"]
    assert third_outcome == "delivered" and after == "skipped"
    assert the_delivery(client, auth) == {
        "channel": "webhook",
        "status": "delivered",
        "attempts": 3,
        "last_error": None,
    }
    assert len(receiver.calls) == 3
    assert len({headers["webhook-id"] for headers, _ in receiver.calls}) == 1
    bodies = [Webhook(secret).verify(body, headers) for headers, body in receiver.calls]
    assert len({payload["data"]["id"] for payload in bodies}) == 1


def test_a_notification_after_a_deleted_one_has_its_own_webhook_id(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    """A receiver that drops ids it has seen (Standard Webhooks' de-duplication) loses nothing, even
    when the newest notification was deleted with its todo before the next one was created."""
    receiver.secret = set_webhook(client, auth, receiver.url)["webhook_secret"]
    first = create_todo(client, auth, TODAY, title="Pay rent")
    queue_due_soon(app)
    drain(app)
    assert client.delete(f"/todos/{first}", headers=auth).status_code == 204
    create_todo(client, auth, TODAY, title="Call mum")
    queue_due_soon(app)

    drain(app)

    ids = [headers["webhook-id"] for headers, _ in receiver.calls]
    titles = [json.loads(body)["data"]["title"] for _, body in receiver.calls]
    assert titles == ["Pay rent", "Call mum"]
    assert len(set(ids)) == 2, ids


def test_gives_up_after_max_attempts(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    set_webhook(client, auth, receiver.url)
    receiver.answers = [500] * (services.MAX_ATTEMPTS + 2)
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)

    drain(app)
    outcomes = [retry(app, delivery_id) for _ in range(services.MAX_ATTEMPTS)]

    assert outcomes == ["pending"] * (services.MAX_ATTEMPTS - 2) + ["failed", "skipped"]
    assert the_delivery(client, auth) == {
        "channel": "webhook",
        "status": "failed",
        "attempts": services.MAX_ATTEMPTS,
        "last_error": "receiver answered HTTP 500",
    }
    assert len(receiver.calls) == services.MAX_ATTEMPTS
    assert len({headers["webhook-id"] for headers, _ in receiver.calls}) == 1


@GUARDED
def test_the_target_is_checked_again_at_delivery(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    set_webhook_in_db(app, receiver.url, other_secret())
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)

    drain(app)
    second_outcome = retry(app, delivery_id)

    assert receiver.calls == []
    assert second_outcome == "pending"
    delivery = the_delivery(client, auth)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 2)
    assert delivery["last_error"].startswith("refused target")


class Resolver:
    """DNS for names of the tests' own: each name gives its answers in turn (the last one again and
    again), an answer being one or more addresses ("a,b"); every look-up is recorded. Other names
    resolve as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host not in self.answers:
                return real(host, port, *args, **kwargs)
            self.lookups.append(host)
            queue = self.answers[host]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))
                for address in answer.split(",")
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    return Resolver(monkeypatch)


@GUARDED
def test_a_delivery_connects_to_the_address_its_check_saw_not_a_second_look_up(
    app: Flask, client: FlaskClient, auth: dict[str, str], resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers a public address to the check, then a loopback one. The
    connection must go where the check looked; a connection to the loopback listener is the SSRF."""
    monkeypatch.setattr(channels, "WEBHOOK_TIMEOUT", httpx.Timeout(0.5))
    with socket.create_server(("127.0.0.1", 0)) as inside:
        port = inside.getsockname()[1]
        resolver.answers["rebind.example"] = ["8.8.8.8", "127.0.0.1"]
        set_webhook(client, auth, f"https://rebind.example:{port}/hook")  # checked: 8.8.8.8
        create_todo(client, auth, TODAY)
        queue_due_soon(app)
        resolver.answers["rebind.example"] = ["8.8.8.8", "127.0.0.1"]

        drain(app)

        inside.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing connected to it
            inside.accept()
    assert resolver.lookups == ["rebind.example"] * 2  # one when set, one at the attempt
    delivery = the_delivery(client, auth)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"] in {"timed out", "connection failed: ConnectError"}


def test_a_delivery_to_a_name_keeps_the_name_in_its_host_header(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, resolver: Resolver, redis: Any
) -> None:
    resolver.answers["hooks.example"] = ["127.0.0.1"]
    set_webhook(client, auth, f"http://hooks.example:{receiver.port}/hook")
    create_todo(client, auth, TODAY)
    queue_due_soon(app)

    drain(app)

    [(headers, _)] = receiver.calls
    assert headers["host"] == f"hooks.example:{receiver.port}"
    assert resolver.lookups == ["hooks.example"]


def test_a_delivery_tries_the_next_address_when_one_refuses(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, resolver: Resolver, redis: Any
) -> None:
    resolver.answers["hooks.example"] = ["127.0.0.2,127.0.0.1"]  # the receiver listens on the second
    set_webhook(client, auth, f"http://hooks.example:{receiver.port}/hook")
    create_todo(client, auth, TODAY)
    queue_due_soon(app)

    drain(app)

    assert len(receiver.calls) == 1
    assert resolver.lookups == ["hooks.example"]
    assert the_delivery(client, auth)["status"] == "delivered"


@pytest.mark.parametrize(("certified", "delivered"), [("hooks.example", True), ("other.example", False)])
def test_an_https_delivery_checks_the_certificate_against_the_urls_name(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    resolver: Resolver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    certified: str,
    delivered: bool,
    redis: Any,
) -> None:
    """The connection goes to an address, yet TLS names the URL's host (SNI) and the certificate
    must be that host's, not the address's."""
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # httpx's trust roots
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(certified).configure_cert(tls)
    seen_names: list[str | None] = []

    def server_name(connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        seen_names.append(name)

    tls.sni_callback = server_name
    resolver.answers["hooks.example"] = ["127.0.0.1"]
    with Receiver(tls=tls) as receiver:
        set_webhook(client, auth, f"https://hooks.example:{receiver.port}/hook")
        create_todo(client, auth, TODAY)
        queue_due_soon(app)

        drain(app)

        assert seen_names == ["hooks.example"]
        delivery = the_delivery(client, auth)
        if delivered:
            [(headers, _)] = receiver.calls
            assert headers["host"] == f"hooks.example:{receiver.port}"
            assert (delivery["status"], delivery["last_error"]) == ("delivered", None)
        else:
            assert receiver.calls == []
            assert (delivery["status"], delivery["last_error"]) == (
                "pending",
                "connection failed: ConnectError",
            )


def test_a_delivery_lost_before_queueing_is_sent_by_the_next_scan(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    receiver.secret = set_webhook(client, auth, receiver.url)["webhook_secret"]
    create_todo(client, auth, TODAY)
    with app.app_context():
        [delivery_id] = services.scan_due_soon(now=NOW).deliveries  # then the scanner died: never queued
        job = enqueue(jobs.scan_due_soon)
    assert job is not None

    drain(app)

    assert job.return_value() == {"notified": 0, "requeued": 1}
    assert len(receiver.calls) == 1
    assert the_delivery(client, auth) == {
        "channel": "webhook",
        "status": "delivered",
        "attempts": 1,
        "last_error": None,
    }
    assert retry(app, delivery_id) == "skipped"


def webhook_deliveries(app: Flask) -> dict[tuple[str, str], Delivery]:
    """(owner's email, todo title) -> its webhook delivery."""
    with app.app_context():
        rows = Delivery.select(Delivery, Notification, User).join(Notification).join(User)
        return {(row.notification.user.email, row.notification.title): row for row in rows}


@pytest.mark.parametrize("trouble", ["fails", "crawls"])
def test_a_receiver_that_fails_or_crawls_holds_back_only_its_own_accounts_deliveries(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    other_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    redis: Any,
    trouble: str,
) -> None:
    """The worker runs one job at a time: without this, an account with many todos due and a
    receiver that fails or answers slowly would keep everyone's notifications waiting."""
    monkeypatch.setattr(services, "SLOW_WEBHOOK_SECONDS", 0.2)
    with Receiver(hold=0.4) as slow, Receiver() as fine:
        if trouble == "fails":
            slow.answers = [500]
        else:
            slow.hang.set()  # answers 204 after 0.4 s
        set_webhook(client, auth, slow.url)
        set_webhook(client, other_auth, fine.url)
        for title in ("first", "second", "third"):
            create_todo(client, auth, TODAY, title)
        create_todo(client, other_auth, TODAY, "bob's")
        queue_due_soon(app)
        started = utcnow()

        drain(app)

        deliveries = webhook_deliveries(app)
        assert len(slow.calls) == 1 and len(fine.calls) == 1
    first = deliveries[(ANN, "first")]
    assert first.status == ("pending" if trouble == "fails" else "delivered")
    assert deliveries[("bob@example.com", "bob's")].status == "delivered"
    for title in ("second", "third"):
        held = deliveries[(ANN, title)]
        assert (held.status, held.attempts) == ("pending", 0)
        if trouble == "fails":  # until the failed one's own retry
            assert held.next_attempt_at == first.next_attempt_at
        else:  # five times the slow attempt
            assert held.next_attempt_at - started >= timedelta(seconds=5 * 0.4)


def test_a_quick_receiver_holds_nothing_back(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    set_webhook(client, auth, receiver.url)
    for title in ("first", "second", "third"):
        create_todo(client, auth, TODAY, title)
    queue_due_soon(app)

    drain(app)

    assert len(receiver.calls) == 3
    assert {delivery.status for delivery in webhook_deliveries(app).values()} == {"delivered"}


def test_rq_ends_a_delivery_job_after_an_attempts_time_and_before_its_lease(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    set_webhook(client, auth, receiver.url)
    create_todo(client, auth, TODAY)
    queue_due_soon(app)
    with app.app_context():
        [job] = get_queue().get_jobs()
    assert channels.WEBHOOK_ATTEMPT_SECONDS < job.timeout < services.LEASE.total_seconds()


def test_a_claimed_delivery_is_not_claimed_again(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver
) -> None:
    set_webhook(client, auth, receiver.url)
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)
    claimed_at = datetime.now(UTC)

    with app.app_context():
        claimed = services.claim_delivery(delivery_id, now=claimed_at)
        while_held = services.claim_delivery(
            delivery_id, now=claimed_at + services.LEASE - timedelta(seconds=1)
        )
        job_while_held = jobs.deliver(delivery_id)
        taken_over = services.claim_delivery(
            delivery_id, now=claimed_at + services.LEASE + timedelta(seconds=1)
        )
        assert taken_over is not None
        services.finish_delivery(taken_over.delivery, None)
        after_delivered = services.claim_delivery(delivery_id, now=claimed_at + 2 * services.LEASE)

    assert claimed is not None and claimed.delivery.attempts == 1
    assert while_held is None and job_while_held == "skipped"
    assert taken_over.delivery.attempts == 2  # the first holder's job was lost: its lease ran out
    assert after_delivered is None
    assert receiver.calls == []


def test_a_job_before_the_next_attempt_makes_no_attempt(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    set_webhook(client, auth, receiver.url)
    receiver.answers = [500]
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)
    drain(app)  # the first attempt fails: the next one is due in 10 s

    with app.app_context():
        next_attempt_at = Delivery.get_by_id(delivery_id).next_attempt_at
        # Jobs that run early: a retry left over from an outage beside the one the sweep queued.
        early = [jobs.deliver(delivery_id) for _ in range(3)]
        just_before = services.claim_delivery(delivery_id, now=next_attempt_at - timedelta(milliseconds=1))
        untouched = the_delivery(client, auth)
        on_time = services.claim_delivery(delivery_id, now=next_attempt_at)

    assert early == ["skipped"] * 3 and just_before is None
    assert (untouched["status"], untouched["attempts"]) == ("pending", 1)
    assert len(receiver.calls) == 1
    assert on_time is not None and on_time.delivery.attempts == 2


def test_every_retry_is_due_at_the_deliverys_next_attempt(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver, redis: Any
) -> None:
    set_webhook(client, auth, receiver.url)
    receiver.answers = [500, 500]
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)
    drain(app)
    first_retry = scheduled_retries(app)
    # Its retry is held up (no scheduler ran during an outage) and the scan's sweep queues the
    # delivery again: a new job, whose own retry count starts from zero, makes the second attempt.
    backoff_over(app, delivery_id)
    with app.app_context():
        jobs.enqueue_delivery(delivery_id)
    drain(app)

    with app.app_context():
        delivery = Delivery.get_by_id(delivery_id)
    [due] = [due for job_id, due in scheduled_retries(app).items() if job_id not in first_retry]
    assert delivery.attempts == 2 and len(receiver.calls) == 2
    wait = delivery.next_attempt_at - delivery.updated_at
    assert wait == timedelta(seconds=services.RETRY_INTERVALS[1])  # the second backoff, not the first
    assert delivery.next_attempt_at <= due <= delivery.next_attempt_at + timedelta(seconds=2)
    # The retry left over from the first job comes too early: no attempt.
    with app.app_context():
        [stale] = first_retry
        assert jobs.deliver(*get_queue().fetch_job(stale).args) == "skipped"
    assert len(receiver.calls) == 2


def test_an_expected_failure_is_one_line_without_a_traceback(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    receiver: Receiver,
    redis: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_webhook(client, auth, receiver.url)
    receiver.answers = [500]
    create_todo(client, auth, TODAY)
    queue_due_soon(app)
    caplog.set_level(logging.INFO)

    drain(app)

    assert the_delivery(client, auth)["last_error"] == "receiver answered HTTP 500"
    [line] = [record for record in caplog.records if record.name == jobs.log.name]
    assert "status=pending" in line.getMessage()
    loud = [(record.name, record.levelname) for record in caplog.records if record.levelno >= logging.WARNING]
    assert loud == []
    assert not any(record.exc_info or record.exc_text for record in caplog.records)
    assert "Traceback" not in caplog.text


def test_a_crash_in_an_attempt_is_logged_with_its_traceback_and_counted(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    receiver: Receiver,
    redis: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_webhook_in_db(app, receiver.url, "whsec_not base64!")  # a secret the signing library rejects
    create_todo(client, auth, TODAY)
    queue_due_soon(app)
    caplog.set_level(logging.INFO)

    drain(app)

    delivery = the_delivery(client, auth)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"] == "internal error: Error"
    [crash] = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert crash.name == jobs.log.name and crash.exc_info is not None
    assert "Traceback" in caplog.text and "binascii" in caplog.text
    assert receiver.calls == []


def test_concurrent_jobs_send_a_delivery_once(
    app: Flask, client: FlaskClient, auth: dict[str, str], receiver: Receiver
) -> None:
    set_webhook(client, auth, receiver.url)
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)
    start = threading.Barrier(4)

    def one_job() -> str:
        start.wait(timeout=10)
        return retry(app, delivery_id)

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(future.result() for future in [pool.submit(one_job) for _ in range(4)])

    assert outcomes == ["delivered", "skipped", "skipped", "skipped"]
    assert len(receiver.calls) == 1
    assert the_delivery(client, auth)["attempts"] == 1


def test_one_log_line_per_delivery_attempt(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    receiver: Receiver,
    redis: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    secret = set_webhook(client, auth, receiver.url)["webhook_secret"]
    receiver.answers = [500]
    create_todo(client, auth, TODAY)
    [delivery_id] = queue_due_soon(app)
    with app.app_context():
        notification_id = Delivery.get_by_id(delivery_id).notification_id

    drain(app)
    retry(app, delivery_id)
    retry(app, delivery_id)  # delivered already: no attempt, no line

    lines = [record.getMessage() for record in caplog.records if record.name == jobs.log.name]
    assert len(lines) == 2
    assert all(re.search(rf"(?<!\w)notification_id={notification_id}(?!\d)", line) for line in lines)
    assert secret not in caplog.text
    assert secret.removeprefix("whsec_") not in caplog.text
