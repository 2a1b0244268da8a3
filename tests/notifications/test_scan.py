"""The due-soon scan: today or tomorrow in the owner's time zone, one notification per (todo, due date).

"Now" is injected: every test scans at a fixed instant instead of waiting for a clock.
"""

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from todoapi.db import db
from todoapi.models import Delivery, Notification, User
from todoapi.notifications import services
from todoapi.queue import get_queue

NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)  # 06-14 at UTC-11, 06-15 in UTC, 06-16 at UTC+14
TODAY = NOW.date()
DAY = timedelta(days=1)
WEST, EAST = "Etc/GMT+11", "Pacific/Kiritimati"  # UTC-11 and UTC+14, either side of the date line
NEW_YORK = "America/New_York"  # DST starts 2026-03-08 and ends 2026-11-01, at 02:00 local


def create_todo(
    client: FlaskClient, auth: dict[str, str], due: date | None, title: str = "t", done: bool = False
) -> int:
    body = {"title": title, "due_date": due.isoformat() if due else None}
    response = client.post("/todos", json=body, headers=auth)
    assert response.status_code == 201, response.json
    if done:
        set_fields(client, auth, response.json["id"], done=True)
    return int(response.json["id"])


def set_fields(client: FlaskClient, auth: dict[str, str], todo_id: int, **fields: Any) -> None:
    response = client.patch(f"/todos/{todo_id}", json=fields, headers=auth)
    assert response.status_code == 200, response.json


def set_timezone(client: FlaskClient, auth: dict[str, str], timezone: str) -> None:
    response = client.patch("/me", json={"timezone": timezone}, headers=auth)
    assert response.status_code == 200 and response.json["timezone"] == timezone, response.json


def scan(app: Flask, now: datetime = NOW, **options: Any) -> services.ScanReport:
    with app.app_context():
        return services.scan_due_soon(now=now, **options)


