"""Helpers for tests on the real stack: read a topic, query MySQL, post orders."""
from __future__ import annotations

import json
import uuid

import pymysql
import requests
from kafka import KafkaConsumer, TopicPartition

from app.config import Settings

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


def mysql(s: Settings, sql: str, args=()) -> list[tuple]:
    conn = pymysql.connect(host=s.mysql.host, port=s.mysql.port, user=s.mysql.admin_user,
                           password=s.mysql.admin_password, database=s.mysql.database, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()
