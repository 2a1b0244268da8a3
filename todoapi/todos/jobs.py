"""RQ entry points. RQ stores these import paths: renaming one strands the jobs already queued."""

import logging

from todoapi.db import db
from todoapi.todos import services

log = logging.getLogger(__name__)

# How often the worker purges expired idempotency keys: rows an hour past their 24 h cost nothing.
PURGE_INTERVAL_SECONDS = 3600


def purge_expired_keys() -> dict[str, int]:
    """The repeating job: delete idempotency keys past their 24 hours."""
    with db.connection_context():
        purged = services.purge_expired_keys()
    if purged:
        log.info("purged %d expired idempotency keys", purged)
    return {"purged": purged}
