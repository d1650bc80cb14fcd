"""Session fixtures on the real local stack (MariaDB, Kafka, Cassandra, kube-apiserver).

`make test` starts the stack before pytest; run alone, `pytest tests/x.py`
starts whatever is not running (and leaves it running).  Every test run gets
its own names, so runs never see each other's data:

    MySQL database + app user   simplecqrs_t<id>
    Kafka topics + group        OnNewOrder-t<id>, OnNewOrder-t<id>.DLQ
    Cassandra keyspace          simplecqrs_t<id>
    Kubernetes namespace        simplecqrs-t<id>
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import broker  # noqa: E402
from app.config import CassandraSettings, KafkaSettings, MySQLSettings, Settings  # noqa: E402
from scripts.stack import core  # noqa: E402
from scripts.stack.credentials import credentials  # noqa: E402

RUN_ID = os.environ.get("SIMPLECQRS_TEST_RUN_ID") or secrets.token_hex(3)


@pytest.fixture(scope="session")
def stack():
    """The infrastructure, started if needed."""
    from scripts.stack.__main__ import bring_up, infrastructure

    comps = infrastructure()
    if not all(c.running() for c in comps):
        bring_up(comps)
    return {c.name: c for c in comps}


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def admin_mysql(stack) -> MySQLSettings:
    creds = credentials()
    return MySQLSettings(host="127.0.0.1", port=3306, database="mysql", user="", password="",
                         admin_user=creds["MYSQL_ADMIN_USER"], admin_password=creds["MYSQL_ADMIN_PASSWORD"])


def make_settings(admin_mysql: MySQLSettings, suffix: str, partitions: int = 3) -> Settings:
    name = f"simplecqrs_t{suffix}"
    return Settings(
        mysql=replace(admin_mysql, database=name, user=f"app_t{suffix}"[:32], password=secrets.token_urlsafe(18)),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9092", topic=f"OnNewOrder-t{suffix}",
                            dead_letter_topic=f"OnNewOrder-t{suffix}.DLQ", consumer_group=f"projector-t{suffix}"),
        cassandra=CassandraSettings(contact_points="127.0.0.1", port=9042, local_dc="datacenter1", keyspace=name),
    )


def provision(settings: Settings, partitions: int = 3) -> None:
    from app.readmodel import schema
    from app.readmodel.session import connect
    from app.writemodel import migrations

    migrations.provision(settings.mysql, host="127.0.0.1")
    session = connect(settings.cassandra, keyspace=False, request_timeout=60)
    try:
        schema.migrate(session, settings.cassandra)
    finally:
        session.cluster.shutdown()
    admin = broker.admin(settings.kafka)
    try:
        broker.ensure_topic(admin, settings.kafka.topic, partitions)
        broker.ensure_topic(admin, settings.kafka.dead_letter_topic, 1)
    finally:
        admin.close()


def deprovision(settings: Settings) -> None:
    from app.readmodel import schema
    from app.readmodel.session import connect
    from app.writemodel import migrations

    migrations.drop(settings.mysql, host="127.0.0.1")
    session = connect(settings.cassandra, keyspace=False, request_timeout=60)
    try:
        schema.drop(session, settings.cassandra)
    finally:
        session.cluster.shutdown()
    admin = broker.admin(settings.kafka)
    try:
        admin.delete_topics([settings.kafka.topic, settings.kafka.dead_letter_topic])
    except Exception:  # noqa: BLE001 - best effort
        pass
    finally:
        admin.close()


@pytest.fixture(scope="session")
def settings(admin_mysql) -> Settings:
    """A provisioned, isolated instance for this test run (removed at the end)."""
    s = make_settings(admin_mysql, RUN_ID)
    provision(s)
    yield s
    if os.environ.get("SIMPLECQRS_KEEP_TEST_DATA") != "1":
        deprovision(s)


@pytest.fixture
def fresh_settings(admin_mysql, request):
    """An instance of its own for one test (for tests that need an empty topic or model)."""
    s = make_settings(admin_mysql, f"{RUN_ID}{uuid.uuid4().hex[:4]}")
    provision(s)
    yield s
    deprovision(s)


def settings_env(s: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MYSQL_HOST": s.mysql.host, "MYSQL_PORT": str(s.mysql.port), "MYSQL_DATABASE": s.mysql.database,
        "MYSQL_USER": s.mysql.user, "MYSQL_PASSWORD": s.mysql.password,
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers, "KAFKA_TOPIC": s.kafka.topic,
        "KAFKA_DLQ_TOPIC": s.kafka.dead_letter_topic, "KAFKA_CONSUMER_GROUP": s.kafka.consumer_group,
        "CASSANDRA_CONTACT_POINTS": s.cassandra.contact_points, "CASSANDRA_PORT": str(s.cassandra.port),
        "CASSANDRA_KEYSPACE": s.cassandra.keyspace, "CASSANDRA_LOCAL_DC": s.cassandra.local_dc,
        "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO",
    })
    env.pop("MYSQL_ADMIN_USER", None)
    env.pop("MYSQL_ADMIN_PASSWORD", None)
    env.update(extra)
    return env


class Proc:
    """A real simplecqrs process started by a test, with its log under .local/logs/tests/."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env = name, argv, env
        self.log = core.LOGS / "tests" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.signal(15)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(9)
                self.proc.wait(10)
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        return core._tail(self.log, n)


class ProcessDied(AssertionError):
    pass


def _alive_or_die(p: "Proc") -> bool:
    if not p.alive():
        raise ProcessDied(f"{p.name} exited with {p.proc.returncode}")
    return True


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ProcessDied:
            raise
        except Exception as e:  # noqa: BLE001
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def start_api(s: Settings, name: str, **env: str) -> tuple[Proc, str]:
    import requests

    port = free_port()
    p = Proc(name, [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "python:app.gunicorn_conf", "app.wsgi:app"],
             settings_env(s, API_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS=env.pop("GUNICORN_WORKERS", "2"),
                          PROMETHEUS_MULTIPROC_DIR=str(core.RUN / f"metrics-{name}-{port}"), **env)).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _alive_or_die(p) and requests.get(f"{url}/healthz", timeout=2).status_code == 200, 60, f"{name} up")
    except AssertionError:
        p.stop()
        raise AssertionError(f"{name} did not start:\n{p.tail()}") from None
    return p, url


def start_consumer(s: Settings, name: str, **env: str) -> Proc:
    import requests

    port = free_port()
    p = Proc(name, [sys.executable, "-m", "consumer.main"],
             settings_env(s, CONSUMER_METRICS_PORT=str(port), **env)).start()
    p.metrics_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _alive_or_die(p) and requests.get(f"{p.metrics_url}/healthz", timeout=2).status_code == 200, 60,
                 f"{name} up")
    except AssertionError:
        p.stop()
        raise AssertionError(f"{name} did not start:\n{p.tail()}") from None
    return p


@pytest.fixture(scope="session")
def api(settings):
    """One API (command + query routes, outbox relay inside) for the session's instance."""
    p, url = start_api(settings, "api-session")
    yield url
    p.stop()


@pytest.fixture(scope="session")
def consumers(settings):
    procs = [start_consumer(settings, f"consumer-session-{i}") for i in (1, 2)]
    yield procs
    for p in procs:
        p.stop()
