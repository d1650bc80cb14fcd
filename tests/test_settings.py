"""The settings: the README's configuration table and app/config.py's VARIABLES agree, name for name and
default for default, and the table-made settings classes read the environment as they always did.
Pure logic and file checks: no stack needed."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from unittest import mock

import pytest

from app import config
from app.config import VARIABLES, load

ROOT = Path(__file__).resolve().parents[1]

# Variables of the table that VARIABLES does not declare, with the file that reads them and why.
READ_ELSEWHERE = {
    # gunicorn_conf.py sets a per-bind-address default into the environment for its workers and
    # prometheus_client; app/metrics.py checks it to merge the workers' metrics.
    "PROMETHEUS_MULTIPROC_DIR": ("app/gunicorn_conf.py", "app/metrics.py"),
}


def table_rows() -> list[tuple[list[str], str]]:
    """The `## Configuration` table of the README: per row, its variables and its default cell."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert names and re.fullmatch(r"`[A-Z0-9_]+`(, `[A-Z0-9_]+`)*", cells[0]), line
        rows.append((names, cells[1]))
    assert rows, "README.md: no configuration table under ## Configuration"
    return rows


def table_defaults() -> dict[str, str | None]:
    """Each variable of the table -> its default as written; "" for none ("—", "— (required)", "empty: ...");
    None where the cell describes a computed default rather than a value."""
    out: dict[str, str | None] = {}
    for names, cell in table_rows():
        if cell.startswith(("—", "empty")):
            values: list[str | None] = [""] * len(names)
        elif re.fullmatch(r"`[^`]*`(, `[^`]*`)*", cell):
            values = re.findall(r"`([^`]*)`", cell)
        else:
            values = [None] * len(names)
        assert len(values) == len(names), f"{names}: one default per variable, got {cell!r}"
        for name, value in zip(names, values, strict=True):
            assert name not in out, f"{name}: two rows of the table"
            out[name] = value
    return out


def test_every_variable_declared_is_in_the_table_with_its_default():
    table = table_defaults()
    for v in VARIABLES:
        assert v.name in table, f"README.md, ## Configuration: no row for {v.name}"
        written = table[v.name]
        assert written is not None, f"{v.name}: the table should write its default, {v.default!r}"
        # Compared as the program reads it: `3` is 3.0, `16384` is 16 * 1024.
        assert (v.parse(written) if written else "") == v.default, \
            f"{v.name}: the table says {written or '—'}, app/config.py {v.default!r}"


def test_every_variable_in_the_table_is_read():
    declared = {v.name for v in VARIABLES}
    for name in table_defaults():
        if name in declared:
            continue
        assert name in READ_ELSEWHERE, f"{name}: in the README's table, but neither in VARIABLES nor READ_ELSEWHERE"
        for path in READ_ELSEWHERE[name]:
            assert f'"{name}"' in (ROOT / path).read_text(), f"{path} does not read {name}"
    assert not declared & READ_ELSEWHERE.keys()


def test_the_settings_classes_keep_their_fields():
    """The keyword names other code builds them with (the operator's resource.py, scripts/stack), in order."""
    expect = {
        config.MySQLSettings: "host port database user password admin_user admin_password connect_timeout ssl_mode "
                              "ssl_ca",
        config.KafkaSettings: "bootstrap_servers topic dead_letter_topic consumer_group linger_ms compression "
                              "security_protocol sasl_mechanism sasl_username sasl_password",
        config.CassandraSettings: "contact_points port local_dc keyspace replication username password",
        config.ApiSettings: "role max_body_bytes max_wait_ms retry_after_s",
        config.OutboxSettings: "relay batch_size poll_interval_s retention_hours max_backoff_s degraded_after_s "
                               "stall_s metrics_port metrics_host",
        config.ConsumerSettings: "max_in_flight max_poll_records stall_s commit_interval_s metrics_port metrics_host",
        config.Settings: "mysql kafka cassandra api outbox consumer log_level",
        config.GunicornSettings: "bind workers threads worker_class timeout graceful_timeout",
    }
    for cls, names in expect.items():
        assert [f.name for f in dataclasses.fields(cls)] == names.split(), cls.__name__
        assert cls.__dataclass_params__.frozen


def test_an_empty_environment_gives_the_defaults_and_hides_passwords():
    with mock.patch.dict(os.environ, {}, clear=True):
        s = load()
    assert (s.mysql.port, s.mysql.connect_timeout, s.api.max_body_bytes, s.outbox.relay) == (3306, 3.0, 16384, "binlog")
    assert s.cassandra.hosts == ["127.0.0.1"] and s.log_level == "INFO"
    with mock.patch.dict(os.environ, {"MYSQL_PASSWORD": "s3cret", "KAFKA_SASL_PASSWORD": "s3cret",
                                      "CASSANDRA_PASSWORD": "s3cret"}, clear=True):
        s = load()
    assert s.mysql.password == "s3cret" and "s3cret" not in repr(s)


@pytest.mark.parametrize("env, attr, value", [
    ({"MYSQL_PORT": "3307"}, "mysql.port", 3307),
    ({"MYSQL_PORT": ""}, "mysql.port", 3306),                      # an empty number is the default
    ({"MYSQL_HOST": ""}, "mysql.host", ""),                        # an empty text stays empty
    ({"OUTBOX_POLL_INTERVAL_SECONDS": "1e-3"}, "outbox.poll_interval_s", 0.001),
    ({"OUTBOX_RELAY": " Poll "}, "outbox.relay", "poll"),
    ({"LOG_LEVEL": "debug"}, "log_level", "debug"),
])
def test_values_are_parsed_by_their_type(env, attr, value):
    with mock.patch.dict(os.environ, env, clear=True):
        s = load()
    group, _, name = attr.rpartition(".")
    assert getattr(getattr(s, group) if group else s, name) == value


@pytest.mark.parametrize("env, message", [
    ({"MYSQL_PORT": "x"}, "environment variable MYSQL_PORT must be an integer, got 'x'"),
    ({"OUTBOX_STALL_SECONDS": "soon"}, "environment variable OUTBOX_STALL_SECONDS must be a number, got 'soon'"),
    ({"OUTBOX_RELAY": "kafka"}, "environment variable OUTBOX_RELAY must be one of binlog, poll, got 'kafka'"),
    ({"OUTBOX_RELAY": ""}, "environment variable OUTBOX_RELAY must be one of binlog, poll, got ''"),
])
def test_a_bad_value_is_named(env, message):
    with mock.patch.dict(os.environ, env, clear=True), pytest.raises(ValueError) as e:
        load()
    assert str(e.value) == message


def test_gunicorn_reads_its_own_from_the_declaration():
    with mock.patch.dict(os.environ, {"API_BIND": "0.0.0.0:8080", "GUNICORN_WORKERS": "3"}, clear=True):
        g = config.GunicornSettings()
        s = load()   # the other processes never read gunicorn's
    assert (g.bind, g.workers, g.threads, g.worker_class, g.timeout, g.graceful_timeout) == (
        "0.0.0.0:8080", 3, 4, "gthread", 30, 20)
    assert not any(f.name == "gunicorn" for f in dataclasses.fields(s))
