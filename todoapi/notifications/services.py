"""Due-soon notifications: the scan, the inbox, and the bookkeeping of deliveries. No Flask here."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from peewee import Tuple, fn, prefetch

from todoapi.db import db, for_update
from todoapi.errors import NotFound
from todoapi.models import MAX_ID, Delivery, Notification, Todo, User, utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_ATTEMPTS = 5
RETRY_INTERVALS = [10, 30, 120, 600]  # seconds before attempts 2..5
LEASE = timedelta(minutes=2)  # longer than one attempt can take (connect + read timeouts)
# A webhook attempt slower than this holds back the account's other webhook deliveries for
# PACE_FACTOR times its length; a failed one holds them back for its own backoff.
SLOW_WEBHOOK_SECONDS = 2.0
PACE_FACTOR = 5


@dataclass
class ScanReport:
    """What one scan found; `deliveries` are ids to hand to the queue."""

    notified: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_today(timezone: str, now: datetime) -> date:
    return now.astimezone(_zone(timezone)).date()


def is_due_soon(due_date: date, timezone: str, now: datetime) -> bool:
    today = local_today(timezone, now)
    return today <= due_date <= today + timedelta(days=1)


def _candidates(now: datetime, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Open, not yet notified todos whose due date is today or tomorrow somewhere on Earth.

    Local dates span UTC-12..UTC+14, so every owner's "today or tomorrow" lies within
    [UTC date - 1, UTC date + 2]. Keyset pages over the partial index todos_open_due_date.
    """
    utc_day = now.astimezone(ZoneInfo("UTC")).date()
    low, high = utc_day - timedelta(days=1), utc_day + timedelta(days=2)
    notified = Notification.select(Notification.id).where(
        (Notification.todo == Todo.id) & (Notification.due_date == Todo.due_date)
    )
    after: tuple[date, int] = (low - timedelta(days=1), 0)
    while True:
        batch: list[Any] = list(
            Todo.select(Todo.id, Todo.user, Todo.title, Todo.due_date, User.timezone, User.webhook_url)
            .join(User)
            .where(
                (Todo.done == False)  # noqa: E712
                & (Todo.due_date >= low)
                & (Todo.due_date <= high)
                & (Tuple(Todo.due_date, Todo.id) > Tuple(*after))
                & ~fn.EXISTS(notified)
            )
            .order_by(Todo.due_date, Todo.id)
            .limit(batch_size)
            .tuples()
        )
        if not batch:
            return
        yield batch
        after = (batch[-1][3], batch[-1][0])


def scan_due_soon(
    now: datetime | None = None, email: bool = False, dry_run: bool = False, batch_size: int = BATCH_SIZE
) -> ScanReport:
    """Create one notification per due-soon (todo, due date), with a pending delivery per channel.

    Safe to run anywhere, any number of times at once: the unique (todo_id, due_date) index
    lets exactly one insert win; only the winner creates deliveries.
    """
    now = now or utcnow()
    report = ScanReport()
    for batch in _candidates(now, batch_size):
        entries = {
            todo_id: {
                "todo_id": todo_id,
                "user_id": user_id,
                "due_date": due_date.isoformat(),
                "channels": [name for name, on in (("webhook", bool(webhook_url)), ("email", email)) if on],
                "title": title,
            }
            for todo_id, user_id, title, due_date, timezone, webhook_url in batch
            if is_due_soon(due_date, timezone, now)
        }
        if dry_run:
            report.notified.extend(_public(entry) for entry in entries.values())
            continue
        for notification_id, entry, delivery_ids in _create_notifications(list(entries.values()), now):
            report.notified.append({"id": notification_id, **_public(entry)})
            report.deliveries.extend(delivery_ids)
            log.info(
                "notification created id=%s user_id=%s todo_id=%s due_date=%s channels=%s",
                notification_id,
                entry["user_id"],
                entry["todo_id"],
                entry["due_date"],
                ",".join(entry["channels"]) or "inbox",
            )
    return report


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in entry.items() if name != "title"}


