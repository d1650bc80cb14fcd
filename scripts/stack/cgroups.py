"""The node's cgroups: the pods' tree (the kubelet's cgroupRoot) and, beside it, the host's daemons.

The kubelet (cgroupfs driver) puts every pod under /simplecqrs in each v1 hierarchy, which must exist
before it starts and is removed by `down`.  On a node that systemd runs, the daemons live in system.slice
beside kubepods.slice, and under contention the two weigh the same (cgroup v1 cpu.shares 1024 each),
whatever their thread counts.  Here PID 1 is not systemd (cgroup v1, ../shared/notes/real-node.md): a
daemon the stack started stayed in the root cgroup, where each of its runnable threads weighs as much as
the whole pod tree.  Under load the stores', the JVMs' and the control plane's threads left the pods a
sliver of the two cores: the deployed bench measured the relay's publish p50 at 114 ms and freshness p99
at 867 ms, and 19.5 ms and 295 ms once the daemons sat beside the pods (docs/performance.md).  So each
daemon the stack starts joins /simplecqrs-host (the cpu and cpuacct hierarchies, 1024 shares).  Leaf:
imports nothing of the stack.
"""
from __future__ import annotations

from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")
POD_ROOT = "simplecqrs"              # the kubelet's cgroupRoot: /sys/fs/cgroup/<controller>/simplecqrs
HOST_GROUP = "simplecqrs-host"
CONTROLLERS = ("cpu", "cpuacct")


def _groups() -> list[Path]:
    return [CGROUPS / c / HOST_GROUP for c in CONTROLLERS if (CGROUPS / c).is_dir()]


def _in_root(pid: int, controller: str) -> bool:
    """Whether `pid` is still in `controller`'s root cgroup (a pod's process never is: it stays there)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path == "/"
    return False


def join_host(pid: int) -> None:
    """Move the process `pid` (all its threads; what it starts later follows it) into the host daemons'
    cgroup.  Best effort: without writable cgroups (not root, cgroup v2 only) everything stays as it was."""
    for group in _groups():
        try:
            group.mkdir(exist_ok=True)
            if _in_root(pid, group.parent.name):
                (group / "cgroup.procs").write_text(f"{pid}\n")
        except OSError:
            pass


def remove_host() -> None:
    """rmdir the host daemons' cgroups once nothing is left in them (`down`); an error leaves them."""
    for group in _groups():
        try:
            group.rmdir()
        except OSError:
            pass


# ---------------------------------------------------------------- the pods' tree (the kubelet's cgroupRoot)
def _v1_hierarchies() -> list[Path]:
    return [p for p in CGROUPS.iterdir() if p.is_dir() and p.name != "unified"]


def create_pod_root() -> None:
    """The kubelet's cgroupRoot must exist in every v1 hierarchy before it starts."""
    for ctrl in _v1_hierarchies():
        top = ctrl / POD_ROOT
        top.mkdir(exist_ok=True)
        if ctrl.name == "cpuset":  # a cpuset cgroup takes no task until it has cpus and mems
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (top / f).read_text().strip():
                    (top / f).write_text((ctrl / f).read_text())


def remove_pod_root() -> None:
    """rmdir our cgroup subtree in every hierarchy, children first: the v1 ones, and the hybrid
    layout's `unified` (v2) one, where runc puts each pod too (it was left behind there)."""
    for ctrl in [p for p in CGROUPS.iterdir() if p.is_dir()]:
        top = ctrl / POD_ROOT
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass
