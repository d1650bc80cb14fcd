"""Pure logic: validation, the event schema, identifiers. No stores involved."""
from __future__ import annotations

import json
import re

import pytest

from app import events
from app.order import ValidationFailed, validate_order
from app.readmodel.schema import replication_cql
from app.writemodel.migrations import quote_ident

GOOD = {"description": "repellendus aut et eaque", "quantity": 6, "email": "Alexanne.Glover@augusta.biz",
        "firstName": "Alexanne", "lastName": "Glover"}


def test_valid_order_lowercases_email_and_keeps_text_verbatim():
    o = validate_order(dict(GOOD, description="'; DROP TABLE orders; --"))
    assert o.email == "alexanne.glover@augusta.biz" and o.description == "'; DROP TABLE orders; --"


@pytest.mark.parametrize("patch,field,msg", [
    ({"quantity": True}, "quantity", "integer"),
    ({"quantity": 1.5}, "quantity", "integer"),
    ({"quantity": "6"}, "quantity", "integer"),
    ({"quantity": 0}, "quantity", "between"),
    ({"quantity": 10**12}, "quantity", "between"),
    ({"email": "nope"}, "email", "email"),
    ({"email": 5}, "email", "string"),
    ({"firstName": ""}, "firstName", "empty"),
    ({"lastName": "x" * 101}, "lastName", "at most"),
    ({"description": "a\x00b"}, "description", "control"),
    ({"firstName": "\ud800"}, "firstName", "Unicode"),
    ({"extra": 1}, "extra", "unknown"),
])
def test_each_bad_field_is_named(patch, field, msg):
    with pytest.raises(ValidationFailed) as e:
        validate_order(dict(GOOD, **patch))
    assert msg in e.value.fields[field]


def test_missing_fields_all_named():
    with pytest.raises(ValidationFailed) as e:
        validate_order({})
    assert set(e.value.fields) == {"description", "quantity", "email", "firstName", "lastName"}


def test_event_round_trip():
    ev = events.OnNewOrder(eventId=events.new_event_id(), sequence=7, occurredAt="2026-01-02T03:04:05.678Z",
                           orderId="0a506ec8-0000-4000-8000-000000000000", description="d", quantity=2,
                           email="a@b.c", firstName="A", lastName="B")
    assert events.decode(ev.encode()) == ev
    assert json.loads(ev.encode())["eventName"] == "OnNewOrder"


@pytest.mark.parametrize("value,reason", [
    (b"\xff\xfe", "not JSON"), (b"[1]", "object"), (b'{"eventName":"Other"}', "eventName"),
    (b'{"eventName":"OnNewOrder","schemaVersion":99}', "schemaVersion"),
    (b'{"eventName":"OnNewOrder","schemaVersion":[1]}', "schemaVersion"),   # unhashable: not a TypeError
    (b'{"eventName":"OnNewOrder","schemaVersion":{"v":1}}', "schemaVersion"),
    (b'{"eventName":"OnNewOrder","schemaVersion":1}', "missing"), (None, "empty"),
    (b"{" + b" " * events.MAX_EVENT_BYTES + b"}", "exceeds"),
])
def test_poison_events_are_named(value, reason):
    with pytest.raises(events.PoisonEvent, match=reason):
        events.decode(value)


def test_identifiers_and_replication_are_checked():
    assert quote_ident("simplecqrs_w") == "`simplecqrs_w`"
    with pytest.raises(ValueError):
        quote_ident("x`; DROP")
    assert "NetworkTopologyStrategy" in replication_cql("NetworkTopologyStrategy:dc1=3")
    with pytest.raises(ValueError):
        replication_cql("SimpleStrategy:0")


# ---------------------------------------------------------------- liveness (app/liveness.py)
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_liveness_fails_only_when_work_waits_and_kafka_answers():
    from app.liveness import Progress

    clock = Clock()
    p = Progress(60, clock)
    clock.t += 61
    assert not p.alive(), "a loop that has not turned for the bound is dead"
    p.turned()
    assert p.alive(), "no progress, but Kafka never answered: a restart would not help"
    p.kafka_answered()
    clock.t += 1
    p.turned()
    assert p.stalled_for() == 62 and not p.alive(), "backlog, Kafka answering, nothing moved: stalled"
    p.moved()
    assert p.alive() and p.stalled_for() is None


