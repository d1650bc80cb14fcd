"""The three stores of an instance: provisioning and deletion, each reported as a Condition.

The work itself is the application's own code, never a copy of it:
  write store  app.writemodel.migrations.provision()/drop()  database, migrations, least-privileged user
  read store   app.readmodel.schema.migrate()/drop()         keyspace and read-model tables
  topic        app.broker.ensure_topic()/ensure_topic_config(), or Strimzi KafkaTopic (and KafkaUser) objects

Every ensure_* call is idempotent and returns a Result instead of raising: a store that
fails is a False condition with a reason (Unreachable, AccessDenied, ...), never a crash.
Each looks before it writes (an up-to-date store gets reads only), and the Cassandra session and
the Kafka admin client of an instance are kept between passes (`Clients`), not opened per pass.
"""
from __future__ import annotations

import base64
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.cluster import NoHostAvailable
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from app import broker
from app.readmodel import schema
from app.readmodel.session import connect as cassandra_connect
from app.writemodel import db as mysql_db
from app.writemodel import migrations

from . import children, ownership
from .conditions import READ_STORE, TOPIC, WRITE_STORE, Condition, false, true
from .kube import Kube
from .resource import KAFKA_ROLES, OrderService

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


def failure(type_: str, where: str, exc: BaseException) -> Condition:
    """A False condition naming the store and the error (driver messages carry no passwords)."""
    return false(type_, reason_for(exc), f"{where}: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """One line: the error's type and message (the apiserver's own message for an API error)."""
    text = exc.summary() if isinstance(exc, DynamicApiError) else exc
    return " ".join(f"{type(exc).__name__}: {text}".split())[:600]


def reason_for(exc: BaseException) -> str:
    if isinstance(exc, StrimziDeletionPending):
        return "WaitingForStrimzi"
    if isinstance(exc, StrimziSecretMissing):
        return "KafkaUserSecretMissing"
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
    try:
        applied = migrations.provision(osvc.mysql_settings(admin=admin, app_password=passwords[0],
                                                           ca_file=ca_file(osvc, ca_pem)), host=APP_USER_HOST,
                                       relay=(m.relay_user, passwords[1]), binlog=m.outbox_relay == "binlog")
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        return Result(failure(WRITE_STORE, where, exc))
    events = [("MigrationsApplied", f"database {m.database}: applied {', '.join(applied)}")] if applied else []
    return Result(true(WRITE_STORE, "Provisioned", f"database {m.database} on {m.host}:{m.port}; user "
                       f"{m.app_user} has {migrations.APP_PRIVILEGES} on it; user {m.relay_user} has the outbox"
                       f" tables{' and replication' if m.outbox_relay == 'binlog' else ''}"), events)


def drop_write_store(osvc: OrderService, admin: tuple[str, str], ca_pem: str = "") -> None:
    migrations.drop(osvc.mysql_settings(admin=admin, ca_file=ca_file(osvc, ca_pem)), host=APP_USER_HOST,
                    relay_user=osvc.mysql.relay_user)


# ---------------------------------------------------------------- read store (Cassandra)
def ensure_read_store(osvc: OrderService, credentials: tuple[str, str] | None) -> Result:
    c = osvc.cassandra
    where = f"Cassandra {','.join(c.contact_points)}:{c.port}"
    settings = osvc.cassandra_settings(credentials)
    try:
        session = CLIENTS.get(osvc, "cassandra", settings,
                              lambda: cassandra_connect(settings, keyspace=False, request_timeout=60))
        applied = schema.migrate(session, settings)
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        CLIENTS.forget(osvc, "cassandra")       # the next pass connects afresh
        return Result(failure(READ_STORE, where, exc))
    events = [("MigrationsApplied", f"keyspace {c.keyspace}: applied {', '.join(applied)}")] if applied else []
    return Result(true(READ_STORE, "Provisioned", f"keyspace {c.keyspace} ({c.replication_setting}) "
                       "with the read-model tables"), events)


def drop_read_store(osvc: OrderService, credentials: tuple[str, str] | None) -> None:
    settings = osvc.cassandra_settings(credentials)
    session = cassandra_connect(settings, keyspace=False, request_timeout=60)
    try:
        schema.drop(session, settings)
    finally:
        session.cluster.shutdown()


# ---------------------------------------------------------------- topic (Kafka admin API or Strimzi)
def ensure_topic(kube: Kube, osvc: OrderService) -> Result:
    """The topics, and with spec.kafka.strimzi.authentication the instance's Kafka users: all one
    condition (TopicReady), since the pods can use the topic only once both are there."""
    note = ""
    if osvc.kafka.strimzi_cluster:
        version = kube.strimzi_version("kafkatopics")
        if version:
            return _ensure_strimzi(kube, osvc, version)
        note = " (KafkaTopic is not served in this cluster: managed through the Kafka admin API)"
    result = _ensure_topic_admin(osvc)
    return Result(Condition(result.condition.type, result.condition.status, result.condition.reason,
                            result.condition.message + note), result.events)


def _admin(osvc: OrderService):
    return broker.admin(osvc.kafka_settings(), bootstrap_timeout_ms=5000, client_id="simplecqrs-operator")


def _kept_admin(osvc: OrderService):
    return CLIENTS.get(osvc, "kafka", osvc.kafka_settings(), lambda: _admin(osvc))


def _ensure_topic_admin(osvc: OrderService) -> Result:
    k = osvc.kafka
    where = f"Kafka {k.bootstrap_servers}"
    events = []
    try:
        client = _kept_admin(osvc)
        done = broker.ensure_topic(client, k.topic, k.partitions, k.replication_factor, k.config)
        broker.ensure_topic(client, k.dead_letter_topic, 1, k.replication_factor)
        changed = broker.ensure_topic_config(client, k.topic, k.config)
        actual = broker.partition_count(client, k.topic)
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        CLIENTS.forget(osvc, "kafka")
        return Result(failure(TOPIC, where, exc))
    if done == "created":
        events.append(("TopicCreated", f"topic {k.topic}: {k.partitions} partitions, replication factor "
                                       f"{k.replication_factor}"))
    elif done != "unchanged":
        events.append(("PartitionsIncreased", f"topic {k.topic}: {done}"))
    if changed:
        events.append(("TopicConfigUpdated", f"topic {k.topic}: " + ", ".join(f"{a}={b}" for a, b in changed.items())))
    message = f"topic {k.topic}: {actual} partitions; dead-letter topic {k.dead_letter_topic}"
    if actual > k.partitions:
        message += f" (more than the {k.partitions} asked for: partitions are never removed)"
    return Result(true(TOPIC, "Provisioned", message), events)


def strimzi_ready(obj: dict) -> tuple[bool, str, str]:
    """(ready, reason, message) of a Strimzi object from its own status: Ready=True for the
    generation it has observed; otherwise Strimzi's reason and message (NotSupported, ...)."""
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    if ready is None:
        return False, "NotReconciled", "no Ready condition yet"
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return False, "NotReconciled", f"generation {obj['metadata'].get('generation')} not observed yet"
    return ready.get("status") == "True", ready.get("reason") or "", ready.get("message") or ""


