"""The write and read stores of an instance (provisioning and deletion, each reported as a
Condition), and what every store step shares: the kept clients, the Result, the failure reasons.
The third store, the topic, is in topics.py.

The work itself is the application's own code, never a copy of it:
  write store  app.writemodel.migrations.provision()/drop()  database, migrations, least-privileged user
  read store   app.readmodel.schema.migrate()/drop()         keyspace and read-model tables

Every ensure_* call is idempotent and returns a Result instead of raising: a store that
fails is a False condition with a reason (Unreachable, AccessDenied, ...), never a crash.
Each looks before it writes (an up-to-date store gets reads only), and the Cassandra session and
the Kafka admin client of an instance are kept between passes (`Clients`), not opened per pass.
"""
from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.cluster import NoHostAvailable
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from app.readmodel import schema
from app.readmodel.session import connect as cassandra_connect
from app.writemodel import db as mysql_db
from app.writemodel import migrations

from .conditions import READ_STORE, WRITE_STORE, Condition, false, true
from .resource import OrderService

APP_USER_HOST = "%"  # pods connect from changing addresses
MYSQL_ACCESS_DENIED = {1044, 1045, 1142, 1227}


class Clients:
    """One Cassandra session and one Kafka admin client per OrderService, kept between passes and
    replaced when the settings they were opened with change.  Callers hold the object's lock
    (reconcile.serialized), so one client is never used by two threads at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str], tuple[Any, Any]] = {}   # (ns, name, kind) -> (key, client)

    def get(self, osvc: OrderService, kind: str, key: Any, opener: Callable[[], Any]) -> Any:
        slot = (osvc.namespace, osvc.name, kind)
        with self._lock:
            held = self._open.get(slot)
        if held is not None and held[0] == key and not _closed(held[1]):
            return held[1]
        if held is not None:
            _close(held[1])
        client = opener()                       # outside the lock: it may wait for a store
        with self._lock:
            self._open[slot] = (key, client)
        return client

    def forget(self, osvc: OrderService, kind: str | None = None) -> None:
        """Close the instance's clients (one kind, or all): after an error, or when it is deleted."""
        with self._lock:
            slots = [k for k in self._open if k[:2] == (osvc.namespace, osvc.name) and kind in (None, k[2])]
            held = [self._open.pop(k)[1] for k in slots]
        for client in held:
            _close(client)

    def close_all(self) -> None:
        with self._lock:
            held = [c for _, c in self._open.values()]
            self._open.clear()
        for client in held:
            _close(client)


def _closed(client: Any) -> bool:
    return bool(getattr(client, "is_shutdown", False))


def _close(client: Any) -> None:
    try:
        if hasattr(client, "cluster"):          # a Cassandra session: its Cluster owns the threads
            client.cluster.shutdown()
        else:
            client.close()
    except Exception:  # noqa: BLE001, S110 - closing a client that is already broken
        pass


CLIENTS = Clients()


@dataclass
class Result:
    condition: Condition
    events: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) of changes made now


def migrated(where: str, applied: list[str]) -> list[tuple[str, str]]:
    """The MigrationsApplied event of a step, also when a later migration failed: what is done is
    said in the pass that did it (the next pass finds it done and has nothing to say)."""
    return [("MigrationsApplied", f"{where}: applied {', '.join(applied)}")] if applied else []


