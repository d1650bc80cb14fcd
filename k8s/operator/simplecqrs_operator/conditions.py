"""Status conditions in the Kubernetes convention: type, status, reason, message,
lastTransitionTime (changes only when status does) and observedGeneration.

One condition per part of an instance, plus `Ready` = all parts ready.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

TOPIC = "TopicReady"
WRITE_STORE = "WriteStoreReady"
READ_STORE = "ReadStoreReady"
API = "ApiReady"
CONSUMER = "ConsumerReady"
CHILDREN = "ChildrenApplied"  # its objects applied: all its own (ownership.foreign_children), Secrets allowed
READY = "Ready"
DELETION = "DeletionBlocked"  # only while a Delete policy cannot reach a store

STORES = (TOPIC, WRITE_STORE, READ_STORE)
PARTS = (CHILDREN,) + STORES + (API, CONSUMER)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "True"


def true(type_: str, reason: str, message: str = "") -> Condition:
    return Condition(type_, "True", reason, message)


def false(type_: str, reason: str, message: str = "") -> Condition:
    return Condition(type_, "False", reason, message)


def from_deployment(type_: str, name: str, deployment: dict | None) -> tuple[Condition, str]:
    """(condition, "available/desired") from what the Deployment reports; never assumes pods run."""
    if deployment is None:
        return false(type_, "DeploymentMissing", f"Deployment {name} does not exist"), "0/0"
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    desired = spec.get("replicas", 1)
    available = status.get("availableReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    rolled_out = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    counts = f"{available}/{desired}"
    if desired == 0:
        return false(type_, "ScaledToZero", f"Deployment {name} has 0 replicas"), counts
    if available >= desired and updated >= desired and rolled_out:
        return true(type_, "Available", f"Deployment {name}: {counts} replicas available"), counts
    return false(type_, "ReplicasUnavailable", f"Deployment {name}: {counts} replicas available"), counts


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def overall(current: dict[str, dict]) -> Condition:
    """Ready: every part True; otherwise which parts are not, with their messages."""
    waiting = [t for t in PARTS if current.get(t, {}).get("status") != "True"]
    if not waiting:
        return true(READY, "AllPartsReady", "objects, topic, stores, API and consumer are ready")
    detail = "; ".join(f"{t}: {current[t].get('message') or current[t].get('reason')}" if t in current
                       else f"{t}: not reported yet" for t in waiting)
    return false(READY, "PartsNotReady", detail)


def merge(previous: list[dict], updates: list[Condition], generation: int,
          timestamp: str | None = None) -> list[dict]:
    """The new conditions list: `updates` replace conditions of the same type, the others stay;
    lastTransitionTime is kept unless the status changed; Ready is recomputed."""
    timestamp = timestamp or now()
    # (a type this operator no longer reports, from an older version, is dropped)
    by_type = {c["type"]: dict(c) for c in previous if c["type"] in (READY, DELETION) + PARTS}
    for cond in updates:
        old = by_type.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        by_type[cond.type] = {
            "type": cond.type, "status": cond.status, "reason": cond.reason, "message": cond.message,
            "lastTransitionTime": timestamp if changed else old.get("lastTransitionTime", timestamp),
            "observedGeneration": generation,
        }
    ready = overall(by_type)
    old = by_type.get(READY)
    by_type[READY] = {
        "type": READY, "status": ready.status, "reason": ready.reason, "message": ready.message,
        "lastTransitionTime": timestamp if old is None or old.get("status") != ready.status
        else old.get("lastTransitionTime", timestamp),
        "observedGeneration": generation,
    }
    order = {t: i for i, t in enumerate((READY,) + PARTS)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def transitions(previous: list[dict], merged: list[dict]) -> list[dict]:
    """Conditions whose status changed (or appeared): worth a Kubernetes Event each."""
    before = {c["type"]: c.get("status") for c in previous}
    return [c for c in merged if before.get(c["type"]) != c["status"]]
