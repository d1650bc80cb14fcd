"""Prometheus metrics of one consumer process (served with /healthz on CONSUMER_METRICS_PORT)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROJECTED = Counter("simplecqrs_consumer_events_projected_total", "Events written to the read model")
DEAD_LETTERED = Counter("simplecqrs_consumer_dead_lettered_total", "Poison messages sent to the dead-letter topic")
RETRIES = Counter("simplecqrs_consumer_retries_total", "Event writes retried after a read-store failure")
DELAY = Histogram("simplecqrs_consumer_projection_delay_seconds",
                  "Time from the order's creation to its projection",
                  # Fine below a second: scripts/bench reads its freshness percentiles off these buckets.
                  buckets=(0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                           0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300))
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