def _create_notifications(
    entries: list[dict[str, Any]], now: datetime
) -> list[tuple[int, dict[str, Any], list[int]]]:
    """Insert a batch's notifications and their deliveries in one transaction: a few statements
    per batch, not per todo. Rows another scanner already inserted are skipped by the unique
    (todo_id, due_date) index; only the rows this insert won get deliveries."""
    if not entries:
        return []
    by_todo = {entry["todo_id"]: entry for entry in entries}
    with db.atomic():
        # A todo deleted since the batch was read would fail the insert's foreign key, and the
        # whole batch, any account's todos, with it: only those still there go in, kept there
        # until the commit (PostgreSQL: FOR KEY SHARE, which a deletion waits for and a change
        # does not; SQLite: this transaction already has the writers' turn).
        present = Todo.select(Todo.id).where(Todo.id.in_(list(by_todo))).order_by(Todo.id)
        entries = [by_todo[todo.id] for todo in for_update(present, "KEY SHARE")]
        if not entries:
            return []
        won = (
            Notification.insert_many(
                [
                    {
                        "user": entry["user_id"],
                        "todo": entry["todo_id"],
                        "title": entry["title"],
                        "due_date": entry["due_date"],
                        "created_at": now,
                    }
                    for entry in entries
                ]
            )
            .on_conflict_ignore()
            .returning(Notification.id, Notification.todo)
            .tuples()
            .execute()
        )
        created = sorted((notification_id, by_todo[todo_id]) for notification_id, todo_id in won)
        wanted = [
            {"notification": notification_id, "channel": channel, "next_attempt_at": now}
            for notification_id, entry in created
            for channel in entry["channels"]
        ]
        delivery_ids: dict[int, list[int]] = {}
        if wanted:
            rows = (
                Delivery.insert_many(wanted).returning(Delivery.id, Delivery.notification).tuples().execute()
            )
            for delivery_id, notification_id in rows:
                delivery_ids.setdefault(notification_id, []).append(delivery_id)
    return [
        (notification_id, entry, sorted(delivery_ids.get(notification_id, [])))
        for notification_id, entry in created
    ]


# --- deliveries -------------------------------------------------------------------------------


@dataclass
class Claimed:
    delivery: Delivery
    notification: Notification
    user: User


def claim_delivery(delivery_id: int, now: datetime | None = None) -> Claimed | None:
    """Take the lease on a pending delivery that is due and count the attempt; None if it is not
    ours to send now: delivered, failed, held by another job, or its backoff not over (a stale or
    duplicate job: the one that recorded the last attempt, or the sweep, sends it when due)."""
    now = now or utcnow()
    taken = (
        Delivery.update(lease_until=now + LEASE, attempts=Delivery.attempts + 1, updated_at=now)
        .where(
            (Delivery.id == delivery_id)
            & (Delivery.status == "pending")
            & (Delivery.next_attempt_at <= now)
            & (Delivery.lease_until.is_null() | (Delivery.lease_until < now))
        )
        .execute()
    )
    if not taken:
        return None
    row = (
        Delivery.select(Delivery, Notification, User)
        .join(Notification)
        .join(User)
        .where(Delivery.id == delivery_id)
        .get()
    )
    return Claimed(row, row.notification, row.notification.user)


