"""The local stack's component model: `Component`, its `Status`, and the status table.

A `Component` is one local service (mariadb, kafka, cassandra, kube-apiserver, ...): installed into
the cache, started as a daemon or applied to the cluster, probed for real, stopped.  The helpers it
builds on live in small modules by what they hold; a component (and a test) imports each from its
module:

- paths.py      where things live (.local/, the cache, .local/bin) and the links into .local/bin
- errors.py     StackError, the one-line failure
- console.py    the progress lines (say, detail)
- commands.py   long install/build steps with a heartbeat (run), log tails
- processes.py  daemons: spawn with a pid file, liveness, stop and kill by pid file (psutil)
- ports.py      whether a port is taken, the wait for it before a start (psutil)
- waits.py      wait_until: a probe polled until it passes (tenacity)
- mounts.py     mounts left under .local/ and their removal (psutil)

None of them imports a component module (pyproject.toml's import contracts).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import console, paths, processes, waits


# ---------------------------------------------------------------- components
@dataclass
class Status:
    name: str
    state: str      # running | stopped | not installed
    address: str
    version: str
    log: str


class Component:
    """A local service: installed into the cache, started as a daemon, probed for real."""

    name: str = ""
    address: str = ""
    start_timeout: float = 120
    process: bool = True    # False: not a daemon of ours (network setup, objects in the cluster)

    def install(self) -> None:
        """Idempotent: fetch/build what is missing into CACHE, link tools into .local/bin."""

    def start(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        """A real request (a query, a metadata call, a GET), not just an open port."""
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    def stop(self) -> None:
        processes.stop(self.name)

    # -- shared behaviour
    @property
    def log(self) -> Path:
        return processes.log_file(self.name)

    def running(self) -> bool:
        return processes.read_pid(self.name) is not None

    def up(self) -> None:
        if self.running() and self._ready_quietly():
            console.detail(f"{self.name} answering on {self.address}")
            return
        if not self.running():
            console.say(f"starting {self.name}")
            self.start()
        self.wait_ready()

    def wait_ready(self) -> None:
        took = waits.wait_until(self.ready, component=self.name, what="answering", timeout=self.start_timeout,
                                log=self.log, pid_name=self.name if self.process else None)
        console.detail(f"{self.name} answering on {self.address} after {took:.1f}s")

    def _ready_quietly(self) -> bool:
        try:
            return bool(self.ready())
        except Exception:  # noqa: BLE001
            return False

    def status(self) -> Status:
        if self.running():
            state = "running" if self._ready_quietly() else "starting/unhealthy"
        else:
            state = "stopped"
        try:
            version = self.version()
        except Exception:  # noqa: BLE001
            version = "?"
        return Status(self.name, state, self.address, version, str(self.log.relative_to(paths.ROOT))
                      if self.log.is_relative_to(paths.ROOT) else str(self.log))


def print_table(rows: list[Status]) -> None:
    headers = ("component", "state", "address", "version", "log")
    data = [headers] + [(r.name, r.state, r.address, r.version, r.log) for r in rows]
    widths = [max(len(str(row[i])) for row in data) for i in range(len(headers))]
    for i, row in enumerate(data):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()
