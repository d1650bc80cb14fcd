"""The polling relay (OUTBOX_RELAY=poll): claims the unpublished outbox rows every poll interval.

    simplecqrs relay        (OUTBOX_RELAY picks this or the binlog relay)

Each turn drains the table (Relay.drain_once, app/relay/base.py: claimed with FOR UPDATE SKIP
LOCKED, published, marked published_at, in one transaction), as long as full batches come back,
then prunes when due and sleeps one poll interval.  Its price is the poll interval
(OUTBOX_POLL_INTERVAL_SECONDS, 20 ms) of extra latency and one indexed SELECT per interval when
idle.  While Kafka is down the relay backs off (to OUTBOX_MAX_BACKOFF_SECONDS) and the API keeps
accepting orders; the backlog drains by itself when Kafka returns.
"""
from __future__ import annotations

import logging

from ..writemodel.db import is_connection_error
from .base import Relay

log = logging.getLogger(__name__)


class PollingRelay(Relay):
    KIND = "poll"

    def run(self) -> None:
        """Drain, sleep one poll interval (or the backoff after a failure), repeat until stopped.

        (A loop of its own, not tenacity: the backoff is this service loop's idle time after a failed
        turn, in the same loop that polls, reports liveness and prunes; tenacity retries one call.)"""
        out = self.settings.outbox
        backoff = 0.0
        while not self._stop.is_set():
            self.progress.turned()
            try:
                while self.drain_once() == out.batch_size and not self._stop.is_set():
                    pass  # a full batch: there may be more right away
                self.prune_if_due()
                backoff = 0.0
                self.last_error = None
            except Exception as e:  # noqa: BLE001 - the relay never dies; it backs off and retries
                backoff = min(max(backoff * 2, 0.5), out.max_backoff_s)
                self.last_error = f"{type(e).__name__}: {str(e)[:250]}"
                log.warning("outbox relay failed; retrying", extra={"error": self.last_error, "retry_in_s": backoff})
                if is_connection_error(e):
                    self.pool.discard()
                    self.progress.blocked_elsewhere()  # MySQL is down: nothing a restart would cure
            self._stop.wait(backoff or out.poll_interval_s)
        self._close_producer(timeout=5)