def test_liveness_waiting_on_the_other_store_is_not_a_stall():
    from app.liveness import Progress

    clock = Clock()
    p = Progress(60, clock)
    for _ in range(10):
        clock.t += 30
        p.kafka_answered()
        p.blocked_elsewhere()  # MySQL (relay) or Cassandra (consumer) failing
        assert p.alive()
    clock.t += 61
    p.turned()
    assert p.alive(), "Kafka last answered a bound ago: not stalled"


# ---------------------------------------------------------------- the projector's commits (consumer/projector.py)
# A scripted consumer and read model: pure logic of which offsets get committed when writes fail
# and partitions move.  The real-stack tests of the same paths are in tests/test_query.py.
def _projector_parts(fail_first: int, on_wait=None):
    import uuid as _uuid
    from concurrent.futures import Future
    from types import SimpleNamespace

    from kafka import TopicPartition

    from app import events
    from app.config import Settings
    from consumer.projector import Projector

    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]

    class Consumer:
        def __init__(self):
            self.assigned, self.commits, self.paused = set(tps), [], set()

        def subscribe(self, topics, listener):
            self.listener = listener

        def assignment(self):
            return set(self.assigned)

        def pause(self, *p):
            self.paused |= set(p)

        def resume(self, *p):
            self.paused -= set(p)

        def poll(self, timeout_ms=0):
            if on_wait:
                on_wait(self)
            return {}

        def commit(self, offsets):
            self.commits.append({tp: o.offset for tp, o in offsets.items()})

        commit_async = commit

    class Model:
        calls = 0

        def state(self):
            return 1, frozenset({1})

        def project_async(self, ev, generations):
            Model.calls += 1
            f = Future()
            if Model.calls <= fail_first:
                f.set_exception(RuntimeError("read store down"))
            else:
                f.set_result(None)
            return [f]

    def record(tp, offset):
        ev = events.OnNewOrder(eventId=str(_uuid.uuid4()), sequence=offset + 1, occurredAt="2026-11-30T00:00:00.000Z",
                               orderId=str(_uuid.uuid4()), description="d", quantity=1, email="a@b.c",
                               firstName="A", lastName="B")
        return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, key=ev.key(),
                               value=ev.encode(), headers=[])

    consumer = Consumer()
    projector = Projector(Settings(), Model(), consumer=consumer, dlq_producer=object())
    projector._wait_paused = lambda seconds, **kw: on_wait and on_wait(consumer)  # no real sleeping
    batch = {tps[0]: [record(tps[0], 0), record(tps[0], 1)], tps[1]: [record(tps[1], 5)]}
    return projector, consumer, batch, tps


def test_a_dead_letter_is_retried_until_delivered_and_given_up_only_when_stopping():
    projector, consumer, batch, tps = _projector_parts(fail_first=0)
    waits: list[float] = []
    projector._wait_paused = waits.append                     # tenacity's sleep: record, do not sleep
    attempts = []

    class Dlq:
        def __init__(self, failures: int):
            self.failures = failures

        def send(self, topic, key, value, headers):
            attempts.append(dict(headers))
            dlq = self

            class Sent:
                def get(self, timeout):
                    if dlq.failures:
                        dlq.failures -= 1
                        raise TimeoutError("Kafka down")
            return Sent()

    rec = batch[tps[0]][0]
    projector.dlq = Dlq(failures=3)
    projector.dead_letter(rec, "bad payload")
    assert len(attempts) == 4 and waits == [0.5, 1, 2]        # doubling, from 0.5 s
    assert attempts[-1]["dlq.error"] == b"bad payload" and attempts[-1]["dlq.origin.offset"] == b"0"

    attempts.clear()
    projector.dlq = Dlq(failures=1)
    projector.running = False                                  # stopping: no endless retry, no commit past it
    with pytest.raises(SystemExit, match="dead-letter"):
        projector.dead_letter(rec, "bad payload")
    assert len(attempts) == 1


def test_projector_commits_the_batch_after_its_writes_succeed():
    projector, consumer, batch, tps = _projector_parts(fail_first=2)  # two failures, then success
    projector.process(batch)
    assert consumer.commits == [{tps[0]: 2, tps[1]: 6}]


