"""Projection writes and queries on the Cassandra read model.

Every write of an event uses `USING TIMESTAMP <event sequence>`: Cassandra
keeps, cell by cell, the value with the highest timestamp, so replaying an
event changes nothing and an older event arriving after a newer one cannot
overwrite it (the customer's names stay those of the latest order).
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from operator import attrgetter

from cassandra import ConsistencyLevel
from cassandra.cluster import ResponseFuture, Session
from cassandra.query import BatchStatement, BatchType, SimpleStatement

from ..events import OnNewOrder, format_time
from ..order import BY_NAME, CUSTOMER_FIELDS, FIELDS, ORDER_FIELDS
from .schema import STATE_ID, ident

STATE_TTL_S = 2.0
CL = ConsistencyLevel.LOCAL_QUORUM


class BadPageToken(ValueError):
    pass


# Page tokens are keyset cursors: base64url JSON of the last row's key, validated on the way
# back in.  Cassandra's own paging state is never accepted from a client: a forged one makes
# the server close the connection (a cheap denial of service), and it would not survive a
# read-model rebuild between two pages anyway.
def encode_token(*key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str | None, *types) -> list | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(key, list) or len(key) != len(types):
            raise ValueError
        return [t(v) for t, v in zip(types, key, strict=True)]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError, OSError):
        raise BadPageToken("page_token is not valid") from None


def _uuid(v) -> uuid.UUID:
    return uuid.UUID(str(v))


def _email(v) -> str:
    if not isinstance(v, str) or len(v) > BY_NAME["email"].max_length:
        raise ValueError
    return v


def _millis(v) -> datetime:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError
    return datetime.fromtimestamp(v / 1000, tz=UTC)


# The order's columns and its JSON come from its declaration (app/order.py, FIELDS).  The projection's
# rows: orders_by_id holds every field after its key; orders_by_customer the order's own fields, then
# the customer's other than its identity (email, the partition key); customers the customer's fields.
def _columns(fields) -> str:
    return ", ".join(f.column for f in fields)


def _values(fields):
    """The event's values of `fields`, as a tuple."""
    get = attrgetter(*(f.name for f in fields))
    return get if len(fields) > 1 else lambda ev: (get(ev),)


def _json(fields):
    """A row's `fields` as JSON (a dict by the fields' names)."""
    names, get = [f.name for f in fields], attrgetter(*(f.column for f in fields))
    return (lambda row: dict(zip(names, get(row), strict=True))) if len(fields) > 1 else lambda row: {names[0]: get(row)}


_BY_CUSTOMER = ORDER_FIELDS + tuple(f for f in CUSTOMER_FIELDS if not f.identity)
_ALL_VALUES, _BY_CUSTOMER_VALUES, _CUSTOMER_VALUES = _values(FIELDS), _values(_BY_CUSTOMER), _values(CUSTOMER_FIELDS)
_ORDER_JSON, _CUSTOMER_JSON = _json(ORDER_FIELDS), _json(CUSTOMER_FIELDS)
_BY_ID_CQL = (f"(order_id, {_columns(FIELDS)}, created_at, event_id, sequence)"
              f" VALUES ({', '.join('?' * (len(FIELDS) + 4))}) USING TIMESTAMP ?")
_BY_CUSTOMER_CQL = (f"(email, created_at, order_id, {_columns(_BY_CUSTOMER)}, sequence)"
                    f" VALUES ({', '.join('?' * (len(_BY_CUSTOMER) + 4))}) USING TIMESTAMP ?")
_CUSTOMER_CQL = (f"({_columns(CUSTOMER_FIELDS)}, sequence)"
                 f" VALUES ({', '.join('?' * (len(CUSTOMER_FIELDS) + 1))}) USING TIMESTAMP ?")


def _order_json(row) -> dict:
    created = row.created_at.replace(tzinfo=UTC) if row.created_at.tzinfo is None else row.created_at
    return {
        "id": str(row.order_id), **_ORDER_JSON(row),
        "customer": _CUSTOMER_JSON(row),
        "createdAt": format_time(created),
    }


