"""The outbox relay: publishes committed events from MySQL to Kafka, in order, at least once.

    python -m app.outbox        (entry point `simplecqrs-relay`; health and metrics on OUTBOX_METRICS_PORT)

This module is the polling relay (OUTBOX_RELAY=poll); app/binlog_relay.py follows the binlog instead
and shares this one's producer handling, liveness and pruning.

Where it runs: its own process beside the API (a second container in each API
pod; a process of its own in the local stack), never inside the request
workers.  Measured (README, "Performance"): a relay thread inside each
gunicorn worker competed with request threads for the worker's GIL and cost
about 30% of the API's throughput; as a separate process it also batches the
commits of every worker into one producer.  Its price is the poll interval
(OUTBOX_POLL_INTERVAL_SECONDS, 20 ms) of extra latency and one indexed
SELECT per interval when idle.

How rows are claimed: `SELECT ... WHERE published_at IS NULL ORDER BY seq
LIMIT n FOR UPDATE SKIP LOCKED` in a transaction held open until Kafka has
acknowledged the batch and the rows are marked.  Several relays (several API
pods) therefore never publish the same rows in normal operation, and rows of
transactions that have not committed yet are invisible or locked, never
skipped for good: there is no high-water mark (transactions commit out of
seq order, so a mark would skip rows).  A relay killed after sending but
before marking leaves the rows unpublished: the next drain sends them again
with the same eventId and sequence, and the projection ignores the duplicate.
While Kafka is down the relay backs off (to OUTBOX_MAX_BACKOFF_SECONDS) and
the API keeps accepting orders; the backlog drains by itself when Kafka returns.

A batch Kafka did not acknowledge (a flush timeout, a failed or expired send)
closes the producer and the next attempt starts a new one.  kafka-python
3.0.12's idempotent producer cannot recover by itself once a batch it had
already sent expires (a broker down for longer than delivery_timeout_ms): the
sender resets its producer id to -1 but stays in state READY, so it never asks
for a new id and never sends again (Java's producer returns to UNINITIALIZED
there, KAFKA-7737).  A new producer gets a new id.  Re-sends carry the same
eventId and sequence, so the duplicates are harmless, and counted.
Liveness (app/liveness.py): /healthz fails when a backlog waits, Kafka answers,
and nothing was published for OUTBOX_STALL_SECONDS.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime

from kafka.errors import KafkaError

from . import broker, events, metrics
from .config import Settings, load
from .liveness import Progress
from .writemodel.db import ConnectionPool, is_connection_error

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 300.0   # once caught up, look again after this long
PRUNE_BATCH = 5000      # rows per DELETE (one short transaction each)
PRUNE_SLICE_S = 1.0     # pruning time per loop turn before publishing goes on
FLUSH_TIMEOUT_S = 15.0


def message_for(seq: int, payload: str) -> events.OnNewOrder:
    """The wire event for one outbox row: the stored payload plus its sequence."""
    return events.OnNewOrder(sequence=int(seq), **json.loads(payload))


class OutboxRelay:
    # Which rows pruning may delete: published, longer ago than OUTBOX_RETENTION_HOURS (%s seconds).
    PRUNE_WHERE = "published_at IS NOT NULL AND published_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND"
    PRUNE_ORDER = "published_at"  # the index the range above walks (outbox_unpublished)

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = ConnectionPool(settings.mysql)
        self._producer = None
        self._stop = threading.Event()
        self._last_prune = -PRUNE_EVERY_S  # due at start: a restarted relay catches up at once
        self.last_error: str | None = None  # set while Kafka (or MySQL) is failing
        self.progress = Progress(settings.outbox.stall_s)
        self.producers_replaced = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def publishing(self) -> bool:
        """False while publishing fails."""
        return self.last_error is None

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

    def producer(self):
        if self._producer is None:
            self._producer = broker.producer(self.settings.kafka)  # bootstraps: raises if Kafka is down
            self.progress.kafka_answered()
        return self._producer

    def _close_producer(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except Exception:  # noqa: BLE001 - a wedged producer may fail to close cleanly; it is dropped anyway
                pass

    def replace_producer(self, why: str) -> None:
        """Drop a producer that failed to deliver; the next batch starts a new one (see the module doc)."""
        self.producers_replaced += 1
        metrics.PRODUCER_REPLACED.inc()
        log.warning("closing the Kafka producer after a failed batch; the next attempt opens a new one",
                    extra={"error": why[:250], "replaced": self.producers_replaced})
        self._close_producer(timeout=0)

    def drain_once(self) -> int:
        """Publish one batch of unpublished rows, oldest first; returns how many rows were claimed."""
        conn = self.pool.get()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT seq, payload, created_at FROM outbox WHERE published_at IS NULL"
                            " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED", (self.settings.outbox.batch_size,))
                rows = cur.fetchall()
                if not rows:
                    conn.rollback()
                    self.progress.moved()  # nothing waiting
                    return 0
                sent, failed = self._publish_and_wait(rows)
                if sent:
                    cur.execute(f"UPDATE outbox SET published_at = UTC_TIMESTAMP(3), attempts = attempts + 1,"
                                f" last_error = NULL WHERE seq IN ({','.join(['%s'] * len(sent))})", sent)
                for seq, err in failed:
                    cur.execute("UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE seq = %s",
                                (err[:500], seq))
            conn.commit()
            if sent:
                self.progress.moved()
        except Exception:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                self.pool.discard()
            raise
        if failed:
            raise RuntimeError(f"Kafka did not acknowledge {len(failed)} event(s): {failed[0][1]}")
        return len(rows)

    def _publish_and_wait(self, rows) -> tuple[list[int], list[tuple[int, str]]]:
        producer = self.producer()
        topic = self.settings.kafka.topic
        started = time.monotonic()
        futures = []
        try:
            for seq, payload, _created in rows:
                ev = message_for(seq, payload)
                futures.append((seq, producer.send(topic, key=ev.key(), value=ev.encode(), headers=ev.headers())))
            producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as e:  # send() blocked past max_block_ms, or flush() timed out
            self.replace_producer(f"{type(e).__name__}: {e}")
            raise
        metrics.PUBLISH_LATENCY.observe(time.monotonic() - started)
        sent, failed = [], []
        now = datetime.now(UTC).replace(tzinfo=None)
        for (seq, fut), (_s, _p, created) in zip(futures, rows, strict=True):
            if fut.is_done and fut.succeeded():
                sent.append(seq)
                metrics.COMMIT_TO_PUBLISH.observe(max(0.0, (now - created).total_seconds()))
            else:
                failed.append((seq, repr(fut.exception) if fut.is_done else "not acknowledged within flush timeout"))
        metrics.PUBLISHED.inc(len(sent))
        if sent:
            self.progress.kafka_answered()
        if failed:
            metrics.PUBLISH_FAILURES.inc(len(failed))
            self.replace_producer(failed[0][1])
        return sent, failed

    def prune_if_due(self) -> None:
        """Delete published rows and idempotency keys older than OUTBOX_RETENTION_HOURS, until caught up.

        Bounded batches (PRUNE_BATCH rows, a transaction each, so locks stay short) for at most
        PRUNE_SLICE_S per loop turn, so publishing never waits long; while rows are left the next
        turn goes on at once.  A cap per interval (10,000 rows every 300 s, before) pruned about
        33 rows/s and fell behind any sustained load above that."""
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        seconds = int(self.settings.outbox.retention_hours * 3600)
        try:
            caught_up, pruned, keys = self._prune(seconds, started=now)
        except Exception as e:  # noqa: BLE001 - pruning can wait; publishing must not stop for it
            log.warning("pruning the outbox failed; trying again later", extra={"error": str(e)[:250]})
            self.pool.discard()  # whatever state its connection was left in
            self._last_prune = time.monotonic()  # next try after PRUNE_EVERY_S
            return
        if caught_up:
            self._last_prune = time.monotonic()
        if pruned or keys:
            log.info("pruned the outbox", extra={"rows": pruned, "idempotency_keys": keys, "caught_up": caught_up})

    def _prune(self, seconds: int, started: float) -> tuple[bool, int, int]:
        pruned = keys = 0
        while time.monotonic() - started < PRUNE_SLICE_S and not self._stop.is_set():
            conn = self.pool.get()
            with conn.cursor() as cur:
                cur.execute(f"DELETE FROM outbox WHERE {self.PRUNE_WHERE} ORDER BY {self.PRUNE_ORDER} LIMIT %s",
                            (seconds, PRUNE_BATCH))
                rows = cur.rowcount
                cur.execute("DELETE FROM idempotency_keys WHERE created_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND"
                            " LIMIT %s", (seconds, PRUNE_BATCH))
                rows_keys = cur.rowcount
            conn.commit()
            pruned, keys = pruned + rows, keys + rows_keys
            if rows < PRUNE_BATCH and rows_keys < PRUNE_BATCH:
                return True, pruned, keys
        return False, pruned, keys


UNPUBLISHED = {
    "poll": "WHERE published_at IS NULL",
    # The binlog relay marks no row; it saves (about once a second) the highest seq it published.
    # Rows above it are waiting: at most a second's worth more than truly are.
    "binlog": "WHERE seq > COALESCE((SELECT last_seq FROM outbox_relay WHERE name = 'binlog'), 0)",
}


def backlog(pool: ConnectionPool, relay: str = "poll") -> tuple[int, float]:
    """(unpublished events, age in seconds of the oldest one): the API's /metrics and /readyz use it."""
    conn = pool.get()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(3))"
                    f" FROM outbox {UNPUBLISHED[relay]}")
        n, age_us = cur.fetchone()
    conn.rollback()
    return int(n), (age_us or 0) / 1e6


def main(argv: list[str] | None = None) -> int:
    """The relay process: publish until SIGTERM, with /healthz, /readyz and /metrics on OUTBOX_METRICS_PORT.
    OUTBOX_RELAY picks the input: the binlog (app/binlog_relay.py) or polling the table (this module)."""
    from . import binlog_relay, healthserver, logs

    args = binlog_relay.command_line(argv)
    settings = load()
    logs.setup(settings.log_level)
    if args.reset_position:
        found = binlog_relay.reset_position(settings)
        log.warning("binlog relay position reset" if found else "no binlog relay position was saved",
                    extra={"database": settings.mysql.database})
        return 0
    relay = binlog_relay.BinlogRelay(settings) if settings.outbox.relay == "binlog" else OutboxRelay(settings)
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    signal.signal(signal.SIGINT, lambda *_: relay.stop())
    server = healthserver.serve(settings.outbox.metrics_host, settings.outbox.metrics_port,
                                alive=relay.progress.alive,
                                ready=lambda: relay.publishing)
    log.info("outbox relay started", extra={"relay": settings.outbox.relay, "topic": settings.kafka.topic,
                                            "metrics_port": settings.outbox.metrics_port})
    relay.run()
    server.shutdown()
    log.info("outbox relay stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