def test_projector_commits_at_most_once_per_interval_and_what_is_due_when_it_passes():
    projector, consumer, batch, tps = _projector_parts(fail_first=0)
    projector.process(batch)                                   # the first batch commits at once
    rec = batch[tps[0]][1]
    projector.process({tps[0]: [type(rec)(**{**vars(rec), "offset": 7})]})  # within the interval: no commit
    assert consumer.commits == [{tps[0]: 2, tps[1]: 6}]
    projector._committed_at -= projector.settings.consumer.commit_interval_s
    projector.commit_due()                                     # the interval passed: only what moved
    assert consumer.commits == [{tps[0]: 2, tps[1]: 6}, {tps[0]: 8}]
    projector.commit_due()
    assert len(consumer.commits) == 2, "nothing new projected, nothing committed"


def test_projector_commits_nothing_for_a_partition_revoked_while_its_writes_were_retried():
    def rebalance(consumer):  # partition 0 moves to another member during the retry wait
        if tps[0] in consumer.assigned:
            consumer.assigned.discard(tps[0])
            consumer.listener.on_partitions_revoked({tps[0]})

    projector, consumer, batch, tps = _projector_parts(fail_first=3, on_wait=rebalance)
    projector.process(batch)
    committed = {tp: off for c in consumer.commits for tp, off in c.items()}
    assert tps[0] not in committed, "never commit past events this consumer did not project"
    assert committed == {tps[1]: 6}


def test_backlog_gauge_reports_the_latest_value_of_a_live_worker(tmp_path):
    """Two API workers set the backlog at scrape time; the first then exits (gunicorn's child_exit marks
    it dead).  The gauge must say the live worker's latest value, not the dead worker's higher one."""
    import subprocess
    import sys

    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": "."}
    worker = "import os, sys; from app import metrics; metrics.OUTBOX_BACKLOG.set(int(sys.argv[1])); print(os.getpid())"
    dead = int(subprocess.run([sys.executable, "-c", worker, "5000"], env=env, capture_output=True, text=True,
                              check=True).stdout)
    subprocess.run([sys.executable, "-c", worker, "3"], env=env, capture_output=True, check=True)
    scrape = ("import sys; from prometheus_client import multiprocess; from app import metrics; "
              "multiprocess.mark_process_dead(int(sys.argv[1])); print(metrics.render()[0].decode())")
    out = subprocess.run([sys.executable, "-c", scrape, str(dead)], env=env, capture_output=True, text=True,
                         check=True).stdout
    value = next(float(line.split()[-1]) for line in out.splitlines() if line.startswith("simplecqrs_outbox_backlog"))
    assert value == 3


@pytest.mark.parametrize("mode, ca, expect", [
    ("", "", "preferred"), ("", "/ca.pem", "verify_ca"), ("PREFERRED", "", "preferred"), ("disabled", "", "disabled"),
    ("REQUIRED", "", "required"), ("VERIFY_CA", "", "verify_ca"), ("VERIFY_IDENTITY", "", "verify_identity")])
def test_mysql_ssl_mode_maps_to_what_pymysql_enforces(mode, ca, expect, monkeypatch):
    import ssl

    from app.config import MySQLSettings
    from app.writemodel.db import tls_args

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: None)  # no file read
    args = tls_args(MySQLSettings(ssl_mode=mode, ssl_ca=ca))
    if expect == "preferred":
        assert args == {}  # PyMySQL's default: TLS when offered
    elif expect == "disabled":
        assert args == {"ssl_disabled": True}
    else:  # an SSLContext makes PyMySQL refuse a server without TLS
        ctx = args["ssl"]
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == (ssl.CERT_NONE if expect == "required" else ssl.CERT_REQUIRED)
        assert ctx.check_hostname == (expect == "verify_identity")


def test_an_unknown_mysql_ssl_mode_is_named():
    from app.config import MySQLSettings
    from app.writemodel.db import tls_args

    with pytest.raises(ValueError, match="MYSQL_SSL_MODE"):
        tls_args(MySQLSettings(ssl_mode="ON"))


