"""gunicorn settings, all from the environment (`PORT`, `WEB_CONCURRENCY`) and `.env`."""

import gc
import multiprocessing
import os
import tempfile

from dotenv import load_dotenv

# `.env` as wsgi.py reads it, but before any setting here is read; real environment variables win.
load_dotenv()

# Prometheus multiprocess mode: every worker writes samples to this directory and /metrics
# sums them. It must be set before the app (and prometheus_client) is imported.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="todoapi-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, multiprocessing.cpu_count()))
# gthread, with kept-alive connections spread evenly over the workers (todoapi/ops/serving.py).
worker_class = "todoapi.ops.serving.BalancedThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)

# The app is built once in the master and forked; it opens no connection at import
# time, so every worker starts with an empty pool of its own.
preload_app = True

timeout = 30
graceful_timeout = 20
keepalive = 5

# gunicorn answers a longer request line itself, with a text/html 414 outside the API's JSON error
# shape. 8190 is its maximum; the query parameters' documented bounds keep every request the OpenAPI
# document allows within it (todoapi/todos/schemas.py, MAX_QUERY_TAGS).
limit_request_line = 8190

# gunicorn 25.1+ opens a control socket at one fixed path per user; two servers on one
# host would take over (and on exit delete) each other's socket. We do not use it.
control_socket_disable = True

accesslog = None
errorlog = "-"
# gunicorn's own lines (start, workers, signals) as JSON lines, like the application's.
logger_class = "todoapi.ops.serving.JsonLogger"


def pre_fork(server, worker):  # type: ignore[no-untyped-def]
    # Everything the preloaded app built is moved out of the collector's reach before the fork:
    # a worker's full collection then walks only its own objects (walking the app's ~80,000 too
    # took ~30 ms, a pause every few thousand requests, in the p99), and never writes to the pages
    # it shares with the master.
    gc.freeze()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
