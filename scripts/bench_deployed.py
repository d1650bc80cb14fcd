"""scripts/bench's deployed form: an instance as users run it, its pods reached through the Ingress.

`make up`'s instance (or `--instance NAMESPACE/NAME`) is measured where it runs:
- load: wrk and the fixed-rate poster send to its API through the ingress controller (the stack's
  Traefik, http://127.0.0.1:8080, or the Ingress host on :80 for another instance);
- CPU: every container on the node from its own cgroup (cgroup v1 `cpuacct.usage`, under the
  kubelet's cgroupfs root /sys/fs/cgroup/cpuacct/simplecqrs/), and the host's processes (the write
  store, Cassandra, Traefik, the control plane) from /proc; rows are named `pod:<component>` for the
  instance's containers (api, relay, consumer), `pod:<namespace>/<container>` for the others (the
  Strimzi brokers, the operators) and `host:<name>` for host processes;
- freshness: the consumer containers' and relay containers' own histograms (bench_measure), scraped
  at the pod IPs (the node's bridge is reachable from the host);
- flame graphs: py-spy, run on the host, samples a gunicorn worker, the relay and a consumer by
  their host pids (the thread holding the GIL: their Python work) and writes SVGs (and the collapsed
  stacks, for the top frames in the summary).
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scripts import bench_measure as measure
from scripts.stack import cgroups
from scripts.stack.errors import StackError
from scripts.stack.node import kubectl
from scripts.stack.paths import ROOT
from scripts.stack.processes import read_pid

# Host processes by their pid file (RUN/<name>.pid): the write store is added by its name.
HOST_PROCESSES = ("cassandra", "traefik", "kube-apiserver", "etcd", "kubelet", "containerd",
                  "kube-controller-manager", "kube-scheduler", "kube-proxy", "kube-router")


@dataclass(frozen=True)
class Container:
    row: str           # the CPU table's row this container counts in
    pod: str
    name: str
    pod_ip: str
    port: int | None   # its first containerPort
    cgroup: Path | None


def _cgroup(pod_uid: str, container_id: str) -> Path | None:
    """The container's cpuacct cgroup: <root>/kubepods[/<qos>]/pod<uid>/<container id>."""
    for path in (cgroups.CGROUPS / "cpuacct" / cgroups.POD_ROOT).glob(f"kubepods*/**/pod{pod_uid}/{container_id}"):
        return path
    return None


def node_containers(namespace: str, name: str) -> list[Container]:
    """Every running container on the node, the instance's named by component."""
    pods = json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    out = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
        labels = meta.get("labels", {})
        ours = meta["namespace"] == namespace and labels.get("app.kubernetes.io/instance") == name
        ports = {c["name"]: (c.get("ports") or [{}])[0].get("containerPort") for c in spec["containers"]}
        for cs in status.get("containerStatuses", []):
            if "running" not in cs.get("state", {}) or not cs.get("containerID"):
                continue
            row = f"pod:{cs['name']}" if ours else f"pod:{meta['namespace']}/{cs['name']}"
            out.append(Container(row, meta["name"], cs["name"], status.get("podIP", ""), ports.get(cs["name"]),
                                 _cgroup(meta["uid"], cs["containerID"].split("://", 1)[1])))
    return out


def _cgroup_seconds(path: Path | None) -> float:
    try:
        return int((path / "cpuacct.usage").read_text()) / 1e9 if path else 0.0
    except OSError:
        return 0.0


def cpu_snapshot(containers: list[Container], write_store: str) -> dict[str, float]:
    """CPU seconds so far, by row: containers summed by row, host processes with their children."""
    rows: Counter = Counter()
    for c in containers:
        rows[c.row] += _cgroup_seconds(c.cgroup)
    for name in (write_store, *HOST_PROCESSES):
        pid = read_pid(name)
        if pid:
            rows[f"host:{name}"] += measure.cpu_seconds(pid)
    return dict(rows)


def per_1000(after: dict[str, float], before: dict[str, float], orders: int) -> dict[str, float]:
    """CPU seconds per 1000 orders by row (never below 0: less the rest rate, a quiet row can dip under it)."""
    table = {k: round(max(0.0, after[k] - before.get(k, 0.0)) * 1000 / max(1, orders), 3) for k in after}
    return dict(sorted(table.items(), key=lambda kv: -kv[1]))


