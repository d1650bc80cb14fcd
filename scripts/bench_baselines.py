"""Benchmark-only baselines, never part of the product (scripts/bench serves them with gunicorn).

    floor_app  the bare floor: parse the JSON, commit one plain order INSERT, nothing else
    naive_app  the original demo's dual write: insert the customer and order, then publish
               OnNewOrder synchronously inside the request (no outbox: a failed or slow
               publish is the client's problem, and a crash between the two loses the event)

Both run under the same gunicorn settings as the real API, against the same
database, so the ratios compare like with like.
"""
from __future__ import annotations

import json
import threading
import uuid

from flask import Flask, jsonify, request

from app import broker, events
from app.config import load
from app.writemodel.db import ConnectionPool

_settings = load()
_pool = ConnectionPool(_settings.mysql)
_producer = None
_producer_lock = threading.Lock()


def _kafka():
    global _producer
    if _producer is None:
        with _producer_lock:
            if _producer is None:
                _producer = broker.producer(_settings.kafka, client_id="bench-naive")
    return _producer


floor_app = Flask("floor")


@floor_app.post("/orders")
def floor_order():
    body = json.loads(request.get_data())
    oid = str(uuid.uuid4())
    conn = _pool.get()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO bench_floor_orders (id, email, description, quantity) VALUES (%s, %s, %s, %s)",
                    (oid, body["email"], body["description"], body["quantity"]))
    conn.commit()
    return jsonify({"id": oid}), 201


naive_app = Flask("naive")


@naive_app.post("/orders")
def naive_order():
    body = json.loads(request.get_data())
    oid = str(uuid.uuid4())
    created = events.now_ms()
    conn = _pool.get()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO customers (email, first_name, last_name, created_at, updated_at, last_seq)"
                    " VALUES (%s, %s, %s, %s, %s, 0) ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)",
                    (body["email"], body["firstName"], body["lastName"], created, created))
        cur.execute("INSERT INTO orders (id, customer_email, first_name, last_name, description, quantity,"
                    " created_at, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, 0)",
                    (oid, body["email"], body["firstName"], body["lastName"], body["description"],
                     body["quantity"], created))
    conn.commit()
    ev = events.OnNewOrder(eventId=events.new_event_id(), sequence=1, occurredAt=events.format_time(created),
                           orderId=oid, description=body["description"], quantity=body["quantity"],
                           email=body["email"], firstName=body["firstName"], lastName=body["lastName"])
    _kafka().send(_settings.kafka.topic, key=ev.key(), value=ev.encode()).get(timeout=30)
    return jsonify({"id": oid}), 201
