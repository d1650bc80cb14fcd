"""Command side on real Kafka and each real write store (Oracle MySQL and MariaDB): POST /orders,
the outbox, idempotency, outages."""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import on_each_write_store, start_api, wait_for
from support import admin_connection, events_on_topic, mysql, order, post, unpublished

from scripts.stack import kafka as stack_kafka

pytestmark = pytest.mark.both_write_stores
admin_mysql, settings, api = on_each_write_store()


def test_post_creates_one_order_one_customer_one_event(api, settings):
    body = order()
    r = post(api, body)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    assert r.headers["Location"] == f"/orders/{oid}"
    assert uuid.UUID(oid)
    rows = mysql(settings, "SELECT customer_email, description, quantity FROM orders WHERE id = %s", (oid,))
    assert rows == [(body["email"].lower(), body["description"], body["quantity"])]
    assert mysql(settings, "SELECT first_name, last_name FROM customers WHERE email = %s", (body["email"],)) == [
        (body["firstName"], body["lastName"])]
    evs = wait_for(lambda: [e for e in events_on_topic(settings) if e["orderId"] == oid], 30, "the event")
    assert len(evs) == 1
    ev = evs[0]
    assert {k: ev[k] for k in ("eventName", "description", "quantity", "email", "firstName", "lastName")} == {
        "eventName": "OnNewOrder", **{k: body[k] for k in ("description", "quantity", "firstName", "lastName")},
        "email": body["email"]}
    assert ev["schemaVersion"] == 1 and ev["sequence"] >= 1 and uuid.UUID(ev["eventId"])
    from support import read_topic

    rec = [r for r in read_topic(settings) if json.loads(r.value)["orderId"] == oid][0]
    assert rec.key == oid.encode()
    assert dict(rec.headers)["eventId"] == ev["eventId"].encode()
    wait_for(lambda: unpublished(settings) == 0, 30, "the relay's count of unpublished events back to 0")


def test_the_app_user_logs_in_the_way_each_server_defaults_to(api, settings, write_store):
    """Oracle MySQL: caching_sha2_password, and every connection of the API and relay over TLS
    (PyMySQL's default PREFERRED mode takes the TLS the server offers).  MariaDB 10.11:
    mysql_native_password; the local MariaDB offers no TLS."""
    assert post(api, order()).status_code == 201  # the API and relay hold connections now
    (plugin,) = mysql(settings, "SELECT plugin FROM mysql.user WHERE user = %s", (settings.mysql.user,))[0]
    if write_store.name == "mariadb":
        assert plugin == "mysql_native_password"
        return
    assert plugin == "caching_sha2_password"
    tls = mysql(settings, "SELECT s.VARIABLE_VALUE FROM performance_schema.threads t"
                " JOIN performance_schema.status_by_thread s USING (THREAD_ID)"
                " WHERE t.PROCESSLIST_USER = %s AND s.VARIABLE_NAME = 'Ssl_version'", (settings.mysql.user,))
    assert tls and {v for (v,) in tls} <= {"TLSv1.2", "TLSv1.3"}, tls


def test_fifty_concurrent_first_orders_for_one_email(api, settings):
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda i: post(api, order(email=email, description=f"order {i}")), range(50)))
    assert Counter(r.status_code for r in responses) == {201: 50}, [r.text for r in responses if r.status_code != 201]
    ids = {r.json()["id"] for r in responses}
    assert mysql(settings, "SELECT COUNT(*) FROM customers WHERE email = %s", (email,)) == [(1,)]
    assert mysql(settings, "SELECT COUNT(*) FROM orders WHERE customer_email = %s", (email,)) == [(50,)]
    evs = wait_for(lambda: (lambda e: e if len(e) >= 50 else None)(
        [e for e in events_on_topic(settings) if e["email"] == email]), 60, "50 events")
    assert {e["orderId"] for e in evs} == ids and len(evs) == 50
    assert len({e["sequence"] for e in evs}) == 50


