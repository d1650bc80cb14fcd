"""Prometheus metrics of one consumer process (served with /healthz on CONSUMER_METRICS_PORT)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app import events

PROJECTED = Counter("simplecqrs_consumer_events_projected_total", "Events written to the read model")
DEAD_LETTERED = Counter("simplecqrs_consumer_dead_lettered_total", "Poison messages sent to the dead-letter topic")
RETRIES = Counter("simplecqrs_consumer_retries_total", "Event writes retried after a read-store failure")
DELAY = Histogram("simplecqrs_consumer_projection_delay_seconds",
                  "Time from the order's creation to its projection",
                  buckets=events.DELAY_BUCKETS)
_LAG = Gauge("simplecqrs_consumer_lag", "Records behind the partition's high-water mark", ["topic", "partition"])


class LAG:
    @staticmethod
    def set_partition(tp, value: int) -> None:
        _LAG.labels(tp.topic, str(tp.partition)).set(value)

    @staticmethod
    def remove_partition(tp) -> None:
        try:
            _LAG.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass
