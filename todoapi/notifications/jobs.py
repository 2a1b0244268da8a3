"""RQ entry points. RQ stores these import paths: renaming one strands the jobs already queued."""

import logging
import math
import time

from flask import current_app
from rq import Retry

from todoapi.db import db
from todoapi.models import Delivery, utcnow
from todoapi.notifications import channels, services
from todoapi.notifications.schemas import NotificationSchema
from todoapi.ops.metrics import NOTIFICATIONS
from todoapi.queue import enqueue

log = logging.getLogger(__name__)


def scan_due_soon() -> dict[str, int]:
    """The repeating job: notify due-soon todos; queue their deliveries and any lost ones."""
    with db.connection_context():
        report = services.scan_due_soon(email=bool(current_app.config["SMTP_URL"]))
        lost = services.overdue_deliveries()
    if report.notified:
        NOTIFICATIONS.labels("inbox", "created").inc(len(report.notified))
    for delivery_id in [*report.deliveries, *lost]:
        enqueue_delivery(delivery_id)
    return {"notified": len(report.notified), "requeued": len(lost)}


# RQ ends a delivery job that runs longer: more than an attempt takes (a webhook's deadline, an SMTP
# exchange), less than the delivery's lease, so the sweep never hands a delivery still being sent
# to a second job.
DELIVERY_JOB_SECONDS = 60


def enqueue_delivery(delivery_id: int) -> None:
    # A failed attempt schedules its own retry (`deliver`); this Retry is for a job that raised
    # (the database down, say), whose traceback RQ logs.
    enqueue(
        deliver,
        delivery_id,
        retry=Retry(max=services.MAX_ATTEMPTS - 1, interval=services.RETRY_INTERVALS),
        job_timeout=DELIVERY_JOB_SECONDS,
    )


def deliver(delivery_id: int) -> str | Retry:
    """One attempt at one delivery. After a failure to retry it returns RQ's Retry, due at the
    delivery's `next_attempt_at`: an expected outcome, logged once below, not an exception."""
    with db.connection_context():
        claimed = services.claim_delivery(delivery_id)
        if claimed is None:
            return "skipped"  # delivered, failed for good, or another job holds it
        error = None
        started = time.monotonic()
        try:
            _send(claimed)
        except channels.DeliveryError as exc:
            error = str(exc)
        except Exception as exc:
            # Still an attempt: record it (and free the lease) so retries and `failed` follow.
            log.exception("delivery attempt crashed delivery_id=%s", delivery_id)
            error = f"internal error: {type(exc).__name__}"
        status = services.finish_delivery(claimed.delivery, error)
        services.pace_webhooks(claimed.delivery, claimed.user.id, time.monotonic() - started)
    NOTIFICATIONS.labels(claimed.delivery.channel, {"pending": "retry"}.get(status, status)).inc()
    log.info(
        "delivery attempt delivery_id=%s notification_id=%s channel=%s attempt=%s status=%s error=%s",
        delivery_id,
        claimed.notification.id,
        claimed.delivery.channel,
        claimed.delivery.attempts,
        status,
        error,
    )
    if status == "pending":
        return _retry_at(claimed.delivery)
    return status


def _retry_at(delivery: Delivery) -> Retry:
    """The retry of this job, due no sooner than the delivery's next attempt (claims before it skip).

    Not RQ's intervals from the enqueue: a job queued again by the sweep counts its retries from zero,
    while the backoff follows the delivery's attempts. RQ schedules in whole seconds, rounded down;
    hence the extra second.
    """
    wait = (delivery.next_attempt_at - utcnow()).total_seconds()
    return Retry(max=services.MAX_ATTEMPTS - 1, interval=max(0, math.ceil(wait)) + 1)


def _send(claimed: services.Claimed) -> None:
    notification, user = claimed.notification, claimed.user
    config = current_app.config
    if claimed.delivery.channel == "webhook":
        if not user.webhook_url or not user.webhook_secret:
            raise channels.DeliveryError("the account has no webhook URL any more")
        payload = {
            "type": "todo.due_soon",
            "timestamp": utcnow().isoformat(),
            "data": NotificationSchema().dump(services.notification_with_deliveries(notification.id)),
        }
        channels.send_webhook(
            user.webhook_url,
            user.webhook_secret,
            f"msg_{notification.id}",
            payload,
            allow_private=config["WEBHOOK_ALLOW_PRIVATE"],
        )
    elif claimed.delivery.channel == "email":
        if not config["SMTP_URL"]:
            raise channels.DeliveryError("SMTP_URL is not set")
        channels.send_email(
            config["SMTP_URL"],
            user.email,
            f"Due soon: {notification.title}",
            f'Your todo "{notification.title}" is due on {notification.due_date.isoformat()}.\n',
        )
    else:
        raise channels.DeliveryError(f"unknown channel {claimed.delivery.channel!r}")
