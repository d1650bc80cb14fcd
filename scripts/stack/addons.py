"""The node's own images and the cluster add-ons every cluster has: CoreDNS, metrics-server and a
default StorageClass (rancher's local-path-provisioner, as kind and k3s ship).

Images (no registry is reachable, so none is pulled), each a stage of dockerfiles/node.Dockerfile
built by this checkout's dockerd and handed to the node's containerd (images.ensure_node_image; the
pause image is images.py's too, since the kubelet needs it before any add-on):
- CoreDNS, metrics-server, local-path-provisioner: their static binaries (gotools.py) alone, under
  the names their upstream manifests use; local-path's helper pods run the Debian base made here.
The add-ons run as Deployments from scripts/stack/addons/*.yaml.
"""
from __future__ import annotations

import socket
import struct
from pathlib import Path

from . import core, gotools, images, network, node, paths
from .images import NodeImage, ensure_node_image

ADDONS = Path(__file__).resolve().parent / "addons"
LOCAL_PATH_DIR = paths.DATA / "local-path"     # where the local-path StorageClass puts volumes


def _tool(name: str) -> Path:
    return next(t for t in gotools.TOOLS if t.name == name).path


def coredns_image() -> NodeImage:
    return NodeImage(f"registry.k8s.io/coredns/coredns:{gotools.COREDNS_VERSION}", "coredns", _tool("coredns"))


def metrics_server_image() -> NodeImage:
    return NodeImage(f"registry.k8s.io/metrics-server/metrics-server:{gotools.METRICS_SERVER_VERSION}",
                     "metrics-server", _tool("metrics-server"))


def local_path_images() -> list[NodeImage]:
    return [NodeImage(f"rancher/local-path-provisioner:{gotools.LOCAL_PATH_VERSION}", "local-path-provisioner",
                      _tool("local-path-provisioner")),
            NodeImage(f"simplecqrs/local-path-helper:{images.SUITE}", "local-path-helper")]


def dns_answers(name: str = "kubernetes.default.svc.cluster.local", server: str = network.CLUSTER_DNS) -> bool:
    """One real DNS query (type A) over UDP; True when the server answers with a record."""
    query = struct.pack(">HHHHHH", 0x5C5C, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (server, 53))
        reply = s.recv(512)
    _, flags, _, answers = struct.unpack(">HHHH", reply[:8])
    return flags & 0x000F == 0 and answers > 0


def _deployment_available(name: str, namespace: str = "kube-system") -> bool:
    out = node.kubectl("-n", namespace, "get", "deployment", name, "-o",
                       "jsonpath={.status.availableReplicas}", check=False).stdout.strip()
    return out not in ("", "0")


class Addon(core.Component):
    """A kube-system Deployment from scripts/stack/addons/<name>.yaml (pods: the kubelet runs them)."""

    start_timeout = 180
    process = False
    requires = ("kube-proxy", "dockerd")
    manifest = ""
    namespace = "kube-system"

    def node_images(self) -> list[NodeImage]:
        raise NotImplementedError

    def manifest_text(self) -> str:
        return (ADDONS / self.manifest).read_text()

    def install(self) -> None:
        gotools.build_all()
        images.pause_binary()

    def running(self) -> bool:
        return node.Kubelet().running() and node.kubectl(
            "-n", self.namespace, "get", "deployment", self.name, check=False).returncode == 0

    def start(self) -> None:
        for image in self.node_images():
            ensure_node_image(image)
        node.kubectl("apply", "--server-side", "--field-manager=simplecqrs-stack", "--force-conflicts",
                     "-f", "-", input=self.manifest_text())

    def stop(self) -> None:
        """Nothing of its own: its pods stop with the node; its objects stay in the apiserver."""

    def status(self) -> core.Status:
        s = super().status()
        s.log = f"kubectl -n {self.namespace} logs deploy/{self.name}"
        return s


class CoreDNS(Addon):
    name = "coredns"
    address = f"{network.CLUSTER_DNS}:53 (kube-dns)"
    manifest = "coredns.yaml"

    def node_images(self) -> list[NodeImage]:
        return [coredns_image()]

    def ready(self) -> bool:
        return _deployment_available(self.name) and dns_answers()

    def version(self) -> str:
        return gotools.COREDNS_VERSION


class MetricsServer(Addon):
    name = "metrics-server"
    address = "metrics.k8s.io/v1beta1"
    manifest = "metrics-server.yaml"

    def node_images(self) -> list[NodeImage]:
        return [metrics_server_image()]
    requires = ("coredns",)

    def ready(self) -> bool:
        return node.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False).returncode == 0

    def version(self) -> str:
        return gotools.METRICS_SERVER_VERSION


class LocalPath(Addon):
    """The default StorageClass `standard` (kind's name), volumes in .local/data/local-path."""

    name = "local-path-provisioner"
    namespace = "local-path-storage"
    address = "storageclass/standard (default)"
    manifest = "local-path-storage.yaml"

    def node_images(self) -> list[NodeImage]:
        return local_path_images()

    def manifest_text(self) -> str:
        LOCAL_PATH_DIR.mkdir(parents=True, exist_ok=True)
        return super().manifest_text().replace("@LOCAL_PATH_DIR@", str(LOCAL_PATH_DIR)).replace(
            "@HELPER_IMAGE@", local_path_images()[1].ref)

    def ready(self) -> bool:
        return _deployment_available(self.name, self.namespace)

    def version(self) -> str:
        return gotools.LOCAL_PATH_VERSION
