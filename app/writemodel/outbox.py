"""The outbox table's SQL: its backlog, the claim and marking of unpublished rows, and pruning.

The order's transaction writes the rows (app/writemodel/orders.py); the relays (app/relay/)
publish them and call these; the API's /readyz and /metrics read the backlog.  What counts as
published depends on the relay kind (OUTBOX_RELAY): the poller marks each row it published
(published_at), the binlog relay marks none and saves the highest seq it published instead
(the row 'binlog' of outbox_relay, app/relay/binlog.py).

The functions that take a cursor leave the transaction to their caller.
"""
from __future__ import annotations

from .db import ConnectionPool

UNPUBLISHED = {
    "poll": "WHERE published_at IS NULL",
    # The binlog relay marks no row; it saves (about once a second) the highest seq it published.
    # Rows above it are waiting: at most a second's worth more than truly are.
    "binlog": "WHERE seq > COALESCE((SELECT last_seq FROM outbox_relay WHERE name = 'binlog'), 0)",
}

# Which rows pruning may delete, by relay kind (%s: OUTBOX_RETENTION_HOURS in seconds), and the
# column the range walks (its index).
PRUNABLE = {
    # Published, longer ago than the retention (the index outbox_unpublished).
    "poll": ("published_at IS NOT NULL AND published_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND", "published_at"),
    # Written longer ago than the retention (what --reset-position can republish), and never before
    # the relay has published them (seq at or below the saved last_seq).
    "binlog": ("created_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND"
               " AND seq <= (SELECT last_seq FROM outbox_relay WHERE name = 'binlog')", "created_at"),
}


def backlog(pool: ConnectionPool, relay: str = "poll") -> tuple[int, float]:
    """(unpublished events, age in seconds of the oldest one): the API's /metrics and /readyz use it."""
    conn = pool.get()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(3))"
                    f" FROM outbox {UNPUBLISHED[relay]}")
        n, age_us = cur.fetchone()
    conn.rollback()
    return int(n), (age_us or 0) / 1e6


def claim_unpublished(cur, limit: int) -> list[tuple]:
    """Lock and return up to `limit` rows not marked published, oldest first: (seq, payload, created_at).

    FOR UPDATE SKIP LOCKED, in a transaction the caller holds open until the rows are marked: several
    relays never claim the same rows, and rows of transactions not committed yet are invisible or
    locked, never skipped for good."""
    cur.execute("SELECT seq, payload, created_at FROM outbox WHERE published_at IS NULL"
                " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED", (limit,))
    return cur.fetchall()


def mark_published(cur, seqs: list[int]) -> None:
    cur.execute(f"UPDATE outbox SET published_at = UTC_TIMESTAMP(3), attempts = attempts + 1,"
                f" last_error = NULL WHERE seq IN ({','.join(['%s'] * len(seqs))})", seqs)


def mark_failed(cur, seq: int, error: str) -> None:
    cur.execute("UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE seq = %s", (error[:500], seq))


def highest_seq(cur) -> int:
    """The highest seq the table holds (0 when it is empty)."""
    cur.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox")
    return int(cur.fetchone()[0])


def prune(cur, relay: str, seconds: int, limit: int) -> tuple[int, int]:
    """Delete at most `limit` outbox rows the relay kind no longer needs and at most `limit`
    idempotency keys, both older than `seconds`: (rows deleted, keys deleted)."""
    where, order = PRUNABLE[relay]
    cur.execute(f"DELETE FROM outbox WHERE {where} ORDER BY {order} LIMIT %s", (seconds, limit))
    rows = cur.rowcount
    cur.execute("DELETE FROM idempotency_keys WHERE created_at < UTC_TIMESTAMP(3) - INTERVAL %s SECOND"
                " LIMIT %s", (seconds, limit))
    return rows, cur.rowcount