class ReadModel:
    def __init__(self, session: Session, keyspace: str):
        self.session = session
        self.ks = ident(keyspace)
        self._lock = threading.Lock()
        self._state: tuple[int, frozenset[int]] | None = None
        self._state_at = 0.0
        self._prepared: dict[tuple[str, int], object] = {}

    # ---------------------------------------------------------------- generations
    def state(self, refresh: bool = False) -> tuple[int, frozenset[int]]:
        """(generation the queries read, generations the consumer writes), cached briefly."""
        now = time.monotonic()
        if refresh or self._state is None or now - self._state_at > STATE_TTL_S:
            row = self.session.execute(
                SimpleStatement(f"SELECT active, writing FROM {self.ks}.read_model_state WHERE id = %s",
                                consistency_level=CL), (STATE_ID,)).one()
            if row is None:
                raise RuntimeError(f"read model in keyspace {self.ks} has no state row: run the schema migration")
            self._state = (row.active, frozenset(row.writing or {row.active}))
            self._state_at = now
        return self._state

    def _prepare(self, name: str, gen: int, cql: str):
        key = (name, gen)
        stmt = self._prepared.get(key)
        if stmt is None:
            with self._lock:
                stmt = self._prepared.get(key)
                if stmt is None:
                    stmt = self.session.prepare(cql)
                    stmt.consistency_level = CL
                    stmt.is_idempotent = True  # safe: every write is USING TIMESTAMP <sequence>
                    self._prepared[key] = stmt
        return stmt

    # ---------------------------------------------------------------- projection
    def project_async(self, ev: OnNewOrder, generations=None) -> list[ResponseFuture]:
        """Start the writes of one event to every generation being written; the caller awaits them.

        Two requests per generation, not three: the order in orders_by_id (its own partition), and one
        UNLOGGED batch of the customer's two rows, orders_by_customer and customers, which share the
        partition key (email).  Cassandra applies such a batch as one mutation (one commit-log entry,
        one replica write, no batch log and no "multiple partitions" warning), so it is the cheaper
        write, not a multi-partition batch's coordinator fan-out; it cost a third of the consumer's and
        Cassandra's requests per event (README, Performance)."""
        oid = uuid.UUID(ev.orderId)
        eid = uuid.UUID(ev.eventId)
        created = ev.occurred_at
        ts = ev.sequence
        futures = []
        for gen in generations or self.state()[1]:
            ks = self.ks
            by_id = self._prepare("by_id", gen, f"INSERT INTO {ks}.orders_by_id_g{gen} {_BY_ID_CQL}")
            by_customer = self._prepare("by_customer", gen, f"INSERT INTO {ks}.orders_by_customer_g{gen} {_BY_CUSTOMER_CQL}")
            customer = self._prepare("customer", gen, f"INSERT INTO {ks}.customers_g{gen} {_CUSTOMER_CQL}")
            futures.append(self.session.execute_async(by_id, (
                oid, *_ALL_VALUES(ev), created, eid, ev.sequence, ts)))
            batch = BatchStatement(BatchType.UNLOGGED, consistency_level=CL)
            batch.add(by_customer, (ev.email, created, oid, *_BY_CUSTOMER_VALUES(ev), ev.sequence, ts))
            batch.add(customer, (*_CUSTOMER_VALUES(ev), ev.sequence, ts))
            batch.is_idempotent = True  # each statement is USING TIMESTAMP <sequence>
            futures.append(self.session.execute_async(batch))
        return futures

    # ---------------------------------------------------------------- queries
    def ping(self) -> None:
        self.session.execute(SimpleStatement("SELECT release_version FROM system.local"), timeout=3)

    def get_order(self, order_id: str) -> dict | None:
        try:
            oid = uuid.UUID(order_id)
        except ValueError:
            return None
        gen = self.state()[0]
        stmt = self._prepare("get_order", gen, f"SELECT * FROM {self.ks}.orders_by_id_g{gen} WHERE order_id = ?")
        row = self.session.execute(stmt, (oid,)).one()
        return _order_json(row) if row else None

    def _rows(self, cql: str, params: tuple) -> list:
        return list(self.session.execute(SimpleStatement(cql, consistency_level=CL), params))

    def list_orders(self, limit: int, token: str | None) -> tuple[list[dict], str | None]:
        """All orders in token order, one page at a time."""
        gen = self.state()[0]
        after = decode_token(token, _uuid)
        where = " WHERE token(order_id) > token(%s)" if after else ""
        rows = self._rows(f"SELECT * FROM {self.ks}.orders_by_id_g{gen}{where} LIMIT %s", (*(after or ()), limit))
        nxt = encode_token(str(rows[-1].order_id)) if len(rows) == limit else None
        return [_order_json(r) for r in rows], nxt

    def list_customers(self, limit: int, token: str | None) -> tuple[list[dict], str | None]:
        gen = self.state()[0]
        after = decode_token(token, _email)
        where = " WHERE token(email) > token(%s)" if after else ""
        rows = self._rows(f"SELECT {_columns(CUSTOMER_FIELDS)} FROM {self.ks}.customers_g{gen}{where} LIMIT %s",
                          (*(after or ()), limit))
        nxt = encode_token(rows[-1].email) if len(rows) == limit else None
        return [_CUSTOMER_JSON(r) for r in rows], nxt

    def get_customer(self, email: str, limit: int, token: str | None) -> dict | None:
        """The customer and a page of their orders, newest first."""
        gen = self.state()[0]
        row = self.session.execute(self._prepare("get_customer", gen, f"SELECT {_columns(CUSTOMER_FIELDS)} FROM"
                                                 f" {self.ks}.customers_g{gen} WHERE email = ?"), (email,)).one()
        if row is None:
            return None
        after = decode_token(token, _millis, _uuid)
        where = " AND (created_at, order_id) < (%s, %s)" if after else ""
        orders = self._rows(f"SELECT * FROM {self.ks}.orders_by_customer_g{gen} WHERE email = %s{where} LIMIT %s",
                            (email, *(after or ()), limit))
        last = orders[-1] if len(orders) == limit else None
        nxt = encode_token(_to_millis(last.created_at), str(last.order_id)) if last else None
        return {**_CUSTOMER_JSON(row), "orders": [_order_json(r) for r in orders], "nextPageToken": nxt}


def _to_millis(dt: datetime) -> int:
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
    return int(round(dt.timestamp() * 1000))
