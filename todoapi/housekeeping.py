"""The worker's hourly clean-up: rows past their use that nothing else would ever delete. An RQ entry
point: RQ stores its import path, so renaming it strands the jobs already queued."""

import logging
from datetime import datetime
from typing import Any

from todoapi.db import db
from todoapi.models import IdempotencyKey, Session, utcnow
from todoapi.todos.services import IDEMPOTENCY_WINDOW

log = logging.getLogger(__name__)

# Expired rows harm nothing while they wait (each check also looks at the expiry): an hour is plenty.
INTERVAL_SECONDS = 3600
BATCH_SIZE = 1000


def purge_expired() -> dict[str, int]:
    """The repeating job: delete idempotency keys past their 24 hours (each holds a stored
    response) and sessions whose newest refresh token has expired."""
    with db.connection_context():
        purged = {"idempotency_keys": purge_expired_keys(), "sessions": purge_expired_sessions()}
    if any(purged.values()):
        log.info("purged expired rows idempotency_keys=%d sessions=%d", *purged.values())
    return purged


def purge_expired_keys(now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Idempotency keys past their 24 hours. One still in its table is harmless (`create_todo_once`
    replaces it), but nothing else would ever remove it."""
    expired = IdempotencyKey.created_at < (now or utcnow()) - IDEMPOTENCY_WINDOW
    return _delete_in_batches(IdempotencyKey, expired, batch_size)


def purge_expired_sessions(now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Sessions whose newest refresh token has expired: no token of theirs is good any more."""
    return _delete_in_batches(Session, Session.expires_at < (now or utcnow()), batch_size)


def _delete_in_batches(model: Any, condition: Any, batch_size: int) -> int:
    """Delete `model`'s rows matching `condition`, a batch per statement so that no transaction
    runs long; how many went."""
    purged = 0
    while True:
        batch = model.select(model._meta.primary_key).where(condition).limit(batch_size)
        deleted = int(model.delete().where(model._meta.primary_key.in_(batch)).execute())
        purged += deleted
        if deleted < batch_size:
            return purged
