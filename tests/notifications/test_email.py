"""The email channel: one plain-text message per notification, through a real SMTP server on 127.0.0.1."""

from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker

from tests.helpers import create_todo, due_tomorrow
from tests.processes import free_port
from todoapi.models import Delivery, utcnow
from todoapi.notifications import jobs
from todoapi.queue import enqueue, get_queue, get_redis


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


@pytest.fixture
def smtp_port() -> int:
    """A port with nothing listening yet; the SMTP server starts on it when a test asks."""
    return free_port()


@pytest.fixture
def start_smtp(smtp_port: int) -> Iterator[Callable[[], Mailbox]]:
    controllers: list[Controller] = []

    def start() -> Mailbox:
        mailbox = Mailbox()
        controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        controllers.append(controller)
        return mailbox

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def mailbox(start_smtp: Callable[[], Mailbox]) -> Mailbox:
    return start_smtp()


@pytest.fixture
def app(make_app: Any, smtp_port: int, request: pytest.FixtureRequest) -> Flask:
    """SMTP_URL points at `smtp_port`, unless parametrized indirectly with None."""
    smtp_url = getattr(request, "param", f"smtp://127.0.0.1:{smtp_port}")
    return make_app(SMTP_URL=smtp_url)


def run_scan_job(app: Flask) -> None:
    """Queue the repeating scan and work the queue dry: the scan, then the deliveries it queued."""
    with app.app_context():
        enqueue(jobs.scan_due_soon)
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)


def deliveries(client: FlaskClient, auth: dict[str, str]) -> list[list[dict[str, Any]]]:
    items = client.get("/notifications", headers=auth).json["items"]
    return [item["deliveries"] for item in items]


def test_one_plain_text_email_per_notification(
    app: Flask, client: FlaskClient, register: Any, mailbox: Mailbox, redis: Any
) -> None:
    owners = {email: register(email) for email in ("ann@example.com", "bob@example.com")}
    ann, bob = owners.values()
    due = due_tomorrow()
    expected = {
        ("ann@example.com", "Pay rent"),
        ("ann@example.com", "Call mum"),
        ("bob@example.com", "Water plants"),
    }
    for email, title in expected:
        create_todo(client, owners[email], title, due)
    create_todo(client, ann, "Not yet", due + timedelta(days=5))

    run_scan_job(app)
    run_scan_job(app)

    sent = set()
    for envelope, message in zip(mailbox.envelopes, mailbox.messages(), strict=True):
        assert message.get_content_type() == "text/plain" and not message.is_multipart()
        text = message.get_content()
        [title] = [title for _, title in expected if title in text]
        assert due.isoformat() in text
        assert title in message["Subject"]
        assert envelope.rcpt_tos == [message["To"]]
        sent.add((message["To"], title))
    assert len(mailbox.envelopes) == 3 and sent == expected
    done = [{"channel": "email", "status": "delivered", "attempts": 1, "last_error": None}]
    assert deliveries(client, ann) == [done, done]
    assert deliveries(client, bob) == [done]


def test_smtp_down_is_recorded_and_retried(
    app: Flask, client: FlaskClient, auth: dict[str, str], start_smtp: Callable[[], Mailbox], redis: Any
) -> None:
    create_todo(client, auth, "Pay rent", due_tomorrow())

    run_scan_job(app)

    [[delivery]] = deliveries(client, auth)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"].startswith("smtp failed")
    with app.app_context():
        assert get_queue().scheduled_job_registry.count == 1  # RQ retries it with backoff
        [delivery_id] = [row.id for row in Delivery.select()]

    mailbox = start_smtp()
    with app.app_context():
        Delivery.update(next_attempt_at=utcnow()).where(Delivery.id == delivery_id).execute()  # backoff over
        outcome = jobs.deliver(delivery_id)

    assert outcome == "delivered"
    assert len(mailbox.envelopes) == 1 and mailbox.envelopes[0].rcpt_tos == ["ann@example.com"]
    assert deliveries(client, auth) == [
        [{"channel": "email", "status": "delivered", "attempts": 2, "last_error": None}]
    ]


@pytest.mark.parametrize("app", [None], indirect=True, ids=["no-smtp-url"])
def test_no_email_without_smtp_url(
    app: Flask, client: FlaskClient, auth: dict[str, str], mailbox: Mailbox, redis: Any
) -> None:
    create_todo(client, auth, "Pay rent", due_tomorrow())

    run_scan_job(app)

    assert deliveries(client, auth) == [[]]
    assert mailbox.envelopes == []


def test_a_title_with_a_line_break_is_emailed(
    app: Flask, client: FlaskClient, auth: dict[str, str], mailbox: Mailbox, redis: Any
) -> None:
    create_todo(client, auth, "Pay\nrent", due_tomorrow())

    run_scan_job(app)

    assert deliveries(client, auth) == [
        [{"channel": "email", "status": "delivered", "attempts": 1, "last_error": None}]
    ]
    [message] = mailbox.messages()
    assert "Pay" in message.get_content() and "rent" in message.get_content()
