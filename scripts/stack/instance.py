"""Isolated simplecqrs instances on the local stack, for tests and benchmarks.

An instance is a MySQL database with its own app user, a Cassandra keyspace
and a pair of Kafka topics, all named after one suffix, provisioned with the
same code the operator and `make up` use.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace

from app import broker
from app.config import CassandraSettings, KafkaSettings, MySQLSettings, Settings

from . import commands, paths
from . import kafka as stack_kafka
from .credentials import credentials

ROOT = paths.ROOT


def http_status(url: str, timeout: float = 2) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_mysql(port: int | None = None) -> MySQLSettings:
    """The local write store's admin login (the chosen server's port unless given)."""
    from . import writestore

    creds = credentials()
    return MySQLSettings(host="127.0.0.1", port=port or writestore.PORT, database="mysql", user="", password="",
                         admin_user=creds["MYSQL_ADMIN_USER"], admin_password=creds["MYSQL_ADMIN_PASSWORD"])


def make_settings(admin_mysql: MySQLSettings, suffix: str) -> Settings:
    name = f"simplecqrs_t{suffix}"
    return Settings(
        mysql=replace(admin_mysql, database=name, user=f"app_t{suffix}"[:32], password=secrets.token_urlsafe(18)),
        kafka=KafkaSettings(bootstrap_servers=stack_kafka.HOST_BOOTSTRAP, topic=f"OnNewOrder-t{suffix}",
                            dead_letter_topic=f"OnNewOrder-t{suffix}.DLQ", consumer_group=f"projector-t{suffix}"),
        cassandra=CassandraSettings(contact_points="127.0.0.1", port=9042, local_dc="datacenter1", keyspace=name),
    )


def relay_login(s: Settings) -> tuple[str, str]:
    """The outbox relay's MySQL user of an instance: named beside the application user, its
    password derived from the application's (both exist only for this instance)."""
    user = "rpl_" + s.mysql.user.removeprefix("app_")
    return user[:32], hashlib.sha256(f"relay:{s.mysql.password}".encode()).hexdigest()[:24]


def provision(settings: Settings, partitions: int = 3) -> None:
    from app.readmodel import schema
    from app.readmodel.session import connect
    from app.writemodel import migrations

    migrations.provision(settings.mysql, host="127.0.0.1", relay=relay_login(settings), binlog=True)
    session = connect(settings.cassandra, keyspace=False, request_timeout=60)
    try:
        schema.migrate(session, settings.cassandra)
    finally:
        session.cluster.shutdown()
    admin = broker.admin(settings.kafka)
    try:
        # As the product's topics on this cluster: a replica on each node, two of them in sync for a write.
        replicated = {"min.insync.replicas": "2"}
        broker.ensure_topic(admin, settings.kafka.topic, partitions, stack_kafka.NODES, replicated)
        broker.ensure_topic(admin, settings.kafka.dead_letter_topic, 1, stack_kafka.NODES, replicated)
    finally:
        admin.close()


def deprovision(settings: Settings) -> None:
    from app.readmodel import schema
    from app.readmodel.session import connect
    from app.writemodel import migrations

    migrations.drop(settings.mysql, host="127.0.0.1", relay_user=relay_login(settings)[0])
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
    """A real simplecqrs process started by a test, with its log under .local/logs/tests/.

    Every start is recorded in Proc.started, so the test suite can stop (and report) any
    process a test left running, whatever the outcome (tests/conftest.py)."""

    started: list[Proc] = []

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env = name, argv, env
        self.log = paths.LOGS / "tests" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.outlives_test = False  # set by a test that hands its process to a longer-lived fixture

    def start(self) -> Proc:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        Proc.started.append(self)
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
        return commands.tail(self.log, n)


class ProcessDied(AssertionError):
    pass


def _alive_or_die(p: Proc) -> bool:
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


class ProcGroup:
    """Processes started and stopped together (the API and its outbox relay)."""

    def __init__(self, *procs: Proc):
        self.procs = list(procs)

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def signal(self, sig: int) -> None:
        for p in self.procs:
            p.signal(sig)

    def stop(self, timeout: float = 20) -> None:
        for p in self.procs:
            p.stop(timeout)

    def tail(self, n: int = 40) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(n)}" for p in self.procs)


def start_relay(s: Settings, name: str, **env: str) -> Proc:
    """The outbox relay (OUTBOX_RELAY from `env`, else the environment's, else the default), as its
    own MySQL user: the relay container's, which holds no application rights."""
    port = free_port()
    user, password = relay_login(s)
    p = Proc(name, [sys.executable, "-m", "app.cli", "relay"],   # `simplecqrs relay`
             settings_env(s, OUTBOX_METRICS_PORT=str(port), MYSQL_USER=user, MYSQL_PASSWORD=password, **env)).start()
    p.metrics_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _alive_or_die(p) and http_status(f"{p.metrics_url}/healthz") == 200, 60, f"{name} up")
    except AssertionError:
        p.stop()
        raise AssertionError(f"{name} did not start:\n{p.tail()}") from None
    return p


def start_api(s: Settings, name: str, *, relay: bool = True, **env: str) -> tuple[ProcGroup, str]:
    """gunicorn serving the API on a free port, plus (unless relay=False) its outbox relay process."""
    port = free_port()
    workers = env.pop("GUNICORN_WORKERS", "2")
    p = Proc(name, [sys.executable, "-m", "app.cli", "api"],   # `simplecqrs api`
             settings_env(s, API_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS=workers,
                          PROMETHEUS_MULTIPROC_DIR=str(paths.RUN / f"metrics-{name}-{port}"), **env)).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _alive_or_die(p) and http_status(f"{url}/healthz") == 200, 60, f"{name} up")
    except AssertionError:
        p.stop()
        raise AssertionError(f"{name} did not start:\n{p.tail()}") from None
    group = ProcGroup(p)
    if relay:
        try:
            group.procs.append(start_relay(s, f"{name}-relay", **env))
        except AssertionError:
            p.stop()
            raise
    return group, url


def start_consumer(s: Settings, name: str, **env: str) -> Proc:
    port = free_port()
    p = Proc(name, [sys.executable, "-m", "app.cli", "consume"],   # `simplecqrs consume`
             settings_env(s, CONSUMER_METRICS_PORT=str(port), **env)).start()
    p.metrics_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _alive_or_die(p) and http_status(f"{p.metrics_url}/healthz") == 200, 60,
                 f"{name} up")
    except AssertionError:
        p.stop()
        raise AssertionError(f"{name} did not start:\n{p.tail()}") from None
    return p
