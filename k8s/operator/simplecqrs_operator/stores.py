"""The three stores of an instance: provisioning and deletion, each reported as a Condition.

The work itself is the application's own code, never a copy of it:
  write store  app.writemodel.migrations.provision()/drop()  database, migrations, least-privileged user
  read store   app.readmodel.schema.migrate()/drop()         keyspace and read-model tables
  topic        app.broker.ensure_topic()/ensure_topic_config(), or Strimzi KafkaTopic objects

Every ensure_* call is idempotent and returns a Result instead of raising: a store that
fails is a False condition with a reason (Unreachable, AccessDenied, ...), never a crash.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.cluster import NoHostAvailable
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError
from kubernetes.client.exceptions import ApiException

from app import broker
from app.readmodel import schema
from app.readmodel.session import connect as cassandra_connect
from app.writemodel import db as mysql_db
from app.writemodel import migrations

from . import children
from .conditions import READ_STORE, TOPIC, WRITE_STORE, Condition, false, true
from .kube import Kube, path
from .resource import OrderService

APP_USER_HOST = "%"  # pods connect from changing addresses
MYSQL_ACCESS_DENIED = {1044, 1045, 1142, 1227}


@dataclass
class Result:
    condition: Condition
    events: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) of changes made now


def failure(type_: str, where: str, exc: BaseException) -> Condition:
    """A False condition naming the store and the error (driver messages carry no passwords)."""
    return false(type_, reason_for(exc), f"{where}: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """One line: the error's type and message."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:600]


def reason_for(exc: BaseException) -> str:
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
def ensure_write_store(osvc: OrderService, admin: tuple[str, str], app_password: str) -> Result:
    m = osvc.mysql
    where = f"MySQL {m.host}:{m.port}"
    try:
        applied = migrations.provision(osvc.mysql_settings(admin=admin, app_password=app_password),
                                       host=APP_USER_HOST)
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        return Result(failure(WRITE_STORE, where, exc))
    events = [("MigrationsApplied", f"database {m.database}: applied {', '.join(applied)}")] if applied else []
    return Result(true(WRITE_STORE, "Provisioned", f"database {m.database} on {m.host}:{m.port}; user "
                       f"{m.app_user} has {migrations.APP_PRIVILEGES} on it"), events)


def drop_write_store(osvc: OrderService, admin: tuple[str, str]) -> None:
    migrations.drop(osvc.mysql_settings(admin=admin), host=APP_USER_HOST)


# ---------------------------------------------------------------- read store (Cassandra)
def ensure_read_store(osvc: OrderService, credentials: tuple[str, str] | None) -> Result:
    c = osvc.cassandra
    where = f"Cassandra {','.join(c.contact_points)}:{c.port}"
    settings = osvc.cassandra_settings(credentials)
    try:
        session = cassandra_connect(settings, keyspace=False, request_timeout=60)
        try:
            applied = schema.migrate(session, settings)
        finally:
            session.cluster.shutdown()
    except Exception as exc:  # noqa: BLE001 - reported as the condition
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
    note = ""
    if osvc.kafka.strimzi_cluster:
        version = kube.strimzi_topic_version()
        if version:
            return _ensure_kafka_topics(kube, osvc, version)
        note = " (KafkaTopic is not served in this cluster: managed through the Kafka admin API)"
    result = _ensure_topic_admin(osvc)
    return Result(Condition(result.condition.type, result.condition.status, result.condition.reason,
                            result.condition.message + note), result.events)


def _admin(osvc: OrderService):
    return broker.admin(osvc.kafka_settings(), bootstrap_timeout_ms=5000, client_id="simplecqrs-operator")


def _ensure_topic_admin(osvc: OrderService) -> Result:
    k = osvc.kafka
    where = f"Kafka {k.bootstrap_servers}"
    events = []
    try:
        client = _admin(osvc)
        try:
            done = broker.ensure_topic(client, k.topic, k.partitions, k.replication_factor, k.config)
            broker.ensure_topic(client, k.dead_letter_topic, 1, k.replication_factor)
            changed = broker.ensure_topic_config(client, k.topic, k.config)
            actual = broker.partition_count(client, k.topic)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - reported as the condition
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


def _ensure_kafka_topics(kube: Kube, osvc: OrderService, api_version: str) -> Result:
    """Apply the KafkaTopics; TopicReady follows Strimzi's own Ready condition on the events topic."""
    try:
        live = [kube.apply(m) for m in children.kafka_topics(osvc, api_version)]
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        return Result(failure(TOPIC, f"KafkaTopic in namespace {osvc.kafka.strimzi_namespace}", exc))
    events_topic = live[0]
    ref = f"KafkaTopic {osvc.kafka.strimzi_namespace}/{events_topic['metadata']['name']} ({api_version})"
    status = events_topic.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    current = status.get("observedGeneration", 0) >= events_topic["metadata"].get("generation", 1)
    if ready and ready.get("status") == "True" and current:
        return Result(true(TOPIC, "KafkaTopicReady", f"{ref} is Ready"))
    detail = ready.get("message") or ready.get("reason") if ready else "no Ready condition yet"
    return Result(false(TOPIC, "KafkaTopicNotReady", f"waiting for Strimzi's topic operator: {ref}: {detail}"))


def drop_topic(kube: Kube, osvc: OrderService) -> None:
    version = kube.strimzi_topic_version() if osvc.kafka.strimzi_cluster else None
    if version:
        for name in osvc.kafka_topic_names():  # Strimzi deletes the Kafka topics with them
            kube.delete(path("KafkaTopic", osvc.kafka.strimzi_namespace, name, version))
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
