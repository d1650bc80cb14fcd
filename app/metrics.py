"""Prometheus metrics for the API and the outbox relay.

gunicorn runs several worker processes, so the API uses prometheus_client's
multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (the gunicorn config
sets it up and cleans it); the consumer is one process and serves its own
registry.  Metric names are documented in the README and used by the Grafana
dashboard in the chart.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import events

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter("simplecqrs_http_requests_total", "HTTP requests by route, method and status",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("simplecqrs_http_request_duration_seconds", "HTTP request latency by route",
                         ["route", "method"], buckets=LATENCY_BUCKETS)
ORDERS_PLACED = Counter("simplecqrs_orders_placed_total", "Orders committed with their outbox event")
PUBLISHED = Counter("simplecqrs_outbox_published_total", "Outbox events acknowledged by Kafka")
PUBLISH_FAILURES = Counter("simplecqrs_outbox_publish_failures_total", "Outbox events Kafka did not acknowledge")
PRODUCER_REPLACED = Counter("simplecqrs_outbox_producer_replaced_total",
                            "Kafka producers the relay closed and replaced after a batch was not acknowledged")
PUBLISH_LATENCY = Histogram("simplecqrs_outbox_publish_duration_seconds",
                            "Time from send to acknowledgement of one outbox batch", buckets=LATENCY_BUCKETS)
COMMIT_TO_PUBLISH = Histogram("simplecqrs_outbox_commit_to_publish_seconds",
                              "Time from an order's commit to its event's acknowledgement by Kafka",
                              buckets=events.DELAY_BUCKETS)
POSITION_SAVED = Gauge("simplecqrs_outbox_position_saved_timestamp_seconds",
                       "When the binlog relay last saved its position (Unix time)")
POSITION_LOST = Gauge("simplecqrs_outbox_position_lost",
                      "1 while the binlog relay's saved position is gone from the server (it publishes nothing)")
# Set by whichever gunicorn worker serves a scrape.  "livemostrecent": the latest value of a live
# worker (child_exit in app/gunicorn_conf.py drops a dead worker's file); "max" kept reporting the
# highest value any worker ever set, a dead one's included, so the gauge could stick.
OUTBOX_BACKLOG = Gauge("simplecqrs_outbox_backlog", "Outbox events not yet published (read at scrape time)",
                       multiprocess_mode="livemostrecent")


_request_children: dict[tuple[str, str, str], tuple] = {}


def observe_request(route: str, method: str, status: str, seconds: float) -> None:
    """Count and time one request; the labelled children are looked up once per label set (hot path)."""
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        children = (HTTP_REQUESTS.labels(route, method, status), HTTP_LATENCY.labels(route, method))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition for GET /metrics, merging worker processes when in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
