"""Who owns what: the objects an instance writes, and the stores two instances name.

Objects.  The operator writes only objects that are its instance's own: in the instance's namespace
those whose owner references carry the OrderService's uid (it put them there when it made them), in
the Kafka cluster's namespace the Strimzi objects whose OWNER_ANNOTATION names the instance.  An
object of a child's name that is someone else's (a NetworkPolicy `default-deny` for an OrderService
named `default-deny`, the Service `payments-api` of an application called payments) is never
changed: the instance reports `ChildrenApplied=False, reason ResourceConflict` and writes nothing at
all until the name is free (`foreign_children`).  The check and the write are tied by the live
object's uid, which the write sends as a precondition (kube.Kube.apply): a replaced object is
refused by the apiserver, not overwritten.  Where nothing exists yet the write creates it: between
the read that found no object and that create, a few milliseconds, an object made by someone else
would be adopted; the API offers no "create or apply only if absent" in one call.

Stores.  Two OrderServices naming the same store: the older one owns it, the other waits.

The rule Strimzi's topic operator applies to two KafkaTopics of one Kafka topic: the oldest
resource (creation time, then uid) keeps it, the others report `ResourceConflict` and touch
nothing.  Here per store: the topic (on the same brokers or Strimzi cluster), the database (on
the same MySQL server) and the keyspace (on the same Cassandra contact points).  A conflicting
instance provisions none of the stores it shares, runs no workloads (they would write into the
owner's data), and never drops them; it takes over when the owner is gone.  An owner that is
being deleted still owns its stores until it is gone: its Delete policy may be dropping them.

What one operator cannot see it cannot arbitrate: two operators watching different namespaces
of one cluster, pointed at the same server and database names, are not protected.
"""
from __future__ import annotations

from .addresses import canonical_host
from .conditions import READ_STORE, TOPIC, WRITE_STORE
from .resource import OWNER_ANNOTATION


# ---------------------------------------------------------------- objects
def owned(live: dict, uid: str, address: str) -> bool:
    """True if `live` belongs to the OrderService (uid, "namespace/name"): an owner reference with
    its uid (the children in its namespace), or its OWNER_ANNOTATION (the Strimzi objects, which may
    live in another namespace, where owner references cannot point).  Only someone who may already
    write an object can put either on it."""
    meta = live.get("metadata") or {}
    return any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or []) or \
        (meta.get("annotations") or {}).get(OWNER_ANNOTATION) == address


