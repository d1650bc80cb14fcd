"""The outbox relay: publishes committed events from MySQL to Kafka, in order, at least once.

Where it runs: a thread inside every API process (OUTBOX_RELAY_ENABLED=true,
the default).  Each commit wakes its own process's relay, so the normal-case
latency from commit to Kafka is one producer round trip; a periodic poll picks
up whatever another process left behind (killed between commit and send).  A
separate relay Deployment would add a hop and a component to run; running one
per API process needs no extra moving part and scales with the API.  For a
dedicated relay, set OUTBOX_RELAY_ENABLED=false on the API and run
`python -m app.outbox`.

How rows are claimed: `SELECT ... WHERE published_at IS NULL ORDER BY seq
FOR UPDATE SKIP LOCKED` inside a transaction that stays open until Kafka has
acknowledged the batch and the rows are marked.  Concurrent relays therefore
never publish the same rows in normal operation, and rows of transactions
that have not committed yet are invisible or locked, never skipped for good
(there is no high-water mark).  A relay that dies after sending but before
marking leaves the rows unpublished: they are sent again later with the same
eventId and sequence, and the projection ignores the duplicate.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from datetime import datetime, timezone

from . import broker, events, metrics
from .config import Settings, load
from .writemodel.db import ConnectionPool, is_connection_error

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 300.0
FLUSH_TIMEOUT_S = 15.0


def message_for(seq: int, payload: str) -> events.OnNewOrder:
    """The wire event for one outbox row: the stored payload plus its sequence."""
    return events.OnNewOrder(sequence=int(seq), **json.loads(payload))


class OutboxRelay:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = ConnectionPool(settings.mysql)
        self._producer = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self.healthy_since: float | None = None  # last time Kafka acknowledged (or nothing to do)
        self.last_error: str | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "OutboxRelay":
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:  # noqa: BLE001
                pass
            self._producer = None

    @property
    def publishing(self) -> bool:
        """False while Kafka is failing: /readyz reports publishing as degraded."""
        return self.last_error is None

    def run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=backoff or self.settings.outbox.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while self.drain_once() == self.settings.outbox.batch_size and not self._stop.is_set():
                    pass  # a full batch: there may be more right away
                self.prune_if_due()
                backoff = 0.0
            except Exception as e:  # noqa: BLE001 - the relay must never die; it backs off and retries
                backoff = min(max(backoff * 2, 0.5), self.settings.outbox.max_backoff_s)
                self.last_error = str(e)[:300]
                log.warning("outbox relay failed; retrying", extra={"error": self.last_error,
                                                                   "retry_in_s": backoff})
                if is_connection_error(e):
                    self.pool.discard()
                self._reset_producer_if_broken(e)

    # ---------------------------------------------------------------- work
    def producer(self):
        if self._producer is None:
            self._producer = broker.producer(self.settings.kafka)
        return self._producer

    def drain_once(self) -> int:
        """Publish one batch of unpublished rows; returns how many rows were claimed."""
        conn = self.pool.get()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT seq, payload, created_at FROM outbox WHERE published_at IS NULL"
                            " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED", (self.settings.outbox.batch_size,))
                rows = cur.fetchall()
                if not rows:
                    conn.rollback()
                    self.last_error = None
                    return 0
                sent, failed = self._publish(rows)
                if sent:
                    placeholders = ",".join(["%s"] * len(sent))
                    cur.execute(f"UPDATE outbox SET published_at = UTC_TIMESTAMP(3), attempts = attempts + 1,"
                                f" last_error = NULL WHERE seq IN ({placeholders})", sent)
                for seq, err in failed:
                    cur.execute("UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE seq = %s",
                                (err[:500], seq))
            conn.commit()
        except Exception:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                self.pool.discard()
            raise
        if failed:
            raise RuntimeError(f"Kafka did not acknowledge {len(failed)} event(s): {failed[0][1]}")
        self.last_error = None
        return len(rows)

    def _publish(self, rows) -> tuple[list[int], list[tuple[int, str]]]:
        producer = self.producer()
        topic = self.settings.kafka.topic
        started = time.monotonic()
        futures = []
        for seq, payload, _created in rows:
            ev = message_for(seq, payload)
            futures.append((seq, producer.send(topic, key=ev.key(), value=ev.encode(), headers=ev.headers())))
        producer.flush(timeout=FLUSH_TIMEOUT_S)
        metrics.PUBLISH_LATENCY.observe(time.monotonic() - started)
        sent, failed = [], []
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for (seq, fut), (_s, _p, created) in zip(futures, rows):
            if fut.is_done and fut.succeeded():
                sent.append(seq)
                metrics.COMMIT_TO_PUBLISH.observe(max(0.0, (now - created).total_seconds()))
            else:
                err = repr(fut.exception) if fut.is_done else "not acknowledged within flush timeout"
                failed.append((seq, err))
        metrics.PUBLISHED.inc(len(sent))
        if failed:
            metrics.PUBLISH_FAILURES.inc(len(failed))
        return sent, failed

    def _reset_producer_if_broken(self, exc: BaseException) -> None:
        # kafka-python recovers connections by itself; only a producer that could not
        # bootstrap (constructor failed) or whose sender died is replaced.
        if self._producer is not None and not getattr(self._producer, "_sender", None):
            self._producer = None

    def prune_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        hours = self.settings.outbox.retention_hours
        conn = self.pool.get()
        with conn.cursor() as cur:
            cur.execute("DELETE FROM outbox WHERE published_at IS NOT NULL"
                        " AND published_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND LIMIT 10000", (hours * 3600,))
            pruned = cur.rowcount
            cur.execute("DELETE FROM idempotency_keys WHERE created_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND"
                        " LIMIT 10000", (hours * 3600,))
        conn.commit()
        if pruned:
            log.info("pruned published outbox rows", extra={"rows": pruned})


def backlog(pool: ConnectionPool) -> int:
    conn = pool.get()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        n = cur.fetchone()[0]
    conn.rollback()
    return int(n)


def main() -> int:
    """A stand-alone relay process (when OUTBOX_RELAY_ENABLED=false on the API)."""
    from . import logs

    settings = load()
    logs.setup(settings.log_level)
    relay = OutboxRelay(settings)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    relay.start()
    log.info("outbox relay started", extra={"topic": settings.kafka.topic})
    done.wait()
    relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
