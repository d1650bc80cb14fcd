"""The node's CPU shared as on a systemd node: the host's daemons in one cgroup, the pods in another.

On a node that systemd runs, the kubelet puts every pod under kubepods.slice and the daemons live in
system.slice; under contention the two weigh the same (cgroup v1 cpu.shares 1024 each), whatever their
thread counts.  Here PID 1 is not systemd (cgroup v1, ../shared/notes/real-node.md): a daemon the stack
started stayed in the root cgroup, where each of its runnable threads weighs as much as the whole pod tree
(the kubelet's cgroupRoot /simplecqrs, 1024 shares).  Under load Cassandra's, MySQL's and the JVMs' threads
left the pods a sliver of the two cores: `scripts/bench` measured the API's pods at a quarter of the same
code's throughput as a host process, and the relay's publish p50 at 150 ms.  So each daemon the stack starts
joins /simplecqrs-host (the cpu and cpuacct hierarchies, 1024 shares), and the pods' tree and the host's
daemons weigh the same, as on a systemd node.  Leaf: imports nothing of the stack.
"""
from __future__ import annotations

from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")
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
