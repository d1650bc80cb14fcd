"""simplecqrs against its own physical limits and against the naive dual write, in one run.

    scripts/bench [--infra-only] [--quick] [--reps N] [--duration S] [--concurrency 8,32]

Two forms (README, "Performance"): by default `make up`'s instance as users deploy it, its pods
reached through the Ingress, CPU read per container from the node's cgroups (scripts/bench_deployed.py),
with py-spy flame graphs of a gunicorn worker, the relay and a consumer (.local/bench/flame-*.svg);
with --infra-only, ours as host processes on the same stores, each outbox relay on an instance of its own.

Every figure is a ratio of two things measured in the same run on the same
stack (this machine is shared and noisy), each the median of several
repetitions with its spread:

Per outbox relay (--relays binlog,poll: each on an instance of its own, one after the other):
  command_ratio        our POST /orders/s  / bare-floor orders/s (one plain INSERT behind Flask)
  db_ratio             our POST /orders/s  / the same SQL transaction with raw pymysql, no HTTP
  vs_naive_ratio       our POST /orders/s  / the demo's insert-then-synchronous-publish
  freshness p50/p99    order created -> projected, at --fresh-rate orders/s, read off the consumers'
                       own histograms (scripts/bench_measure.py: nothing polls the read model)
  freshness_p99_ratio  that p99 / p99 of a raw produce->consume->write at the same rate (and p50)
  write_store_per_order  InnoDB rows and bytes, redo, binlog bytes and statements per order (the
                       server's global counters over the freshness runs, at a rate the relay keeps up with)
  cpu_s_per_1000_orders  CPU seconds per 1000 orders of each process (API, relay, consumers, stores)
  floors               (the deployed form) the same CPU table, at the same rate, for the bare floor app and
                       the write store under it, and for the raw freshness baseline with the brokers and
                       Cassandra under it: what the work costs without simplecqrs's code
  kafka_restart        once a second, freshness of what was projected, through a Kafka outage (every broker cut off, then back)
The top-level command_ratio, db_ratio, vs_naive_ratio and freshness_p99_ratio are the default relay's.
Once per run:
  projection_ratio     consumer events/s   / the same rows written directly with cassandra-driver
  scaling              projection events/s with 1, 2 and 4 consumer processes on 6 partitions

Writes .local/bench/latest.json (+ a timestamped copy), latest.txt (summary) and latest.png.
Load comes from wrk (Debian package, installed if missing) on loopback only.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import click

from app import broker, events
from app.config import DEFAULT_RELAY, RELAYS, Settings
from app.order import NewOrder
from app.readmodel.session import connect as cassandra_connect
from app.readmodel.store import ReadModel
from app.writemodel.db import connect as mysql_connect
from app.writemodel.orders import insert_order
from scripts import bench_deployed as deployed
from scripts import bench_measure as measure
from scripts.stack import commands, errors, paths
from scripts.stack.commandline import run_click
from scripts.stack.instance import (
    Proc,
    admin_mysql,
    deprovision,
    free_port,
    make_settings,
    provision,
    settings_env,
    start_api,
    start_consumer,
    wait_for,
)

OUT = paths.LOCAL / "bench"
# Where each figure's processes run, by form (the JSON's "forms", the summary's first lines).
FORMS = {
    "deployed": {"ours": "the instance's pods (API + relay, consumers), through the Ingress (Traefik)",
                 "floor, naive, raw_pymysql": "host processes on the same stores, no Ingress",
                 "freshness_baseline": "a host process: produce -> consume -> write on the same Kafka and Cassandra",
                 "projection, scaling": "host consumer processes on a preloaded topic",
                 "cpu_s_per_1000_orders": "pod: rows from the node's cgroups, host: rows from /proc",
                 "floors": "the same CPU table for the floor app and the freshness baseline at the same rate"},
    "infra-only": {"ours": "host processes (gunicorn + relay, two consumers) on make up's stores and Kafka",
                   "floor, naive, raw_pymysql": "host processes on the same stores",
                   "freshness_baseline": "a host process: produce -> consume -> write on the same Kafka and Cassandra",
                   "projection, scaling": "host consumer processes on a preloaded topic",
                   "cpu_s_per_1000_orders": "from /proc, per process (the Kafka brokers' pods by their pids)"},
}
PERCENTILES = (50, 75, 90, 95, 99, 99.9)
WRK_SCRIPT = """
local prefix = os.getenv("BENCH_PREFIX") or "b"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local body = string.format('{"description":"bench order","quantity":%d,"email":"%s%d@bench.test",'
    .. '"firstName":"Bench","lastName":"Mark"}', math.random(1, 9), prefix, math.random(1, 100000))
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local pct = {}
  for _, p in ipairs({%PCTS%}) do pct[#pct + 1] = string.format('"%s":%d', p, latency:percentile(p)) end
  io.write(string.format('BENCHJSON{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"pct":{%s}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status, table.concat(pct, ",")))
end
"""


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def ratio(a: dict, b: dict) -> float:
    return a["median"] / b["median"] if b["median"] else float("nan")


# ---------------------------------------------------------------- HTTP load (wrk)
def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        commands.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk",
                     "wrk apt-get install wrk", shell=True)
        path = shutil.which("wrk")
    return path


def wrk(url: str, concurrency: int, duration: float, script: Path, host: str = "") -> dict:
    header = ["-H", f"Host: {host}"] if host else []
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                          *header, "-s", str(script), url], capture_output=True, text=True, timeout=duration + 60,
                         env=dict(os.environ, BENCH_PREFIX=secrets.token_hex(3)))
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    data = json.loads(line[len("BENCHJSON"):])
    secs = data["duration_us"] / 1e6
    good = data["requests"] - data["non2xx"] - data["errors"]
    return {"rate": good / secs, "errors": data["errors"] + data["non2xx"],
            "latency_ms": {k: v / 1000 for k, v in data["pct"].items()}}


# ---------------------------------------------------------------- raw pymysql (no HTTP)
def _raw_worker(settings: Settings, threads: int, duration: float, out: multiprocessing.Queue) -> None:
    counts = [0] * threads
    stop_at = time.monotonic() + duration

    def loop(i: int) -> None:
        conn = mysql_connect(settings.mysql, multi_statements=True)
        prefix = secrets.token_hex(3)
        n = 0
        while time.monotonic() < stop_at:
            o = NewOrder("bench order", 1 + n % 9, f"raw{prefix}{n % 100000}@bench.test", "Bench", "Mark")
            with conn.cursor() as cur:
                insert_order(cur, str(uuid.uuid4()), o)  # the command's batch, COMMIT included
            n += 1
        counts[i] = n
        conn.close()

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(sum(counts))


def raw_pymysql(settings: Settings, concurrency: int, duration: float, processes: int) -> float:
    """The command's SQL transaction with pymysql directly: as many processes as gunicorn workers."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    per = max(1, concurrency // processes)
    procs = [ctx.Process(target=_raw_worker, args=(settings, per, duration, q)) for _ in range(processes)]
    start = time.monotonic()
    for p in procs:
        p.start()
    total = sum(q.get(timeout=duration + 60) for _ in procs)
    for p in procs:
        p.join()
    return total / (time.monotonic() - start)


# ---------------------------------------------------------------- the outbox row: keep, or delete at once
def outbox_row_cost(settings: Settings, admin_conn, n: int = 2000) -> dict:
    """Write-store cost per order of the two outbox patterns, the command's transaction by raw pymysql:
    `keep` (ours: the row stays, pruned later in batches of PRUNE_BATCH: the prune is counted here too)
    and `insert_delete` (Debezium's outbox pattern: the row deleted in the same transaction, so only the
    binlog carries it).  The variant's SQL is swapped in for this measurement only."""
    from app.relay.base import PRUNE_BATCH
    from app.writemodel import orders
    from app.writemodel.db import server_kind

    conn = mysql_connect(settings.mysql, multi_statements=True)
    kind = server_kind(conn)
    kept = orders._ORDER_SQL[kind]
    out = {}

    def prune(above: int) -> None:
        with conn.cursor() as cur:
            while cur.execute("DELETE FROM outbox WHERE seq > %s ORDER BY seq LIMIT %s", (above, PRUNE_BATCH)):
                conn.commit()
        conn.commit()

    try:
        for variant, sql in (("keep", kept), ("insert_delete", kept.replace(
                "COMMIT", "DELETE FROM outbox WHERE seq = LAST_INSERT_ID();COMMIT"))):
            orders._ORDER_SQL[kind] = sql
            with conn.cursor() as cur:
                cur.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox")
                first = cur.fetchone()[0]
            conn.commit()
            before, started = measure.store_counters(admin_conn), time.monotonic()
            for i in range(n):   # new customers each time (an upsert that updates costs otherwise)
                with conn.cursor() as cur:
                    insert_order(cur, str(uuid.uuid4()),
                                 NewOrder("row cost", 1, f"rc-{variant}-{i}@bench.test", "Row", "Cost"))
            took = time.monotonic() - started
            if variant == "keep":
                prune(first)     # this run's rows only, as the relay's pruning would, counted in
            out[variant] = {**measure.per_order(measure.store_counters(admin_conn), before, n),
                            "orders_per_s_one_connection": round(n / took, 1)}
    finally:
        orders._ORDER_SQL[kind] = kept
        conn.close()
    return out


# ---------------------------------------------------------------- projection
def preload(settings: Settings, topic: str, n: int, partitions: int = 6) -> None:
    admin = broker.admin(settings.kafka)
    try:
        broker.ensure_topic(admin, topic, partitions)
    finally:
        admin.close()
    p = broker.producer(settings.kafka, linger_ms=20)
    for ev in bench_events(n):
        p.send(topic, key=ev.key(), value=ev.encode())
    p.flush(120)
    p.close()


def bench_events(n: int):
    base = int(time.time() * 1000)
    for i in range(n):
        yield events.OnNewOrder(eventId=str(uuid.uuid4()), sequence=base + i,
                                occurredAt=events.format_time(events.now_ms()), orderId=str(uuid.uuid4()),
                                description="bench order", quantity=1 + i % 9, email=f"p{i % 5000}@bench.test",
                                firstName="Bench", lastName="Mark")


def committed(admin, group: str) -> int:
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(o.offset for o in offsets.values() if o.offset > 0)


def consumer_rate(settings: Settings, topic: str, n: int, processes: int) -> float:
    """Events/s of `processes` consumers on a preloaded topic, timed from the first commit to the last
    (so process start-up and the group join are not counted); for a topic so small that the first
    commit covers most of it (--quick), from the start of the processes instead."""
    group = f"bench-{secrets.token_hex(4)}"
    launched = time.monotonic()
    procs = [start_consumer(settings, f"bench-consumer-{i}", KAFKA_TOPIC=topic, KAFKA_CONSUMER_GROUP=group,
                            LOG_LEVEL="WARNING") for i in range(processes)]
    admin = broker.admin(settings.kafka)
    try:
        first = wait_for(lambda: (lambda c: (c, time.monotonic()) if c > 0 else None)(committed(admin, group)),
                         120, "the first commit", interval=0.05)
        last = wait_for(lambda: time.monotonic() if committed(admin, group) >= n else None, 600,
                        "every event projected", interval=0.1)
        if n - first[0] >= n // 4:
            return (n - first[0]) / max(1e-6, last - first[1])
        return n / max(1e-6, last - launched)
    finally:
        admin.close()
        for p in procs:
            p.stop()


def direct_rate(settings: Settings, n: int) -> float:
    """The same rows written straight to Cassandra: prepared, asynchronous, the consumer's in-flight bound."""
    session = cassandra_connect(settings.cassandra, keyspace=False)
    try:
        model = ReadModel(session, settings.cassandra.keyspace)
        bound = settings.consumer.max_in_flight
        evs = list(bench_events(n))
        gens = model.state()[1]
        start = time.monotonic()
        in_flight: list = []
        for ev in evs:
            in_flight.extend(model.project_async(ev, gens))
            while len(in_flight) > bound:
                in_flight.pop(0).result()
        for f in in_flight:
            f.result()
        return n / (time.monotonic() - start)
    finally:
        session.cluster.shutdown()


# ---------------------------------------------------------------- freshness
def post_at_rate(api_url: str, rate: float, duration: float, tag: str = "fresh", host: str = "") -> int:
    """POST orders at `rate` for `duration` seconds (a pool of 32 clients); returns how many got 201.
    Nothing reads them back: freshness comes from the consumers' own histograms (bench_measure)."""
    import requests

    local = threading.local()
    ok = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        try:
            r = s.post(f"{api_url}/orders", json={"description": tag, "quantity": 1, "firstName": "F",
                                                  "lastName": "R", "email": f"f{i % 1000}@bench.test"},
                       headers={"Host": host} if host else None, timeout=10)
        except requests.RequestException:
            return
        if r.status_code == 201:
            with lock:
                ok[0] += 1

    n = max(1, int(rate * duration))
    with ThreadPoolExecutor(32) as pool:
        start = time.monotonic()
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i)
    return ok[0]


def freshness_ours(api_url: str, rate: float, duration: float, consumer_urls: list[str], relay_urls: list[str],
                   host: str = "") -> dict:
    """Order created -> projected, off the consumers' histograms, for the orders of one run at `rate`;
    and its first part, created -> acknowledged by Kafka, off the relays' (`published_p50/p99`)."""
    before = measure.scrape_buckets(consumer_urls)
    published_before = measure.scrape_buckets(relay_urls, measure.PUBLISH_METRIC)
    placed = post_at_rate(api_url, rate, duration, host=host)
    wait_for(lambda: measure.count(measure.delta(measure.scrape_buckets(consumer_urls), before)) >= placed, 120,
             "every order of the run projected", interval=0.5)
    hist = measure.delta(measure.scrape_buckets(consumer_urls), before)
    published = measure.delta(measure.scrape_buckets(relay_urls, measure.PUBLISH_METRIC), published_before)
    return {"p50": measure.percentile(hist, 50), "p99": measure.percentile(hist, 99), "orders": placed,
            "published_p50": measure.percentile(published, 50), "published_p99": measure.percentile(published, 99)}


def kafka_restart_timeline(api_url: str, rate: float, consumers: list[Proc], total_s: float = 60.0,
                           stop_at: float = 10.0, down_s: float = 10.0) -> list[dict]:
    """Orders at `rate` for `total_s`; Kafka away (every broker unreachable) at `stop_at` for
    `down_s`, then back.  Once a second: p50/p99 of the delay of the orders projected in that second."""
    import contextlib

    from scripts.stack import kafka

    outage = contextlib.ExitStack()
    urls = [c.metrics_url for c in consumers]
    loader = threading.Thread(target=post_at_rate, args=(api_url, rate, total_s, "restart"))
    timeline: list[dict] = []
    prev = measure.scrape_buckets(urls)
    t0 = time.monotonic()
    loader.start()
    stopped = started = False
    try:
        while time.monotonic() - t0 < total_s + 60:
            time.sleep(1.0)
            t = time.monotonic() - t0
            if not stopped and t >= stop_at:
                say("kafka-restart: cutting Kafka off")
                outage.enter_context(kafka.cut_off())
                stopped = True
            if stopped and not started and t >= stop_at + down_s:
                say("kafka-restart: Kafka back")
                outage.close()
                started = True
            now = measure.scrape_buckets(urls)
            d = measure.delta(now, prev)
            prev = now
            timeline.append({"t": round(t, 1), "projected": measure.count(d),
                             "p50_ms": measure.percentile(d, 50) * 1000, "p99_ms": measure.percentile(d, 99) * 1000})
            if t > total_s and not loader.is_alive() and measure.count(d) == 0:
                break
    finally:
        outage.close()
        loader.join()
    return timeline


def freshness_baseline(settings: Settings, rate: float, duration: float, in_flight: int = 128,
                       replication: int = 1, topic_config: dict[str, str] | None = None) -> list[float]:
    """A raw kafka-python produce -> consume round trip plus one Cassandra write, same process clock:
    the floor of a projection at the offered rate.  The writes are asynchronous with up to
    `in_flight` outstanding, as the projector's (CONSUMER_MAX_IN_FLIGHT), and a sample is taken when
    the write is acknowledged.  (A synchronous write per record, as this baseline first did, caps the
    loop at 1 / write latency: on a loaded machine below the offered rate, so the baseline measured
    its own growing backlog, seconds, not a floor.)  The producer is the relay's (app/broker.py, the
    same acks, linger and compression); its topic has one partition and, in the deployed form, the
    instance's replication (`replication`, `topic_config`: min.insync.replicas), so the floor waits
    for the same acknowledgements ours does."""
    from kafka import TopicPartition

    topic = f"bench-raw-{secrets.token_hex(3)}"
    admin = broker.admin(settings.kafka)
    broker.ensure_topic(admin, topic, 1, replication, topic_config)
    session = cassandra_connect(settings.cassandra, keyspace=False)
    model = ReadModel(session, settings.cassandra.keyspace)
    gen = model.state()[0]
    insert = session.prepare(f"INSERT INTO {model.ks}.orders_by_id_g{gen} (order_id, description, quantity, email,"
                             " first_name, last_name, created_at, event_id, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    consumer = broker.consumer(settings.kafka, group_id=None)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_end(tp)
    consumer.position(tp)
    n = max(1, int(rate * duration))
    samples: list[float] = []
    sent: dict[bytes, float] = {}
    slots = threading.BoundedSemaphore(in_flight)

    def written(_result, key: bytes) -> None:
        samples.append(time.monotonic() - sent[key])
        slots.release()

    def failed(exc, key: bytes) -> None:
        slots.release()
        say(f"baseline write failed: {exc}")

    def consume() -> None:
        received = 0
        while received < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=100).values():
                for rec in recs:
                    ev = events.decode(rec.value)
                    slots.acquire()
                    future = session.execute_async(insert, (
                        uuid.UUID(ev.orderId), ev.description, ev.quantity, ev.email, ev.firstName, ev.lastName,
                        ev.occurred_at, uuid.UUID(ev.eventId), ev.sequence))
                    future.add_callbacks(written, failed, callback_args=(rec.key,), errback_args=(rec.key,))
                    received += 1
        for _ in range(in_flight):          # every outstanding write acknowledged
            slots.acquire(timeout=max(0.0, deadline - time.monotonic()))

    producer = broker.producer(settings.kafka)
    deadline = time.monotonic() + duration + 30
    t = threading.Thread(target=consume)
    t.start()
    start = time.monotonic()
    for ev in bench_events(n):
        delay = start + len(sent) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[ev.key()] = time.monotonic()
        producer.send(topic, key=ev.key(), value=ev.encode())
    t.join()
    producer.close()
    consumer.close()
    admin.delete_topics([topic])
    admin.close()
    session.cluster.shutdown()
    return samples


def baselines(args: SimpleNamespace, settings: Settings, deployed_out: dict | None) -> tuple[list[list[float]], dict | None]:
    """The freshness baseline, args.reps times: (its samples, the projection's floor or None).  In the
    deployed form (`deployed_out`: measure_deployed's result) its topic has the instance's replication, and
    the floor is what the brokers, Cassandra and the raw process itself spend per 1000 events (one event an
    order), less each row at rest."""
    from scripts.stack.writestore import chosen

    replication, config = 1, None
    if deployed_out is not None:
        containers = deployed.node_containers(*deployed_out["instance"].split("/"))
        spec = deployed_out["spec"].get("kafka") or {}
        replication = int(spec.get("replicationFactor") or 1)
        config = {k: str(v) for k, v in (spec.get("config") or {}).items() if k == "min.insync.replicas"}
    samples, cpu = [], []
    for rep in range(args.reps):
        say(f"freshness baseline rep {rep + 1}/{args.reps}: raw produce -> consume -> write"
            f" (replication {replication})")
        if deployed_out is None:
            samples.append(freshness_baseline(settings, args.fresh_rate, args.fresh_duration))
            continue
        with deployed.Cpu(containers, chosen(), deployed_out["cpu_cores_at_rest"],
                          {"host:bench (the raw producer, consumer and writes)":
                           lambda: measure.cpu_seconds(os.getpid(), tree=False)}) as used:
            samples.append(freshness_baseline(settings, args.fresh_rate, args.fresh_duration,
                                              replication=replication, topic_config=config))
        cpu.append(used.per_1000(len(samples[-1])))
    if deployed_out is None:
        return samples, None
    return samples, {
        "what": "the freshness baseline: a raw producer (the relay's settings), a consumer and one Cassandra"
                " write per event, one host process, its topic replicated as the instance's",
        "cpu_s_per_1000_orders": deployed.median_rows(cpu, ("pod:kafka/kafka", "host:cassandra", "host:bench"))}


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


# ---------------------------------------------------------------- the run
def start_baseline(settings: Settings, app: str, workers: int, threads: int,
                   worker_class: str = "gthread") -> tuple[Proc, str]:
    port = free_port()
    p = Proc(f"bench-{app}", [str(paths.ROOT / ".venv" / "bin" / "gunicorn"), "-c", "python:app.gunicorn_conf",
                              f"scripts.bench_baselines:{app}_app"],
             settings_env(settings, API_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS=str(workers),
                          GUNICORN_THREADS=str(threads), GUNICORN_WORKER_CLASS=worker_class, LOG_LEVEL="WARNING",
                          PROMETHEUS_MULTIPROC_DIR=str(paths.RUN / f"metrics-bench-{app}-{port}"))).start()
    url = f"http://127.0.0.1:{port}"
    from scripts.stack.instance import http_status

    wait_for(lambda: p.alive() and http_status(f"{url}/nope") == 404, 60, f"{app} baseline up")
    return p, url


def command_figures(args: SimpleNamespace, ours_url: str, floor_url: str, naive_url: str, floor_settings: Settings,
                    script: Path, label: str, host: str = "") -> dict:
    """Command throughput: ours, the bare floor, the naive dual write and raw pymysql, interleaved; the
    ratios at the concurrency where ours does best.  `host`: the Host header ours is reached with."""
    command: dict = {}
    for conc in args.concurrency:
        runs: dict[str, list] = {"ours": [], "floor": [], "naive": [], "raw_pymysql": []}
        for rep in range(args.reps):
            for name, url in (("ours", ours_url), ("floor", floor_url), ("naive", naive_url)):
                say(f"[{label}] command c={conc} rep {rep + 1}/{args.reps}: {name}")
                runs[name].append(wrk(url, conc, args.duration, script, host if name == "ours" else ""))
            say(f"[{label}] command c={conc} rep {rep + 1}/{args.reps}: raw pymysql")
            runs["raw_pymysql"].append({"rate": raw_pymysql(floor_settings, conc, args.duration, args.workers)})
        command[str(conc)] = {k: {"orders_per_s": spread([r["rate"] for r in v]),
                                  "latency_ms": {p: statistics.median(r["latency_ms"][str(p)] for r in v)
                                                 for p in PERCENTILES} if v and "latency_ms" in v[0] else None,
                                  "errors": sum(r.get("errors", 0) for r in v)}
                              for k, v in runs.items()}
    best = max(command, key=lambda c: command[c]["ours"]["orders_per_s"]["median"])
    c = command[best]
    return {"command": command, "ratios_at_concurrency": int(best),
            "command_ratio": ratio(c["ours"]["orders_per_s"], c["floor"]["orders_per_s"]),
            "db_ratio": ratio(c["ours"]["orders_per_s"], c["raw_pymysql"]["orders_per_s"]),
            "vs_naive_ratio": ratio(c["ours"]["orders_per_s"], c["naive"]["orders_per_s"])}


def measure_relay(relay: str, args: SimpleNamespace, floor_url: str, naive_url: str, floor_settings: Settings,
                  script: Path, admin_conn) -> dict:
    """Everything measured per outbox relay, on an instance of its own (a relay kind's bookkeeping,
    published_at or a saved binlog position, would make the other republish everything)."""
    settings = make_settings(admin_mysql(), f"bench{secrets.token_hex(2)}{relay[0]}")
    say(f"[{relay}] provisioning an instance")
    provision(settings, partitions=6)
    # Ours at its shipped log level (INFO: a JSON line per order), as users run it: it costs ~7% of the
    # command's throughput here (README, "What changed to get here"); the baselines log nothing.
    env = dict(GUNICORN_WORKERS=str(args.workers), GUNICORN_THREADS=str(args.threads),
               GUNICORN_WORKER_CLASS=args.worker_class, OUTBOX_RELAY=relay)
    procs: list = []
    out: dict = {}
    try:
        ours, ours_url = start_api(settings, f"bench-{relay}", API_ROLE="both", **env)
        procs.append(ours)
        out.update(command_figures(args, ours_url, floor_url, naive_url, floor_settings, script, relay))

        # Freshness, write-store cost and CPU per order, at a fixed rate the system keeps up with.
        say(f"[{relay}] freshness at {args.fresh_rate:.0f} orders/s: 2 consumers, waiting for them to catch up")
        consumers = [start_consumer(settings, f"bench-{relay}-consumer-{i}", LOG_LEVEL="WARNING") for i in (1, 2)]
        procs += consumers
        wait_caught_up(settings)
        samples, cost, cpu = [], [], []
        relay_pid = ours.procs[1].proc.pid
        for rep in range(args.reps):
            say(f"[{relay}] freshness rep {rep + 1}/{args.reps}: created -> projected, from the consumers' histograms")
            counters, pids = measure.store_counters(admin_conn), dict(measure.stack_pids())
            pids.update(api=ours.procs[0].proc.pid, relay=relay_pid,
                        **{f"consumer{i}": c.proc.pid for i, c in enumerate(consumers, 1)})
            cpu0 = {k: measure.cpu_seconds(v) for k, v in pids.items()}
            f = freshness_ours(ours_url, args.fresh_rate, args.fresh_duration, [c.metrics_url for c in consumers],
                               [ours.procs[1].metrics_url])
            cost.append(measure.per_order(measure.store_counters(admin_conn), counters, f["orders"]))
            cpu.append({k: round((measure.cpu_seconds(v) - cpu0[k]) * 1000 / max(1, f["orders"]), 3)
                        for k, v in pids.items()})
            samples.append(f)
        out["freshness_ms"] = {p: spread([f[p] * 1000 for f in samples]) for p in ("p50", "p99")}
        # Its first part: created -> acknowledged by Kafka (the command's commit, the relay, the broker).
        out["published_ms"] = {p: spread([f[f"published_{p}"] * 1000 for f in samples]) for p in ("p50", "p99")}
        out["write_store_per_order"] = {k: statistics.median(c[k] for c in cost) for k in cost[0]}
        out["cpu_s_per_1000_orders"] = {k: statistics.median(c[k] for c in cpu) for k in cpu[0]}
        if args.kafka_restart:
            say(f"[{relay}] freshness through a Kafka restart")
            out["kafka_restart"] = kafka_restart_timeline(ours_url, args.fresh_rate, consumers)
    finally:
        for p in procs:
            p.stop()
        deprovision(settings)
    return out


def measure_deployed(args: SimpleNamespace, floor_url: str, naive_url: str, floor_settings: Settings,
                     script: Path, floor_pid: int) -> dict:
    """The instance as deployed (bench_deployed): its pods through the Ingress, CPU per container from
    the node's cgroups and per host process, freshness off its pods' histograms, py-spy flame graphs."""
    from scripts.stack import services
    from scripts.stack.writestore import chosen

    env = services.instance_env(args.instance)
    namespace, _, name = args.instance.partition("/")
    url, host = env["API_URL"], env["API_HOST_HEADER"] if env["API_URL"] != services.API_URL else ""
    osvc = services.orderservice(namespace, name) or {}
    out: dict = {"instance": args.instance, "api_url": url, "host_header": host, "rate": args.fresh_rate,
                 "spec": {k: osvc.get("spec", {}).get(k) for k in ("api", "consumer", "kafka")}}
    out.update(command_figures(args, url, floor_url, naive_url, floor_settings, script, "deployed", host))

    containers = deployed.node_containers(namespace, name)
    consumer_urls = deployed.metrics_urls(containers, "consumer")
    relay_urls = deployed.metrics_urls(containers, "relay")
    if not consumer_urls or not relay_urls:
        raise errors.StackError("bench", f"{args.instance}: no running consumer or relay container found on the node")
    say(f"[deployed] freshness at {args.fresh_rate:.0f} orders/s: {len(consumer_urls)} consumer pod(s), "
        f"{len(relay_urls)} relay container(s)")
    post_at_rate(url, args.fresh_rate, 1.0, "warm-up", host)     # connections and the workers' caches warm
    # Each row's CPU at rest first (the brokers' replication, the control plane, the operators' resyncs),
    # so the table can say what an order itself costs: the marginal figure is the total less that rate.
    say(f"[deployed] CPU at rest over {args.fresh_duration:.0f} s (no orders)")
    store = chosen()
    with deployed.Cpu(containers, store) as rest:
        time.sleep(args.fresh_duration)
    idle = rest.cores()
    samples, cpu, marginal = [], [], []
    for rep in range(args.reps):
        say(f"[deployed] freshness rep {rep + 1}/{args.reps}: created -> projected; CPU of every container and host process")
        with deployed.Cpu(containers, store, idle) as used:
            f = freshness_ours(url, args.fresh_rate, args.fresh_duration, consumer_urls, relay_urls, host)
        cpu.append(used.total_per_1000(f["orders"]))
        marginal.append(used.per_1000(f["orders"]))
        samples.append(f)
    out["freshness_ms"] = {p: spread([f[p] * 1000 for f in samples]) for p in ("p50", "p99")}
    out["published_ms"] = {p: spread([f[f"published_{p}"] * 1000 for f in samples]) for p in ("p50", "p99")}
    for key, runs in (("cpu_s_per_1000_orders", cpu), ("cpu_s_per_1000_orders_marginal", marginal)):
        table = deployed.median_rows(runs)
        out[key] = dict(sorted(table.items(), key=lambda kv: -kv[1]))
        out[f"{key}_total"] = round(sum(table.values()), 3)
    out["cpu_cores_at_rest"] = {k: round(v, 3) for k, v in sorted(idle.items(), key=lambda kv: -kv[1])}
    # The command's floor at the same rate: the bare Flask + one INSERT (a host process, no Ingress) and
    # the write store under it.  The projection's floor is measured with the freshness baseline (baselines()).
    cpu = []
    for rep in range(args.reps):
        say(f"[deployed] the floor's CPU rep {rep + 1}/{args.reps}: bare Flask + one INSERT at {args.fresh_rate:.0f}/s")
        with deployed.Cpu(containers, store, idle,
                          {"host:bench-floor (bare Flask + one INSERT)": lambda: measure.cpu_seconds(floor_pid)}) as used:
            placed = post_at_rate(floor_url, args.fresh_rate, args.fresh_duration, "floor")
        cpu.append(used.per_1000(placed))
    out["floors"] = {"command": {
        "what": "the bare floor app (parse the JSON, commit one plain INSERT; gunicorn as ours), a host process"
                " reached directly, at the same rate",
        "cpu_s_per_1000_orders": deployed.median_rows(cpu, ("host:bench-floor", f"host:{store}"))}}
    if args.profile:
        targets = deployed.profile_targets(containers)
        # At least 50 orders/s (a --quick run's 20/s leaves the relay's Python almost idle) for 3 s or more.
        seconds, rate = max(3.0, args.fresh_duration), max(50.0, args.fresh_rate)
        say(f"[deployed] py-spy flame graphs ({', '.join(targets)}) over {seconds:.0f} s at {rate:.0f} orders/s")
        loader = threading.Thread(target=post_at_rate, args=(url, rate, seconds + 1, "profile", host))
        loader.start()
        try:
            out["profiles"] = deployed.profile(targets, seconds, args.out.parent)
        finally:
            loader.join()
    return out


def wait_caught_up(settings: Settings) -> None:
    from kafka import TopicPartition

    admin = broker.admin(settings.kafka)
    tps = [TopicPartition(settings.kafka.topic, p) for p in range(6)]
    cons = broker.consumer(settings.kafka, group_id=None)
    end = sum(cons.end_offsets(tps).values())
    cons.close()
    try:
        wait_for(lambda: end == 0 or committed(admin, settings.kafka.consumer_group) >= end, 900,
                 "the consumers to catch up", interval=0.5)
    finally:
        admin.close()


def run(args: SimpleNamespace) -> dict:
    from scripts.stack.__main__ import bring_up, infrastructure
    from scripts.stack.writestore import chosen

    if args.infra_only:
        bring_up(infrastructure(both_write_stores=False))     # Kafka runs as pods: the node and Strimzi too
    else:
        from scripts.stack import services

        services.instance_env(args.instance)   # a StackError in one line without `make up`'s instance
    ensure_wrk()
    suffix = f"bench{secrets.token_hex(3)}"
    settings = make_settings(admin_mysql(), suffix)
    say(f"provisioning the baselines' instance {suffix}")
    provision(settings, partitions=6)
    conn = mysql_connect(settings.mysql, admin=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE bench_floor_orders (id CHAR(36) PRIMARY KEY, email VARCHAR(254),"
                    " description VARCHAR(500), quantity INT)")
    conn.commit()
    admin_conn = mysql_connect(settings.mysql, admin=True, autocommit=True)

    workers, threads = args.workers, args.threads
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_SCRIPT.replace("%PCTS%", ",".join(str(p) for p in PERCENTILES)))
    result: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "write_store": chosen()},
                    "settings": {"gunicorn_workers": workers, "gunicorn_threads": threads,
                                 "gunicorn_worker_class": args.worker_class, "reps": args.reps,
                                 "duration_s": args.duration, "concurrency": args.concurrency,
                                 "projection_events": args.events, "quick": args.quick,
                                 "relays": args.relays, "default_relay": DEFAULT_RELAY,
                                 "freshness_orders_per_s": args.fresh_rate,
                                 "form": "infra-only" if args.infra_only else "deployed"},
                    # Which rows come from which form (README, "Performance").
                    "forms": FORMS["infra-only" if args.infra_only else "deployed"],
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    procs: list[Proc] = []
    try:
        floor, floor_url = start_baseline(settings, "floor", workers, threads, args.worker_class)
        naive, naive_url = start_baseline(settings, "naive", workers, threads, args.worker_class)
        procs += [floor, naive]
        if args.infra_only:
            result["relays"] = {relay: measure_relay(relay, args, floor_url, naive_url, settings, script, admin_conn)
                                for relay in args.relays}
            default = result["relays"].get(DEFAULT_RELAY) or next(iter(result["relays"].values()))
        else:
            result["deployed"] = default = measure_deployed(args, floor_url, naive_url, settings, script,
                                                            floor.proc.pid)
        for key in ("command", "command_ratio", "db_ratio", "vs_naive_ratio", "ratios_at_concurrency"):
            result[key] = default[key]

        # The raw floor of freshness: produce -> consume -> one Cassandra write, at the same rate.
        base_f, projection_floor = baselines(args, settings, None if args.infra_only else default)
        if projection_floor:
            default["floors"]["projection"] = projection_floor
        base = {"p50": spread([pct(s, 50) * 1000 for s in base_f]), "p99": spread([pct(s, 99) * 1000 for s in base_f])}
        result["freshness_baseline_ms"] = base
        for r in (result.get("relays") or {"deployed": default}).values():
            r["freshness_p99_ratio"] = ratio(r["freshness_ms"]["p99"], base["p99"])
            r["freshness_p50_ratio"] = ratio(r["freshness_ms"]["p50"], base["p50"])
        result["freshness_p99_ratio"] = default["freshness_p99_ratio"]

        say("the outbox row's cost: kept and pruned, or inserted and deleted in one transaction")
        result["outbox_row_cost"] = outbox_row_cost(settings, admin_conn, 200 if args.quick else 2000)

        # Projection throughput and the scaling curve (no relay involved).
        topic = f"bench-proj-{suffix}"
        say(f"preloading {args.events} events on a 6-partition topic")
        preload(settings, topic, args.events)
        ours_rates, direct_rates = [], []
        for rep in range(args.reps):
            say(f"projection rep {rep + 1}/{args.reps}: direct cassandra-driver")
            direct_rates.append(direct_rate(settings, args.events))
            say(f"projection rep {rep + 1}/{args.reps}: one consumer process")
            ours_rates.append(consumer_rate(settings, topic, args.events, 1))
        result["projection"] = {"consumer_events_per_s": spread(ours_rates),
                                "direct_events_per_s": spread(direct_rates)}
        result["projection_ratio"] = ratio(result["projection"]["consumer_events_per_s"],
                                           result["projection"]["direct_events_per_s"])
        scaling = {}
        for k in args.scaling:
            say(f"scaling: {k} consumer process(es)")
            scaling[str(k)] = spread([consumer_rate(settings, topic, args.events, k) for _ in range(args.reps)])
        result["scaling"] = {"partitions": 6, "events_per_s": scaling}
    finally:
        for p in procs:
            p.stop()
        admin_conn.close()
        deprovision(settings)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def summary(r: dict) -> str:
    base = r["freshness_baseline_ms"]
    lines = [
        f"simplecqrs bench {r['finished_at']} ({r['machine']['cpus']} cpus; {r['machine']['write_store']}; gunicorn "
        f"{r['settings']['gunicorn_workers']}x{r['settings']['gunicorn_threads']}; "
        f"{'quick' if r['settings']['quick'] else 'full'} run; default relay {r['settings']['default_relay']})",
        f"  projection_ratio    {r['projection_ratio']:.2f}   (target >= 0.9): consumer "
        f"{r['projection']['consumer_events_per_s']['median']:.0f}/s, direct "
        f"{r['projection']['direct_events_per_s']['median']:.0f}/s",
        "  scaling: " + ", ".join(f"{k} proc {v['median']:.0f}/s" for k, v in r["scaling"]["events_per_s"].items()),
        f"  freshness baseline at {r['settings']['freshness_orders_per_s']:.0f}/s (raw produce -> consume -> write): "
        f"p50 {base['p50']['median']:.1f} ms, p99 {base['p99']['median']:.1f} ms",
    ]
    lines.insert(1, f"  form: {r['settings'].get('form', 'infra-only')}: " + "; ".join(
        f"{k}: {v}" for k, v in r.get("forms", {}).items()))
    if "deployed" in r:
        lines += deployed_summary(r["deployed"])
    for relay, x in r.get("relays", {}).items():
        c = x["command"][str(x["ratios_at_concurrency"])]
        w, cpu = x["write_store_per_order"], x["cpu_s_per_1000_orders"]
        lines += [
            f"  relay {relay}:",
            f"    command_ratio {x['command_ratio']:.2f} (target >= 0.8), db_ratio {x['db_ratio']:.2f}, "
            f"vs_naive_ratio {x['vs_naive_ratio']:.2f} (target >= 2): at concurrency {x['ratios_at_concurrency']} "
            f"ours {c['ours']['orders_per_s']['median']:.0f}/s, floor {c['floor']['orders_per_s']['median']:.0f}/s, "
            f"naive {c['naive']['orders_per_s']['median']:.0f}/s, "
            f"raw pymysql {c['raw_pymysql']['orders_per_s']['median']:.0f}/s",
            f"    freshness p50 {x['freshness_ms']['p50']['median']:.1f} ms, p99 {x['freshness_ms']['p99']['median']:.1f} ms;"
            f" freshness_p99_ratio {x['freshness_p99_ratio']:.2f} (target <= 3), p50 ratio {x['freshness_p50_ratio']:.2f}",
            f"    of which created -> acknowledged by Kafka: p50 {x['published_ms']['p50']['median']:.1f} ms, "
            f"p99 {x['published_ms']['p99']['median']:.1f} ms",
            f"    write store per order: rows inserted {w['Innodb_rows_inserted']}, updated {w['Innodb_rows_updated']}, "
            f"deleted {w['Innodb_rows_deleted']}, read {w['Innodb_rows_read']}; statements {w['Questions']}; "
            f"bytes: data {w['Innodb_data_written']:.0f}, redo {w['Innodb_os_log_written']:.0f}, "
            f"binlog {w['binlog_bytes']:.0f}",
            "    CPU s per 1000 orders: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
        ]
    for variant, w in r.get("outbox_row_cost", {}).items():
        lines.append(f"  outbox row {variant}: per order rows inserted {w['Innodb_rows_inserted']}, deleted "
                     f"{w['Innodb_rows_deleted']}; bytes data {w['Innodb_data_written']:.0f}, redo "
                     f"{w['Innodb_os_log_written']:.0f}, binlog {w['binlog_bytes']:.0f}; "
                     f"{w['orders_per_s_one_connection']:.0f} orders/s on one connection")
    return "\n".join(lines)


def deployed_summary(x: dict) -> list[str]:
    c = x["command"][str(x["ratios_at_concurrency"])]
    cpu = x["cpu_s_per_1000_orders"]
    lines = [
        f"  deployed instance {x['instance']} through {x['api_url']}:",
        f"    command_ratio {x['command_ratio']:.2f} (target >= 0.8), db_ratio {x['db_ratio']:.2f}, "
        f"vs_naive_ratio {x['vs_naive_ratio']:.2f}: at concurrency {x['ratios_at_concurrency']} "
        f"ours {c['ours']['orders_per_s']['median']:.0f}/s, floor {c['floor']['orders_per_s']['median']:.0f}/s, "
        f"naive {c['naive']['orders_per_s']['median']:.0f}/s, raw pymysql {c['raw_pymysql']['orders_per_s']['median']:.0f}/s",
        f"    freshness p50 {x['freshness_ms']['p50']['median']:.1f} ms, p99 {x['freshness_ms']['p99']['median']:.1f} ms;"
        f" freshness_p99_ratio {x['freshness_p99_ratio']:.2f} (target <= 3), p50 ratio {x['freshness_p50_ratio']:.2f}",
        f"    of which created -> acknowledged by Kafka: p50 {x['published_ms']['p50']['median']:.1f} ms, "
        f"p99 {x['published_ms']['p99']['median']:.1f} ms",
        f"    CPU s per 1000 orders at {x['rate']:.0f}/s, {x['cpu_s_per_1000_orders_total']:.2f} in all: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005),
        f"    of which the orders' own (less each row's CPU at rest), {x['cpu_s_per_1000_orders_marginal_total']:.2f}"
        " in all: " + ", ".join(f"{k} {v:.2f}" for k, v in x["cpu_s_per_1000_orders_marginal"].items() if v >= 0.005),
    ]
    for part, floor in (x.get("floors") or {}).items():
        lines.append(f"    floor of the {part}, CPU s per 1000 at the same rate (less at rest): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in floor["cpu_s_per_1000_orders"].items()))
    for name, prof in (x.get("profiles") or {}).items():
        if prof.get("error"):
            lines.append(f"    flame graph {name}: py-spy failed: {prof['error']}")
            continue
        top = ", ".join(f"{f['frame']} {f['share']:.0%}" for f in prof["self"][:4])
        lines.append(f"    flame graph {name} ({prof['samples']} samples, {prof['svg']}): top self frames {top}")
    return lines


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = r.get("relays") or {"deployed": r["deployed"]}
    restarts = {k: v["kafka_restart"] for k, v in measured.items() if v.get("kafka_restart")}
    fig, axes = plt.subplots(1, 2 if restarts else 1, figsize=(13 if restarts else 7, 4.5), squeeze=False)
    a1 = axes[0][0]
    xs = [str(x) for x in PERCENTILES]
    for relay, x in measured.items():
        c = x["command"][str(x["ratios_at_concurrency"])]
        form = "pods through the Ingress" if relay == "deployed" else f"{relay} relay"
        a1.plot(xs, [c["ours"]["latency_ms"][p] for p in PERCENTILES], marker="o",
                label=f"ours, {form} ({c['ours']['orders_per_s']['median']:.0f}/s)")
    c = r["command"][str(r["ratios_at_concurrency"])]
    for name in ("floor", "naive"):
        a1.plot(xs, [c[name]["latency_ms"][p] for p in PERCENTILES], marker="o", linestyle="--",
                label=f"{name} ({c[name]['orders_per_s']['median']:.0f}/s)")
    a1.set_yscale("log")
    a1.set_xlabel("percentile")
    a1.set_ylabel("POST /orders latency (ms)")
    a1.set_title(f"Command latency at concurrency {r['ratios_at_concurrency']}")
    a1.legend(fontsize=8)
    if restarts:
        a2 = axes[0][1]
        for relay, timeline in restarts.items():
            a2.plot([p["t"] for p in timeline], [p["p99_ms"] for p in timeline], label=f"{relay}: p99")
            a2.plot([p["t"] for p in timeline], [p["p50_ms"] for p in timeline], linestyle=":", label=f"{relay}: p50")
        a2.axvspan(10, 20, color="grey", alpha=0.2, label="Kafka stopped")
        a2.set_yscale("log")
        a2.set_xlabel("seconds")
        a2.set_ylabel("created -> projected (ms), orders projected that second")
        a2.set_title(f"Freshness through a Kafka restart at {r['settings']['freshness_orders_per_s']:.0f} orders/s")
        a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ints(_ctx, _param, value: str) -> list[int]:
    try:
        return [int(x) for x in str(value).split(",") if x]
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers") from None


def _relays(_ctx, _param, value: str) -> list[str]:
    relays = [x for x in str(value).split(",") if x]
    if not set(relays) <= set(RELAYS):
        raise click.BadParameter(f"each of {', '.join(RELAYS)}")
    return relays


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
               help=__doc__.replace("\n\n", "\n\n\b\n"))
@click.option("--quick", is_flag=True, help="a tiny end-to-end run (what the test suite checks)")
@click.option("--reps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--duration", type=float, default=10.0, show_default=True, help="seconds per command measurement")
@click.option("--concurrency", default="8,32", show_default=True, callback=_ints)
@click.option("--events", type=int, default=20000, show_default=True,
              help="events preloaded for the projection measurements")
@click.option("--scaling", default="1,2,4", show_default=True, callback=_ints)
@click.option("--fresh-duration", type=float, default=10.0, show_default=True)
@click.option("--fresh-rate", type=float, default=100.0, show_default=True,
              help="orders/s offered while freshness is measured")
@click.option("--relays", default=",".join(RELAYS), show_default=True, callback=_relays,
              help="--infra-only: the outbox relays to measure, one after the other")
@click.option("--no-kafka-restart", "kafka_restart", is_flag=True, flag_value=False, default=True,
              help="skip the freshness timeline through a Kafka restart (also skipped by --quick)")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("GUNICORN_WORKERS", "2")))
