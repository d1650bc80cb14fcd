"""Mount points the stack's components leave under .local/ (pod volumes, container roots, netns
files, a half-made debootstrap root) and their removal.  A leaf: it imports nothing else of the
stack.  The mount table through psutil."""
from __future__ import annotations

import subprocess
from pathlib import Path

import psutil


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (one entry per mount: stacked mounts repeat)."""
    root_s = str(Path(root).resolve())
    points = [p.mountpoint for p in psutil.disk_partitions(all=True)]
    return sorted((p for p in points if p == root_s or p.startswith(root_s + "/")), key=len, reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted at or below `root` (pod volumes, container roots, netns files)."""
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True)
