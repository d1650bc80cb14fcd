"""The binlog relay (OUTBOX_RELAY=binlog): publishes outbox rows as MySQL writes them to its binary log.

    simplecqrs relay        (OUTBOX_RELAY picks this or the poller)

The order transaction is unchanged (app/writemodel/orders.py): it inserts the outbox row.  Instead
of polling the table, this relay follows the server's row-based binary log, as a replica does
(python-mysql-replication, the Debezium way), and publishes each inserted outbox row with the same
envelope, key and idempotent producer as the poller (app/relay/base.py).  Per event that saves the poller's
`SELECT ... FOR UPDATE SKIP LOCKED` every poll interval and its `UPDATE published_at`, and the poll
interval leaves the latency: the server pushes a commit to the relay as it happens.

Where the position is kept, and why there: the row `outbox_relay` (name 'binlog') of the instance's
own database holds the binlog file and offset just past the last transaction whose events Kafka
has acknowledged (and every transaction before it).  It is written at most once per
SAVE_EVERY_S, and only at a transaction boundary, so:
  * a relay killed between publishing and saving starts again from the saved position and sends
    the same events again (same eventId and sequence: the projection drops the duplicates);
    nothing after the saved position was skipped, since it was never saved past an
    unacknowledged event;
  * a transaction larger than any batch is published in pieces but its position is saved only
    once all of it is acknowledged.
The write store is the one durable place the relay already uses: no other dependency (Debezium
needs Kafka Connect's offsets topic), the position goes with the database it describes (dropped
with it by deletionPolicy Delete), and the save is one small UPDATE per second, not per event.

Several relays (one per API pod) never stream at once: the one that holds the MySQL named lock
`simplecqrs-relay-<database>` streams; the others wait for it.  The lock goes with its connection,
so a relay that dies or loses MySQL lets another take over; before each save the holder checks it
still holds it.

The binlog must be row-based with full row images and full metadata (column names), and the relay
checks that at start: `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`,
`binlog_row_metadata=FULL`.  The relay's MySQL user has REPLICATION SLAVE and REPLICATION CLIENT
(global privileges: MySQL has no narrower ones for the binlog) and rights on the outbox tables only
(app/writemodel/migrations.py, ensure_relay_user).

When the saved position is no longer on the server (the binlog was purged past it, or the database
was restored elsewhere), the relay stops publishing and says so (log, /readyz 503, the
simplecqrs_outbox_position_lost gauge): it never skips silently.  The recovery (README, "Outbox
relays") is `simplecqrs relay --reset-position`: the saved position is forgotten, and the next start
republishes every retained outbox row (OUTBOX_RETENTION_HOURS) before following the binlog from
its current end, as a first start does.
"""
from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import pymysql
from kafka.errors import KafkaError
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import WriteRowsEvent

from .. import events, metrics
from ..config import Settings
from ..writemodel import outbox
from ..writemodel.db import REFUSED_AUTH_PLUGINS, connect, error_code, is_connection_error, tls_args
from .base import FLUSH_TIMEOUT_S, Relay, message_for

log = logging.getLogger(__name__)
NAME = "binlog"             # the outbox_relay row of this relay
SAVE_EVERY_S = 1.0          # the position is saved at most this often after publishing (and at stop)
SAVE_IDLE_EVERY_S = 60.0    # and this often when only other databases' transactions moved it
HEARTBEAT_S = 1.0           # the server's heartbeat while idle: the loop saves and checks for stop
LOCK_WAIT_S = 2             # a standby relay asks for the lock this often
REQUIRED = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
ER_MASTER_FATAL_READING_BINLOG = 1236   # "could not find first log file name in binary log index file"


class PositionLost(RuntimeError):
    """The saved position is not on the server any more: events may be missing.  Never skipped."""


class StreamBroken(RuntimeError):
    """The binlog connection broke; the stream restarts from the last transaction boundary."""


@dataclass(frozen=True)
class Position:
    log_file: str
    log_pos: int


@dataclass
class Transaction:
    """One committed transaction's sends, and where the binlog is once it is behind us."""
    end: Position
    futures: list   # kafka-python's futures of the transaction's events
    last_seq: int


