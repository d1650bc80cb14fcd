"""The node's own images and the cluster add-ons every cluster has: CoreDNS and metrics-server.

Images (no registry is reachable, so none is pulled):
- pause: `build/pause/linux/pause.c` from the k8s.io/kubernetes module, `gcc -static`, as
  upstream's build/pause/Makefile does; tagged as the sandbox image containerd asks for.
- CoreDNS and metrics-server: their static binaries (gotools.py) in single-layer images (oci.py),
  under the names their upstream manifests use.
The add-ons run as Deployments in kube-system from scripts/stack/addons/*.yaml.  Standard library only.
"""
from __future__ import annotations

import socket
import struct
import subprocess
from pathlib import Path

from . import core, gotools, network, node, oci

ADDONS = Path(__file__).resolve().parent / "addons"
PAUSE_VERSION = node.PAUSE_IMAGE.rsplit(":", 1)[1]
IMAGES_DIR = core.CACHE / "images"


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


def pause_image() -> oci.Image:
    return oci.Image(node.PAUSE_IMAGE, (oci.File("pause", pause_binary()),), ("/pause",))


def coredns_image() -> oci.Image:
    return oci.Image(f"registry.k8s.io/coredns/coredns:{gotools.COREDNS_VERSION}",
                     (oci.File("coredns", _tool("coredns")),), ("/coredns",), exposed=("1053/udp", "1053/tcp"))


def metrics_server_image() -> oci.Image:
    return oci.Image(f"registry.k8s.io/metrics-server/metrics-server:{gotools.METRICS_SERVER_VERSION}",
                     (oci.File("metrics-server", _tool("metrics-server")),), ("/metrics-server",))


def ensure_image(image: oci.Image) -> None:
    """Write the image's archive (cached per user) and import it unless containerd has it."""
    if not node.image_present(image.ref):
        node.import_image(oci.write_archive(image, IMAGES_DIR / image.archive_name()), image.ref)


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


def _deployment_available(name: str) -> bool:
    out = node.kubectl("-n", "kube-system", "get", "deployment", name, "-o",
                       "jsonpath={.status.availableReplicas}", check=False).stdout.strip()
    return out not in ("", "0")


class Addon(core.Component):
    """A kube-system Deployment from scripts/stack/addons/<name>.yaml (pods: the kubelet runs them)."""

    start_timeout = 180
    process = False
    requires = ("kube-proxy",)
    manifest = ""

    def image(self) -> oci.Image:
        raise NotImplementedError

    def install(self) -> None:
        gotools.build_all()
        pause_binary()

    def running(self) -> bool:
        return node.Kubelet().running() and node.kubectl(
            "-n", "kube-system", "get", "deployment", self.name, check=False).returncode == 0

    def start(self) -> None:
        ensure_image(self.image())
        node.kubectl("apply", "--server-side", "--field-manager=simplecqrs-stack", "--force-conflicts",
                     "-f", str(ADDONS / self.manifest))

    def stop(self) -> None:
        """Nothing of its own: its pods stop with the node; its objects stay in the apiserver."""

    def status(self) -> core.Status:
        s = super().status()
        s.log = f"kubectl -n kube-system logs deploy/{self.name}"
        return s


class CoreDNS(Addon):
    name = "coredns"
    address = f"{network.CLUSTER_DNS}:53 (kube-dns)"
    manifest = "coredns.yaml"
    image = staticmethod(coredns_image)

    def ready(self) -> bool:
        return _deployment_available(self.name) and dns_answers()

    def version(self) -> str:
        return gotools.COREDNS_VERSION


class MetricsServer(Addon):
    name = "metrics-server"
    address = "metrics.k8s.io/v1beta1"
    manifest = "metrics-server.yaml"
    image = staticmethod(metrics_server_image)
    requires = ("coredns",)

    def ready(self) -> bool:
        return node.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False).returncode == 0

    def version(self) -> str:
        return gotools.METRICS_SERVER_VERSION
