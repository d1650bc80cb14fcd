"""The order command: one MySQL transaction writes the customer, the order and the outbox event.

    place_order()            idempotency key (optional) -> customer upsert -> order -> outbox
                             -> COMMIT; the outbox relay publishes the event afterwards.

Nothing here talks to Kafka: the event is a row in the same transaction as the
order, so both exist or neither does (transactional outbox).
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

import pymysql

from .. import events
from ..order import CUSTOMER_FIELDS, FIELDS, ORDER_FIELDS, NewOrder
from .db import RETRYABLE_TXN_ERRORS, ConnectionPool, error_code, is_connection_error, server_kind

log = logging.getLogger(__name__)
ATTEMPTS = 3


class StoreUnavailable(RuntimeError):
    """MySQL could not be reached: the API answers 503 with Retry-After."""


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Placed:
    order_id: str
    replayed: bool = False


def request_hash(order: NewOrder) -> str:
    return hashlib.sha256(json.dumps(asdict(order), sort_keys=True).encode("utf-8")).hexdigest()


def place_order(pool: ConnectionPool, order: NewOrder, idempotency_key: str | None = None) -> Placed:
    """Commit the order and its event atomically; retry what is safe to retry.

    The whole transaction travels as one multi-statement round trip ending in
    COMMIT (see `order_batch`).  MySQL stops a batch at its first error, so a
    failed statement leaves an open transaction that we roll back.  A lost
    connection leaves the outcome unknown: the order id is ours, so we look it
    up before deciding whether to retry (never a second order for one request).
    """
    digest = request_hash(order) if idempotency_key else ""
    last_error: BaseException | None = None
    for _ in range(ATTEMPTS):
        order_id = str(uuid.uuid4())
        sent = False
        try:
            conn = pool.get()
            sent = True
            with conn.cursor() as cur:
                try:
                    insert_order(cur, order_id, order, idempotency=(idempotency_key, digest))
                except pymysql.err.IntegrityError as e:
                    # Only the idempotency key can collide: the other keys are fresh UUIDs.
                    if not idempotency_key or error_code(e) != 1062:
                        raise
                    conn.rollback()
                    return _replay(cur, idempotency_key, digest)
            return Placed(order_id)
        except Exception as e:  # noqa: BLE001 - classified below
            last_error = e
            if is_connection_error(e):
                pool.discard()
                if sent and _order_exists(pool, order_id):
                    return Placed(order_id)
                continue
            _rollback(pool)
            if isinstance(e, pymysql.err.MySQLError) and error_code(e) in RETRYABLE_TXN_ERRORS:
                continue
            raise
    if last_error is not None and not is_connection_error(last_error):
        raise last_error
    raise StoreUnavailable(f"write store unavailable: {last_error}")


# The outbox row comes first: its AUTO_INCREMENT seq (LAST_INSERT_ID(), which the
# later statements of the batch read) is the event's sequence.  The customer
# upsert is race-free (concurrent first orders for one email all succeed); the
# customer keeps its creation time and takes the names of the order with the
# highest sequence, the rule the read model applies (USING TIMESTAMP =
# sequence), so both models agree whatever order transactions commit in.  MySQL
# evaluates ON DUPLICATE KEY assignments left to right: last_seq must be last.
_IDEMPOTENCY_SQL = ("INSERT INTO idempotency_keys (idem_key, request_hash, order_id, created_at)"
                    " VALUES (%s, %s, %s, UTC_TIMESTAMP(3));")


# The order's columns come from its declaration (app/order.py, FIELDS), and so do the parameters
# (insert_order), in the same order: the customers row is the customer's fields, its identity
# (email) first; the orders row is the customer's fields, then the order's own.
_CUSTOMER_ROW = CUSTOMER_FIELDS
_ORDER_ROW = CUSTOMER_FIELDS + ORDER_FIELDS


def _order_sql(server: str) -> str:
    """The batch for one server.  The upsert names the inserted row's values with a row alias
    on MySQL (`VALUES()` there is deprecated since 8.0.20) and with VALUES() on MariaDB, which
    has no row alias; the stored row's columns are qualified, as the alias requires."""
    alias, new = (" AS new", "new.{}".format) if server == "mysql" else ("", "VALUES({})".format)
    latest = [f.column for f in _CUSTOMER_ROW if not f.identity] + ["updated_at"]  # taken from the newest order
    return (
        "INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at) VALUES (%s, %s, %s, %s, %s);"
        f"INSERT INTO customers ({', '.join(f.column for f in _CUSTOMER_ROW)}, created_at, updated_at, last_seq)"
        f" VALUES ({', '.join(['%s'] * (len(_CUSTOMER_ROW) + 2))}, LAST_INSERT_ID()){alias}"
        " ON DUPLICATE KEY UPDATE"
        + "".join(f" {c} = IF({new('last_seq')} > customers.last_seq, {new(c)}, customers.{c})," for c in latest)
        + f" last_seq = GREATEST(customers.last_seq, {new('last_seq')});"
        f"INSERT INTO orders (id, {', '.join(f.write_column for f in _ORDER_ROW)}, created_at, seq)"
        f" VALUES ({', '.join(['%s'] * (len(_ORDER_ROW) + 2))}, LAST_INSERT_ID());"
        "COMMIT"
    )


