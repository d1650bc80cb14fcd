"""The binlog relay (OUTBOX_RELAY=binlog, app/relay/binlog.py) against the real servers, MySQL and MariaDB.

Each test runs the relay as its own process, as its own MySQL user (replication privileges and the
outbox tables, nothing else), on an instance of its own, and reads what reached the real Kafka topic.
Its failure modes: MySQL restarted under it, the binlog purged past its saved position, a transaction
larger than one batch, a second relay beside it; killed between publishing and saving its position is a
scenario of the fault suite (tests/test_faults.py), under load.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pymysql
import pytest
import requests
from conftest import on_each_write_store, start_api, wait_for
from support import admin_connection, events_on_topic, mysql, order, post

from scripts.stack.instance import relay_login, settings_env, start_relay

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.both_write_stores]
admin_mysql, settings, api = on_each_write_store()
BINLOG = {"OUTBOX_RELAY": "binlog", "OUTBOX_MAX_BACKOFF_SECONDS": "2"}


def saved_position(s) -> tuple | None:
    rows = mysql(s, "SELECT log_file, log_pos, last_seq FROM outbox_relay WHERE name = 'binlog'")
    return rows[0] if rows else None


def seqs_on_topic(s) -> list[int]:
    return [e["sequence"] for e in events_on_topic(s)]


def outbox_seqs(s) -> set[int]:
    return {row[0] for row in mysql(s, "SELECT seq FROM outbox")}


def all_published(s) -> bool:
    return outbox_seqs(s) <= set(seqs_on_topic(s))


def relay_metric(relay, name: str) -> float | None:
    for line in requests.get(f"{relay.metrics_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def start_following(s, name: str):
    """The API and its binlog relay, once the relay follows the binlog: its first start hands over
    what the table holds and then saves its first position.  An order committed during that hand-over
    is published twice, by design (the projection drops the duplicate), so the tests that count each
    event once post only after it (a cold suite's first relay took 0.4 s, and two orders raced it)."""
    group, url = start_api(s, name, **BINLOG)
    try:
        wait_for(lambda: saved_position(s) is not None, 60, "the relay's first position saved")
    except AssertionError:
        group.stop()
        raise
    return group, url


def test_publishes_each_committed_order_in_binlog_order_marks_no_row_and_saves_its_position(fresh_settings):
    s = fresh_settings
    group, url = start_following(s, "api-binlog")
    try:
        ids = [post(url, order(quantity=1 + i % 5)).json()["id"] for i in range(40)]
        wait_for(lambda: all_published(s), 60, "the 40 events on the topic")
        events = events_on_topic(s)
        assert sorted(e["orderId"] for e in events) == sorted(ids)
        assert len({e["eventId"] for e in events}) == 40, "each event once"
        stored = {r[0]: r[1] for r in mysql(s, "SELECT seq, payload FROM outbox")}
        for e in events:  # the poller's envelope: the stored payload plus its sequence
            assert {k: v for k, v in e.items() if k in json.loads(stored[e["sequence"]])} == json.loads(
                stored[e["sequence"]])
        assert mysql(s, "SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL")[0][0] == 0, \
            "the binlog relay writes no row per event"
        wait_for(lambda: (saved_position(s) or (0, 0, 0))[2] == max(stored), 10, "the position saved past the last")
        health = requests.get(f"{url}/readyz", timeout=5).json()
        assert health["checks"]["publishing"] == "ok", health
    finally:
        group.stop()


def test_a_migration_that_alters_the_outbox_under_the_relay(fresh_settings):
    """The relay caches each table's layout by its binlog table id (freeze_schema: parsing the table
    map of every transaction again was a quarter of its CPU).  The server gives an altered table a new
    id, so a migration that adds a column before `payload` is read with the new layout."""
    s = fresh_settings
    group, url = start_following(s, "api-binlog-alter")
    try:
        before = [post(url, order(quantity=1)).json()["id"] for _ in range(5)]
        wait_for(lambda: all_published(s), 60, "the first 5 events on the topic")
        mysql(s, "ALTER TABLE outbox ADD COLUMN note VARCHAR(20) NULL AFTER event_type")
        after = [post(url, order(quantity=2)).json()["id"] for _ in range(5)]
        wait_for(lambda: all_published(s), 60, "the 5 events after the migration on the topic")
        events = events_on_topic(s)
        assert sorted(e["orderId"] for e in events) == sorted(before + after)
        assert {e["orderId"]: e["quantity"] for e in events} == {**dict.fromkeys(before, 1),
                                                                 **dict.fromkeys(after, 2)}
    finally:
        group.stop()


def test_the_relay_user_has_no_application_rights(fresh_settings):
    """The relay's own MySQL user reads the binlog and the outbox tables, and nothing else."""
    s = fresh_settings
    user, password = relay_login(s)
    conn = pymysql.connect(host=s.mysql.host, port=s.mysql.port, user=user, password=password, database=s.mysql.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM outbox")
            for statement in ("SELECT * FROM orders", "SELECT * FROM customers",
                              "INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at)"
                              " VALUES ('x', 'x', 'x', 'x', NOW())"):
                with pytest.raises(pymysql.err.OperationalError) as denied:
                    cur.execute(statement)
                assert denied.value.args[0] in (1142, 1143), denied.value  # command or column denied
    finally:
        conn.close()


def test_a_transaction_larger_than_one_batch_is_published_whole_and_saved_once(fresh_settings):
    """A transaction of 230 outbox rows with OUTBOX_BATCH_SIZE=50: the relay flushes in pieces and
    saves the position only after the transaction's last event is acknowledged."""
    s = fresh_settings
    relay = start_relay(s, "relay-big-txn", OUTBOX_BATCH_SIZE="50", **BINLOG)
    try:
        wait_for(lambda: saved_position(s) is not None, 30, "the relay's first position")
        conn = admin_connection(s, autocommit=False)
        with conn.cursor() as cur:
            for i in range(230):
                payload = json.dumps({"eventId": str(uuid.uuid4()), "occurredAt": "2026-12-01T00:00:00.000Z",
                                      "orderId": str(uuid.uuid4()), "description": f"big {i}", "quantity": 1,
                                      "email": "big@example.com", "firstName": "B", "lastName": "T"})
                cur.execute("INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at)"
                            " VALUES (%s, 'OnNewOrder', %s, %s, UTC_TIMESTAMP(3))",
                            (json.loads(payload)["eventId"], json.loads(payload)["orderId"], payload))
        conn.commit()
        conn.close()
        wait_for(lambda: len(seqs_on_topic(s)) >= 230, 60, "the 230 events on the topic")
        assert sorted(seqs_on_topic(s)) == sorted(outbox_seqs(s))
        wait_for(lambda: saved_position(s)[2] == max(outbox_seqs(s)), 10, "the position past the transaction")
    finally:
        relay.stop()


def test_mysql_restarted_under_the_relay(fresh_settings, write_store):
    """The write store stops and starts again while the relay streams: the relay reconnects from its
    last transaction boundary and publishes what was committed before and after."""
    s = fresh_settings
    group, url = start_api(s, "api-restart", **BINLOG)
    try:
        first = [post(url, order()).json()["id"] for _ in range(10)]
        wait_for(lambda: all_published(s), 30, "the first events")
        try:
            write_store.stop()
            time.sleep(3)
        finally:
            write_store.up()
        wait_for(lambda: post(url, order()).status_code == 201, 60, "the API taking orders again")
        more = [post(url, order()).json()["id"] for _ in range(10)]
        wait_for(lambda: all_published(s), 90, "every event after the restart")
        on_topic = {e["orderId"] for e in events_on_topic(s)}
        assert set(first + more) <= on_topic
        assert on_topic == {r[0] for r in mysql(s, "SELECT id FROM orders")}
    finally:
        group.stop()


def test_a_binlog_purged_past_the_saved_position_stops_publishing_until_reset(fresh_settings):
    """The relay is stopped, orders are written, and the binlog is rotated and purged past the saved
    position.  Started again, the relay publishes nothing and says why (log, /readyz, the
    position-lost gauge): never a silent gap.  `simplecqrs relay --reset-position`, the documented
    recovery, makes the next start republish every retained outbox row, then follow the binlog."""
    s = fresh_settings
    relay = start_relay(s, "relay-purge", **BINLOG)
    group, url = start_api(s, "api-purge", relay=False)
    try:
        early = [post(url, order()).json()["id"] for _ in range(5)]
        wait_for(lambda: all_published(s), 30, "the early events")
        relay.stop()
        gap = [post(url, order()).json()["id"] for _ in range(5)]
        saved_file = saved_position(s)[0]

        def purged() -> bool:
            # MariaDB keeps a binlog file until InnoDB has made its transactions durable (its binlog
            # checkpoint), so one PURGE may leave the file: rotate and purge until it is gone.
            mysql(s, "FLUSH BINARY LOGS")
            mysql(s, f"PURGE BINARY LOGS TO '{mysql(s, 'SHOW BINARY LOGS')[-1][0]}'")
            return saved_file not in {row[0] for row in mysql(s, "SHOW BINARY LOGS")}

        wait_for(purged, 30, f"{saved_file} purged", interval=1)
        relay.start()
        wait_for(lambda: relay_metric(relay, "simplecqrs_outbox_position_lost") == 1, 30, "the position reported lost")
        assert requests.get(f"{relay.metrics_url}/readyz", timeout=5).status_code == 503
        assert "saved position is gone" in relay.tail()
        assert not {e["orderId"] for e in events_on_topic(s)} & set(gap), "nothing after the gap was skipped to"
        relay.stop()
        user, password = relay_login(s)
        env = settings_env(s, MYSQL_USER=user, MYSQL_PASSWORD=password, **BINLOG)
        subprocess.run([sys.executable, "-m", "app.cli", "relay", "--reset-position"], env=env, check=True,
                       timeout=60)
        assert saved_position(s) is None
        relay.start()
        later = [post(url, order()).json()["id"] for _ in range(5)]
        wait_for(lambda: set(early + gap + later) <= {e["orderId"] for e in events_on_topic(s)}, 60,
                 "the retained rows republished, then the binlog followed")
        assert relay_metric(relay, "simplecqrs_outbox_position_lost") == 0
    finally:
        group.stop()
        relay.stop()


def test_two_relays_never_stream_at_once(fresh_settings):
    """One relay per API pod: the one holding the stream lock publishes; killed, the other takes over."""
    s = fresh_settings
    first = start_relay(s, "relay-a", **BINLOG)
    wait_for(lambda: saved_position(s) is not None, 30, "the first relay's position")
    second = start_relay(s, "relay-b", **BINLOG)
    group, url = start_api(s, "api-two", relay=False)
    try:
        ids = [post(url, order()).json()["id"] for _ in range(20)]
        wait_for(lambda: all_published(s), 30, "the 20 events")
        time.sleep(2)
        assert len(events_on_topic(s)) == 20, "one relay streamed, not two"
        first.signal(signal.SIGKILL)
        first.proc.wait(10)
        more = [post(url, order()).json()["id"] for _ in range(10)]
        wait_for(lambda: set(ids + more) <= {e["orderId"] for e in events_on_topic(s)}, 60,
                 "the standby relay taking over")
    finally:
        group.stop()
        first.stop()
        second.stop()
