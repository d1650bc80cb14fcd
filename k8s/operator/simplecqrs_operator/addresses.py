"""Host names as a pod resolves them, so that two spellings of one server compare equal: where a
Secret may be sent (credentials.py) and which stores two instances share (ownership.py)."""
from __future__ import annotations

import ipaddress
import os

# The cluster's DNS domain (kubelet --cluster-domain; cluster.local nearly everywhere).
CLUSTER_DOMAIN = os.environ.get("CLUSTER_DOMAIN", "cluster.local")
# The registries an OrderService's images may come from (ALLOWED_IMAGE_REGISTRIES, comma-separated;
# unset: any).  Whoever installs the operator decides what the tenants' pods may run.
ALLOWED_REGISTRIES = tuple(r.strip().lower() for r in os.environ.get("ALLOWED_IMAGE_REGISTRIES", "").split(",")
                           if r.strip())


def canonical_host(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """`host` as a pod in `namespace` resolves it first: one label is a Service of the namespace,
    two labels a Service of another namespace (service.namespace), `*.svc` is completed with the
    cluster domain; addresses and other names are kept, lower-cased, without a port or final dot."""
    h = host.strip().lower().rstrip(".")
    if h.count(":") == 1:                      # host:port (an IPv6 address has more colons)
        h = h.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(h.strip("[]")))
    except ValueError:
        pass
    if h.endswith(".svc"):
        return f"{h}.{domain}"
    labels = h.split(".")
    if len(labels) == 1:
        return f"{h}.{namespace}.svc.{domain}"
    if len(labels) == 2:
        return f"{h}.svc.{domain}"
    return h


def registry(image: str) -> str:
    """The registry host of an image reference, as the container runtime reads it."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def refused_images(images: list[str], allowed: tuple[str, ...] = ALLOWED_REGISTRIES) -> list[str]:
    """The images whose registry is not among `allowed` (none when `allowed` is empty)."""
    return [i for i in images if allowed and registry(i).lower() not in allowed]