def _ensure_strimzi(kube: Kube, osvc: OrderService, topic_version: str) -> Result:
    """Apply the KafkaTopics (and KafkaUsers); TopicReady follows Strimzi's own Ready conditions.
    The admin API is never used for a topic Strimzi owns."""
    k = osvc.kafka
    grants = (kube.get("ConfigMap", k.strimzi_namespace, ownership.KAFKA_GRANTS) or {}).get("data") or {}
    if why := ownership.kafka_names_refused(osvc, grants):
        return Result(false(TOPIC, "KafkaNamesNotGranted", why))
    wanted = children.kafka_topics(osvc, topic_version)
    if k.users:
        user_version = kube.strimzi_version("kafkausers")
        if not user_version:
            return Result(false(TOPIC, "KafkaUserNotServed", "spec.kafka.strimzi.authentication needs Strimzi's "
                                "KafkaUser kind (its User Operator), which this cluster does not serve"))
        wanted += children.kafka_users(osvc, user_version)
    try:
        found = {id(m): kube.get(m["kind"], k.strimzi_namespace, m["metadata"]["name"], m["apiVersion"])
                 for m in wanted}
        if foreign := ownership.foreign_children({(m["kind"], m["metadata"]["name"]): found[id(m)] for m in wanted},
                                                 osvc.uid, osvc.address):
            return Result(false(TOPIC, "ResourceConflict", f"in namespace {k.strimzi_namespace}: "
                                f"{'; '.join(foreign)}: not this OrderService's, left untouched"))
        live = [kube.apply(m, uid=(found[id(m)] or {}).get("metadata", {}).get("uid")) for m in wanted]
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        return Result(failure(TOPIC, f"Strimzi objects in namespace {k.strimzi_namespace}", exc))
    for obj in live:
        ready, reason, message = strimzi_ready(obj)
        if not ready:
            ref = f"{obj['kind']} {k.strimzi_namespace}/{obj['metadata']['name']}"
            return Result(false(TOPIC, reason or "StrimziNotReady", f"{ref}: {message or 'not Ready'}"))
    if k.users:
        try:
            copy_kafka_user_secrets(kube, osvc)
        except Exception as exc:  # noqa: BLE001 - reported as the condition
            return Result(failure(TOPIC, "the Kafka users' Secrets", exc))
    users = f"; users {', '.join(osvc.kafka_user_name(r) for r in KAFKA_ROLES)} Ready" if k.users else ""
    return Result(true(TOPIC, "KafkaTopicReady",
                       f"KafkaTopics of {k.topic} and {k.dead_letter_topic} in {k.strimzi_namespace} Ready{users} "
                       f"(Strimzi, {topic_version})"))


