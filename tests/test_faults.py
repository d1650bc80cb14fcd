"""The fault suite: kill every component under a steady stream of orders, then prove nothing is lost.

Each scenario runs on an instance of its own (database, topic, keyspace) with
an API, its outbox relay and two consumers, while several clients post orders
for a bounded time (loopback only).  Clients retry with the same
Idempotency-Key on a connection error or a 503, as a well-behaved client does.

After each scenario:
* every order a client saw acknowledged with 201 is in MySQL;
* the audit (app/audit.py) reports the read model equal to the write model;
* every event id was projected once in effect (the audit compares every
  field; duplicates on the wire are counted and reported, not hidden);
* clients saw only 201, or 503 with Retry-After while MySQL was down: no 500,
  no request hung past its timeout.
When a scenario does not converge, the failure names the stage that stalled (outbox
backlog, topic, consumer group lag, projection) and the health of each process.
Every test takes the `scenario` fixture (that set-up, on an instance of its own) and says only its
fault and what it expects beyond the promises above; `down_for` takes a component down for a while
and brings it back as its supervisor would.
`make test-faults` runs this file alone; the table is printed at the end.
`make test-soak` repeats the Kafka leader's SIGKILL ten times (marker `soak`: not in `make test`).
"""
from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
from conftest import on_each_write_store, start_api, start_consumer, wait_for
from support import admin_connection, mysql, order, pipeline_stages, post, read_topic, stalled_stage, unpublished

from app.audit import audit
from scripts.stack import kafka as stack_kafka
from scripts.stack import paths, processes, writestore

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.both_write_stores]
admin_mysql, settings, api = on_each_write_store()
CLIENTS = 4
REQUEST_TIMEOUT = 20.0
TABLE: list[dict] = []


@dataclass
class Load:
    """Closed-loop clients posting orders until stopped (bounded by max_orders)."""

    url: str
    max_orders: int = 20000
    acked: set = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    bad: list = field(default_factory=list)        # anything but 201, or 503 without Retry-After
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT * 3)

    def _client(self, i: int) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._lock:
                if self.sent >= self.max_orders:
                    return
                self.sent += 1
            body = {"description": f"fault order {uuid.uuid4().hex[:8]}", "quantity": 1 + self.sent % 9,
                    "email": f"client{i}-{self.sent % 7}@faults.test", "firstName": "Fault", "lastName": f"C{i}"}
            key = str(uuid.uuid4())
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    r = session.post(f"{self.url}/orders", json=body, headers={"Idempotency-Key": key},
                                     timeout=REQUEST_TIMEOUT)
                except requests.Timeout:
                    self._note("timeout", f"no answer within {REQUEST_TIMEOUT}s")
                    continue
                except requests.ConnectionError:
                    self._note("connection error", None)  # a killed worker or a restarting API: retry
                    session = requests.Session()
                    time.sleep(0.2)
                    continue
                self._note(r.status_code, None)
                if r.status_code == 201:
                    with self._lock:
                        self.acked.add(r.json()["id"])
                    break
                if r.status_code == 503 and r.headers.get("Retry-After"):
                    time.sleep(min(float(r.headers["Retry-After"]), 2.0))
                    continue
                self._note("bad", f"{r.status_code} {r.text[:200]} after {time.monotonic() - started:.1f}s")
                break

    def _note(self, status, problem) -> None:
        with self._lock:
            self.statuses[status] += 1
            if problem and status != "connection error":
                self.bad.append(problem)


class Instance:
    """API + relay + two consumers on one isolated instance; the harness restarts what a fault kills."""

    def __init__(self, settings, name: str, **env: str):
        self.settings = settings
        self.api, self.url = start_api(settings, f"api-{name}", OUTBOX_POLL_INTERVAL_SECONDS="0.05",
                                       OUTBOX_MAX_BACKOFF_SECONDS="2", **env)
        self.consumers = [start_consumer(settings, f"consumer-{name}-{i}") for i in (1, 2)]

    def stop(self) -> None:
        for p in [self.api, *self.consumers]:
            p.stop()

    def health(self) -> dict:
        """Each process: alive or exited, and its /healthz answer."""
        out = {}
        for p in [*self.api.procs, *self.consumers]:
            state = "alive" if p.alive() else f"exited {p.proc.returncode}"
            url = getattr(p, "metrics_url", None) or self.url
            try:
                state += f", /healthz {requests.get(f'{url}/healthz', timeout=2).status_code}"
            except requests.RequestException as e:
                state += f", /healthz {type(e).__name__}"
            out[p.name] = state
        return out


