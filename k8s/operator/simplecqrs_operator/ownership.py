"""Two OrderServices naming the same store: the older one owns it, the other waits.

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

from .conditions import READ_STORE, TOPIC, WRITE_STORE


def _hosts(value: str | list[str]) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(h.strip().lower() for h in items if h.strip())


def claims(body: dict) -> dict[str, tuple]:
    """The stores an OrderService names, per condition type, in a comparable form."""
    spec, ns = body.get("spec", {}), body["metadata"]["namespace"]
    k, m, c = spec.get("kafka", {}), spec.get("mysql", {}), spec.get("cassandra", {})
    strimzi = k.get("strimzi") or {}
    if strimzi.get("cluster"):
        topic: tuple = ("strimzi", strimzi.get("namespace") or ns, strimzi["cluster"], k.get("topic"))
    else:
        topic = ("kafka", _hosts(k.get("bootstrapServers", "")), k.get("topic"))
    return {
        TOPIC: topic,
        WRITE_STORE: ("mysql", str(m.get("host", "")).lower(), m.get("port"), m.get("database")),
        READ_STORE: ("cassandra", _hosts(c.get("contactPoints", [])), c.get("port"), c.get("keyspace")),
    }


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
            if kind not in owners and theirs.get(kind) == store:
                owners[kind] = other
    return owners


def describe(kind: str, owner: dict) -> str:
    meta = owner["metadata"]
    store = {TOPIC: "topic", WRITE_STORE: "database", READ_STORE: "keyspace"}[kind]
    return (f"the {store} belongs to OrderService {meta['namespace']}/{meta['name']}, created earlier; "
            "this one waits until that one is gone or names another")
