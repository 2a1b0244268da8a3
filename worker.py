"""RQ worker entry point: `python worker.py`."""

from todoapi.queue import run_worker
from wsgi import app

if __name__ == "__main__":
    run_worker(app)
