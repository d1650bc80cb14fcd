"""The few Kubernetes API calls the operator makes, as plain dicts over the kubernetes client.

Children are written with server-side apply (field manager `simplecqrs-operator`, forced):
re-applying an unchanged manifest changes nothing, and a hand-edited field we own is put back.
"""
from __future__ import annotations

import json
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .resource import GROUP, MANAGER, PLURAL, VERSION

# kind -> (API path prefix, plural) for everything the operator reads or writes.
KINDS = {
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "OrderService": (f"/apis/{GROUP}/{VERSION}", PLURAL),
}
STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_VERSIONS = ("v1", "v1beta2")  # in order of preference


def client() -> kubernetes.client.ApiClient:
    """In-cluster credentials in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def path(kind: str, namespace: str, name: str = "", api_version: str | None = None) -> str:
    if kind == "KafkaTopic":
        prefix, plural = f"/apis/{api_version}", "kafkatopics"
    else:
        prefix, plural = KINDS[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def path_of(obj: dict) -> str:
    meta = obj["metadata"]
    return path(obj["kind"], meta["namespace"], meta["name"], obj["apiVersion"])


class Kube:
    def __init__(self, api: kubernetes.client.ApiClient, timeout: float = 30, scope: str | None = None):
        self.api = api
        self.timeout = timeout
        self.scope = scope          # the watched namespace, or None: the whole cluster

    def orderservices(self) -> list[dict]:
        """Every OrderService the operator serves."""
        prefix, plural = KINDS["OrderService"]
        url = f"{prefix}/namespaces/{self.scope}/{plural}" if self.scope else f"{prefix}/{plural}"
        return (self.get(url) or {}).get("items", [])

    def request(self, method: str, url: str, *, body: Any = None, query: list | None = None,
                content_type: str = "application/json") -> dict | None:
        method, full_url, headers, body, _ = self.api.param_serialize(
            method, url, query_params=query or [], body=body, auth_settings=["BearerToken"],
            header_params={"Content-Type": content_type, "Accept": "application/json"})
        resp = self.api.call_api(method, full_url, header_params=headers, body=body,
                                 _request_timeout=self.timeout)
        data = resp.read()
        if not 200 <= resp.status <= 299:
            try:  # the apiserver's Status message says what went wrong, in one line
                reason = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                reason = resp.reason
            raise ApiException(status=resp.status, reason=reason)
        return json.loads(data) if data else None

    def get(self, url: str) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", url)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def create(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return self.request("POST", path(obj["kind"], meta["namespace"], api_version=obj["apiVersion"]), body=obj)

    def apply(self, obj: dict) -> dict:
        """Server-side apply: creates the object or converges the fields we manage."""
        return self.request("PATCH", path_of(obj), body=obj, content_type="application/apply-patch+yaml",
                            query=[("fieldManager", MANAGER), ("force", "true")])

    def delete(self, url: str) -> bool:
        """Delete in the background; False when it was already gone."""
        try:
            self.request("DELETE", url, body={"propagationPolicy": "Background"})
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self.request("PATCH", path("OrderService", namespace, name) + "/status", body={"status": status},
                     content_type="application/merge-patch+json")

    def strimzi_topic_version(self) -> str | None:
        """The KafkaTopic API version this cluster serves (v1 preferred, else v1beta2), or None.

        Asked on every reconcile: installing or removing Strimzi's CRD takes effect at once."""
        group = self.get(f"/apis/{STRIMZI_GROUP}")
        served = {v["version"] for v in (group or {}).get("versions", [])}
        for version in STRIMZI_VERSIONS:
            if version in served:
                resources = self.get(f"/apis/{STRIMZI_GROUP}/{version}") or {}
                if any(r["name"] == "kafkatopics" for r in resources.get("resources", [])):
                    return f"{STRIMZI_GROUP}/{version}"
        return None