_ORDER_SQL = {server: _order_sql(server) for server in ("mysql", "mariadb")}


def insert_order(cur, order_id: str, order: NewOrder, idempotency: tuple[str | None, str] = (None, "")) -> datetime:
    """Run the order's transaction, COMMIT included, in one round trip (also used by scripts/bench).

    One round trip instead of five (idempotency key, outbox, customer, order,
    COMMIT) is most of the command's cost: see the README's Performance section.
    Every value is a bound parameter; the connection allows multi-statements
    for this batch only because no SQL text here is ever built from input.
    """
    created = events.now_ms()
    event_id = events.new_event_id()
    key, digest = idempotency
    sql = (_IDEMPOTENCY_SQL if key else "") + _ORDER_SQL[server_kind(cur.connection)]
    args = [key, digest, order_id] if key else []
    payload = outbox_payload(event_id, order_id, order, created)
    args += [event_id, events.EVENT_NAME, order_id, payload, created,
             *[getattr(order, f.name) for f in _CUSTOMER_ROW], created, created,
             order_id, *[getattr(order, f.name) for f in _ORDER_ROW], created]
    cur.execute(sql, args)
    while cur.nextset():  # read every statement's result: a later statement's error is raised here
        pass
    return created


def outbox_payload(event_id: str, order_id: str, order: NewOrder, created: datetime) -> str:
    """The event without its sequence; the relay adds the outbox row's seq when it publishes."""
    return json.dumps({
        "eventId": event_id, "occurredAt": events.format_time(created), "orderId": order_id,
        **{f.name: getattr(order, f.name) for f in FIELDS},
    }, ensure_ascii=False, separators=(",", ":"))


def _replay(cur, key: str, digest: str) -> Placed:
    cur.execute("SELECT request_hash, order_id FROM idempotency_keys WHERE idem_key = %s", (key,))
    row = cur.fetchone()
    cur.connection.rollback()
    if row is None:  # the holder rolled back between our insert and this read: rare; ask for a retry
        raise pymysql.err.OperationalError(1213, "idempotency key released concurrently")
    if row[0] != digest:
        raise IdempotencyConflict("Idempotency-Key was already used with a different request body")
    return Placed(row[1], replayed=True)


def _order_exists(pool: ConnectionPool, order_id: str) -> bool:
    try:
        conn = pool.get()
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM orders WHERE id = %s", (order_id,))
            found = cur.fetchone() is not None
        conn.rollback()
        return found
    except Exception as e:  # noqa: BLE001
        pool.discard()
        # Still unreachable: the commit's fate is unknown.  Answer 503 rather than risk a
        # duplicate by retrying; the client retries with its Idempotency-Key.
        raise StoreUnavailable(f"write store unavailable while confirming commit: {e}") from e


def _rollback(pool: ConnectionPool) -> None:
    try:
        pool.get().rollback()
    except Exception:  # noqa: BLE001
        pool.discard()