def test_idempotent_retry_makes_one_order_and_one_event(api, settings):
    key = f"key-{uuid.uuid4()}"
    body = order()
    first = post(api, body, key=key)
    second = post(api, body, key=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.headers["Idempotent-Replayed"] == "true"
    oid = first.json()["id"]
    assert mysql(settings, "SELECT COUNT(*) FROM orders WHERE customer_email = %s", (body["email"],)) == [(1,)]
    reused = post(api, dict(body, quantity=7), key=key)
    assert reused.status_code == 409 and reused.json()["error"] == "idempotency_key_reused"
    evs = wait_for(lambda: [e for e in events_on_topic(settings) if e["email"] == body["email"]], 30, "the event")
    assert [e["orderId"] for e in evs] == [oid]


def test_concurrent_retries_with_one_key_make_one_order(api, settings):
    key = f"key-{uuid.uuid4()}"
    body = order()
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: post(api, body, key=key), range(10)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert mysql(settings, "SELECT COUNT(*) FROM orders WHERE customer_email = %s", (body["email"],)) == [(1,)]


def test_health_ready_metrics_openapi(api):
    assert requests.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{api}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"]["mysql"] == "ok"
    post(api, order())
    text = requests.get(f"{api}/metrics", timeout=5).text
    for name in ("simplecqrs_http_requests_total", "simplecqrs_http_request_duration_seconds_bucket",
                 "simplecqrs_outbox_backlog", "simplecqrs_outbox_publish_duration_seconds",
                 "simplecqrs_outbox_publish_failures_total"):
        assert name in text, name
    doc = requests.get(f"{api}/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.") and "post" in doc["paths"]["/orders"]
    r = requests.get(f"{api}/healthz", timeout=5)
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.faults
def test_kafka_down_orders_still_accepted_then_published_once(fresh_settings, stack):
    """Kafka away (every broker unreachable): POST keeps answering 201; once it is back each order has its
    event, without operator action.

    An instance of its own: with the module's API (and its relay) on the same database, that relay
    holds the backlog's rows locked while it fails, this relay's SKIP LOCKED finds nothing to do,
    and its turn counts as a success (its /readyz reports its own last attempt)."""
    settings = fresh_settings
    proc, url = start_api(settings, "api-kafka-outage", OUTBOX_POLL_INTERVAL_SECONDS="0.5",
                          OUTBOX_STALL_SECONDS="20", OUTBOX_MAX_BACKOFF_SECONDS="2")
    relay = proc.procs[1]
    outage = contextlib.ExitStack()
    try:
        outage.enter_context(stack_kafka.cut_off())
        ids = []
        for _ in range(10):
            r = post(url, order())
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        ready = requests.get(f"{url}/readyz", timeout=10).json()
        assert ready["checks"]["mysql"] == "ok"
        # A backlog and nothing published for longer than OUTBOX_STALL_SECONDS, but Kafka does not
        # answer: the relay stays live (a restart would not help), it is only not ready.
        time.sleep(24)  # the bound must exceed the 15 s flush timeout plus the backoff cap (README)
        assert requests.get(f"{relay.metrics_url}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{relay.metrics_url}/readyz", timeout=5).status_code == 503
        outage.close()                                   # Kafka back
        evs = wait_for(lambda: (lambda e: e if set(ids) <= {x["orderId"] for x in e} else None)(
            events_on_topic(settings)), 120, "the backlog to drain")
        per_order = Counter(e["orderId"] for e in evs if e["orderId"] in ids)
        assert set(per_order) == set(ids)
        # At most one event id per order; duplicates on the wire (if any) carry the same eventId.
        ids_per_order = {oid: {e["eventId"] for e in evs if e["orderId"] == oid} for oid in ids}
        assert all(len(v) == 1 for v in ids_per_order.values()), ids_per_order
        wait_for(lambda: unpublished(settings) == 0,
                 60, "an empty outbox backlog")
    finally:
        outage.close()
        proc.stop()


@pytest.mark.faults
def test_mysql_down_answers_503_then_recovers_without_restart(api, settings, write_store):
    def readiness_burst() -> list[int]:  # concurrent, so that every worker thread answers some
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda _: requests.get(f"{api}/readyz", timeout=10).status_code, range(48)))

    assert set(readiness_burst()) == {200}  # every thread now holds a pooled connection
    write_store.stop()
    try:
        r = post(api, order(), timeout=30)
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"] == "unavailable"
        assert requests.get(f"{api}/readyz", timeout=10).status_code == 503
    finally:
        write_store.up()
    # Every worker thread's pooled connection died with the server: readiness must not report that.
    assert set(readiness_burst()) == {200}
    r = wait_for(lambda: (lambda x: x if x.status_code == 201 else None)(post(api, order())), 30, "a 201 again")
    assert r.status_code == 201


