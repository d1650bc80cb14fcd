"""Liveness of the two background loops (outbox relay, consumer): is the loop moving work?

A loop that turns but moves nothing is as dead as one that hangs.  The relay showed it: after a
Kafka crash kafka-python's producer could stay wedged for good (README, "Reliability"), answering
every flush with a timeout while Kafka itself answered again.  Restarting the process cures that;
restarting it while Kafka or a store is down cures nothing.  So a loop counts as stalled only when
all of these hold:

* it has not moved any work (published, projected, or found nothing to do) for `bound` seconds;
* it was not waiting on the *other* store meanwhile (MySQL for the relay, Cassandra for the
  consumer): that outage is for /readyz to report, not a reason to restart;
* Kafka answered within the last `bound` seconds, so a restart can actually help.

The loop also counts as dead when it has not turned at all for `bound` seconds (a hung call).
GET /healthz answers 503 when `alive()` is false; the pod's liveness probe restarts the container.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Progress:
    def __init__(self, bound_s: float, clock: Callable[[], float] = time.monotonic):
        self.bound_s = bound_s
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self.turned_at = now          # the loop went round
        self.moved_at = now           # work moved, nothing to do, or blocked on the other store
        self.kafka_answered_at: float | None = None

    def turned(self) -> None:
        with self._lock:
            self.turned_at = self._clock()

    def moved(self) -> None:
        """Work moved, or there was none waiting."""
        with self._lock:
            self.moved_at = self.turned_at = self._clock()

    def blocked_elsewhere(self) -> None:
        """The other store is failing: waiting on it is not a stall a restart would cure."""
        self.moved()

    def kafka_answered(self) -> None:
        with self._lock:
            self.kafka_answered_at = self._clock()

    def stalled_for(self) -> float | None:
        """Seconds without progress while Kafka answers, or None when not stalled."""
        with self._lock:
            now = self._clock()
            idle = now - self.moved_at
            answered = self.kafka_answered_at is not None and now - self.kafka_answered_at < self.bound_s
            return idle if idle > self.bound_s and answered else None

    def alive(self) -> bool:
        with self._lock:
            hung = self._clock() - self.turned_at > self.bound_s
        return not hung and self.stalled_for() is None