def converge(inst: Instance, load: Load, scenario: str) -> dict:
    """Wait until the read model equals the write model, check every promise, record the table row."""
    started = time.monotonic()
    last = {}

    def equal():
        last["r"] = audit(inst.settings)
        return last["r"].equal

    try:
        wait_for(equal, 240, "the audit to report equal", interval=1)
    except AssertionError:
        r = last["r"]
        stages = pipeline_stages(inst.settings)
        raise AssertionError(
            f"{scenario}: stalled at the {stalled_stage(stages, r.orders_read)}\n  stages: {stages}\n"
            f"  processes: {inst.health()}\n  audit: {r.summary()}\n"
            + "\n".join((r.missing + r.extra + r.different)[:10])) from None
    took = time.monotonic() - started
    report = last["r"]
    in_mysql = {row[0] for row in mysql(inst.settings, "SELECT id FROM orders")}
    records = read_topic(inst.settings)
    event_ids = Counter(json.loads(rec.value)["eventId"] for rec in records)
    row = {"scenario": scenario, "sent": load.sent, "acknowledged": len(load.acked), "in_write_model": len(in_mysql),
           "in_read_model": report.orders_read, "duplicates_delivered": sum(n - 1 for n in event_ids.values()),
           "converged_s": round(took, 1), "statuses": dict(load.statuses)}
    TABLE.append(row)
    assert load.acked <= in_mysql, f"acknowledged orders missing from MySQL: {len(load.acked - in_mysql)}"
    assert len(event_ids) == len(in_mysql), "every order has exactly one event id on the topic"
    assert not load.bad, load.bad[:5]
    allowed = {201, 503, "connection error"}
    assert set(load.statuses) <= allowed, load.statuses
    return row


def run_scenario(settings, name: str, fault, *, before: float = 3.0, after: float = 4.0, **env: str) -> dict:
    """`env`: for the API and relay (OUTBOX_RELAY=poll for the poller's own scenario; else the default)."""
    name = f"{name}-{writestore.name_on(settings.mysql.port)}"  # the table says which server
    inst = Instance(settings, name, **env)
    load = Load(inst.url).start()
    try:
        time.sleep(before)
        fault(inst)
        time.sleep(after)
    finally:
        load.stop()
    try:
        row = converge(inst, load, name)
    finally:
        inst.stop()
    assert load.acked, "the clients got no order through at all"
    return row


@pytest.fixture
def scenario(fresh_settings):
    """Every scenario's set-up on the test's own instance: `scenario(name, fault, **env)` starts the API,
    its relay and two consumers, posts orders, runs `fault(inst)` while they flow, then waits for the read
    model and checks every promise (run_scenario); it returns the scenario's row of the table."""
    return functools.partial(run_scenario, fresh_settings)


def down_for(seconds: float, take_down, bring_back) -> None:
    """A component taken down (`take_down`: a SIGKILL, a stop) for `seconds`, then brought back
    (`bring_back`: as its supervisor would), whatever happens in between."""
    try:
        take_down()
        time.sleep(seconds)
    finally:
        bring_back()


def _kafka_away(seconds: float):
    """Every broker unreachable for `seconds` (connections reset), then back."""
    with stack_kafka.cut_off():
        time.sleep(seconds)


def _kill_leader(inst) -> None:
    """SIGKILL the Kafka container of the broker that leads most of the instance's partitions; the
    kubelet starts it again in its pod."""
    counts = stack_kafka.leader_counts(inst.settings.kafka.topic)
    stack_kafka.kill_broker(max(counts, key=counts.get))
    stack_kafka.wait_settled(inst.settings.kafka.topic)    # back, caught up and steady, still under load


def test_kafka_away_for_ten_seconds(scenario, stack):
    row = scenario("kafka-away-10s", lambda inst: _kafka_away(10))
    assert set(row["statuses"]) <= {201}


def test_kafka_away_past_the_producer_delivery_timeout(scenario, stack):
    """Kafka away for longer than delivery_timeout_ms (30 s): batches the relay had already sent expire.

    kafka-python 3.0.12's producer never sends again after that (app/relay/base.py says why); before the
    relay replaced such a producer this scenario stalled at the outbox every time."""
    row = scenario("kafka-away-40s", lambda inst: _kafka_away(40))
    assert set(row["statuses"]) <= {201}


def test_kafka_leader_broker_killed(scenario, stack):
    """The broker leading most of the topic's partitions SIGKILLed: with 3 replicas and
    min.insync.replicas 2 the others take over; no client sees anything but 201."""
    row = scenario("kafka-leader-sigkill", _kill_leader)
    assert set(row["statuses"]) <= {201}