def test_the_order_upsert_uses_a_row_alias_on_mysql_and_values_on_mariadb():
    from app.writemodel.orders import _ORDER_SQL

    assert "VALUES(" not in _ORDER_SQL["mysql"] and ") AS new ON DUPLICATE KEY" in _ORDER_SQL["mysql"]
    assert "new." not in _ORDER_SQL["mariadb"] and "VALUES(last_seq)" in _ORDER_SQL["mariadb"]
    for sql in _ORDER_SQL.values():  # last_seq is assigned last: later assignments would see the new value
        upsert = sql.split("ON DUPLICATE KEY UPDATE")[1].split(";")[0]
        assert re.findall(r"(\w+) = ", upsert) == ["first_name", "last_name", "updated_at", "last_seq"]


# ---------------------------------------------------------------- the order's declaration (app/order.py, FIELDS)
# Everything that names the order's fields derives them from FIELDS; these pin what the derivations
# produce (the error messages, the event, the SQL and CQL, the OpenAPI schema) so a change shows.
def test_each_error_message_is_the_contract():
    cases = [
        ({"description": ""}, "description", "must not be empty"),
        ({"description": "x" * 501}, "description", "must be at most 500 characters"),
        ({"description": "a\x07b"}, "description", "must contain a visible character and no control characters"),
        ({"firstName": 5}, "firstName", "must be a string"),
        ({"lastName": "\ud800"}, "lastName", "must be valid Unicode (no lone surrogates)"),
        ({"email": "nope"}, "email", "must be an email address such as name@example.com"),
        ({"email": "x" * 10 + "@" + "y" * 241 + ".io"}, "email", "must be at most 254 characters"),
        ({"email": "\u0130" * 64 + "@" + "a" * 180 + ".io"}, "email", "must be at most 254 characters"),  # lower() lengthens
        ({"quantity": 6.5}, "quantity", "must be an integer"),
        ({"quantity": 10_001}, "quantity", "must be between 1 and 10000"),
        ({"coupon": "x"}, "coupon", "unknown field"),
    ]
    for patch, field, message in cases:
        with pytest.raises(ValidationFailed) as e:
            validate_order(dict(GOOD, **patch))
        assert e.value.fields == {field: message}, (patch, e.value.fields)
    with pytest.raises(ValidationFailed) as e:
        validate_order({"quantity": 0, "lastName": "", "email": 1, "zz": 1, "aa": 2})
    # Missing first, then unknown (sorted), then the text fields, then the numbers: the order the 422 lists them in.
    assert list(e.value.fields.items()) == [
        ("description", "is required"), ("firstName", "is required"), ("aa", "unknown field"), ("zz", "unknown field"),
        ("email", "must be a string"), ("lastName", "must not be empty"), ("quantity", "must be between 1 and 10000")]
    assert str(e.value).startswith("description: is required; firstName: is required; aa: unknown field")
    with pytest.raises(ValidationFailed, match="body: must be a JSON object"):
        validate_order([])
    o = validate_order(dict(GOOD, quantity=6.0))
    assert o.quantity == 6 and type(o.quantity) is int


def test_the_order_event_and_the_new_order_carry_the_declared_fields_in_order():
    from dataclasses import fields

    from app.order import FIELDS, NewOrder

    names = [f.name for f in FIELDS]
    assert names == ["description", "quantity", "email", "firstName", "lastName"]
    assert [f.name for f in fields(NewOrder)] == names
    assert [f.name for f in fields(events.OnNewOrder)] == [
        "eventId", "sequence", "occurredAt", "orderId", *names, "eventName", "schemaVersion"]
    assert events._FIELDS == {"eventId": str, "sequence": int, "occurredAt": str, "orderId": str, "description": str,
                              "quantity": int, "email": str, "firstName": str, "lastName": str, "eventName": str,
                              "schemaVersion": int}
    ev = events.OnNewOrder(eventId="e", sequence=1, occurredAt="2026-01-02T03:04:05.678Z", orderId="o",
                           description="d", quantity=2, email="a@b.c", firstName="A", lastName="B")
    assert ev.encode() == (b'{"eventId":"e","sequence":1,"occurredAt":"2026-01-02T03:04:05.678Z","orderId":"o",'
                           b'"description":"d","quantity":2,"email":"a@b.c","firstName":"A","lastName":"B",'
                           b'"eventName":"OnNewOrder","schemaVersion":1}')


