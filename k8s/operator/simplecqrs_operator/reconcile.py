"""The reconcile loop: one idempotent pass makes an OrderService's world match its spec.

    reconcile()  credentials Secret -> topic, write store, read store -> child objects -> status
    finalize()   deletionPolicy Delete: drop topic, database and keyspace (bounded retries);
                 Retain: keep them, and say so in an Event

Every trigger (create/update/resume, the resync timer, an event on a child Deployment)
runs the same reconcile(); a per-object lock serialises them, and each pass starts from
the object as it is now in the apiserver, never from a stale copy.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from . import children, conditions, ownership, stores
from .children import RELAY_KEYS
from .conditions import API, CONSUMER, DELETION, READ_STORE, STORES, TOPIC, WRITE_STORE, Condition, false, true
from .kube import Kube
from .resource import CREDENTIALS_LABEL, KAFKA_ROLES, MYSQL_CA_KEY, OrderService, SecretRef

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
        taken = ownership.conflicts(body, kube.orderservices())
        secret = kube.get("Secret", namespace, osvc.credentials_secret)
        updates: list[Condition] = []
        if stores_too or secret is None:
            secret = ensure_credentials(kube, osvc, secret)
            updates += provision(kube, osvc, (decode(secret, "password"), decode(secret, RELAY_KEYS[1])), taken)
        if not taken:       # workloads of a conflicting instance would write into the owner's data
            apply_children(kube, osvc, credentials_hash(secret))
        workloads, counts = observe_workloads(kube, osvc)
        publish(kube, osvc, updates + workloads, counts, observed=stores_too)
        return [c for c in updates if c.type in STORES and not c.ok]


def ensure_credentials(kube: Kube, osvc: OrderService, secret: dict | None) -> dict:
    """The Secret with the generated application and relay users: created once, then reused as is.
    A Secret made before the relay had a user of its own gets one added (the application's kept)."""
    if secret is not None:
        if all(key in (secret.get("data") or {}) for key in RELAY_KEYS):
            return secret
        updated = kube.apply(children.credentials_secret(osvc, decode(secret, "password"), secrets.token_urlsafe(24)))
        event(kube, osvc, "CredentialsCreated", f"generated MySQL user {osvc.mysql.relay_user} for the outbox relay; "
                                                f"its password is in Secret {osvc.credentials_secret}")
        return updated
    manifest = children.credentials_secret(osvc, secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    try:
        created = kube.create(manifest)
    except ApiException as e:
        if e.status != 409:
            raise
        return kube.get("Secret", osvc.namespace, osvc.credentials_secret)
    event(kube, osvc, "CredentialsCreated", f"generated MySQL users {osvc.mysql.app_user} and {osvc.mysql.relay_user};"
                                      " their passwords are in "
                                      f"Secret {osvc.credentials_secret}")
    return created


def provision(kube: Kube, osvc: OrderService, passwords: tuple[str, str], taken: dict[str, dict]) -> list[Condition]:
    """Each store, unless an older OrderService owns it (`taken`: ResourceConflict, untouched)."""
    def conflict(kind: str) -> stores.Result:
        return stores.Result(false(kind, "ResourceConflict", ownership.describe(kind, taken[kind])))

    results = [conflict(TOPIC) if TOPIC in taken else stores.ensure_topic(kube, osvc)]
    admin, reason, why = read_credentials(kube, osvc.namespace, osvc.mysql.admin_secret)
    ca_pem, ca_reason, ca_why = read_ca(kube, osvc.namespace, osvc.mysql.ca_secret)
    if WRITE_STORE in taken:
        results.append(conflict(WRITE_STORE))
    elif admin is None:
        results.append(stores.Result(false(WRITE_STORE, reason or "AdminSecretMissing", why)))
    elif ca_pem is None:
        results.append(stores.Result(false(WRITE_STORE, ca_reason or "CASecretMissing", ca_why)))
    else:
        results.append(stores.ensure_write_store(osvc, admin, passwords, ca_pem))
    ref = osvc.cassandra.credentials_secret
    cassandra_credentials, reason, why = read_credentials(kube, osvc.namespace, ref) if ref else (None, "", "")
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


def apply_children(kube: Kube, osvc: OrderService, credentials_hash_: str) -> None:
    kafka_hashes = kafka_credentials_hashes(kube, osvc)
    if not all(kafka_hashes.values()):
        # Kafka users asked for, their Secrets not copied yet (TopicReady says why): pods started now
        # could not start (no Secret) and would roll again once it exists.  Wait for them.
        return
    wanted, unwanted = children.workloads(osvc, credentials_hash_, kafka_hashes)
    for manifest in wanted:
        keep_live_replicas(kube, manifest)
        kube.apply(manifest)
    for kind, name in unwanted:
        if kube.delete(kind, osvc.namespace, name):
            event(kube, osvc, "ChildDeleted", f"deleted {kind} {name}: no longer in the spec")


def keep_live_replicas(kube: Kube, manifest: dict) -> None:
    """A Deployment whose replica count an HPA owns is applied with the count it has now.

    Leaving `replicas` out of a forced server-side apply would drop the operator's ownership of the
    field, and a field nobody owns any more is reset to its default: 1 replica, before the HPA acts
    (the consumer fell from 4 to 1 when autoscaling was turned on).  Applying the live count keeps the
    value the HPA set; the HPA goes on changing it through the scale subresource."""
    if manifest["kind"] != "Deployment" or "replicas" in manifest["spec"]:
        return
    live = kube.get("Deployment", manifest["metadata"]["namespace"], manifest["metadata"]["name"])
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
        steps = [(TOPIC, "topic", lambda: stores.drop_topic(kube, osvc)),
                 (WRITE_STORE, "database",
                  lambda: stores.drop_write_store(osvc, _required(kube, osvc, m.admin_secret), _ca(kube, osvc))),
                 (READ_STORE, "keyspace",
                  lambda: stores.drop_read_store(osvc, _optional(kube, osvc, c.credentials_secret)))]
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


def _required(kube: Kube, osvc: OrderService, ref: SecretRef) -> tuple[str, str]:
    creds, _reason, why = read_credentials(kube, osvc.namespace, ref)
    if creds is None:
        raise LookupError(why)
    return creds


def _ca(kube: Kube, osvc: OrderService) -> str:
    pem, _reason, why = read_ca(kube, osvc.namespace, osvc.mysql.ca_secret)
    if pem is None:
        raise LookupError(why)
    return pem


def _optional(kube: Kube, osvc: OrderService, ref: SecretRef | None) -> tuple[str, str] | None:
    return _required(kube, osvc, ref) if ref else None


# ---------------------------------------------------------------- Secrets
def decode(secret: dict, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def labelled_secret(kube: Kube, namespace: str, ref: SecretRef, keys: tuple[str, ...]) -> tuple[dict | None, str, str]:
    """(Secret, "", "") if it is made for OrderServices and has `keys`, else (None, reason, message).

    The label check comes before any value is read (resource.SecretRef says why)."""
    secret = kube.get("Secret", namespace, ref.name)
    if secret is None:
        return None, "", f"Secret {ref.name} not found"
    if ((secret.get("metadata") or {}).get("labels") or {}).get(CREDENTIALS_LABEL) != "true":
        return None, "SecretNotLabelled", (f"Secret {ref.name} lacks the label {CREDENTIALS_LABEL}=true, which marks "
                                           "the Secrets an OrderService may use: label it to allow this")
    if missing := [k for k in keys if k not in (secret.get("data") or {})]:
        return None, "", f"Secret {ref.name} lacks the key(s) {' and '.join(missing)}"
    return secret, "", ""


def read_credentials(kube: Kube, namespace: str, ref: SecretRef) -> tuple[tuple[str, str] | None, str, str]:
    """((username, password), "", "") from a labelled Secret, else (None, reason, message)."""
    secret, reason, why = labelled_secret(kube, namespace, ref, ("username", "password"))
    if secret is None:
        return None, reason, why
    return (decode(secret, "username"), decode(secret, "password")), "", ""


def read_ca(kube: Kube, namespace: str, ref: SecretRef | None) -> tuple[str | None, str, str]:
    """(PEM, "", "") of spec.mysql.tls.caSecretRef ("" without one), else (None, reason, message).
    Labelled like credentials: the pods mount it."""
    if ref is None:
        return "", "", ""
    secret, reason, why = labelled_secret(kube, namespace, ref, (MYSQL_CA_KEY,))
    return (decode(secret, MYSQL_CA_KEY) if secret else None), reason, why


def kafka_credentials_hashes(kube: Kube, osvc: OrderService) -> dict[str, str]:
    """role -> credentials_hash of the role's Kafka Secret in this namespace ("" while it does not
    exist), for the pod templates: a new password rolls the pods that use it."""
    if not osvc.kafka.users:
        return {}
    secrets_ = {role: kube.get("Secret", osvc.namespace, osvc.kafka_secret(role)) for role in KAFKA_ROLES}
    return {role: credentials_hash(secret) if secret else "" for role, secret in secrets_.items()}


def credentials_hash(secret: dict) -> str:
    """Changes when the credentials do (every key of the Secret), reveals nothing about them."""
    data = secret.get("data") or {}
    return hashlib.sha256("\n".join(f"{k}:{data[k]}" for k in sorted(data)).encode()).hexdigest()[:16]
