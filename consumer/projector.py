"""The projection loop: Kafka OnNewOrder events -> Cassandra read model, at least once.

    poll() a batch -> decode each record (poison -> dead-letter topic)
                   -> write good events to Cassandra, asynchronously, a bounded number in flight
                   -> when every write of the batch succeeded: the offsets after it are projected,
                      committed at most once per CONSUMER_COMMIT_INTERVAL_SECONDS (and on revoke, stop)

Rules this loop keeps (the original demo broke each one):
* offsets are committed only after the Cassandra writes for them succeeded
  (auto-commit is off; kafka-python's default would commit what poll() returned);
  not after every batch but at most once a second: a commit per batch was a blocking round trip
  per poll, during which new events waited, and at 100 orders/s nearly one Kafka request per event
  (README, Performance); a crash re-projects at most that second, which the idempotent writes absorb;
* a new group starts from the earliest offset;
* a Cassandra outage pauses the partitions, keeps polling so the group
  membership stays alive, retries with backoff and commits nothing meanwhile;
* a poison message is dead-lettered with its error and origin in headers, and
  the partition moves on;
* partitions being revoked get their processed offsets committed first;
* SIGTERM finishes the batch in hand, commits, leaves the group and exits.
The writes themselves are idempotent and order-safe (USING TIMESTAMP = sequence),
so the re-deliveries that at-least-once implies change nothing.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import tenacity
from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition

from app import broker, events
from app.config import Settings
from app.liveness import Progress
from app.readmodel.store import ReadModel

from . import metrics

log = logging.getLogger(__name__)
PROGRESS_CHECK_S = 5.0  # how often the loop asks Kafka for end offsets (liveness, app/liveness.py)
LAG_EVERY_S = 1.0       # how often the lag gauges are set: Prometheus reads them every 15-30 s, and set at
                        # every poll (an event or two at 100 events/s) they cost the loop for nothing


@dataclass
class Work:
    tp: TopicPartition
    offset: int
    event: events.OnNewOrder


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, projector: Projector):
        self.p = projector

    def on_partitions_revoked(self, revoked):
        self.p.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self.p.on_assigned(set(assigned))


class Projector:
    def __init__(self, settings: Settings, model: ReadModel, *, consumer=None, dlq_producer=None):
        self.settings = settings
        self.model = model
        self.consumer = consumer or broker.consumer(
            settings.kafka, group_id=settings.kafka.consumer_group,
            max_poll_records=settings.consumer.max_poll_records)
        self.dlq = dlq_producer
        self.running = True
        self.retrying = False
        self.processed: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self.committed: dict[TopicPartition, int] = {}  # what the last successful commits said
        self._committed_at = -float("inf")
        self._lag_observed = -float("inf")
        self.progress = Progress(settings.consumer.stall_s)
        self._progress_checked = 0.0
        self.consumer.subscribe([settings.kafka.topic], listener=_Rebalance(self))

    # ---------------------------------------------------------------- rebalance
    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # kafka-python 3 runs the listener on its IO thread, where a blocking commit() is refused:
        # commit asynchronously.  If it is lost, the new owner re-projects a few events: idempotent.
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self.processed.items() if tp in revoked}
        if offsets:
            self.consumer.commit_async(offsets)
        for tp in revoked:
            self.processed.pop(tp, None)
            self.committed.pop(tp, None)
            metrics.LAG.remove_partition(tp)
        log.info("partitions revoked", extra={"partitions": sorted(f"{t.topic}-{t.partition}" for t in revoked)})

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.retrying and assigned:
            self.consumer.pause(*assigned)  # nothing new is fetched while a batch is being retried
        log.info("partitions assigned", extra={"partitions": sorted(f"{t.topic}-{t.partition}" for t in assigned)})

    # ---------------------------------------------------------------- loop
    def run(self) -> None:
        while self.running:
            self.progress.turned()
            batch = self.consumer.poll(timeout_ms=500)
            if batch:
                self.process(batch)
                self.progress.moved()
            self.commit_due()  # also while idle: the last batch's offsets within the interval
            self.observe_lag()
            self.check_progress()
        self.commit(dict(self.processed))

    def stop(self) -> None:
        self.running = False

    def process(self, batch: dict[TopicPartition, list]) -> None:
        work: list[Work] = []
        for tp, records in batch.items():
            for rec in records:
                try:
                    work.append(Work(tp, rec.offset, events.decode(rec.value)))
                except events.PoisonEvent as e:
                    self.dead_letter(rec, str(e))
        dropped = self.project(work)
        # Commit only what was projected, and only for partitions this consumer still owns: the
        # group coordinator accepts a commit from a member for a partition it lost (it checks the
        # generation and the member, not ownership), and a commit past work the new owner has not
        # projected yet would skip those events for good if that owner died before committing.
        owned = self.consumer.assignment()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()
                   if records and tp in owned and tp not in dropped}
        self.processed.update(offsets)
        self.commit_due()

    def project(self, work: list[Work]) -> set[TopicPartition]:
        """Write every event of the batch; on failure pause, back off and retry only what failed.
        Returns the partitions whose failed work was dropped because a rebalance moved them away.

        (A loop of its own, not tenacity: each attempt writes a different, shrinking set, and the
        partitions still owned are looked up between attempts; tenacity retries one call.)"""
        backoff = 0.5
        pending = work
        dropped: set[TopicPartition] = set()
        while pending:
            failed = self._write(pending)
            if not failed:
                break
            if not self.running:
                raise SystemExit("stopping with an unprojected batch; its offsets stay uncommitted")
            metrics.RETRIES.inc(len(failed))
            log.warning("read store write failed; retrying", extra={
                "events": len(failed), "order_id": failed[0].event.orderId, "retry_in_s": backoff})
            self._wait_paused(backoff, cassandra_down=True)
            backoff = min(backoff * 2, 30.0)
            # A rebalance during the wait may have moved partitions away: their new owner re-reads them.
            owned = self.consumer.assignment()
            dropped |= {w.tp for w in failed if w.tp not in owned}
            pending = [w for w in failed if w.tp in owned]
        return dropped

    def _write(self, work: list[Work]) -> list[Work]:
        """Project each event with at most CONSUMER_MAX_IN_FLIGHT writes outstanding; return the failures."""
        bound = max(3, self.settings.consumer.max_in_flight)
        in_flight: deque = deque()
        outstanding = 0       # writes of the events in in_flight
        failed: list[Work] = []

        def settle(item):
            w, futures = item
            ok = True
            for f in futures:
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - any failure means "retry this event"
                    ok = False
                    log.debug("write failed", extra={"order_id": w.event.orderId, "error": str(e)[:200]})
            if ok:
                metrics.PROJECTED.inc()
                metrics.DELAY.observe(max(0.0, time.time() - w.event.occurred_at.timestamp()))
            else:
                failed.append(w)

        try:
            generations = self.model.state()[1]
        except Exception as e:  # noqa: BLE001
            log.debug("read model state unavailable", extra={"error": str(e)[:200]})
            return list(work)
        for w in work:
            try:
                futures = self.model.project_async(w.event, generations)
            except Exception:  # noqa: BLE001 - e.g. NoHostAvailable while preparing
                failed.append(w)
                continue
            in_flight.append((w, futures))
            outstanding += len(futures)
            while outstanding > bound:
                oldest = in_flight.popleft()
                outstanding -= len(oldest[1])
                settle(oldest)
        while in_flight:
            settle(in_flight.popleft())
        return failed

    def _wait_paused(self, seconds: float, *, cassandra_down: bool = False) -> None:
        """Keep the group membership alive without fetching while the read store (or, for a
        dead letter, Kafka) is down."""
        self.retrying = True
        assigned = self.consumer.assignment()
        self.consumer.pause(*assigned)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and self.running:
                if cassandra_down:
                    self.progress.blocked_elsewhere()  # /readyz reports it; a restart would not help
                else:
                    self.progress.turned()
                stray = self.consumer.poll(timeout_ms=200)
                for tp, records in stray.items():  # cannot happen while paused; never skip them if it does
                    self.consumer.seek(tp, records[0].offset)
        finally:
            self.retrying = False
            self.consumer.resume(*self.consumer.assignment())

    # ---------------------------------------------------------------- poison messages
    def dead_letter(self, rec, reason: str) -> None:
        if self.dlq is None:
            self.dlq = broker.producer(self.settings.kafka, client_id="simplecqrs-dlq", linger_ms=0)
        headers = list(rec.headers or []) + [
            ("dlq.error", reason[:1000].encode("utf-8", "replace")),
            ("dlq.origin.topic", rec.topic.encode()),
            ("dlq.origin.partition", str(rec.partition).encode()),
            ("dlq.origin.offset", str(rec.offset).encode()),
        ]
        # Kafka down: never commit past an undelivered DLQ record.  Retried until delivered, 0.5 s
        # doubling to 30 s, waiting paused (the group membership stays alive); stopping gives up.
        retrying = tenacity.Retrying(
            wait=tenacity.wait_exponential(multiplier=0.5, max=30), sleep=self._wait_paused,
            stop=lambda _state: not self.running, reraise=True,
            before_sleep=lambda state: log.warning("dead-letter publish failed; retrying", extra={
                "error": str(state.outcome.exception())[:200], "retry_in_s": state.next_action.sleep}))
        try:
            retrying(lambda: self.dlq.send(self.settings.kafka.dead_letter_topic, key=rec.key, value=rec.value,
                                           headers=headers).get(timeout=15))
        except Exception as e:  # noqa: BLE001 - only reached when stopping
            raise SystemExit("stopping before a poison message reached the dead-letter topic") from e
        metrics.DEAD_LETTERED.inc()
        log.warning("poison message dead-lettered", extra={
            "reason": reason[:300], "partition": rec.partition, "offset": rec.offset})

    # ---------------------------------------------------------------- offsets
    def commit_due(self) -> None:
        """Commit the projected offsets of the partitions still owned, if the interval has passed."""
        now = time.monotonic()
        if now - self._committed_at < self.settings.consumer.commit_interval_s:
            return
        self._committed_at = now
        owned = self.consumer.assignment()
        # A copy first: on_revoked (kafka-python's IO thread) may pop entries meanwhile.
        processed = dict(self.processed)
        self.commit({tp: off for tp, off in processed.items() if tp in owned and self.committed.get(tp) != off})

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        except Exception as e:  # noqa: BLE001 - e.g. CommitFailedError after a rebalance
            # Not fatal: the partition's new owner re-reads from the last committed
            # offset, and re-projecting is idempotent.
            log.warning("offset commit failed", extra={"error": str(e)[:200]})
            return
        self.committed.update(offsets)

    def check_progress(self) -> None:
        """Every few seconds: does Kafka answer, and is anything waiting for this consumer?"""
        now = time.monotonic()
        if now - self._progress_checked < PROGRESS_CHECK_S:
            return
        self._progress_checked = now
        assigned = list(self.consumer.assignment())
        if not assigned:
            self.progress.moved()  # nothing assigned (more consumers than partitions, or a rebalance)
            return
        try:
            end = self.consumer.end_offsets(assigned, timeout_ms=2000)  # a real ListOffsets request
            lag = sum(max(0, end[tp] - self.consumer.position(tp, timeout_ms=500)) for tp in assigned)
        except Exception as e:  # noqa: BLE001 - Kafka not answering: not a stall a restart would cure
            log.debug("end offsets unavailable", extra={"error": str(e)[:200]})
            return
        self.progress.kafka_answered()
        if lag == 0:
            self.progress.moved()

    def observe_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_observed < LAG_EVERY_S:
            return
        self._lag_observed = now
        for tp in self.consumer.assignment():
            try:
                hw = self.consumer.highwater(tp)
                pos = self.consumer.position(tp, timeout_ms=100) if hw is not None else None
            except Exception:  # noqa: BLE001
                continue
            if hw is not None and pos is not None:
                metrics.LAG.set_partition(tp, max(0, hw - pos))