def finish_delivery(delivery: Delivery, error: str | None, now: datetime | None = None) -> str:
    """Record one attempt's outcome, in the row and on `delivery`; returns the new status. Failures
    retry until MAX_ATTEMPTS, each at its `next_attempt_at`."""
    now = now or utcnow()
    if error is None:
        status, next_attempt = "delivered", now
    elif delivery.attempts >= MAX_ATTEMPTS:
        status, next_attempt = "failed", now
    else:
        status, next_attempt = "pending", now + backoff(delivery.attempts)
    outcome = {
        "status": status,
        "last_error": error,
        "lease_until": None,
        "next_attempt_at": next_attempt,
        "updated_at": now,
    }
    Delivery.update(**outcome).where(Delivery.id == delivery.id).execute()
    for name, value in outcome.items():
        setattr(delivery, name, value)
    return status


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`-th failed attempt a delivery is tried again."""
    return timedelta(seconds=RETRY_INTERVALS[min(attempts, len(RETRY_INTERVALS)) - 1])


def pace_webhooks(delivery: Delivery, user_id: int, seconds: float, now: datetime | None = None) -> int:
    """After an attempt of `delivery` (to `user_id`'s receiver) that took `seconds`: if it failed or
    was slow, the account's other pending webhook deliveries wait (until the sweep queues them
    again). The worker runs one job at a time, and an account can have any number of todos due:
    one receiver that fails or crawls must not keep everyone else's notifications waiting. Returns
    how many were held back."""
    if delivery.channel != "webhook":
        return 0
    now = now or utcnow()
    until = now + timedelta(seconds=PACE_FACTOR * seconds) if seconds > SLOW_WEBHOOK_SECONDS else now
    if delivery.last_error is not None:
        # The others wait for this one's retry (or as long, after its last attempt).
        retry = delivery.next_attempt_at if delivery.status == "pending" else now + backoff(delivery.attempts)
        until = max(until, retry)
    if until <= now:
        return 0
    owned = Notification.select(Notification.id).where(Notification.user == user_id)
    return int(
        Delivery.update(next_attempt_at=until, updated_at=now)
        .where(
            (Delivery.channel == "webhook")
            & (Delivery.status == "pending")
            & (Delivery.id != delivery.id)
            & (Delivery.next_attempt_at < until)
            & Delivery.notification.in_(owned)
        )
        .execute()
    )


def overdue_deliveries(now: datetime | None = None, grace: timedelta = timedelta(minutes=2)) -> list[int]:
    """Pending deliveries whose retry is well past due and nobody holds: their job was lost."""
    now = now or utcnow()
    query = (
        Delivery.select(Delivery.id)
        .where(
            (Delivery.status == "pending")
            & (Delivery.next_attempt_at < now - grace)
            & (Delivery.lease_until.is_null() | (Delivery.lease_until < now))
        )
        .order_by(Delivery.id)
        .limit(BATCH_SIZE)
    )
    return [row.id for row in query]


# --- inbox ------------------------------------------------------------------------------------


def list_notifications(user_id: int, args: dict[str, Any]) -> dict[str, Any]:
    query = Notification.select().where(Notification.user == user_id)
    if "unread" in args:
        query = query.where(Notification.read_at.is_null(args["unread"]))
    page = query.order_by(Notification.created_at.desc(), Notification.id.desc()).offset(args["skip"])
    items = prefetch(page.limit(args["limit"]), Delivery.select().order_by(Delivery.channel))
    return {"items": list(items), "total": query.count(), "skip": args["skip"], "limit": args["limit"]}


def mark_read(user_id: int, notification_id: int, now: datetime | None = None) -> Notification:
    if notification_id > MAX_ID:
        raise NotFound("Notification not found.")
    owned = (Notification.user == user_id) & (Notification.id == notification_id)
    Notification.update(read_at=now or utcnow()).where(owned & Notification.read_at.is_null()).execute()
    if not Notification.select().where(owned).exists():
        raise NotFound("Notification not found.")
    return notification_with_deliveries(notification_id)


def mark_all_read(user_id: int, now: datetime | None = None) -> int:
    return int(
        Notification.update(read_at=now or utcnow())
        .where((Notification.user == user_id) & Notification.read_at.is_null())
        .execute()
    )


def notification_with_deliveries(notification_id: int) -> Notification:
    notification: Notification = prefetch(
        Notification.select().where(Notification.id == notification_id),
        Delivery.select().order_by(Delivery.channel),
    )[0]
    return notification
