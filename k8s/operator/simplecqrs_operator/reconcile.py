"""The reconcile loop: one idempotent pass makes an OrderService's world match its spec.

    reconcile()  credentials Secret -> topic, write store, read store -> child objects -> status
    finalize()   deletionPolicy Delete: drop topic, database and keyspace (bounded retries);
                 Retain: keep them, and say so in an Event

Every trigger (create/update/resume, the resync timer, an event on a child Deployment)
runs the same reconcile(); a per-object lock serialises them, and each pass starts from
the object as it is now in the apiserver, never from a stale copy.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

from . import children, conditions, ownership, stores, topics
from .addresses import ALLOWED_REGISTRIES, refused_images
from .children import RELAY_KEYS
from .conditions import API, CHILDREN, CONSUMER, DELETION, READ_STORE, STORES, TOPIC, WRITE_STORE, Condition, false, true
from .credentials import (
    CASSANDRA_UNVERIFIED,
    binlog_refused,
    credentials_hash,
    decode,
    ensure_generated,
    kafka_credentials_hashes,
    labelled_secret,
    mysql_unverified,
    optional_credentials,
    read_ca,
    read_credentials,
    refused_for_workloads,
    required_ca,
    required_credentials,
)
from .kube import Kube
from .resource import KAFKA_ROLES, OrderService

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def serialized(namespace: str, name: str):
    with _locks_guard:
        lock = _locks.setdefault((namespace, name), threading.Lock())
    with lock:
        yield


def event(kube: Kube, osvc: OrderService, reason: str, message: str, *, warning: bool = False) -> None:
    """A Kubernetes Event on the OrderService, posted by the operator's own client: the resync loop
    runs outside kopf's handler context, where kopf.event() has no queue to post to."""
    kube.post_event(osvc.reference, reason, message[:1000], warning=warning)


