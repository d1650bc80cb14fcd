"""Rebuild the read model from scratch into fresh tables, then switch reads to them without downtime.

    simplecqrs rebuild-read-model [--source auto|topic|mysql] [--keep-old]
        (app/cli.py; locally with an instance's settings: scripts/rebuild-read-model)

1. create generation N+1 of the read-model tables beside the active N;
2. mark N+1 as written too: the running consumers write every new event to
   both (they re-read the state every few seconds; we wait for that);
3. backfill N+1 from the topic's beginning, or from the MySQL write model when
   the topic no longer holds every event (`auto` checks: a partition whose log
   start offset is above 0, or fewer events than orders);
4. switch reads to N+1 (the query API picks it up within seconds), stop
   writing N, and drop N's tables unless --keep-old.

Every write is USING TIMESTAMP <sequence>, so the backfill and the live
consumer writing the same row concurrently cannot disagree.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import UTC

from kafka import TopicPartition

from app import broker, events
from app.config import Settings, load
from app.readmodel.schema import STATE_ID, table_ddl
from app.readmodel.session import connect as cassandra_connect
from app.readmodel.store import STATE_TTL_S, ReadModel
from app.writemodel.db import connect as mysql_connect

BATCH = 500


def _progress(label: str, done: int, total: int | None) -> None:
    tail = f"/{total}" if total else ""
    sys.stdout.write(f"\r    {label}: {done}{tail}")
    sys.stdout.flush()


def _project(model: ReadModel, evs: list[events.OnNewOrder], gen: int) -> None:
    futures = [f for ev in evs for f in model.project_async(ev, [gen])]
    for f in futures:
        f.result()


def topic_events(s: Settings):
    """Yield batches of every decodable event on the topic from its beginning to its current end."""
    c = broker.consumer(s.kafka, group_id=None)
    try:
        tps = [TopicPartition(s.kafka.topic, p) for p in (c.partitions_for_topic(s.kafka.topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = c.poll(timeout_ms=5000)
            if not batch:
                raise RuntimeError("the topic stopped returning records before its end offset")
            out = []
            for tp, recs in batch.items():
                for r in recs:
                    if r.offset < end[tp]:
                        try:
                            out.append(events.decode(r.value))
                        except events.PoisonEvent:
                            pass  # poison messages are not part of the model
                if c.position(tp) >= end[tp]:
                    remaining.discard(tp)
            yield out
    finally:
        c.close()


def topic_is_complete(s: Settings) -> bool:
    c = broker.consumer(s.kafka, group_id=None)
    try:
        tps = [TopicPartition(s.kafka.topic, p) for p in (c.partitions_for_topic(s.kafka.topic) or ())]
        starts = c.beginning_offsets(tps)
        total = sum(c.end_offsets(tps).values())
    finally:
        c.close()
    if any(off > 0 for off in starts.values()):
        return False
    conn = mysql_connect(s.mysql, admin=not s.mysql.user)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            orders = cur.fetchone()[0]
    finally:
        conn.close()
    return total >= orders


def mysql_events(s: Settings):
    """Yield batches of events rebuilt from the write model, with each order's own sequence.

    The customers' current names are written with their last sequence, so the
    result is exactly what projecting every event would have produced."""
    conn = mysql_connect(s.mysql, admin=not s.mysql.user, read_timeout=600)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT o.id, o.description, o.quantity, o.customer_email, o.first_name, o.last_name,"
                        " o.created_at, o.seq, COALESCE(x.event_id, UUID()) FROM orders o"
                        " LEFT JOIN outbox x ON x.seq = o.seq ORDER BY o.seq")
            while True:
                rows = cur.fetchmany(BATCH)
                if not rows:
                    break
                yield [events.OnNewOrder(eventId=r[8], sequence=int(r[7]), occurredAt=_ts(r[6]), orderId=r[0],
                                         description=r[1], quantity=int(r[2]), email=r[3], firstName=r[4],
                                         lastName=r[5]) for r in rows]
    finally:
        conn.close()


def _ts(dt) -> str:

    return events.format_time(dt.replace(tzinfo=UTC))


def rebuild(s: Settings, source: str = "auto", keep_old: bool = False, log=print) -> dict:
    session = cassandra_connect(s.cassandra, keyspace=False, request_timeout=60)
    try:
        model = ReadModel(session, s.cassandra.keyspace)
        ks = model.ks
        active, writing = model.state(refresh=True)
        new = max(writing | {active}) + 1
        log(f"==> read model generation {active} active; building generation {new}")
        session.set_keyspace(ks)
        for ddl in table_ddl(new):
            session.execute(ddl)
        session.execute("UPDATE read_model_state SET writing = writing + %s, updated_at = toTimestamp(now())"
                        " WHERE id = %s", ({new}, STATE_ID))
        time.sleep(STATE_TTL_S * 2 + 1)  # every consumer now writes the new generation too
        if source == "auto":
            source = "topic" if topic_is_complete(s) else "mysql"
        log(f"==> backfilling generation {new} from the {source}")
        batches = topic_events(s) if source == "topic" else mysql_events(s)
        done = 0
        for batch in batches:
            _project(model, batch, new)
            done += len(batch)
            _progress("events written", done, None)
        sys.stdout.write("\n")
        session.execute("UPDATE read_model_state SET active = %s, writing = %s, updated_at = toTimestamp(now())"
                        " WHERE id = %s", (new, {new}, STATE_ID))
        log(f"==> reads switched to generation {new}")
        if not keep_old:
            time.sleep(STATE_TTL_S * 2 + 1)  # let readers and writers let go of the old generation
            for table in ("orders_by_id", "orders_by_customer", "customers"):
                session.execute(f"DROP TABLE IF EXISTS {table}_g{active}")
            log(f"==> dropped generation {active}")
        return {"generation": new, "previous": active, "source": source, "events": done}
    finally:
        session.cluster.shutdown()


def run(source: str = "auto", keep_old: bool = False) -> int:
    """rebuild() with the environment's settings; prints its result as JSON.  The exit code."""
    print(json.dumps(rebuild(load(), source, keep_old)))
    return 0