@click.option("--threads", type=int, default=lambda: int(os.environ.get("GUNICORN_THREADS", "4")))
@click.option("--worker-class", default=lambda: os.environ.get("GUNICORN_WORKER_CLASS", "gthread"),
              help="gunicorn's worker class for ours and the baselines alike (gthread, sync)")
@click.option("--infra-only", is_flag=True,
              help="ours as host processes on make up's stores (the earlier form), each relay on an instance of"
                   " its own; without it, make up's instance as deployed: its pods through the Ingress")
@click.option("--instance", default="simplecqrs/simplecqrs", show_default=True,
              help="NAMESPACE/NAME of the OrderService the deployed form measures")
@click.option("--no-profile", "profile", is_flag=True, flag_value=False, default=True,
              help="skip the py-spy flame graphs of the deployed form")
@click.option("--out", type=click.Path(path_type=Path), default=OUT / "latest.json", show_default=True)
def command(**options) -> None:
    args = SimpleNamespace(**options)
    if args.quick:
        args.reps, args.duration, args.concurrency, args.events = 1, 1.0, [4], 300
        args.scaling, args.fresh_duration, args.fresh_rate, args.kafka_restart = [1, 2], 2.0, 20.0, False
    args.out.parent.mkdir(parents=True, exist_ok=True)   # before the run: the flame graphs go there too
    r = run(args)
    args.out.write_text(json.dumps(r, indent=1))
    (args.out.parent / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(r, indent=1))
    text = summary(r)
    args.out.with_suffix(".txt").write_text(text + "\n")
    plot(r, args.out.with_suffix(".png"))
    print(text)
    print(f"results: {args.out} (+ .txt, .png)")


def main(argv: list[str] | None = None) -> int:
    """scripts/bench (scripts/host.py calls it with the arguments): 0, 2 for a usage error, 130 when interrupted."""
    return run_click(command, argv, "scripts/bench")


if __name__ == "__main__":
    sys.exit(main())
