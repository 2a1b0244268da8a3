"""RQ worker entry point: `python worker.py`."""

from todoapi import housekeeping
from todoapi.notifications.jobs import scan_due_soon
from todoapi.queue import run_worker
from wsgi import app

if __name__ == "__main__":
    # The repeating jobs are registered here only, never by web processes.
    run_worker(
        app,
        every={
            scan_due_soon: app.config["NOTIFY_INTERVAL_SECONDS"],
            housekeeping.purge_expired: housekeeping.INTERVAL_SECONDS,
        },
    )
