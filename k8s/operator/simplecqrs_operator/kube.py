"""The few Kubernetes API calls the operator makes, as plain dicts, through the kubernetes
client's dynamic client (`kubernetes.dynamic`: discovery, server-side apply, typed errors).

Children are written with server-side apply (field manager `simplecqrs-operator`, forced):
re-applying an unchanged manifest changes nothing, and a hand-edited field we own is put back.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from .resource import GROUP, MANAGER, VERSION

# kind -> apiVersion, for everything the operator reads or writes (KafkaTopic: the served one).
API_VERSIONS = {
    "Secret": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Ingress": "networking.k8s.io/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "OrderService": f"{GROUP}/{VERSION}",
    "Event": "v1",
}
STRIMZI_GROUP = "kafka.strimzi.io"
REDISCOVER_SECONDS = 60
log = logging.getLogger(__name__)
STRIMZI_VERSIONS = ("v1", "v1beta2")  # in order of preference


def client() -> kubernetes.client.ApiClient:
    """In-cluster credentials in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def _plain(obj: Any) -> dict | None:
    return obj.to_dict() if obj is not None and hasattr(obj, "to_dict") else obj


class Kube:
    def __init__(self, api: kubernetes.client.ApiClient, timeout: float = 30, scope: str | None = None):
        self.api = api
        self.timeout = timeout
        self.scope = scope          # the watched namespace, or None: the whole cluster
        self._dynamic: DynamicClient | None = None
        self._discovered = float("-inf")    # when the discovery cache was last renewed
        # () -> every OrderService as kopf's watch last delivered it, or None: handlers.py sets it once
        # kopf has filled its index (no resource handler runs before that).
        self.index: Callable[[], list[dict] | None] | None = None

    @property
    def dynamic(self) -> DynamicClient:
        """Made on first use: its discovery asks the apiserver, which may still be coming up."""
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def resource(self, kind: str, api_version: str | None = None):
        api_version = api_version or API_VERSIONS[kind]
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            # Perhaps served since the last discovery (a CRD installed later): discover again, at most
            # once a minute, since a kind that is not served at all (HTTPRoute on a cluster without the
            # Gateway API) is asked for at every pass, to delete what the spec dropped.
            if time.monotonic() - self._discovered < REDISCOVER_SECONDS:
                raise
            self._discovered = time.monotonic()
            self.dynamic.resources.invalidate_cache()
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get(self, kind: str, namespace: str, name: str, api_version: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return _plain(self.resource(kind, api_version).get(name=name, namespace=namespace,
                                                                _request_timeout=self.timeout))
        except (NotFoundError, ResourceNotFoundError):     # no such object, or no such kind served
            return None

    def orderservices(self) -> list[dict]:
        """Every OrderService the operator serves: from kopf's index once it is filled (`index`, set
        by handlers.py), else listed from the apiserver."""
        if self.index is not None and (indexed := self.index()) is not None:
            return indexed
        try:
            listed = self.resource("OrderService").get(namespace=self.scope, _request_timeout=self.timeout)
        except ResourceNotFoundError:                       # the CRD is not installed (yet)
            return []
        return _plain(listed).get("items", [])

    def create(self, obj: dict) -> dict:
        return _plain(self.resource(obj["kind"], obj["apiVersion"]).create(
            body=obj, namespace=obj["metadata"]["namespace"], _request_timeout=self.timeout))

    def apply(self, obj: dict, uid: str | None = None) -> dict:
        """Server-side apply: creates the object or converges the fields we manage.

        uid: the live object's, as a precondition: the apiserver refuses the apply (409 when it was
        deleted, 422 when another object of that name replaced it) rather than write to an object
        other than the one the caller checked (ownership.foreign_children)."""
        meta = obj["metadata"]
        body = {**obj, "metadata": {**meta, "uid": uid}} if uid else obj
        return _plain(self.resource(obj["kind"], obj["apiVersion"]).server_side_apply(
            body=body, name=meta["name"], namespace=meta["namespace"], field_manager=MANAGER, force_conflicts=True,
            _request_timeout=self.timeout))

    def delete(self, kind: str, namespace: str, name: str, api_version: str | None = None,
               uid: str | None = None) -> bool:
        """Delete in the background; False when it was already gone.  uid: as in apply()."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.resource(kind, api_version).delete(name=name, namespace=namespace, body=body,
                                                    _request_timeout=self.timeout)
            return True
        except (NotFoundError, ResourceNotFoundError):
            return False

    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self.resource("OrderService").status.patch(
            body={"status": status}, name=name, namespace=namespace,
            content_type="application/merge-patch+json", _request_timeout=self.timeout)

    def post_event(self, about: dict, reason: str, message: str, *, warning: bool = False) -> None:
        """A core/v1 Event about `about` (apiVersion, kind, metadata name/namespace/uid).  An Event
        that cannot be posted is logged, never raised: it must not fail the reconcile."""
        meta = about["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": about["apiVersion"], "kind": about["kind"], "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta.get("uid")},
                "type": "Warning" if warning else "Normal", "reason": reason, "message": message,
                "source": {"component": MANAGER}, "reportingComponent": MANAGER,
                "reportingInstance": socket.gethostname(), "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        try:
            self.resource("Event").create(body=body, namespace=meta["namespace"], _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - an event is information, not state
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

    def strimzi_version(self, plural: str) -> str | None:
        """The apiVersion this cluster serves Strimzi's `plural` (kafkatopics, kafkausers) in, or None.

        Asked on every reconcile, from the API's own discovery documents (not the client's cached
        discovery): installing or removing Strimzi's CRDs takes effect at once."""
        def document(path: str) -> dict | None:
            try:
                return _plain(self.dynamic.request("GET", path))
            except NotFoundError:
                return None

        group = document(f"/apis/{STRIMZI_GROUP}")
        served = [v["version"] for v in (group or {}).get("versions", [])]
        return preferred_strimzi_version(served, plural, lambda v: document(f"/apis/{STRIMZI_GROUP}/{v}"))


def preferred_strimzi_version(served: list[str], plural: str, resources_of) -> str | None:
    """The first of STRIMZI_VERSIONS that is served and lists `plural`; resources_of(version) is
    that version's discovery document (or None).  Strimzi 1.2 serves v1 only; 0.51 v1 and v1beta2,
    or v1beta2 alone when v1 is switched off."""
    for version in STRIMZI_VERSIONS:
        if version in served:
            resources = resources_of(version) or {}
            if any(r["name"] == plural for r in resources.get("resources", [])):
                return f"{STRIMZI_GROUP}/{version}"
    return None
