"""The Secrets an OrderService names, and the two rules each passes before any value is read.

Whoever may create or edit an OrderService is a tenant: they must not be able to make the operator
read a Secret of the namespace and send its values to an address of their choosing.  So:

1. Opt-in: only a Secret labelled CREDENTIALS_LABEL=true may be named (the admin account, the
   Cassandra credentials, the MySQL CA, the image pull Secrets); the label is checked before any
   value is read.
2. Destination: a Secret with credentials lists where they may be sent, in the annotation
   ALLOWED_HOSTS ("mysql.db.svc,10.0.0.5"): the MySQL host for the admin account, every Cassandra
   contact point for the Cassandra credentials, the registry of every image for a pull Secret.
   Both sides are compared as fully qualified names (`canonical_host`), so `mysql`,
   `mysql.db` and `mysql.db.svc.cluster.local` are one Service and a changed `spec.mysql.host`
   cannot redirect the admin password.  The CA is public: the opt-in rule only.

Never by the clear-text plugin: app.writemodel.db refuses a server that asks the client for
`mysql_clear_password` (or `dialog`), which PyMySQL would otherwise answer with the password.
"""
from __future__ import annotations

import base64
import hashlib

from .addresses import canonical_host, registry
from .kube import Kube
from .resource import CREDENTIALS_LABEL, GROUP, KAFKA_ROLES, MYSQL_CA_KEY, OrderService, SecretRef

ALLOWED_HOSTS = f"{GROUP}/allowed-hosts"
# On the admin Secret: the MySQL server's owner lets instances read its binlog.  The binlog relay's
# user needs REPLICATION SLAVE and REPLICATION CLIENT, which MySQL grants on the whole server only:
# that user could read every database's rows.  Without the label an instance gets `poll` only.
BINLOG_LABEL = f"{GROUP}/binlog"


def decode(secret: dict, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def allowed(secret: dict, namespace: str) -> set[str]:
    listed = ((secret.get("metadata") or {}).get("annotations") or {}).get(ALLOWED_HOSTS, "")
    return {canonical_host(h, namespace) for h in listed.split(",") if h.strip()}


def refused_destinations(secret: dict, namespace: str, hosts: list[str]) -> str:
    """"" if every host of `hosts` is one the Secret's ALLOWED_HOSTS lists, else why not."""
    name = secret["metadata"]["name"]
    permitted = allowed(secret, namespace)
    if not permitted:
        return (f"Secret {name} does not say where its credentials may be sent: annotate it with "
                f"{ALLOWED_HOSTS}={','.join(hosts)} if that is where they belong")
    if bad := [h for h in hosts if canonical_host(h, namespace) not in permitted]:
        return (f"Secret {name} may be sent to {', '.join(sorted(permitted))} only ({ALLOWED_HOSTS}), "
                f"not to {', '.join(bad)}")
    return ""


def labelled_secret(kube: Kube, namespace: str, ref: SecretRef, keys: tuple[str, ...],
                    hosts: list[str] | None = None) -> tuple[dict | None, str, str]:
    """(Secret, "", "") if it is made for OrderServices, has `keys` and (given `hosts`) may be sent
    to each of them; else (None, reason, message).  The rules come before any value is read."""
    secret = kube.get("Secret", namespace, ref.name)
    if secret is None:
        return None, "", f"Secret {ref.name} not found"
    if ((secret.get("metadata") or {}).get("labels") or {}).get(CREDENTIALS_LABEL) != "true":
        return None, "SecretNotLabelled", (f"Secret {ref.name} lacks the label {CREDENTIALS_LABEL}=true, which marks "
                                           "the Secrets an OrderService may use: label it to allow this")
    if hosts is not None and (why := refused_destinations(secret, namespace, hosts)):
        return None, "SecretDestinationNotAllowed", why
    if missing := [k for k in keys if k not in (secret.get("data") or {})]:
        return None, "", f"Secret {ref.name} lacks the key(s) {' and '.join(missing)}"
    return secret, "", ""


def read_credentials(kube: Kube, namespace: str, ref: SecretRef,
                     hosts: list[str]) -> tuple[tuple[str, str] | None, str, str]:
    """((username, password), "", "") from a Secret that may be sent to `hosts`, else (None, reason, message)."""
    secret, reason, why = labelled_secret(kube, namespace, ref, ("username", "password"), hosts)
    if secret is None:
        return None, reason, why
    return (decode(secret, "username"), decode(secret, "password")), "", ""


def binlog_refused(osvc: OrderService, admin_secret: dict) -> str:
    """"" if the instance may use the binlog relay (or does not), else why not; `admin_secret`: the
    admin Secret as provisioning read it."""
    if osvc.mysql.outbox_relay != "binlog":
        return ""
    if ((admin_secret.get("metadata") or {}).get("labels") or {}).get(BINLOG_LABEL) == "true":
        return ""
    return (f"spec.mysql.outboxRelay is binlog, whose relay user needs REPLICATION SLAVE and REPLICATION CLIENT "
            f"on the whole server (every database's rows pass through the binlog): only the server's owner may "
            f"allow that, by labelling Secret {osvc.mysql.admin_secret.name} {BINLOG_LABEL}=true; on a shared "
            f"server set spec.mysql.outboxRelay: poll")


def read_ca(kube: Kube, namespace: str, ref: SecretRef | None) -> tuple[str | None, str, str]:
    """(PEM, "", "") of spec.mysql.tls.caSecretRef ("" without one), else (None, reason, message).
    Labelled like credentials: the pods mount it."""
    if ref is None:
        return "", "", ""
    secret, reason, why = labelled_secret(kube, namespace, ref, (MYSQL_CA_KEY,))
    return (decode(secret, MYSQL_CA_KEY) if secret else None), reason, why


def refused_for_workloads(kube: Kube, osvc: OrderService) -> list[str]:
    """Why the Secrets the pods would be given may not be (empty: they may): the Cassandra
    credentials, the MySQL CA, the image pull Secrets."""
    checks = [(osvc.cassandra.credentials_secret, ("username", "password"), list(osvc.cassandra.contact_points)),
              (osvc.mysql.ca_secret, (MYSQL_CA_KEY,), None)]
    images = sorted({registry(osvc.api.image), registry(osvc.consumer.image)})
    checks += [(SecretRef(name), (), images) for name in osvc.image_pull_secrets]
    return [why or f"Secret {ref.name}: {reason}" for ref, keys, hosts in checks if ref
            for secret, reason, why in [labelled_secret(kube, osvc.namespace, ref, keys, hosts)] if secret is None]


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
