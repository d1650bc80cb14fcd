"""What both outbox relays share: the Kafka producer, the drain of unpublished rows, liveness, pruning.

Where a relay runs: its own process beside the API (a second container in each API
pod; a process of its own in the local stack), never inside the request
workers.  Measured (README, "Performance"): a relay thread inside each
gunicorn worker competed with request threads for the worker's GIL and cost
about 30% of the API's throughput; as a separate process it also batches the
commits of every worker into one producer.

The drain (Relay.drain_once: the polling relay's loop, and the binlog relay's first start): `SELECT
... WHERE published_at IS NULL ORDER BY seq LIMIT n FOR UPDATE SKIP LOCKED` in a transaction held
open until Kafka has acknowledged the batch and the rows are marked.  Several relays (several API
pods) therefore never publish the same rows in normal operation, and rows of
transactions that have not committed yet are invisible or locked, never
skipped for good: there is no high-water mark (transactions commit out of
seq order, so a mark would skip rows).  A relay killed after sending but
before marking leaves the rows unpublished: the next drain sends them again
with the same eventId and sequence, and the projection ignores the duplicate.

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
import threading
import time
from datetime import UTC, datetime

from kafka.errors import KafkaError

from .. import broker, events, metrics
from ..config import Settings
from ..liveness import Progress
from ..writemodel import outbox
from ..writemodel.db import ConnectionPool

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 300.0   # once caught up, look again after this long
PRUNE_BATCH = 5000      # rows per DELETE (one short transaction each)
PRUNE_SLICE_S = 1.0     # pruning time per loop turn before publishing goes on
FLUSH_TIMEOUT_S = 15.0


def message_for(seq: int, payload: str) -> events.OnNewOrder:
    """The wire event for one outbox row: the stored payload plus its sequence."""
    return events.OnNewOrder(sequence=int(seq), **json.loads(payload))


class Relay:
    """A relay's state and the parts both kinds share; `run()` is each kind's own loop."""

    KIND = ""   # the relay kind (OUTBOX_RELAY): which rows count as published, which may be pruned

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = ConnectionPool(settings.mysql)
        self._producer = None
        self._stop = threading.Event()
        self._last_prune = -PRUNE_EVERY_S  # due at start: a restarted relay catches up at once
        self.last_error: str | None = None  # set while Kafka (or MySQL) is failing
        self.progress = Progress(settings.outbox.stall_s)
        self.producers_replaced = 0

    def run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    @property
    def publishing(self) -> bool:
        """False while publishing fails."""
        return self.last_error is None

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
                rows = outbox.claim_unpublished(cur, self.settings.outbox.batch_size)
                if not rows:
                    conn.rollback()
                    self.progress.moved()  # nothing waiting
                    return 0
                sent, failed = self._publish_and_wait(rows)
                if sent:
                    outbox.mark_published(cur, sent)
                for seq, err in failed:
                    outbox.mark_failed(cur, seq, err)
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
        33 rows/s and fell behind any sustained load above that.  Which rows are published depends
        on the relay kind (app/writemodel/outbox.py, PRUNABLE)."""
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
                rows, rows_keys = outbox.prune(cur, self.KIND, seconds, PRUNE_BATCH)
            conn.commit()
            pruned, keys = pruned + rows, keys + rows_keys
            if rows < PRUNE_BATCH and rows_keys < PRUNE_BATCH:
                return True, pruned, keys
        return False, pruned, keys
