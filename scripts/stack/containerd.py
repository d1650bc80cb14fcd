"""The node's image store: containerd's paths under .local/, the sandbox (pause) image it is configured
with, and `ctr` in its `k8s.io` namespace, where the kubelet finds images.  No registry is reachable,
so every image a pod uses is imported here first (images.py builds them).  The containerd process
itself is node.py's Containerd component.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from . import console, errors, paths

CONTAINERD_ROOT = paths.DATA / "containerd"
CONTAINERD_STATE = paths.RUN / "containerd"
CONTAINERD_SOCKET = CONTAINERD_STATE / "containerd.sock"
CONTAINERD_CONFIG = paths.ETC / "containerd.toml"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"   # kubeadm's PauseVersion for 1.32; built here (images.pause_image)


def ctr(*args: str, input_path: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    stdin = open(input_path, "rb") if input_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        out = subprocess.run(["ctr", f"--address={CONTAINERD_SOCKET}", "-n", "k8s.io", *args], stdin=stdin,
                             capture_output=True, text=True, timeout=600)
    finally:
        if input_path:
            stdin.close()
    if check and out.returncode != 0:
        raise errors.StackError("ctr", f"{' '.join(args[:2])}: {out.stderr.strip()[-300:]}")
    return out


def normalized(ref: str) -> str:
    """The name containerd stores (and the kubelet asks for): `simplecqrs:dev` is
    docker.io/library/simplecqrs:dev, as in a pull."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def image_present(ref: str) -> bool:
    return ctr("images", "check", f"name=={normalized(ref)}", check=False).stdout.count("\n") > 1


def tag_image(source: str, target: str) -> None:
    ctr("images", "tag", "--force", normalized(source), normalized(target))


def import_image(archive: Path, ref: str) -> None:
    """Load a `docker save`/OCI archive into the node's image store (what a pull would do)."""
    console.detail(f"importing {ref} into containerd")
    ctr("images", "import", "--no-unpack=false", "-", input_path=archive)
    if not image_present(ref):
        raise errors.StackError("containerd", f"{archive} did not provide {ref}")