@pytest.mark.soak
@pytest.mark.parametrize("attempt", range(1, 11))
def test_kafka_leader_sigkill_soak(scenario, stack, attempt):
    """`make test-soak`: the leader kill ten times in a row (not part of `make test`)."""
    row = scenario(f"kafka-leader-sigkill #{attempt}", _kill_leader)
    assert set(row["statuses"]) <= {201}


def test_cassandra_killed_for_twenty_seconds(scenario, stack):
    cassandra = stack["cassandra"]
    # .up() waits for the old process and its ports (scripts/stack/core.py)
    row = scenario("cassandra-sigkill",
                   lambda inst: down_for(20, lambda: processes.kill(cassandra.name, signal.SIGKILL), cassandra.up))
    assert set(row["statuses"]) <= {201}


def test_each_consumer_killed_in_turn(scenario):
    def fault(inst: Instance):
        for c in inst.consumers:
            down_for(3, functools.partial(c.signal, signal.SIGKILL), c.start)  # started as a Deployment would
            time.sleep(2)

    row = scenario("consumers-sigkill", fault)
    assert set(row["statuses"]) <= {201}


def test_gunicorn_worker_killed_mid_request_then_api_restarted(scenario):
    def fault(inst: Instance):
        master = inst.api.procs[0].proc.pid
        workers = [int(p) for p in open(f"/proc/{master}/task/{master}/children").read().split()]
        os.kill(workers[0], signal.SIGKILL)  # in the middle of the stream: some request is in flight
        time.sleep(3)
        gunicorn = inst.api.procs[0]
        gunicorn.stop()
        gunicorn.start()
        wait_for(lambda: requests.get(f"{inst.url}/healthz", timeout=2).status_code == 200, 60, "the API back")

    scenario("api-worker-sigkill+restart", fault)


def test_write_store_stopped_and_restarted(scenario, write_store):
    row = scenario("write-store-stop", lambda inst: down_for(8, write_store.stop, write_store.up))
    assert row["statuses"].get(503, 0) > 0, "clients should have seen 503 with Retry-After while MySQL was down"


def kill_relay_while_held(inst: Instance, trigger: str, table: str, event: str) -> None:
    """SIGKILL the instance's relay while a trigger of the test holds one of its statements in MySQL
    (the fault comes from the test, not from product code): `trigger` is created on `table` BEFORE
    `event`, sleeping; once the process list shows it (the trigger's statement, not the relay's), the
    relay is killed, the held statement too, the trigger dropped, and the relay started again as a
    Deployment would."""
    relay = inst.api.procs[1]
    admin = admin_connection(inst.settings)

    def sql(statement: str) -> list:
        with admin.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())

    def held() -> list:
        return sql(f"SELECT id FROM information_schema.processlist WHERE info LIKE 'SET @{trigger}%'")

    try:
        sql("SET SESSION lock_wait_timeout = 30")  # DROP TRIGGER never waits for ever
        sql(f"CREATE TRIGGER {trigger} BEFORE {event} ON {table} FOR EACH ROW SET @{trigger} = SLEEP(60)")
        wait_for(held, 30, f"the relay's {event} on {table} held by the trigger", interval=0.1)
    finally:
        relay.signal(signal.SIGKILL)
        relay.proc.wait(10)
        for (conn_id,) in held():
            sql(f"KILL {int(conn_id)}")
        sql(f"DROP TRIGGER IF EXISTS {trigger}")
        admin.close()
    relay.start()


def test_polling_relay_killed_between_publish_and_marking(scenario):
    """The polling relay (OUTBOX_RELAY=poll) is SIGKILLed after Kafka acknowledged a batch and
    before the rows were marked: a trigger holds its marking UPDATE."""
    row = scenario("poll-relay-killed-before-marking",
                   lambda inst: kill_relay_while_held(inst, "hold_marking", "outbox", "UPDATE"), OUTBOX_RELAY="poll")
    assert row["duplicates_delivered"] > 0, "the killed batch is re-sent: duplicates on the wire, counted"


def test_binlog_relay_killed_between_publish_and_position_save(scenario):
    """The binlog relay (the default) is SIGKILLed after Kafka acknowledged events and before it saved
    the position past them: a trigger holds its position save, as the poller's test holds the
    marking.  Restarted, it reads the binlog again from the saved position and re-sends them."""
    row = scenario("binlog-relay-killed-before-saving",
                   lambda inst: kill_relay_while_held(inst, "hold_save", "outbox_relay", "INSERT"), OUTBOX_RELAY="binlog")
    assert row["duplicates_delivered"] > 0, "the events past the saved position are re-sent: duplicates, counted"


