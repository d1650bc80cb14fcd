"""The topic of an instance, its third store: through Strimzi (KafkaTopic and KafkaUser objects, their
own Ready conditions followed) where the cluster serves KafkaTopic, else through the Kafka admin API
(app.broker.ensure_topic()/ensure_topic_config()).  Reported as the TopicReady condition.
"""
from __future__ import annotations

import base64

from kafka.errors import UnknownTopicOrPartitionError

from app import broker

from . import children, ownership
from .conditions import TOPIC, Condition, false, true
from .kube import Kube
from .resource import KAFKA_ROLES, OrderService
from .stores import CLIENTS, Result, StoreWaiting, failure


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
    """The topic and its dead-letter topic through the admin API.  Each change's event is noted as it
    is made, and a pass that fails later still reports it: the next pass finds it done and says nothing."""
    k = osvc.kafka
    where = f"Kafka {k.bootstrap_servers}"
    events = []
    try:
        client = _kept_admin(osvc)
        done = broker.ensure_topic(client, k.topic, k.partitions, k.replication_factor, k.config)
        if done == "created":
            events.append(("TopicCreated", f"topic {k.topic}: {k.partitions} partitions, replication factor "
                                           f"{k.replication_factor}"))
        elif done != "unchanged":
            events.append(("PartitionsIncreased", f"topic {k.topic}: {done}"))
        broker.ensure_topic(client, k.dead_letter_topic, 1, k.replication_factor)
        if done == "created":
            # Made just now with its partitions and config.  Not described in the same pass: a broker
            # that has not learnt of the topic yet answers without its configs (kafka-python's
            # alter_configs then refuses them, "Unrecognized configs").
            changed, actual = {}, k.partitions
        else:
            changed = broker.ensure_topic_config(client, k.topic, k.config)
            actual = broker.partition_count(client, k.topic)
    except Exception as exc:  # noqa: BLE001 - reported as the condition
        CLIENTS.forget(osvc, "kafka")
        return Result(failure(TOPIC, where, exc), events)
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


class StrimziSecretMissing(StoreWaiting):
    reason = "KafkaUserSecretMissing"


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


class StrimziDeletionPending(StoreWaiting):
    reason = "WaitingForStrimzi"


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