def inbox(client: FlaskClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/notifications", query_string={"limit": 100}, headers=auth)
    assert response.status_code == 200, response.json
    items: list[dict[str, Any]] = response.json["items"]
    return items


def notified(report: services.ScanReport) -> set[int]:
    return {entry["todo_id"] for entry in report.notified}


def on_each_batch(monkeypatch: pytest.MonkeyPatch, action: Callable[[list[Any]], Any]) -> None:
    """Run `action` on each batch of candidates the scan reads, before it inserts their notifications."""
    candidates = services._candidates

    def watched(*args: Any) -> Any:
        for batch in candidates(*args):
            action(batch)
            yield batch

    monkeypatch.setattr(services, "_candidates", watched)


def row_counts(app: Flask) -> tuple[int, int]:
    """(notifications, deliveries) in the database, all users."""
    with app.app_context():
        return Notification.select().count(), Delivery.select().count()


def set_webhook_in_db(app: Flask, email: str, url: str, secret: str) -> None:
    """A webhook target without going through PATCH /me (whose guard refuses test hosts)."""
    with app.app_context():
        User.update(webhook_url=url, webhook_secret=secret).where(User.email == email).execute()


ZONES = [
    pytest.param(None, NOW, date(2026, 6, 15), id="unset-is-utc"),
    pytest.param("UTC", datetime(2026, 6, 15, 23, 59, tzinfo=UTC), date(2026, 6, 15), id="utc-23:59"),
    pytest.param(WEST, NOW, date(2026, 6, 14), id="utc-11-still-yesterday"),
    pytest.param(WEST, datetime(2026, 6, 15, 11, 0, tzinfo=UTC), date(2026, 6, 15), id="utc-11-midnight"),
    pytest.param(EAST, NOW, date(2026, 6, 16), id="utc+14-already-tomorrow"),
    pytest.param(EAST, datetime(2026, 6, 15, 9, 59, tzinfo=UTC), date(2026, 6, 15), id="utc+14-23:59"),
    # Each New York case sits where the wrong offset (EST for EDT or back) gives another date.
    pytest.param(NEW_YORK, datetime(2026, 3, 8, 4, 30, tzinfo=UTC), date(2026, 3, 7), id="ny-est-23:30"),
    pytest.param(NEW_YORK, datetime(2026, 3, 9, 4, 30, tzinfo=UTC), date(2026, 3, 9), id="ny-dst-began"),
    pytest.param(NEW_YORK, datetime(2026, 11, 1, 3, 30, tzinfo=UTC), date(2026, 10, 31), id="ny-edt-23:30"),
    pytest.param(NEW_YORK, datetime(2026, 11, 2, 4, 30, tzinfo=UTC), date(2026, 11, 1), id="ny-dst-ended"),
]


@pytest.mark.parametrize("timezone, now, local_today", ZONES)
def test_due_soon_means_today_or_tomorrow_in_the_owners_zone(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    timezone: str | None,
    now: datetime,
    local_today: date,
) -> None:
    if timezone:
        set_timezone(client, auth, timezone)
    todos = {local_today + k * DAY: create_todo(client, auth, local_today + k * DAY) for k in range(-2, 4)}
    due_soon = [local_today, local_today + DAY]

    report = scan(app, now)

    assert notified(report) == {todos[due] for due in due_soon}
    got = {(item["todo_id"], item["due_date"]) for item in inbox(client, auth)}
    assert got == {(todos[due], due.isoformat()) for due in due_soon}


def test_one_scan_applies_each_owners_own_zone(app: Flask, client: FlaskClient, register: Any) -> None:
    owners = {  # email: (time zone or None for unset, local today at NOW)
        "west@example.com": (WEST, date(2026, 6, 14)),
        "utc@example.com": (None, date(2026, 6, 15)),
        "east@example.com": (EAST, date(2026, 6, 16)),
    }
    expected: dict[str, set[tuple[int, str]]] = {}
    headers: dict[str, dict[str, str]] = {}
    for email, (timezone, local_today) in owners.items():
        headers[email] = register(email)
        if timezone:
            set_timezone(client, headers[email], timezone)
        expected[email] = set()
        for due in (TODAY + k * DAY for k in range(-2, 4)):
            todo_id = create_todo(client, headers[email], due)
            if local_today <= due <= local_today + DAY:
                expected[email].add((todo_id, due.isoformat()))

    scan(app, batch_size=3)

    for email in owners:
        got = {(item["todo_id"], item["due_date"]) for item in inbox(client, headers[email])}
        assert got == expected[email], email


NOT_DUE_SOON = [
    pytest.param({"due": TODAY, "done": True}, id="finished"),
    pytest.param({"due": TODAY + DAY, "done": True}, id="finished-due-tomorrow"),
    pytest.param({"due": None}, id="no-due-date"),
    pytest.param({"due": TODAY + 2 * DAY}, id="in-two-days"),
    pytest.param({"due": TODAY - DAY}, id="overdue"),
    pytest.param({"due": TODAY - 400 * DAY}, id="long-overdue"),
]


@pytest.mark.parametrize("todo", NOT_DUE_SOON)
def test_todos_not_due_soon_get_no_notification(
    app: Flask, client: FlaskClient, auth: dict[str, str], todo: dict[str, Any]
) -> None:
    create_todo(client, auth, **todo)

    report = scan(app, email=True)

    assert report.notified == [] and report.deliveries == []
    assert inbox(client, auth) == []
    assert row_counts(app) == (0, 0)


def test_scanning_again_notifies_nobody_twice(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    todo_id = create_todo(client, auth, TODAY)

    first = scan(app, email=True)
    again = scan(app, NOW + timedelta(hours=1), email=True)

    assert notified(first) == {todo_id} and len(first.deliveries) == 1
    assert again.notified == [] and again.deliveries == []
    assert row_counts(app) == (1, 1)
    assert [item["todo_id"] for item in inbox(client, auth)] == [todo_id]


def test_interleaved_scans_notify_once(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    todo_ids = {create_todo(client, auth, TODAY, title=f"t{n}") for n in range(3)}
    create_notification = services._create_notifications
    rivals: list[services.ScanReport] = []

    def insert_after_a_rival_scan(*args: Any) -> Any:
        """The late scan's first insert comes after a whole rival scan on the same candidates."""
        monkeypatch.setattr(services, "_create_notifications", create_notification)
        rivals.append(services.scan_due_soon(now=NOW, email=True))
        return create_notification(*args)

    monkeypatch.setattr(services, "_create_notifications", insert_after_a_rival_scan)
    late = scan(app, email=True, batch_size=2)

    [rival] = rivals
    assert notified(rival) == todo_ids and len(rival.deliveries) == 3
    assert late.notified == [] and late.deliveries == []
    assert row_counts(app) == (3, 3)


def test_concurrent_scans_notify_once(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    todo_ids = {create_todo(client, auth, TODAY + (n % 2) * DAY) for n in range(6)}
    start = threading.Barrier(4)

    def one_scan() -> services.ScanReport:
        start.wait(timeout=10)
        with db.connection_context():
            return services.scan_due_soon(now=NOW, email=True, batch_size=1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = [future.result() for future in [pool.submit(one_scan) for _ in range(4)]]

    winners = [entry["todo_id"] for report in reports for entry in report.notified]
    assert sorted(winners) == sorted(todo_ids)
    assert sum(len(report.deliveries) for report in reports) == 6
    assert row_counts(app) == (6, 6)


def test_a_new_due_date_is_notified_again(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    todo_id = create_todo(client, auth, TODAY)
    assert notified(scan(app)) == {todo_id}

    set_fields(client, auth, todo_id, due_date=(TODAY + DAY).isoformat())
    assert notified(scan(app, NOW + timedelta(minutes=5))) == {todo_id}

    set_fields(client, auth, todo_id, due_date=TODAY.isoformat())
    assert scan(app, NOW + timedelta(minutes=10)).notified == []  # (todo, TODAY) was notified already

    got = [(item["todo_id"], item["due_date"]) for item in inbox(client, auth)]
    assert got == [(todo_id, (TODAY + DAY).isoformat()), (todo_id, TODAY.isoformat())]


def test_finishing_first_means_no_notification(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    todo_id = create_todo(client, auth, TODAY)
    set_fields(client, auth, todo_id, done=True)
    assert scan(app).notified == []

    set_fields(client, auth, todo_id, due_date=(TODAY + DAY).isoformat())
    assert scan(app).notified == []
    assert inbox(client, auth) == []

    set_fields(client, auth, todo_id, done=False)
    assert notified(scan(app)) == {todo_id}


def test_bounded_batches_reach_every_eligible_todo(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    other_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_timezone(client, auth, EAST)  # today is 06-16 there: 06-14 and 06-15 are overdue
    for due in (TODAY - DAY, TODAY - DAY, TODAY, TODAY):
        create_todo(client, auth, due)  # in the scan's UTC window, first in its order, not eligible
    eligible = {create_todo(client, auth, due) for due in (TODAY + DAY, TODAY + DAY, TODAY + 2 * DAY)}
    eligible |= {create_todo(client, other_auth, due) for due in (TODAY, TODAY, TODAY + DAY, TODAY + DAY)}
    batch_sizes: list[int] = []
    on_each_batch(monkeypatch, lambda batch: batch_sizes.append(len(batch)))
    report = scan(app, batch_size=2)

    assert len(eligible) == 7
    assert notified(report) == eligible
    assert max(batch_sizes) <= 2 and len(batch_sizes) >= 4
    assert row_counts(app) == (7, 0)


def test_a_todo_deleted_after_the_scan_read_it_leaves_the_rest_of_its_batch_notified(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    other_auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its notification's foreign key would fail the batch's insert, and every account's
    notifications in the batch with it (under churn, every scan)."""
    gone = create_todo(client, auth, TODAY)
    kept = {create_todo(client, auth, TODAY + DAY), create_todo(client, other_auth, TODAY)}
    deleted: list[int] = []
    on_each_batch(
        monkeypatch, lambda batch: deleted.append(client.delete(f"/todos/{gone}", headers=auth).status_code)
    )
    report = scan(app)

    assert deleted == [204]
    assert notified(report) == kept
    assert row_counts(app) == (2, 0)


def test_dry_run_changes_nothing(app: Flask, client: FlaskClient, auth: dict[str, str], redis: Any) -> None:
    set_webhook_in_db(app, "ann@example.com", "https://hooks.example.com/x", "whsec_" + "A" * 32)
    due_today, due_tomorrow = create_todo(client, auth, TODAY), create_todo(client, auth, TODAY + DAY)
    create_todo(client, auth, TODAY + 2 * DAY)

    dry = scan(app, email=True, dry_run=True)

    assert sorted((entry["todo_id"], entry["due_date"]) for entry in dry.notified) == [
        (due_today, TODAY.isoformat()),
        (due_tomorrow, (TODAY + DAY).isoformat()),
    ]
    assert all(sorted(entry["channels"]) == ["email", "webhook"] for entry in dry.notified)
    assert dry.deliveries == []
    assert row_counts(app) == (0, 0)
    assert inbox(client, auth) == []
    with app.app_context():
        assert get_queue().count == 0

    real = scan(app, email=True)
    assert notified(real) == {due_today, due_tomorrow}
    assert row_counts(app) == (2, 4)


def test_deleting_a_todo_deletes_its_notifications(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    gone, kept = create_todo(client, auth, TODAY), create_todo(client, auth, TODAY)
    scan(app, email=True)
    assert row_counts(app) == (2, 2)

    response = client.delete(f"/todos/{gone}", headers=auth)

    assert response.status_code == 204
    assert [item["todo_id"] for item in inbox(client, auth)] == [kept]
    assert row_counts(app) == (1, 1)


def test_one_log_line_per_notification(
    app: Flask, client: FlaskClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "whsec_" + "c2VjcmV0LXNob3VsZC1uZXZlci1iZS1sb2dnZWQ="
    set_webhook_in_db(app, "ann@example.com", "https://hooks.example.com/x", secret)
    for n in range(3):
        create_todo(client, auth, TODAY, title=f"t{n}")
    caplog.set_level(logging.INFO)

    report = scan(app, email=True)
    scan(app, NOW + timedelta(minutes=1), email=True)

    lines = [record.getMessage() for record in caplog.records if record.name == services.log.name]
    logged_ids = sorted(int(match) for line in lines for match in re.findall(r"(?<!\w)id=(\d+)", line))
    assert len(lines) == 3
    assert logged_ids == sorted(entry["id"] for entry in report.notified)
    assert secret not in caplog.text
