"""What scripts/bench reads off the system under test without loading it: the consumers' own
projection-delay histograms, the write store's counters, and CPU time per process.

Freshness without disturbing it: the consumers already time every event from the order's creation
(`occurredAt`, taken by the API just before its transaction) to the read-model write's
acknowledgement (`simplecqrs_consumer_projection_delay_seconds`).  The bench scrapes that histogram
before and after a run (and once a second for the Kafka-restart timeline), so nothing polls the
read model meanwhile; the earlier `GET ?wait=` reader put one Cassandra read every 5-50 ms per order
in flight on the same two cores.  Percentiles come from the bucket counts, interpolated linearly
inside a bucket (consumer/metrics.py has fine buckets for that).
"""
from __future__ import annotations

import math
import os
import urllib.request
from pathlib import Path

import pymysql
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from scripts.stack import processes

DELAY_METRIC = "simplecqrs_consumer_projection_delay_seconds_bucket"
# The relay's: created -> acknowledged by Kafka, the first part of the freshness above.
PUBLISH_METRIC = "simplecqrs_outbox_commit_to_publish_seconds_bucket"
STORE_COUNTERS = ("Innodb_rows_inserted", "Innodb_rows_updated", "Innodb_rows_deleted", "Innodb_rows_read",
                  "Innodb_data_written", "Innodb_os_log_written", "Com_select", "Com_insert", "Com_update",
                  "Com_delete", "Com_commit", "Questions")


# ---------------------------------------------------------------- histograms
def scrape_buckets(urls: list[str], metric: str = DELAY_METRIC) -> dict[float, float]:
    """le -> cumulative count of the histogram `metric`, summed over the processes at `urls`."""
    total: dict[float, float] = {}
    for url in urls:
        for line in _metrics_text(url).splitlines():
            if line.startswith(metric + "{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = math.inf if le == "+Inf" else float(le)
                total[bound] = total.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return total


# A consumer busy with a rebalance (the Kafka-restart timeline) may reset a scrape: asked again, as
# Prometheus would at its next interval; the histogram is cumulative, so nothing is lost meanwhile.
@retry(retry=retry_if_exception_type(OSError), stop=stop_after_attempt(5), wait=wait_fixed(0.5), reraise=True)
def _metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310 - loopback
        return resp.read().decode()


def delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def percentile(cumulative: dict[float, float], p: float) -> float:
    """The p-th percentile (seconds) of a cumulative histogram, linear inside the bucket (nan if empty)."""
    bounds = sorted(cumulative)
    n = cumulative[bounds[-1]] if bounds else 0
    if n <= 0:
        return float("nan")
    rank = p / 100 * n
    lower, below = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, count
    return lower


def count(cumulative: dict[float, float]) -> float:
    return cumulative.get(math.inf, 0.0)


# ---------------------------------------------------------------- the write store's counters
def store_counters(conn: pymysql.connections.Connection) -> dict[str, float]:
    """The server's global counters, and the bytes of binlog it holds (SHOW BINARY LOGS)."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS")
        status = {name: value for name, value in cur.fetchall()}
        cur.execute("SHOW BINARY LOGS")
        binlog = sum(int(row[1]) for row in cur.fetchall())
    out = {name: float(status.get(name, 0) or 0) for name in STORE_COUNTERS}
    out["binlog_bytes"] = float(binlog)
    return out


def per_order(after: dict[str, float], before: dict[str, float], orders: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) / max(1, orders), 2) for k in after}


# ---------------------------------------------------------------- CPU seconds per process
TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int | None, tree: bool = True) -> float:
    """User + system CPU seconds of `pid` (and, with `tree`, of its live descendants)."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)
    return own + (sum(cpu_seconds(c) for c in _children(pid)) if tree else 0.0)


def stack_pids() -> dict[str, int | None]:
    """The infrastructure's processes, by component name: the host's stores (processes.py's pid files) and
    each Kafka node's container (its first process; cpu_seconds() adds the JVM under it)."""
    from scripts.stack import kafka
    from scripts.stack.writestore import chosen

    pids = {name: processes.read_pid(name) for name in (chosen(), "cassandra")}
    pids.update({f"kafka-{i}": pid for i, pid in kafka.broker_pids().items()})
    return pids
