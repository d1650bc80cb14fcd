"""The Secrets of an OrderService: those it names, and the two rules each passes before any value is
read; and the one it owns, with the generated MySQL users' passwords (ensure_generated).

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

3. Transport: a password goes only over a connection that verifies the server (MySQL with
   spec.mysql.tls: a CA, VERIFY_CA or VERIFY_IDENTITY), unless the Secret's owner accepts an
   unverified one for that server with the annotation UNVERIFIED_TRANSPORT=true (a development
   server on a trusted network).  Without verification, whoever answers at the address (an
   impostor, or someone in the path) could learn it: MySQL 8's caching_sha2_password sends the
   password itself at a full authentication (RSA-encrypted to a key the server hands over, or in
   the clear inside TLS), as Cassandra's PasswordAuthenticator always does (and simplecqrs speaks
   no TLS to Cassandra yet).  The pods' own generated passwords are the tenant's, over the same
   connection settings: their risk is the tenant's to choose.

Never by the clear-text plugin: app.writemodel.db refuses a server that asks the client for
`mysql_clear_password` (or `dialog`), which PyMySQL would otherwise answer with the password.
"""
from __future__ import annotations

import base64
import hashlib
import secrets

from kubernetes.client.exceptions import ApiException

from . import children
from .addresses import canonical_host, registry
from .kube import Kube
from .resource import CREDENTIALS_LABEL, GROUP, KAFKA_ROLES, MYSQL_CA_KEY, OrderService, SecretRef

ALLOWED_HOSTS = f"{GROUP}/allowed-hosts"
UNVERIFIED_TRANSPORT = f"{GROUP}/unverified-transport"   # rule 3: "true" accepts an unverified connection
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


def refused_transport(secret: dict, hosts: list[str], how: str) -> str:
    """"" if the Secret's owner accepts an unverified connection to `hosts` (rule 3), else why not;
    `how`: what would make the connection verify the server."""
    if ((secret.get("metadata") or {}).get("annotations") or {}).get(UNVERIFIED_TRANSPORT) == "true":
        return ""
    return (f"the credentials of Secret {secret['metadata']['name']} would go to {', '.join(hosts)} over a connection "
            f"that does not verify the server ({how}); if that link is trusted (a development server), its owner "
            f"may accept it: annotate the Secret {UNVERIFIED_TRANSPORT}=true")


def labelled_secret(kube: Kube, namespace: str, ref: SecretRef, keys: tuple[str, ...],
                    hosts: list[str] | None = None, verified: str = "") -> tuple[dict | None, str, str]:
    """(Secret, "", "") if it is made for OrderServices, has `keys`, and (given `hosts`) may be sent
    to each of them, over the connection the caller makes (`verified`: "" when it verifies the
    server, else what would make it); else (None, reason, message).  The rules come before any
    value is read."""
    secret = kube.get("Secret", namespace, ref.name)
    if secret is None:
        return None, "", f"Secret {ref.name} not found"
    if ((secret.get("metadata") or {}).get("labels") or {}).get(CREDENTIALS_LABEL) != "true":
        return None, "SecretNotLabelled", (f"Secret {ref.name} lacks the label {CREDENTIALS_LABEL}=true, which marks "
                                           "the Secrets an OrderService may use: label it to allow this")
    if hosts is not None and (why := refused_destinations(secret, namespace, hosts)):
        return None, "SecretDestinationNotAllowed", why
    if hosts is not None and verified and (why := refused_transport(secret, hosts, verified)):
        return None, "TransportNotVerified", why
    if missing := [k for k in keys if k not in (secret.get("data") or {})]:
        return None, "", f"Secret {ref.name} lacks the key(s) {' and '.join(missing)}"
    return secret, "", ""


# What would make each store's connection verify the server ("" when it does): labelled_secret's `verified`.
CASSANDRA_UNVERIFIED = "simplecqrs speaks no TLS to Cassandra yet"


def mysql_unverified(osvc: OrderService) -> str:
    return "" if osvc.mysql.verifies_server else "spec.mysql.tls sets no CA: name one with caSecretRef"


def read_credentials(kube: Kube, namespace: str, ref: SecretRef, hosts: list[str],
                     verified: str = "") -> tuple[tuple[str, str] | None, str, str]:
    """((username, password), "", "") from a Secret that may be sent to `hosts` (over a connection
    as `verified` says), else (None, reason, message)."""
    secret, reason, why = labelled_secret(kube, namespace, ref, ("username", "password"), hosts, verified)
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
    checks = [(osvc.cassandra.credentials_secret, ("username", "password"), list(osvc.cassandra.contact_points),
               CASSANDRA_UNVERIFIED),
              (osvc.mysql.ca_secret, (MYSQL_CA_KEY,), None, "")]
    images = sorted({registry(osvc.api.image), registry(osvc.consumer.image)})
    checks += [(SecretRef(name), (), images, "") for name in osvc.image_pull_secrets]   # (HTTPS to the registry)
    return [why or f"Secret {ref.name}: {reason}" for ref, keys, hosts, verified in checks if ref
            for secret, reason, why in [labelled_secret(kube, osvc.namespace, ref, keys, hosts, verified)]
            if secret is None]


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


def required_credentials(kube: Kube, namespace: str, ref: SecretRef, hosts: list[str],
                         verified: str = "") -> tuple[str, str]:
    """(username, password) that may be sent to `hosts`; LookupError saying why not."""
    creds, _reason, why = read_credentials(kube, namespace, ref, hosts, verified)
    if creds is None:
        raise LookupError(why)
    return creds


def optional_credentials(kube: Kube, namespace: str, ref: SecretRef | None, hosts: list[str],
                         verified: str = "") -> tuple[str, str] | None:
    return required_credentials(kube, namespace, ref, hosts, verified) if ref else None


def required_ca(kube: Kube, namespace: str, ref: SecretRef | None) -> str:
    """The CA's PEM ("" without one); LookupError saying why it may not be used."""
    pem, _reason, why = read_ca(kube, namespace, ref)
    if pem is None:
        raise LookupError(why)
    return pem


def ensure_generated(kube: Kube, osvc: OrderService, secret: dict | None) -> tuple[dict, str]:
    """The Secret with the generated application and relay users' passwords: created once, then
    reused as is (a Secret made before the relay had a user of its own gets one; the application's
    is kept).  Returns it, and what was generated now ("" if nothing), for an Event."""
    relay_keys = children.RELAY_KEYS
    if secret is not None:
        if all(key in (secret.get("data") or {}) for key in relay_keys):
            return secret, ""
        updated = kube.apply(children.credentials_secret(osvc, decode(secret, "password"), secrets.token_urlsafe(24)),
                             uid=secret["metadata"]["uid"])
        return updated, (f"generated MySQL user {osvc.mysql.relay_user} for the outbox relay; its password is in "
                         f"Secret {osvc.credentials_secret}")
    manifest = children.credentials_secret(osvc, secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    try:
        created = kube.create(manifest)
    except ApiException as e:
        if e.status != 409:
            raise
        return kube.get("Secret", osvc.namespace, osvc.credentials_secret), ""
    return created, (f"generated MySQL users {osvc.mysql.app_user} and {osvc.mysql.relay_user}; their passwords "
                     f"are in Secret {osvc.credentials_secret}")