@pytest.mark.parametrize("relay", ["poll", "binlog"])
def test_the_relay_prunes_until_caught_up(fresh_settings, relay):
    """Old published rows and idempotency keys beyond one batch (and beyond the former cap of
    10,000 per 300 s) are all pruned by one relay; recent and unpublished rows stay.  The binlog
    relay, which marks no row, prunes by creation time the rows at or below its saved position."""
    from scripts.stack.instance import start_relay

    s = fresh_settings
    old, n = "UTC_TIMESTAMP(3) - INTERVAL 2 DAY", 12000
    conn = admin_connection(s, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at, published_at)"
                            f" VALUES (%s, 'OnNewOrder', %s, '{{}}', {old}, {old})",
                            [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(n)])
            cur.executemany(f"INSERT INTO idempotency_keys (idem_key, request_hash, order_id, created_at)"
                            f" VALUES (%s, %s, %s, {old})", [(f"k{i}", "0" * 64, str(uuid.uuid4())) for i in range(n)])
            cur.execute("INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at, published_at)"
                        " VALUES (%s, 'OnNewOrder', %s, '{}', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
                        (str(uuid.uuid4()), str(uuid.uuid4())))
        conn.commit()
    finally:
        conn.close()
    relay = start_relay(s, f"relay-prune-{relay}", OUTBOX_RELAY=relay)
    try:
        wait_for(lambda: mysql(s, "SELECT COUNT(*) FROM outbox") == [(1,)]
                 and mysql(s, "SELECT COUNT(*) FROM idempotency_keys") == [(0,)], 60, "the relay to prune everything old")
    finally:
        relay.stop()
    assert "caught_up" in relay.tail(20)


# ---------------------------------------------------------------- provisioning (what the operator runs each resync)
def password_last_changed(s, user: str, host: str) -> int:
    """When the user's password was last set (MariaDB keeps it in mysql.global_priv, MySQL in mysql.user)."""
    try:
        rows = mysql(s, "SELECT JSON_VALUE(Priv, '$.password_last_changed') FROM mysql.global_priv "
                        "WHERE User = %s AND Host = %s", (user, host))
    except Exception:  # noqa: BLE001 - not MariaDB
        rows = mysql(s, "SELECT UNIX_TIMESTAMP(password_last_changed) FROM mysql.user WHERE User = %s AND Host = %s",
                     (user, host))
    return int(rows[0][0])


def test_provisioning_an_up_to_date_store_changes_nothing_and_repairs_drift(fresh_settings):
    """provision() runs on every operator resync: when the database is up to date and the user logs
    in with its grants, nothing is written (no ALTER USER each minute: it fills the binlog and fails
    under password_history); a changed password or a revoked grant is repaired."""
    from app.writemodel import migrations

    s, host = fresh_settings.mysql, "127.0.0.1"
    before = password_last_changed(fresh_settings, s.user, host)
    time.sleep(1.1)                                     # the timestamp counts seconds
    assert migrations.pending_for(s) == []
    assert migrations.provision(s, host=host) == []
    assert migrations.ensure_app_user(s, host=host) == []
    assert password_last_changed(fresh_settings, s.user, host) == before

    mysql(fresh_settings, f"REVOKE DELETE ON `{s.database}`.* FROM %s@%s", (s.user, host))
    assert migrations.app_user_state(s) == "no-grants"
    assert migrations.ensure_app_user(s, host=host) == ["grants"]
    mysql(fresh_settings, "ALTER USER %s@%s IDENTIFIED BY %s", (s.user, host, "someone-else's"))
    assert migrations.app_user_state(s) == "no-login"
    assert migrations.ensure_app_user(s, host=host) == ["password", "grants"]
    assert migrations.app_user_state(s) == "ok"
