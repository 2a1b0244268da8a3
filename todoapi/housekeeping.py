"""The worker's hourly clean-up: rows past their use that nothing else would ever delete. An RQ entry
point: RQ stores its import path, so renaming it strands the jobs already queued."""

import logging

from todoapi.auth.services import purge_expired_sessions
from todoapi.db import db
from todoapi.todos.services import purge_expired_keys

log = logging.getLogger(__name__)

# Expired rows harm nothing while they wait (each check also looks at the expiry): an hour is plenty.
INTERVAL_SECONDS = 3600


def purge_expired() -> dict[str, int]:
    """The repeating job: delete idempotency keys past their 24 hours (each holds a stored
    response) and sessions whose newest refresh token has expired."""
    with db.connection_context():
        purged = {"idempotency_keys": purge_expired_keys(), "sessions": purge_expired_sessions()}
    if any(purged.values()):
        log.info("purged expired rows idempotency_keys=%d sessions=%d", *purged.values())
    return purged
