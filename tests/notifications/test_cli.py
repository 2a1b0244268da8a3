"""`flask notify-due`: the due-soon scan once, from the command line; `--dry-run` only reports."""

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import create_todo, due_tomorrow
from todoapi.models import Delivery, Notification
from todoapi.notifications import jobs
from todoapi.queue import get_queue


@pytest.fixture
def app(make_app: Any) -> Flask:
    # Nothing listens on port 9: deliveries are only queued here, never worked.
    return make_app(SMTP_URL="smtp://127.0.0.1:9")


def notify_due(app: Flask, *args: str) -> list[str]:
    result = app.test_cli_runner().invoke(args=["notify-due", *args])
    assert result.exit_code == 0, result.output
    return list(result.output.splitlines())


def rows(app: Flask) -> tuple[int, int]:
    with app.app_context():
        return Notification.select().count(), Delivery.select().count()


def queued_jobs(app: Flask) -> list[tuple[str, tuple[Any, ...]]]:
    with app.app_context():
        return [(job.func_name, tuple(job.args)) for job in get_queue().get_jobs()]


def test_dry_run_prints_what_would_be_sent_and_changes_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], redis: Any
) -> None:
    assert notify_due(app, "--dry-run") == ["would notify 0 todo(s)"]
    due = due_tomorrow()
    todo_id = create_todo(client, auth, "Pay rent", due)
    create_todo(client, auth, "Later", due + timedelta(days=5))

    output = notify_due(app, "--dry-run")
    again = notify_due(app, "--dry-run")

    *entries, summary = output
    assert summary == "would notify 1 todo(s)"
    [entry] = [json.loads(line) for line in entries]
    assert (entry["todo_id"], entry["due_date"], entry["channels"]) == (todo_id, due.isoformat(), ["email"])
    assert again == output
    assert rows(app) == (0, 0)
    assert queued_jobs(app) == []
    assert client.get("/notifications", headers=auth).json["total"] == 0


def test_notify_due_notifies_and_queues_deliveries(
    app: Flask, client: FlaskClient, auth: dict[str, str], redis: Any
) -> None:
    todo_id = create_todo(client, auth, "Pay rent", due_tomorrow())

    output = notify_due(app)
    again = notify_due(app)

    assert output == ["notified 1 todo(s); re-queued 0 delivery(ies)"]
    assert again == ["notified 0 todo(s); re-queued 0 delivery(ies)"]
    [item] = client.get("/notifications", headers=auth).json["items"]
    assert item["todo_id"] == todo_id
    assert item["deliveries"] == [
        {"channel": "email", "status": "pending", "attempts": 0, "last_error": None}
    ]
    with app.app_context():
        [delivery_id] = [row.id for row in Delivery.select()]
    assert queued_jobs(app) == [(f"{jobs.deliver.__module__}.{jobs.deliver.__name__}", (delivery_id,))]
    assert rows(app) == (1, 1)
