"""Prometheus metrics, correct across gunicorn's workers and the RQ worker, wherever each runs.

Request counts and latencies are written by gunicorn's workers, one host by construction: with
PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py makes one when none is), each worker writes its
samples there and /metrics sums them. The notification counters are written by the RQ worker, which
may run on another machine and forks a work horse per job: they are kept in Redis, which it already
depends on, and read at scrape time like the queue depth.
"""

import logging
import os
import threading
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError

from todoapi.queue import get_queue, get_redis

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests.", ["method", "endpoint", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RedisCounter:
    """A labelled counter in one Redis hash (a field per label set), shared by every process on
    every host; `labels(...).inc(n)` as on prometheus_client's Counter, and a collector for /metrics.

    Redis down: an increment is dropped, without failing the caller, and logged once per outage;
    /metrics leaves the family out.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], key: str) -> None:
        self.name, self.documentation, self.labelnames, self.key = name, documentation, labelnames, key
        self._lock = threading.Lock()
        self._unavailable = False  # an increment failed since the last one that succeeded

    def labels(self, *values: str) -> "RedisCounterChild":
        if len(values) != len(self.labelnames) or any(":" in value for value in values[:-1]):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, got {values!r}")
        return RedisCounterChild(self, ":".join(values))

    def increment(self, field: str, amount: int) -> None:
        try:
            get_redis().hincrby(self.key, field, amount)
        except RedisError as exc:
            with self._lock:
                first, self._unavailable = not self._unavailable, True
            if first:
                log.warning(
                    "redis unavailable (%s): %s not counted until it is back", type(exc).__name__, self.name
                )
            return
        self._unavailable = False

    def collect(self) -> Iterator[CounterMetricFamily]:
        try:
            fields = get_redis().hgetall(self.key)
        except RedisError:
            return
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for field, count in sorted(fields.items()):
            text = field.decode() if isinstance(field, bytes) else field
            family.add_metric(text.split(":", len(self.labelnames) - 1), int(count))
        yield family


class RedisCounterChild:
    def __init__(self, counter: RedisCounter, field: str) -> None:
        self.counter, self.field = counter, field

    def inc(self, amount: int = 1) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        if amount:
            self.counter.increment(self.field, amount)


NOTIFICATIONS = RedisCounter(
    "todoapi_notifications",
    "Notifications created (channel=inbox) and delivery attempts.",
    ("channel", "outcome"),
    key="todoapi:metrics:notifications",
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
    registry.register(NOTIFICATIONS)
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