def binlog_settings(cur) -> dict[str, str]:
    cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
    values = cur.fetchone()
    return {name: ("ON" if str(v) == "1" else str(v).upper()) for name, v in zip(REQUIRED, values, strict=True)}


def unsuitable(settings: dict[str, str]) -> list[str]:
    """The server settings the binlog relay cannot work with, as 'name=value (needs X)'."""
    return [f"{k}={settings.get(k)} (needs {v})" for k, v in REQUIRED.items() if settings.get(k) != v]


def current_position(cur) -> Position:
    """Where the server's binlog ends now (MySQL 8.4+ and MariaDB 10.5+ spell the statement apart)."""
    try:
        cur.execute("SHOW BINARY LOG STATUS")
    except pymysql.err.ProgrammingError:
        cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the server has no binary log (log_bin=OFF)")
    return Position(row[0], int(row[1]))


class BinlogRelay(Relay):
    """The relays' producer handling, liveness and pruning (app/relay/base.py), with the binlog as its input."""

    KIND = "binlog"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.lock_name = f"simplecqrs-relay-{settings.mysql.database}"
        self.position_lost: str | None = None
        self.saved: Position | None = None
        self.last_seq = 0

    @property
    def publishing(self) -> bool:
        return self.last_error is None and self.position_lost is None

    # ------------------------------------------------------------ the loop
    def run(self) -> None:
        out = self.settings.outbox
        backoff = 0.0
        while not self._stop.is_set():
            self.progress.turned()
            try:
                if self.hold_lock():
                    self.stream()
                else:
                    self.progress.moved()  # a standby: another relay streams
                    self._stop.wait(LOCK_WAIT_S)
                    continue
                backoff = 0.0
                self.last_error = None
            except PositionLost as e:
                self.position_lost = str(e)
                metrics.POSITION_LOST.set(1)
                log.error("the binlog relay's saved position is gone from the server; not publishing",
                          extra={"error": self.position_lost, "recovery": "simplecqrs relay --reset-position"})
                self.progress.moved()  # not a stall a restart would cure
                self._release()
                self._stop.wait(out.max_backoff_s)
                continue
            except Exception as e:  # noqa: BLE001 - the relay never dies; it backs off and retries
                backoff = min(max(backoff * 2, 0.5), out.max_backoff_s)
                self.last_error = f"{type(e).__name__}: {str(e)[:250]}"
                log.warning("binlog relay failed; retrying", extra={"error": self.last_error, "retry_in_s": backoff})
                if is_connection_error(e) or isinstance(e, StreamBroken):
                    self._release()
                    self.progress.blocked_elsewhere()
            self._stop.wait(backoff)
        self._close_producer(timeout=5)
        self._release()

    # ------------------------------------------------------------ the lock and the position
    def hold_lock(self) -> bool:
        """Take (or keep) the named lock on the pool's connection; False while another relay has it."""
        conn = self.pool.get()
        with conn.cursor() as cur:
            cur.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.lock_name,))
            if cur.fetchone()[0] == 1:
                return True
            cur.execute("SELECT GET_LOCK(%s, 0)", (self.lock_name,))
            got = cur.fetchone()[0] == 1
        conn.rollback()
        if got:
            log.info("binlog relay holds the stream lock", extra={"lock": self.lock_name})
        return got

    def _release(self) -> None:
        self.pool.discard()  # the named lock goes with its connection

    def load_position(self) -> Position | None:
        conn = self.pool.get()
        with conn.cursor() as cur:
            cur.execute("SELECT log_file, log_pos, last_seq FROM outbox_relay WHERE name = %s", (NAME,))
            row = cur.fetchone()
        conn.rollback()
        if row is None:
            return None
        self.last_seq = int(row[2])
        return Position(row[0], int(row[1]))

    def save_position(self, pos: Position) -> None:
        """Record `pos` (a transaction boundary whose events, and all before, Kafka acknowledged)."""
        conn = self.pool.get()
        with conn.cursor() as cur:
            cur.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.lock_name,))
            if cur.fetchone()[0] != 1:
                raise StreamBroken("the stream lock was lost; another relay may stream now")
            cur.execute("INSERT INTO outbox_relay (name, log_file, log_pos, last_seq, updated_at)"
                        " VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE"
                        " log_file = VALUES(log_file), log_pos = VALUES(log_pos),"
                        " last_seq = GREATEST(last_seq, VALUES(last_seq)), updated_at = VALUES(updated_at)",
                        (NAME, pos.log_file, pos.log_pos, self.last_seq))
        conn.commit()
        self.saved = pos
        metrics.POSITION_SAVED.set(time.time())

    def check_position(self, pos: Position) -> None:
        """PositionLost unless the server still has the binlog file `pos` names."""
        conn = self.pool.get()
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            files = [row[0] for row in cur.fetchall()]
        conn.rollback()
        if pos.log_file not in files:
            first = files[0] if files else "none"
            raise PositionLost(f"binlog {pos.log_file} (saved position {pos.log_pos}) is not on the server any more"
                               f" (its oldest is {first}): events after it may be missing")

    def first_start(self) -> Position:
        """No saved position (a first start, or --reset-position): publish what the table holds
        unpublished, then follow the binlog from where it ended before that.  Rows committed in
        between are published twice; the projection drops the duplicates."""
        conn = self.pool.get()
        with conn.cursor() as cur:
            problems = unsuitable(binlog_settings(cur))
            if problems:
                raise RuntimeError("the binlog relay needs a row-based binlog with full metadata: "
                                   + ", ".join(problems) + " (or set OUTBOX_RELAY=poll)")
            start = current_position(cur)
            # Every row up to here was committed before `start`, or is published by the drain below
            # (published_at NULL), or was published by the poller: the backlog and pruning start here.
            self.last_seq = outbox.highest_seq(cur)
        conn.rollback()
        handed_over = 0
        while (n := self.drain_once()) > 0:   # the poller's drain (app/relay/base.py): rows with published_at NULL
            handed_over += n
        log.info("binlog relay starts following the binlog",
                 extra={"log_file": start.log_file, "log_pos": start.log_pos, "republished_from_table": handed_over})
        self.save_position(start)
        return start

    # ------------------------------------------------------------ the stream
    def stream(self) -> None:
        """Follow the binlog from the saved position until stopped (or until something breaks)."""
        start = self.load_position()
        if start is None:
            start = self.first_start()
        else:
            self.check_position(start)
        self.saved = start
        self.position_lost = None
        metrics.POSITION_LOST.set(0)
        m = self.settings.mysql
        connections = {"stream": 0}

        def connect_once(**kwargs):
            # The library reconnects by itself after a broken read, from the last event it read:
            # possibly inside a transaction, whose table map it would not see again (and whose
            # rows it would then drop).  Only one connection per stream; a break restarts here.
            if kwargs.get("db") != "information_schema":
                connections["stream"] += 1
                if connections["stream"] > 1:
                    raise StreamBroken("the binlog connection broke")
            return pymysql.connect(**kwargs, auth_plugin_map=REFUSED_AUTH_PLUGINS)

        # freeze_schema: each table's layout is decoded from its first table map and kept by table id
        # (decoding it again in every transaction was a quarter or more of the relay's CPU).  Safe: the
        # server gives an altered table a new id (test_a_migration_that_alters_the_outbox_under_the_relay).
        reader = BinLogStreamReader(
            connection_settings={"host": m.host, "port": m.port, "user": m.user, "passwd": m.password,
                                 "connect_timeout": m.connect_timeout, **tls_args(m)},
            server_id=random.randint(1 << 16, (1 << 32) - 1),   # unique among the server's replicas
            resume_stream=True, blocking=True, log_file=start.log_file, log_pos=start.log_pos,
            only_events=[WriteRowsEvent, XidEvent, RotateEvent, HeartbeatLogEvent],
            only_schemas=[m.database], only_tables=["outbox"],
            slave_heartbeat=HEARTBEAT_S, pymysql_wrapper=connect_once, enable_logging=False, freeze_schema=True)
        pending: deque[Transaction] = deque()
        current: list = []
        top_seq = 0
        unsaved: Position | None = None
        published = False
        last_save = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    ev = reader.fetchone()
                except pymysql.err.OperationalError as e:
                    if error_code(e) == ER_MASTER_FATAL_READING_BINLOG:
                        raise PositionLost(f"the server cannot send its binlog from {self.saved}: {e}") from e
                    raise
                self.progress.turned()
                if isinstance(ev, WriteRowsEvent) and ev.schema == m.database and ev.table == "outbox":
                    for row in ev.rows:
                        v = row["values"]
                        current.append(self.send(int(v["seq"]), v["payload"], v["created_at"]))
                        top_seq = max(top_seq, int(v["seq"]))
                elif isinstance(ev, XidEvent):
                    pending.append(Transaction(Position(reader.log_file, reader.log_pos), current, top_seq))
                    current = []
                if sum(len(t.futures) for t in pending) + len(current) >= self.settings.outbox.batch_size:
                    self.flush()   # bound what is in flight (a big transaction goes in pieces)
                acked, ours = self.settle(pending)
                unsaved, published = acked or unsaved, published or ours
                # Every relay on a server reads the whole binlog (other databases' transactions are
                # skipped, but move the position): save soon after publishing, rarely otherwise.
                if unsaved is not None and time.monotonic() - last_save >= (SAVE_EVERY_S if published else
                                                                             SAVE_IDLE_EVERY_S):
                    self.save_position(unsaved)
                    unsaved, published, last_save = None, False, time.monotonic()
                if ours or (not pending and not current and isinstance(ev, HeartbeatLogEvent)):
                    # Work moved: our events acknowledged, or the end of the binlog reached (the
                    # server sends heartbeats only when it has nothing else).  Any acknowledgement
                    # counts, not only one that leaves nothing in flight: under a steady load something
                    # always is (an event every 10 ms at 100 orders/s, acknowledged 40 ms or more
                    # later), and the liveness probe restarted a relay that counted only those moments
                    # after OUTBOX_STALL_SECONDS of load.  Not on other transactions: a stream that
                    # restarts and fails on the same event each time re-reads those first, and must
                    # not look live.  Pruning is bounded per turn (prune_if_due), so it runs under load too.
                    self.progress.moved()
                    self.prune_if_due()
        finally:
            reader.close()
        # Stopping: publish what is in flight and save where that leaves us.
        self.flush()
        unsaved = self.settle(pending)[0] or unsaved
        if unsaved is not None:
            self.save_position(unsaved)

    def send(self, seq: int, payload: str, created: datetime):
        """Hand one event to the producer; its future (kafka-python batches and sends it)."""
        ev: events.OnNewOrder = message_for(seq, payload)
        try:
            fut = self.producer().send(self.settings.kafka.topic, key=ev.key(), value=ev.encode(), headers=ev.headers())
        except KafkaError as e:  # send() blocked past max_block_ms: Kafka is away
            self.replace_producer(f"{type(e).__name__}: {e}")
            raise
        fut.add_callback(self._acknowledged, created)
        return fut

    def _acknowledged(self, created: datetime, _metadata) -> None:
        """On the producer's thread, as Kafka acknowledges one event."""
        metrics.PUBLISHED.inc()
        now = datetime.now(UTC).replace(tzinfo=None)
        metrics.COMMIT_TO_PUBLISH.observe(max(0.0, (now - created).total_seconds()))

    def flush(self) -> None:
        if self._producer is None:
            return
        try:
            self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as e:
            self.replace_producer(f"{type(e).__name__}: {e}")
            raise

    def settle(self, pending: deque[Transaction]) -> tuple[Position | None, bool]:
        """Drop the transactions at the front whose sends Kafka acknowledged: (the position after
        the last of them or None, whether any carried events).  A failed send restarts the stream
        from the saved position."""
        acked, ours = None, False
        while pending and all(f.is_done for f in pending[0].futures):
            t = pending.popleft()
            failed = [f for f in t.futures if not f.succeeded()]
            if failed:
                metrics.PUBLISH_FAILURES.inc(len(failed))
                self.replace_producer(repr(failed[0].exception))
                raise RuntimeError(f"Kafka did not acknowledge {len(failed)} event(s): {failed[0].exception!r}")
            if t.futures:
                self.progress.kafka_answered()
                ours = True
            self.last_seq = max(self.last_seq, t.last_seq)
            acked = t.end
        return acked, ours


def reset_position(settings: Settings) -> bool:
    """Forget the saved position (the recovery after PositionLost); True if there was one."""
    conn = connect(settings.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM outbox_relay WHERE name = %s", (NAME,))
            found = cur.rowcount > 0
        conn.commit()
        return found
    finally:
        conn.close()