class StrimziSecretMissing(RuntimeError):
    pass


def copy_kafka_user_secrets(kube: Kube, osvc: OrderService) -> None:
    """The password the User Operator generated (Secret <KafkaUser name> beside it, key `password`;
    its Secret has no `username`: the KafkaUser's name is the user), copied with the user's name into
    this namespace for the pods; copied again when Strimzi's changes."""
    for role in KAFKA_ROLES:
        name = osvc.kafka_user_name(role)
        source = kube.get("Secret", osvc.kafka.strimzi_namespace, name)
        password = (source or {}).get("data", {}).get("password")
        if not password:
            raise StrimziSecretMissing(f"Secret {osvc.kafka.strimzi_namespace}/{name} (made by Strimzi's "
                                       f"User Operator) has no password yet")
        wanted = children.kafka_user_secret(osvc, role, base64.b64decode(password).decode())
        held = kube.get("Secret", osvc.namespace, osvc.kafka_secret(role))
        if (held or {}).get("data") != wanted["data"]:     # looks before it writes: one read when current
            kube.apply(wanted, uid=(held or {}).get("metadata", {}).get("uid"))   # (checked: reconcile)


class StrimziDeletionPending(RuntimeError):
    pass


def drop_topic(kube: Kube, osvc: OrderService) -> None:
    """Delete the topics (and the instance's Kafka users).  With Strimzi: delete the KafkaTopics and
    KafkaUsers, then wait (raise, so the finalizer retries) until Strimzi's topic operator has
    deleted the topics and released its finalizer on the KafkaTopics."""
    k = osvc.kafka
    version = kube.strimzi_version("kafkatopics") if k.strimzi_cluster else None
    if version:
        user_version = kube.strimzi_version("kafkausers") if k.users else None
        objects = [("KafkaTopic", name, version) for name in osvc.kafka_topic_names()] + [
            ("KafkaUser", osvc.kafka_user_name(role), user_version) for role in (KAFKA_ROLES if user_version else ())]
        def own(kind: str, name: str, api_version: str) -> dict | None:   # only the instance's own
            live = kube.get(kind, k.strimzi_namespace, name, api_version)
            return live if live is not None and ownership.owned(live, osvc.uid, osvc.address) else None

        for kind, name, api_version in objects:
            if live := own(kind, name, api_version):
                kube.delete(kind, k.strimzi_namespace, name, api_version, uid=live["metadata"]["uid"])
        pending = [name for name in osvc.kafka_topic_names() if own("KafkaTopic", name, version)]
        if pending:
            raise StrimziDeletionPending(f"KafkaTopic {', '.join(pending)} in {k.strimzi_namespace}: waiting for "
                                         f"Strimzi's topic operator to delete the topic and its finalizer")
        return
    client = _admin(osvc)
    try:
        for topic in (osvc.kafka.topic, osvc.kafka.dead_letter_topic):
            try:
                client.delete_topics([topic])
            except UnknownTopicOrPartitionError:
                pass
    finally:
        client.close()
