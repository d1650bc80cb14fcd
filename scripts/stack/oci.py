"""Single-layer images for the node's own static binaries (pause, CoreDNS, metrics-server).

No registry is reachable and these programs need nothing but their binary, so their images are
written directly: one layer tar, an image config, and the `docker save` layout
(manifest.json with RepoTags) that `ctr -n k8s.io images import` reads.  The product's image is
different: it is built by `docker build` from the Dockerfile (images.py).  Standard library only.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class File:
    path: str                 # inside the image, without the leading /
    source: Path | None = None
    text: str | None = None
    mode: int = 0o755


@dataclass(frozen=True)
class Image:
    ref: str                  # e.g. registry.k8s.io/pause:3.10
    files: tuple[File, ...]
    entrypoint: tuple[str, ...]
    args: tuple[str, ...] = ()
    user: str = "65532:65532"  # non-root, as the upstream distroless images
    exposed: tuple[str, ...] = field(default=())

    def archive_name(self) -> str:
        return self.ref.replace("/", "_").replace(":", "_") + ".tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _dirs(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _layer(image: Image) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for f in image.files:
            for d in _dirs(f.path):
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            data = f.source.read_bytes() if f.source is not None else (f.text or "").encode()
            _add(tar, f.path, data, f.mode)
    return buf.getvalue()


def write_archive(image: Image, out: Path) -> Path:
    """A `docker save`-layout archive of `image` at `out` (rewritten only when its content changes)."""
    layer = _layer(image)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": list(image.entrypoint), "Cmd": list(image.args) or None, "User": image.user,
                   "ExposedPorts": {p: {} for p in image.exposed} or None,
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [image.ref],
                            "Layers": [f"{diff_id[7:]}/layer.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, config_name, config, 0o644)
        _add(tar, f"{diff_id[7:]}/layer.tar", layer, 0o644)
        _add(tar, "manifest.json", manifest, 0o644)
    data = buf.getvalue()
    if not out.exists() or out.read_bytes() != data:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")  # two writers never share a temporary file
        tmp.write_bytes(data)
        tmp.replace(out)
    return out