class Cpu:
    """The CPU every row uses while the block runs: as cores (`cores()`, what the rest rate is measured
    with), per 1000 orders in all (`total_per_1000`), and less each row's rate at rest (`per_1000`, `idle`
    in cores).  `extra` adds rows of processes outside the node's table (a baseline's own process), by a
    function that reads their CPU seconds so far.

        with Cpu(containers, store, idle, {"host:bench-floor": lambda: cpu_seconds(pid)}) as used:
            ...
        used.per_1000(orders)
    """

    def __init__(self, containers: list[Container], write_store: str, idle: dict[str, float] | None = None,
                 extra: dict[str, Callable[[], float]] | None = None):
        self.containers, self.write_store, self.idle, self.extra = containers, write_store, idle or {}, extra or {}

    def _snapshot(self) -> dict[str, float]:
        return {**cpu_snapshot(self.containers, self.write_store), **{k: f() for k, f in self.extra.items()}}

    def __enter__(self) -> Cpu:
        self.before, self.started = self._snapshot(), time.monotonic()
        return self

    def __exit__(self, *_exc) -> None:
        self.after, self.took = self._snapshot(), time.monotonic() - self.started

    def cores(self) -> dict[str, float]:
        return {k: (self.after[k] - self.before.get(k, 0.0)) / self.took for k in self.after}

    def total_per_1000(self, orders: int) -> dict[str, float]:
        return per_1000(self.after, self.before, orders)

    def per_1000(self, orders: int) -> dict[str, float]:
        rest = {k: self.before.get(k, 0.0) + self.idle.get(k, 0.0) * self.took for k in self.after}
        return per_1000(self.after, rest, orders)


def median_rows(runs: list[dict[str, float]], prefixes: tuple[str, ...] = ("",)) -> dict[str, float]:
    """Per row (whose name starts with one of `prefixes`: every row by default), the median over `runs`."""
    rows = sorted({k for r in runs for k in r if k.startswith(prefixes)})
    return {k: round(statistics.median(r.get(k, 0.0) for r in runs), 3) for k in rows}


def metrics_urls(containers: list[Container], container_name: str) -> list[str]:
    return [f"http://{c.pod_ip}:{c.port}" for c in containers
            if c.row == f"pod:{container_name}" and c.pod_ip and c.port]


def pids(c: Container) -> list[int]:
    try:
        return [int(p) for p in (c.cgroup / "cgroup.procs").read_text().split()] if c.cgroup else []
    except OSError:
        return []


def busiest_pid(c: Container) -> int | None:
    """The container's process that has used the most CPU (a gunicorn worker rather than its master)."""
    return max(pids(c), key=lambda p: measure.cpu_seconds(p, tree=False), default=None)


PROFILED = {"api-worker": "pod:api", "relay": "pod:relay", "consumer": "pod:consumer"}


def profile_targets(containers: list[Container]) -> dict[str, int]:
    """What the flame graphs sample: in the busiest container of each profiled row, its busiest process."""
    targets = {}
    for label, row in PROFILED.items():
        busiest = max((c for c in containers if c.row == row), key=lambda c: _cgroup_seconds(c.cgroup), default=None)
        pid = busiest_pid(busiest) if busiest else None
        if pid:
            targets[label] = pid
    return targets


# ---------------------------------------------------------------- flame graphs
def pyspy() -> str | None:
    return shutil.which("py-spy") or (str(ROOT / ".venv/bin/py-spy")
                                      if (ROOT / ".venv/bin/py-spy").exists() else None)


def profile(targets: dict[str, int], seconds: float, out_dir: Path) -> dict[str, dict]:
    """py-spy on each target pid at once, for `seconds`: <name>.svg (a flame graph) and the top frames
    (share of samples where the frame is on the stack, and where it is the leaf).

    --gil: only the thread holding the GIL is sampled, i.e. the process's Python work.  Without it,
    py-spy cannot tell a container's idle threads from busy ones (their thread ids are another pid
    namespace's) and the idle pools' wait frames fill the graph.  Work in C with the GIL released (TLS,
    the drivers' event loops) is not in the graph; the cgroup rows of the CPU table count it."""
    tool = pyspy()
    if tool is None:
        raise StackError("py-spy", "not installed in .venv (pip install -e '.[dev]')")
    procs = {}
    for name, pid in targets.items():
        for fmt, path in (("flamegraph", out_dir / f"flame-{name}.svg"), ("raw", out_dir / f"flame-{name}.txt")):
            procs[(name, fmt)] = subprocess.Popen(
                [tool, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "97",
                 "--nonblocking", "--gil", "--format", fmt, "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    errors = {}
    for key, p in procs.items():
        _, err = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            errors[key[0]] = err.strip()[-300:]
    out = {}
    for name in targets:
        raw = out_dir / f"flame-{name}.txt"
        out[name] = {"svg": str(out_dir / f"flame-{name}.svg"), "error": errors.get(name)} if name in errors \
            else {"svg": str(out_dir / f"flame-{name}.svg"), **top_frames(raw.read_text())}
    return out


def top_frames(collapsed: str, n: int = 8) -> dict:
    """From py-spy's collapsed stacks ("frame;frame;leaf count"): the frames most often on the stack
    (inclusive) and most often the leaf (self), as shares of all samples."""
    total, inclusive, leaf = 0, Counter(), Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":", 1)[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        total += k
        for f in set(frames):
            inclusive[f] += k
        leaf[frames[-1]] += k
    share = lambda c: [{"frame": f, "share": round(v / total, 3)} for f, v in c.most_common(n)]  # noqa: E731
    return {"samples": total, "inclusive": share(inclusive), "self": share(leaf)}
