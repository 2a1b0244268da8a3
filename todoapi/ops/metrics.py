"""Prometheus metrics, correct across gunicorn workers and the RQ worker (multiprocess mode).

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it for web; `make run` shares it with the
worker), every process writes its samples there and /metrics aggregates them.
"""

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from todoapi.queue import get_queue

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests.", ["method", "endpoint", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
NOTIFICATIONS = Counter(
    "todoapi_notifications",
    "Notifications created (channel=inbox) and delivery attempts.",
    ["channel", "outcome"],
)


class QueueDepthCollector:
    """Jobs waiting in the queue, read from Redis at scrape time (absent while Redis is down)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("todoapi_queue_depth", "Jobs waiting in the RQ queue.", labels=["queue"])
        try:
            queue = get_queue()
            gauge.add_metric([queue.name], queue.count)
        except RedisError:
            pass
        yield gauge


def render_metrics() -> Response:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)  # one process: its own samples
    registry.register(QueueDepthCollector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# A client picks the method's name: anything else would add series (and memory) per name it sends.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def init_metrics(app: Flask) -> None:
    @app.before_request
    def _clock() -> None:
        g.metrics_started = time.perf_counter()

    # Each (method, route, status)'s samples, looked up once: `labels()` validates and locks every time.
    series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @app.after_request
    def _observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        key = (method, endpoint, response.status_code)
        samples = series.get(key)
        if samples is None:
            samples = series.setdefault(
                key,
                (
                    HTTP_REQUESTS.labels(method, endpoint, str(response.status_code)),
                    HTTP_DURATION.labels(method, endpoint),
                ),
            )
        requests, duration = samples
        requests.inc()
        if "metrics_started" in g:
            duration.observe(time.perf_counter() - g.metrics_started)
        return response