def failure(type_: str, where: str, exc: BaseException) -> Condition:
    """A False condition naming the store and the error (driver messages carry no passwords)."""
    return false(type_, reason_for(exc), f"{where}: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """One line: the error's type and message (the apiserver's own message for an API error)."""
    text = exc.summary() if isinstance(exc, DynamicApiError) else exc
    return " ".join(f"{type(exc).__name__}: {text}".split())[:600]


class StoreWaiting(RuntimeError):
    """Not an error of the store: a step waits for something (Strimzi, most often), and says so."""
    reason = "Waiting"


def reason_for(exc: BaseException) -> str:
    if isinstance(exc, StoreWaiting):
        return exc.reason
    if isinstance(exc, NoHostAvailable):
        errors = list(getattr(exc, "errors", {}).values())
        return "AccessDenied" if any(isinstance(e, AuthenticationFailed) for e in errors) else "Unreachable"
    if isinstance(exc, AuthenticationFailed):
        return "AccessDenied"
    if mysql_db.error_code(exc) in MYSQL_ACCESS_DENIED:
        return "AccessDenied"
    if isinstance(exc, ApiException) and exc.status in (401, 403):
        return "AccessDenied"
    if mysql_db.is_connection_error(exc) or isinstance(
            exc, (OperationTimedOut, KafkaTimeoutError, KafkaConnectionError)):
        return "Unreachable"
    return "ProvisioningFailed"


# ---------------------------------------------------------------- write store (MySQL)
def ca_file(osvc: OrderService, pem: str) -> str:
    """The instance's MySQL CA as a file for the operator's own connections ("" without one).

    pymysql (ssl.SSLContext) takes a CA from a file only; the operator's /tmp is its own emptyDir."""
    if not pem:
        return ""
    path = Path(tempfile.gettempdir()) / "simplecqrs-operator" / f"{osvc.uid}-mysql-ca.pem"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if not path.exists() or path.read_text() != pem:
        path.write_text(pem)
    return str(path)


def ensure_write_store(osvc: OrderService, admin: tuple[str, str], passwords: tuple[str, str], ca_pem: str = "") -> Result:
    """The database, its migrations, and the two users (`passwords`: the application's, the relay's)."""
    m = osvc.mysql
    where = f"MySQL {m.host}:{m.port}"
    applied: list[str] = []
    try:
        migrations.provision(osvc.mysql_settings(admin=admin, app_password=passwords[0], ca_file=ca_file(osvc, ca_pem)),
                             host=APP_USER_HOST, relay=(m.relay_user, passwords[1]), binlog=m.outbox_relay == "binlog",
                             applied=applied)
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        return Result(failure(WRITE_STORE, where, exc), migrated(f"database {m.database}", applied))
    return Result(true(WRITE_STORE, "Provisioned", f"database {m.database} on {m.host}:{m.port}; user "
                       f"{m.app_user} has {migrations.APP_PRIVILEGES} on it; user {m.relay_user} has the outbox"
                       f" tables{' and replication' if m.outbox_relay == 'binlog' else ''}"),
                  migrated(f"database {m.database}", applied))


def drop_write_store(osvc: OrderService, admin: tuple[str, str], ca_pem: str = "") -> None:
    migrations.drop(osvc.mysql_settings(admin=admin, ca_file=ca_file(osvc, ca_pem)), host=APP_USER_HOST,
                    relay_user=osvc.mysql.relay_user)


# ---------------------------------------------------------------- read store (Cassandra)
def ensure_read_store(osvc: OrderService, credentials: tuple[str, str] | None) -> Result:
    c = osvc.cassandra
    where = f"Cassandra {','.join(c.contact_points)}:{c.port}"
    settings = osvc.cassandra_settings(credentials)
    applied: list[str] = []
    try:
        session = CLIENTS.get(osvc, "cassandra", settings,
                              lambda: cassandra_connect(settings, keyspace=False, request_timeout=60))
        schema.migrate(session, settings, applied)
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        CLIENTS.forget(osvc, "cassandra")       # the next pass connects afresh
        return Result(failure(READ_STORE, where, exc), migrated(f"keyspace {c.keyspace}", applied))
    return Result(true(READ_STORE, "Provisioned", f"keyspace {c.keyspace} ({c.replication_setting}) "
                       "with the read-model tables"), migrated(f"keyspace {c.keyspace}", applied))


def drop_read_store(osvc: OrderService, credentials: tuple[str, str] | None) -> None:
    settings = osvc.cassandra_settings(credentials)
    session = cassandra_connect(settings, keyspace=False, request_timeout=60)
    try:
        schema.drop(session, settings)
    finally:
        session.cluster.shutdown()