def test_a_relay_under_a_steady_load_longer_than_its_stall_bound_stays_alive(fresh_settings):
    """The other side of the liveness check: a relay that publishes, under a load that always keeps
    something in flight, is alive.  KAFKA_LINGER_MS 200 holds each event a fifth of a second before it
    is sent, and orders come faster than that for three times OUTBOX_STALL_SECONDS: /healthz answers
    200 throughout.  (The binlog relay counted progress only at a moment with nothing in flight; at
    100 orders/s in the pods its liveness probe restarted it after a minute of load.)"""
    from scripts.stack.instance import start_relay

    s = fresh_settings
    api, url = start_api(s, "api-steady", relay=False)
    relay = start_relay(s, "relay-steady", OUTBOX_STALL_SECONDS="5", KAFKA_LINGER_MS="200")
    ids, health = [], []
    try:
        with requests.Session() as http:
            t0 = last_check = time.monotonic()
            while time.monotonic() - t0 < 15:
                ids.append(http.post(f"{url}/orders", json=order(), timeout=10).json()["id"])
                if time.monotonic() - last_check >= 0.5:
                    last_check = time.monotonic()
                    health.append(http.get(f"{relay.metrics_url}/healthz", timeout=5).status_code)
                time.sleep(0.01)
        assert len(ids) > 300 and len(health) >= 25
        assert set(health) == {200}, f"/healthz under load: {health}"
        wait_for(lambda: unpublished(s) == 0, 60, "every event published")
        assert {json.loads(r.value)["orderId"] for r in read_topic(s)} == set(ids)
    finally:
        relay.stop()
        api.stop()


def test_a_relay_that_cannot_publish_while_kafka_answers_fails_liveness(fresh_settings):
    """The relay's liveness check, on a real stall: Kafka answers every request but takes no write.

    The topic's max.message.bytes is set below one event's size, so every produce is refused
    (MESSAGE_TOO_LARGE) while metadata and bootstrap still answer.  (Raising min.insync.replicas
    above the replication factor does not do it: Kafka 4.1 caps it at the replication factor.)  After
    OUTBOX_STALL_SECONDS /healthz answers 503, which makes the pod's liveness probe restart the
    container (charts and operator: livenessProbe on /healthz).  The test then plays the kubelet:
    the topic is repaired, the relay restarted, and the backlog drains."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from app import broker
    from scripts.stack.instance import start_relay

    s = fresh_settings
    api, url = start_api(s, "api-wedge", relay=False)
    relay = start_relay(s, "relay-wedge", OUTBOX_STALL_SECONDS="20", OUTBOX_MAX_BACKOFF_SECONDS="2")
    admin = broker.admin(s.kafka)

    def max_message_bytes(value: str) -> None:
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.kafka.topic,
                                                     {"max.message.bytes": value})])
        assert result["topic"][s.kafka.topic] == "OK", result

    try:
        max_message_bytes("100")
        t0 = time.monotonic()  # the relay's last empty poll, its last progress, is just before this
        ids = [post(url, order(), timeout=10).json()["id"] for _ in range(20)]
        wait_for(lambda: requests.get(f"{relay.metrics_url}/healthz", timeout=5).status_code == 503, 90,
                 "the stalled relay's /healthz to fail")
        stalled_after = time.monotonic() - t0
        assert stalled_after >= 19, f"liveness failed after {stalled_after:.1f}s, before OUTBOX_STALL_SECONDS"
        assert unpublished(s) == 20
        max_message_bytes("1048588")  # Kafka's default
        relay.stop()
        relay = start_relay(s, "relay-wedge-restarted")
        wait_for(lambda: unpublished(s) == 0, 60,
                 "the restarted relay to drain the backlog")
        assert {json.loads(r.value)["orderId"] for r in read_topic(s)} == set(ids)
    finally:
        admin.close()
        relay.stop()
        api.stop()


def write_fault_table() -> str:
    """The table of every scenario run so far, as text; also written to .local/faults/latest.{json,txt}."""
    cols = ["scenario", "sent", "acknowledged", "in_write_model", "in_read_model", "duplicates_delivered",
            "converged_s"]
    widths = [max(len(c), *(len(str(r[c])) for r in TABLE)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in TABLE]
    text = "\n".join(lines)
    out = paths.LOCAL / "faults" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(TABLE, indent=1))
    (out.parent / "latest.txt").write_text(text + "\n")
    return text


@pytest.fixture(scope="module", autouse=True)
def fault_table_written():
    """Whatever ran (`make test-soak` selects no table test), the table lands in .local/faults/."""
    yield
    if TABLE:
        write_fault_table()


def test_zz_print_fault_table():
    """Print the table of every scenario above (runs last in this file)."""
    if not TABLE:
        pytest.skip("no fault scenario ran in this session")
    print("\n" + write_fault_table())
    assert all(r["acknowledged"] <= r["in_write_model"] for r in TABLE)