def test_the_order_sql_and_its_parameters_follow_the_declaration():
    from datetime import datetime

    from app.order import NewOrder
    from app.writemodel import orders

    assert orders._ORDER_SQL["mysql"] == (
        "INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at) VALUES (%s, %s, %s, %s, %s);"
        "INSERT INTO customers (email, first_name, last_name, created_at, updated_at, last_seq)"
        " VALUES (%s, %s, %s, %s, %s, LAST_INSERT_ID()) AS new ON DUPLICATE KEY UPDATE"
        " first_name = IF(new.last_seq > customers.last_seq, new.first_name, customers.first_name),"
        " last_name = IF(new.last_seq > customers.last_seq, new.last_name, customers.last_name),"
        " updated_at = IF(new.last_seq > customers.last_seq, new.updated_at, customers.updated_at),"
        " last_seq = GREATEST(customers.last_seq, new.last_seq);"
        "INSERT INTO orders (id, customer_email, first_name, last_name, description, quantity, created_at, seq)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, LAST_INSERT_ID());COMMIT")

    class Cursor:
        connection = type("Conn", (), {"get_server_info": lambda self: "8.4.0"})()

        def execute(self, sql, args):
            self.sql, self.args = sql, args

        def nextset(self):
            return False

    cur = Cursor()
    order = NewOrder("desc", 3, "a@b.c", "First", "Last")
    created = orders.insert_order(cur, "oid", order)
    payload = cur.args[3]
    assert cur.sql == orders._ORDER_SQL["mysql"] and cur.args[1:5] == ["OnNewOrder", "oid", payload, created]
    assert cur.args[5:] == ["a@b.c", "First", "Last", created, created, "oid", "a@b.c", "First", "Last", "desc", 3,
                            created]
    assert payload == orders.outbox_payload(cur.args[0], "oid", order, created)
    assert json.loads(payload) == {"eventId": cur.args[0], "occurredAt": events.format_time(created), "orderId": "oid",
                                   "description": "desc", "quantity": 3, "email": "a@b.c", "firstName": "First",
                                   "lastName": "Last"}
    assert list(json.loads(payload)) == ["eventId", "occurredAt", "orderId", "description", "quantity", "email",
                                         "firstName", "lastName"]
    assert isinstance(created, datetime)


def test_the_projection_statements_follow_the_declaration():
    from app.readmodel import store

    assert store._BY_ID_CQL == ("(order_id, description, quantity, email, first_name, last_name, created_at, event_id,"
                                " sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
    assert store._BY_CUSTOMER_CQL == ("(email, created_at, order_id, description, quantity, first_name, last_name,"
                                      " sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
    assert store._CUSTOMER_CQL == "(email, first_name, last_name, sequence) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"


def test_the_published_schema_is_the_declaration_and_agrees_with_the_validator():
    """Every bound the OpenAPI document publishes is the one validate_order() enforces, at its edge."""
    from app.api.openapi import document

    schema = document()["components"]["schemas"]["NewOrder"]
    assert schema["required"] == ["description", "quantity", "email", "firstName", "lastName"]
    assert schema["additionalProperties"] is False
    validate_order(schema["example"])
    for name, prop in schema["properties"].items():
        if prop["type"] == "integer":
            for value, ok in ((prop["minimum"], True), (prop["maximum"], True),
                              (prop["minimum"] - 1, False), (prop["maximum"] + 1, False)):
                body = dict(GOOD, **{name: value})
                assert (name not in _errors(body)) == ok, (name, value)
            continue
        assert re.fullmatch(prop["pattern"], GOOD[name]), name
        longest = ("x" * 60 + "@" + "y" * prop["maxLength"])[:prop["maxLength"] - 3] + ".io" if name == "email" \
            else "x" * prop["maxLength"]
        assert len(longest) == prop["maxLength"] and name not in _errors(dict(GOOD, **{name: longest}))
        assert "at most" in _errors(dict(GOOD, **{name: longest + "x"}))[name]
        assert prop.get("minLength") == 1 and "empty" in _errors(dict(GOOD, **{name: ""}))[name]
    assert schema["properties"]["email"]["description"] == "an email address; stored lower-cased"


def _errors(body: dict) -> dict:
    try:
        validate_order(body)
    except ValidationFailed as e:
        return e.fields
    return {}


def test_ruff_is_clean():
    """The linter configured in pyproject.toml ([tool.ruff]) passes on the whole tree."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(root)], capture_output=True,
                         text=True, cwd=root)
    assert out.returncode == 0, out.stdout[-3000:]