# ---------------------------------------------------------------- reconcile
def reconcile(kube: Kube, namespace: str, name: str, *, stores_too: bool = True) -> list[Condition]:
    """One pass.  Returns the store conditions that are not True, for the caller to retry.

    stores_too=False (a child Deployment changed) re-applies the children and refreshes the
    API/consumer conditions without touching the stores."""
    with serialized(namespace, name):
        body = kube.get("OrderService", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return []
        osvc = OrderService.from_body(body)
        # Every object this pass may write, as it is now: someone else's of the same name stops the
        # pass before anything is written (ownership.py, "Objects").
        lives = {(kind, child): kube.get(kind, namespace, child) for kind, child in children.namespace_children(osvc)}
        if foreign := ownership.foreign_children(lives, osvc.uid, osvc.address):
            publish(kube, osvc, [false(CHILDREN, "ResourceConflict", f"{'; '.join(foreign)}: not this OrderService's, "
                                       "left untouched; nothing is provisioned until the names are free (or "
                                       "the OrderService has another name)")], {}, observed=stores_too)
            return []
        taken = ownership.conflicts(body, kube.orderservices())
        secret = lives[("Secret", osvc.credentials_secret)]
        updates: list[Condition] = []
        if stores_too or secret is None:
            secret, made = ensure_generated(kube, osvc, secret)
            if made:
                event(kube, osvc, "CredentialsCreated", made)
            updates += provision(kube, osvc, (decode(secret, "password"), decode(secret, RELAY_KEYS[1])), taken)
        if taken:       # workloads of a conflicting instance would write into the owner's data
            updates.append(false(CHILDREN, "StoreConflict", "no workloads while a store belongs to an older "
                                 "OrderService (the store conditions say which)"))
        elif refused := refused_for_workloads(kube, osvc):
            updates.append(false(CHILDREN, "SecretNotAllowed", "; ".join(refused)[:900]))
        elif images := refused_images([osvc.api.image, osvc.consumer.image]):
            updates.append(false(CHILDREN, "ImageNotAllowed", f"{', '.join(sorted(set(images)))}: the operator runs "
                                 f"images from {', '.join(ALLOWED_REGISTRIES)} only (ALLOWED_IMAGE_REGISTRIES)"))
        else:
            updates.append(apply_children(kube, osvc, credentials_hash(secret), lives))
        workloads, counts = observe_workloads(kube, osvc)
        publish(kube, osvc, updates + workloads, counts, observed=stores_too)
        return [c for c in updates if c.type in STORES and not c.ok]


def provision(kube: Kube, osvc: OrderService, passwords: tuple[str, str], taken: dict[str, dict]) -> list[Condition]:
    """Each store, unless an older OrderService owns it (`taken`: ResourceConflict, untouched)."""
    def conflict(kind: str) -> stores.Result:
        return stores.Result(false(kind, "ResourceConflict", ownership.describe(kind, taken[kind])))

    results = [conflict(TOPIC) if TOPIC in taken else topics.ensure_topic(kube, osvc)]
    admin_secret, reason, why = labelled_secret(kube, osvc.namespace, osvc.mysql.admin_secret, ("username", "password"),
                                                [osvc.mysql.host], mysql_unverified(osvc))
    admin = (decode(admin_secret, "username"), decode(admin_secret, "password")) if admin_secret else None
    ca_pem, ca_reason, ca_why = read_ca(kube, osvc.namespace, osvc.mysql.ca_secret)
    if WRITE_STORE in taken:
        results.append(conflict(WRITE_STORE))
    elif admin is None:
        results.append(stores.Result(false(WRITE_STORE, reason or "AdminSecretMissing", why)))
    elif ca_pem is None:
        results.append(stores.Result(false(WRITE_STORE, ca_reason or "CASecretMissing", ca_why)))
    elif binlog_why := binlog_refused(osvc, admin_secret):
        results.append(stores.Result(false(WRITE_STORE, "BinlogNotAllowed", binlog_why)))
    else:
        results.append(stores.ensure_write_store(osvc, admin, passwords, ca_pem))
    ref = osvc.cassandra.credentials_secret
    cassandra_credentials, reason, why = read_credentials(kube, osvc.namespace, ref, list(osvc.cassandra.contact_points),
                                                          CASSANDRA_UNVERIFIED) if ref else (None, "", "")
    if READ_STORE in taken:
        results.append(conflict(READ_STORE))
    elif ref and cassandra_credentials is None:
        results.append(stores.Result(false(READ_STORE, reason or "CredentialsSecretMissing", why)))
    else:
        results.append(stores.ensure_read_store(osvc, cassandra_credentials))
    for result in results:
        for reason, message in result.events:
            event(kube, osvc, reason, message)
    return [r.condition for r in results]


def apply_children(kube: Kube, osvc: OrderService, credentials_hash_: str, lives: dict[tuple[str, str], dict | None]
                   ) -> Condition:
    """Apply the workloads; `lives`: each as it was when its ownership was checked (its uid is the
    apply's precondition).  A child the spec dropped is deleted only if it is the instance's own."""
    kafka_hashes = kafka_credentials_hashes(kube, osvc)
    if not all(kafka_hashes.values()):
        # Kafka users asked for, their Secrets not copied yet (TopicReady says why): pods started now
        # could not start (no Secret) and would roll again once it exists.  Wait for them.
        return false(CHILDREN, "WaitingForKafkaUsers", "the Kafka users' Secrets are not there yet (TopicReady)")
    wanted, unwanted = children.workloads(osvc, credentials_hash_, kafka_hashes)
    for manifest in wanted:
        live = lives.get((manifest["kind"], manifest["metadata"]["name"]))
        keep_live_replicas(manifest, live)
        kube.apply(manifest, uid=(live or {}).get("metadata", {}).get("uid"))
    for kind, name in unwanted:
        live = kube.get(kind, osvc.namespace, name)
        if live is None or not ownership.owned(live, osvc.uid, osvc.address):
            continue
        if kube.delete(kind, osvc.namespace, name, uid=live["metadata"]["uid"]):
            event(kube, osvc, "ChildDeleted", f"deleted {kind} {name}: no longer in the spec")
    return true(CHILDREN, "Applied", "every object the instance writes is its own, and applied")


def keep_live_replicas(manifest: dict, live: dict | None) -> None:
    """A Deployment whose replica count an HPA owns is applied with the count it has now.

    Leaving `replicas` out of a forced server-side apply would drop the operator's ownership of the
    field, and a field nobody owns any more is reset to its default: 1 replica, before the HPA acts
    (the consumer fell from 4 to 1 when autoscaling was turned on).  Applying the live count keeps the
    value the HPA set; the HPA goes on changing it through the scale subresource."""
    if manifest["kind"] != "Deployment" or "replicas" in manifest["spec"]:
        return
    if live is not None and live.get("spec", {}).get("replicas") is not None:
        manifest["spec"]["replicas"] = live["spec"]["replicas"]


def observe_workloads(kube: Kube, osvc: OrderService) -> tuple[list[Condition], dict[str, str]]:
    """API/consumer conditions from what their Deployments report, and "available/desired" counts."""
    api, api_counts = conditions.from_deployment(
        API, osvc.api_name, kube.get("Deployment", osvc.namespace, osvc.api_name))
    consumer, consumer_counts = conditions.from_deployment(
        CONSUMER, osvc.consumer_name, kube.get("Deployment", osvc.namespace, osvc.consumer_name))
    return [api, consumer], {"api": api_counts, "consumer": consumer_counts}


def publish(kube: Kube, osvc: OrderService, updates: list[Condition], counts: dict[str, str], *,
            observed: bool) -> None:
    """Write the status subresource; an Event for every condition whose status changed."""
    previous = osvc.status.get("conditions", [])
    merged = conditions.merge(previous, updates, osvc.generation)
    status = {"conditions": merged, **counts, "credentialsSecret": osvc.credentials_secret}
    if observed:  # only a full pass has looked at the stores for this generation
        status["observedGeneration"] = osvc.generation
    kube.patch_status(osvc.namespace, osvc.name, status)
    for c in conditions.transitions(previous, merged):
        event(kube, osvc, c["reason"], f"{c['type']} is {c['status']}: {c['message']}", warning=c["status"] != "True")


# ---------------------------------------------------------------- deletion
@dataclass
class Finalized:
    done: bool
    message: str


def finalize(kube: Kube, body: dict, attempt: int, max_attempts: int) -> Finalized:
    """Delete or retain the data.  Gives up after `max_attempts`, so an unreachable store
    cannot keep the resource (and its namespace) from being deleted forever."""
    osvc = OrderService.from_body(body)
    m, c = osvc.mysql, osvc.cassandra
    what = _data_of(osvc)
    if osvc.deletion_policy != "Delete":      # (no finalizer asks for this; kept for a safe default)
        retained(kube, body)
        return Finalized(True, "retained")
    with serialized(osvc.namespace, osvc.name):
        stores.CLIENTS.forget(osvc)
        failures = []
        taken = ownership.conflicts(body, kube.orderservices())    # never drop an older instance's data
        ns = osvc.namespace
        steps = [(TOPIC, "topic", lambda: topics.drop_topic(kube, osvc)),
                 (WRITE_STORE, "database",
                  lambda: stores.drop_write_store(osvc, required_credentials(kube, ns, m.admin_secret, [m.host],
                                                                             mysql_unverified(osvc)),
                                                  required_ca(kube, ns, m.ca_secret))),
                 (READ_STORE, "keyspace",
                  lambda: stores.drop_read_store(osvc, optional_credentials(kube, ns, c.credentials_secret,
                                                                            list(c.contact_points),
                                                                            CASSANDRA_UNVERIFIED)))]
        for kind, part, step in steps:
            if kind in taken:
                event(kube, osvc, "DataLeftToOwner", f"{part} not dropped: {ownership.describe(kind, taken[kind])}")
                continue
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{part}: {stores.reason_for(exc)}: {stores.describe(exc)}"[:300])
        if not failures:
            event(kube, osvc, "DataDeleted", f"deletionPolicy Delete: dropped {what}")
            return Finalized(True, "deleted")
        message = "; ".join(failures)
        if attempt >= max_attempts:
            event(kube, osvc, "DeletionIncomplete", f"gave up after {attempt} attempts; left in place: {message}",
                  warning=True)
            return Finalized(True, message)
        merged = conditions.merge(osvc.status.get("conditions", []), [
            true(DELETION, "StoreUnreachable", f"attempt {attempt}/{max_attempts}: {message}")], osvc.generation)
        kube.patch_status(osvc.namespace, osvc.name, {"conditions": merged})
        event(kube, osvc, "DeletionRetrying", f"attempt {attempt}/{max_attempts}: {message}", warning=True)
        return Finalized(False, message)


def _data_of(osvc: OrderService) -> str:
    k, m, c = osvc.kafka, osvc.mysql, osvc.cassandra
    users = f" (and Kafka users {', '.join(osvc.kafka_user_name(r) for r in KAFKA_ROLES)})" if k.users else ""
    return (f"topics {k.topic} and {k.dead_letter_topic}{users}, database {m.database} (user {m.app_user}), "
            f"keyspace {c.keyspace}")


def retained(kube: Kube, body: dict) -> None:
    """A Retain instance was deleted: say what stays (the operator had nothing to do)."""
    osvc = OrderService.from_body(body)
    stores.CLIENTS.forget(osvc)
    event(kube, osvc, "DataRetained", f"deletionPolicy Retain: kept {_data_of(osvc)}")