def holder(live: dict) -> str:
    """Whose `live` is, in words: its controller (or first owner), else that it has none."""
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref:
        return f"owned by {ref.get('kind')} {ref.get('name')}"
    owner = ((live.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION)
    return f"made for OrderService {owner}" if owner else "not made by this operator"


def foreign_children(lives: dict[tuple[str, str], dict | None], uid: str, address: str) -> list[str]:
    """The objects among `lives` ((kind, name) -> the live object, None where there is none) that
    are not the instance's own, described for the ResourceConflict message."""
    return [f"{kind} {name} ({holder(live)})" for (kind, name), live in lives.items()
            if live is not None and not owned(live, uid, address)]


# ---------------------------------------------------------------- Kafka names
# In the namespace of a Strimzi Kafka cluster: the names (topics and consumer groups, `*` at the end
# for a prefix) its owner lets each namespace's OrderServices claim, one key per namespace.
KAFKA_GRANTS = "simplecqrs-kafka-tenants"


def kafka_names_refused(osvc, grants: dict[str, str]) -> str:
    """"" if the instance may claim its topic and consumer group on its Strimzi cluster, else why not.

    A cluster in the instance's own namespace is the tenant's own: any name.  A cluster elsewhere is
    shared: names that begin with "<namespace>." are the namespace's, others only if the cluster's
    owner lists them for the namespace in the ConfigMap KAFKA_GRANTS (`grants`, its data).  So a
    tenant can neither adopt another team's topic (Strimzi's Topic Operator takes over an existing
    topic for a new KafkaTopic) nor get a KafkaUser that reads it or joins its group."""
    k = osvc.kafka
    if not k.strimzi_cluster or k.strimzi_namespace == osvc.namespace:
        return ""
    patterns = [p.strip() for p in grants.get(osvc.namespace, "").split(",") if p.strip()]

    def granted(name: str) -> bool:
        return name.startswith(f"{osvc.namespace}.") or any(
            name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)

    if not (refused := [n for n in (k.topic, k.consumer_group) if not granted(n)]):
        return ""
    return (f"{' and '.join(refused)} on the Kafka cluster {k.strimzi_namespace}/{k.strimzi_cluster}: a shared cluster's "
            f"names are the namespace's when they begin with {osvc.namespace}., others only when its owner lists them "
            f"for namespace {osvc.namespace} in ConfigMap {k.strimzi_namespace}/{KAFKA_GRANTS}")


# ---------------------------------------------------------------- stores


def _hosts(value: str | list[str], namespace: str, keep_port: bool = False) -> frozenset[str]:
    """Host names as a pod of `namespace` resolves them (addresses.canonical_host): `mysql`,
    `mysql.db` and `mysql.db.svc.cluster.local` are one server.  keep_port: for host:port lists."""
    items = value.split(",") if isinstance(value, str) else value
    out = set()
    for item in (i.strip() for i in items if i.strip()):
        host, _, port = item.rpartition(":") if keep_port and item.count(":") == 1 else (item, "", "")
        out.add(canonical_host(host, namespace) + (f":{port}" if port else ""))
    return frozenset(out)


def claims(body: dict) -> dict[str, tuple]:
    """The stores an OrderService names, per condition type, in a comparable form."""
    spec, ns = body.get("spec", {}), body["metadata"]["namespace"]
    k, m, c = spec.get("kafka", {}), spec.get("mysql", {}), spec.get("cassandra", {})
    strimzi = k.get("strimzi") or {}
    if strimzi.get("cluster"):
        topic: tuple = ("strimzi", strimzi.get("namespace") or ns, strimzi["cluster"], k.get("topic"))
    else:
        topic = ("kafka", _hosts(k.get("bootstrapServers", ""), ns, keep_port=True), k.get("topic"))
    if strimzi.get("cluster"):
        group: tuple = ("strimzi", strimzi.get("namespace") or ns, strimzi["cluster"], k.get("consumerGroup")
                        or f"{body['metadata']['name']}-projector")
    else:
        group = ("kafka", topic[1], k.get("consumerGroup") or f"{body['metadata']['name']}-projector")
    return {
        TOPIC: topic,
        GROUP: group,
        WRITE_STORE: ("mysql", _hosts([str(m.get("host", ""))], ns), m.get("port"), m.get("database")),
        READ_STORE: ("cassandra", _hosts(c.get("contactPoints", []), ns), c.get("port"), c.get("keyspace")),
    }


GROUP = "group"   # a claim of its own, reported on TopicReady


def _age(body: dict) -> tuple[str, str]:
    meta = body["metadata"]
    return meta.get("creationTimestamp") or "", meta.get("uid") or ""


def conflicts(me: dict, others: list[dict]) -> dict[str, dict]:
    """{condition type: the owning OrderService} for each store `me` names that an older one names too."""
    mine, my_age, my_uid = claims(me), _age(me), me["metadata"].get("uid")
    owners: dict[str, dict] = {}
    for other in sorted(others, key=_age):
        if other["metadata"].get("uid") == my_uid or _age(other) >= my_age:
            continue
        theirs = claims(other)
        for kind, store in mine.items():
            # one consumer group on one cluster: the younger would join the older's group (TopicReady)
            shared = theirs.get(kind) == store or (kind == TOPIC and theirs[GROUP] == mine[GROUP])
            if kind != GROUP and kind not in owners and shared:
                owners[kind] = other
    return owners


def describe(kind: str, owner: dict) -> str:
    meta = owner["metadata"]
    store = {TOPIC: "topic (or its consumer group)", WRITE_STORE: "database", READ_STORE: "keyspace"}[kind]
    return (f"the {store} belongs to OrderService {meta['namespace']}/{meta['name']}, created earlier; "
            "this one waits until that one is gone or names another")
