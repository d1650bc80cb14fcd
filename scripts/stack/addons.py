"""The node's own images and the cluster add-ons every cluster has: CoreDNS, metrics-server and a
default StorageClass (rancher's local-path-provisioner, as kind and k3s ship).

Images (no registry is reachable, so none is pulled), each a stage of dockerfiles/node.Dockerfile
built by this checkout's dockerd (images.build_image) and handed to the node's containerd:
- pause: `build/pause/linux/pause.c` from the k8s.io/kubernetes module, `gcc -static`, as
  upstream's build/pause/Makefile does; tagged as the sandbox image containerd asks for.
- CoreDNS, metrics-server, local-path-provisioner: their static binaries (gotools.py) alone, under
  the names their upstream manifests use; local-path's helper pods run the Debian base made here.
The add-ons run as Deployments from scripts/stack/addons/*.yaml.  Standard library only.
"""
from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import core, gotools, images, network, node

ADDONS = Path(__file__).resolve().parent / "addons"
NODE_DOCKERFILE = Path(__file__).resolve().parent / "dockerfiles" / "node.Dockerfile"
PAUSE_VERSION = node.PAUSE_IMAGE.rsplit(":", 1)[1]
LOCAL_PATH_DIR = core.DATA / "local-path"     # where the local-path StorageClass puts volumes


def pause_binary() -> Path:
    out = core.CACHE / "bin" / f"pause-{PAUSE_VERSION}"
    if out.exists():
        return out
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    source = Path(modcache) / f"k8s.io/kubernetes@{gotools.K8S_VERSION}" / "build/pause/linux/pause.c"
    if not source.exists():
        raise core.StackError("pause", f"{source} missing (gotools builds download the k8s.io/kubernetes module)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    core.run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}-simplecqrs",
              "-o", str(tmp), str(source)], "building pause (gcc -static)")
    subprocess.run(["strip", str(tmp)], check=False)
    tmp.replace(out)
    return out


def _tool(name: str) -> Path:
    return next(t for t in gotools.TOOLS if t.name == name).path


@dataclass(frozen=True)
class NodeImage:
    ref: str          # the name upstream manifests use, e.g. registry.k8s.io/pause:3.10
    stage: str        # its stage in dockerfiles/node.Dockerfile; the binary's name in the build context
    binary: Path | None = None   # None: the stage needs no file (it is FROM the Debian base)


def pause_image() -> NodeImage:
    return NodeImage(node.PAUSE_IMAGE, "pause", pause_binary())


def coredns_image() -> NodeImage:
    return NodeImage(f"registry.k8s.io/coredns/coredns:{gotools.COREDNS_VERSION}", "coredns", _tool("coredns"))


def metrics_server_image() -> NodeImage:
    return NodeImage(f"registry.k8s.io/metrics-server/metrics-server:{gotools.METRICS_SERVER_VERSION}",
                     "metrics-server", _tool("metrics-server"))


def local_path_images() -> list[NodeImage]:
    return [NodeImage(f"rancher/local-path-provisioner:{gotools.LOCAL_PATH_VERSION}", "local-path-provisioner",
                      _tool("local-path-provisioner")),
            NodeImage(f"simplecqrs/local-path-helper:{images.SUITE}", "local-path-helper")]


def ensure_image(image: NodeImage) -> None:
    """`docker build --target <stage>` of node.Dockerfile, imported unless containerd has the image."""
    if node.image_present(image.ref):
        return
    context = core.LOCAL / "build" / image.stage       # just the one binary: a small build context
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    if image.binary is not None:
        core.link_or_copy(image.binary, context / image.stage)
    archive = images.build_image(image.ref, context=context, dockerfile=NODE_DOCKERFILE, target=image.stage,
                                 base_arg="BASE_IMAGE" if image.binary is None else None)
    node.import_image(archive, image.ref)
    shutil.rmtree(context, ignore_errors=True)


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
        pause_binary()

    def running(self) -> bool:
        return node.Kubelet().running() and node.kubectl(
            "-n", self.namespace, "get", "deployment", self.name, check=False).returncode == 0

    def start(self) -> None:
        for image in self.node_images():
            ensure_image(image)
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
