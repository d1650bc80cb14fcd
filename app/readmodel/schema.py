"""Read-model schema: one table per query, created idempotently by versioned migrations.

    orders_by_id_g<N>        GET /orders/<id>, GET /orders (paged scan)
    orders_by_customer_g<N>  GET /customers/<email>: a customer's orders, newest first
    customers_g<N>           GET /customers, the customer part of GET /customers/<email>

Tables carry a generation suffix: `scripts/rebuild-read-model` builds
generation N+1 beside N while the consumer writes to both, then switches
reads in `read_model_state` without downtime.  The consumer, the query API,
the operator and `make up` all create the schema through `migrate()`.

Run by hand: `python -m app.readmodel.schema` (reads CASSANDRA_* settings).
"""
from __future__ import annotations

import re
import sys

from cassandra.cluster import Session

from ..config import CassandraSettings, load

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_DC = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
STATE_ID = "active"


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"invalid Cassandra identifier {name!r}")
    return name


def replication_cql(spec: str) -> str:
    """'SimpleStrategy:1' or 'NetworkTopologyStrategy:dc1=3,dc2=3' -> a CQL replication map."""
    strategy, _, arg = spec.partition(":")
    if strategy == "SimpleStrategy":
        rf = int(arg or "1")
        if not 1 <= rf <= 9:
            raise ValueError("replication factor must be 1..9")
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
    if strategy == "NetworkTopologyStrategy":
        parts = []
        for item in arg.split(","):
            dc, _, rf = item.partition("=")
            if not _DC.match(dc.strip()) or not 1 <= int(rf) <= 9:
                raise ValueError(f"bad datacenter replication {item!r}")
            parts.append(f"'{dc.strip()}': {int(rf)}")
        return "{'class': 'NetworkTopologyStrategy', " + ", ".join(parts) + "}"
    raise ValueError(f"unknown replication strategy {strategy!r}")


def table_ddl(gen: int) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS orders_by_id_g{gen} (
            order_id uuid PRIMARY KEY, description text, quantity int,
            email text, first_name text, last_name text, created_at timestamp,
            event_id uuid, sequence bigint)""",
        f"""CREATE TABLE IF NOT EXISTS orders_by_customer_g{gen} (
            email text, created_at timestamp, order_id uuid, description text, quantity int,
            first_name text, last_name text, sequence bigint,
            PRIMARY KEY ((email), created_at, order_id))
            WITH CLUSTERING ORDER BY (created_at DESC, order_id DESC)""",
        f"""CREATE TABLE IF NOT EXISTS customers_g{gen} (
            email text PRIMARY KEY, first_name text, last_name text, sequence bigint)""",
    ]


# Versioned migrations of the keyspace; each statement is idempotent (IF NOT EXISTS).
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "initial", [
        """CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text,
            applied_at timestamp)""",
        # Which table generation the queries read, and which ones the consumer writes.
        """CREATE TABLE IF NOT EXISTS read_model_state (id text PRIMARY KEY, active int,
            writing set<int>, updated_at timestamp)""",
        *table_ddl(1),
        f"INSERT INTO read_model_state (id, active, writing, updated_at) VALUES ('{STATE_ID}', 1, {{1}},"
        " toTimestamp(now())) IF NOT EXISTS",
    ]),
]


def ensure_keyspace(session: Session, s: CassandraSettings) -> None:
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ident(s.keyspace)} WITH replication = "
                    f"{replication_cql(s.replication)}")


def migrate(session: Session, s: CassandraSettings, applied: list[str] | None = None) -> list[str]:
    """Create the keyspace and apply pending migrations; returns the names applied now.
    An up-to-date keyspace (the driver's schema metadata and one read say so) gets no DDL.
    `applied`, if given, has each name appended as it is applied (and is returned): a caller that
    fails on a later one still knows what this call did."""
    applied = [] if applied is None else applied
    ks = ident(s.keyspace)
    known = session.cluster.metadata.keyspaces.get(s.keyspace)
    if known is not None and "schema_migrations" in known.tables:
        done = {row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations")}
        if all(version in done for version, _, _ in MIGRATIONS):
            return applied
    ensure_keyspace(session, s)
    session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, name text,"
                    " applied_at timestamp)")
    done = {row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations")}
    session.set_keyspace(ks)
    for version, name, statements in MIGRATIONS:
        if version in done:
            continue
        for stmt in statements:
            session.execute(stmt)
        session.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, toTimestamp(now()))",
                        (version, name))
        applied.append(name)
    return applied


def drop(session: Session, s: CassandraSettings) -> None:
    session.execute(f"DROP KEYSPACE IF EXISTS {ident(s.keyspace)}")


if __name__ == "__main__":
    from .session import connect

    settings = load().cassandra
    sess = connect(settings, keyspace=False, request_timeout=60)
    names = migrate(sess, settings)
    print(f"keyspace {settings.keyspace}: applied {names or 'nothing (up to date)'}")
    sess.cluster.shutdown()
    sys.exit(0)
