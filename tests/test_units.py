"""Pure logic: validation, the event schema, identifiers. No stores involved."""
from __future__ import annotations

import json

import pytest

from app import events
from app.api.validation import ValidationFailed, validate_order
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
