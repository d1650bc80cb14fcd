"""Helpers for tests on the real stack: read a topic, query MySQL, post orders."""
from __future__ import annotations

import json
import uuid

import pymysql
import requests
from kafka import KafkaConsumer, TopicPartition

from app.config import Settings
from scripts.stack.instance import wait_for

ORDER = {"description": "repellendus aut et eaque", "quantity": 6, "email": "Alexanne.Glover@augusta.biz",
         "firstName": "Alexanne", "lastName": "Glover"}


def order(**patch) -> dict:
    body = dict(ORDER, email=f"c{uuid.uuid4().hex[:10]}@example.com")
    body.update(patch)
    return body


def post(url: str, body, *, key: str | None = None, timeout: float = 15, **kw) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(f"{url}/orders", json=body, headers=headers, timeout=timeout, **kw)


def read_topic(s: Settings, topic: str | None = None, timeout_ms: int = 5000) -> list:
    """Every record on the topic from the beginning to its current end (no consumer group)."""
    topic = topic or s.kafka.topic
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out = []
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = c.poll(timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, recs in batch.items():
                out.extend(recs)
                if c.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        c.close()


def events_on_topic(s: Settings) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(s)]


def admin_connection(s: Settings, autocommit: bool = True) -> pymysql.connections.Connection:
    """A connection to the instance's database with the admin account."""
    return pymysql.connect(host=s.mysql.host, port=s.mysql.port, user=s.mysql.admin_user,
                           password=s.mysql.admin_password, database=s.mysql.database, autocommit=autocommit)


def mysql(s: Settings, sql: str, args=()) -> list[tuple]:
    conn = admin_connection(s)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def unpublished(s: Settings, relay: str | None = None) -> int:
    """Outbox events not yet published, as the relay of kind `relay` (default: the environment's) counts
    them: the poller marks rows published, the binlog relay saves the highest seq it published."""
    from app.config import load
    from app.writemodel.outbox import UNPUBLISHED

    return mysql(s, f"SELECT COUNT(*) FROM outbox {UNPUBLISHED[relay or load().outbox.relay]}")[0][0]


def pipeline_stages(s: Settings) -> dict:
    """Where each order is in the pipeline right now: the figures that name a stalled stage.

    write model -> outbox backlog (unpublished rows) -> topic (records at the end offsets)
    -> consumer group (lag = end - committed) -> read model (the audit's count)."""
    from kafka import KafkaAdminClient

    orders = mysql(s, "SELECT COUNT(*) FROM orders")[0][0]
    waiting = unpublished(s)
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
    try:
        tps = [TopicPartition(s.kafka.topic, p) for p in c.partitions_for_topic(s.kafka.topic) or ()]
        end = c.end_offsets(tps)
        committed = admin.list_group_offsets(s.kafka.consumer_group)[s.kafka.consumer_group]  # kafka-python 3
    finally:
        c.close()
        admin.close()
    lag = sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    return {"orders_in_mysql": orders, "outbox_unpublished": waiting, "topic_records": sum(end.values()),
            "group_lag": lag}


def stalled_stage(stages: dict, orders_read: int) -> str:
    """The first stage that holds orders back, in pipeline order."""
    if stages["outbox_unpublished"]:
        return f"outbox relay: {stages['outbox_unpublished']} event(s) not published"
    if stages["topic_records"] < stages["orders_in_mysql"]:
        return (f"topic: {stages['topic_records']} record(s) for {stages['orders_in_mysql']} orders "
                "although the outbox is empty")
    if stages["group_lag"]:
        return f"consumer group: lag {stages['group_lag']}"
    if orders_read != stages["orders_in_mysql"]:
        return f"projection: read model has {orders_read} of {stages['orders_in_mysql']} with no lag"
    return "none: every stage caught up"


def audit_equal(s: Settings, timeout: float = 90, interval: float = 1):
    """Wait until the read model equals the write model; return the report (app/audit.py)."""
    from app.audit import audit

    last = {}

    def check():
        last["r"] = audit(s)
        return last["r"].equal

    try:
        wait_for(check, timeout, "the audit to report equal", interval=interval)
    except AssertionError:
        raise AssertionError(last["r"].summary() + "\n" + "\n".join(
            (last["r"].missing + last["r"].extra + last["r"].different)[:10])) from None
    return last["r"]
