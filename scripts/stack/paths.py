"""Where the local stack keeps things: the checkout, its .local/ state, the per-user cache, and how
tools get from the cache into .local/bin.  A leaf: it imports nothing else of the stack.

SIMPLECQRS_LOCAL moves .local/, SIMPLECQRS_CACHE the cache (default ~/.cache/simplecqrs).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = Path(os.environ.get("SIMPLECQRS_LOCAL", ROOT / ".local"))
CACHE = Path(os.environ.get("SIMPLECQRS_CACHE", Path.home() / ".cache" / "simplecqrs"))
BIN = LOCAL / "bin"          # links to tools built into CACHE
DATA = LOCAL / "data"        # one sub-folder per component
LOGS = LOCAL / "logs"
RUN = LOCAL / "run"          # pid files
ETC = LOCAL / "etc"          # generated configuration, certificates, credentials
KUBECONFIG = LOCAL / "kubeconfig"
# The team's reference files (Strimzi CRDs, the skaffold schema) that tests compare with: beside
# the checkout, as CI clones it; SIMPLECQRS_REF_DIR for a checkout elsewhere.
REF = Path(os.environ.get("SIMPLECQRS_REF_DIR", ROOT.parent / "shared" / "ref"))
JAVA17_HOME = Path(os.environ.get("SIMPLECQRS_JAVA17_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"))


def ensure_dirs() -> None:
    for d in (BIN, DATA, LOGS, RUN, ETC, CACHE):
        d.mkdir(parents=True, exist_ok=True)


def which(tool: str) -> str | None:
    return shutil.which(tool)


def link_tool(src: Path, name: str | None = None) -> Path:
    """Make .local/bin/<name> point at a tool in the per-user cache."""
    BIN.mkdir(parents=True, exist_ok=True)
    dst = BIN / (name or src.name)
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve():
            return dst
        dst.unlink()
    dst.symlink_to(src)
    return dst


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link a cached file into a build context, or copy it when the two are on other filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
