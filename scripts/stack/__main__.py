"""`python -m scripts.stack {up,down,status,clean,infra}` — the local stack.

`make up` / `make down` / `make status` / `make clean` call this.  `up --infra-only`
brings up the stores, the control plane, the node and its add-ons (what `make test`
needs); `up` adds simplecqrs on top, as pods installed by its Helm charts (services.py).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time

from . import core


def infrastructure(*, both_write_stores: bool = True) -> list[core.Component]:
    """Start order: slow starters first so their boot overlaps the others'; stopped in reverse.

    The write store the product uses, and with `both_write_stores` the other server too (the
    tests that run on MySQL and on MariaDB; `make down` and `make status` see both)."""
    from .addons import CoreDNS, LocalPath, MetricsServer
    from .cassandra import Cassandra
    from .images import Dockerd
    from .ingress import Traefik
    from .kafka import Kafka, Strimzi
    from .kube import Etcd, KubeApiserver, KubeControllerManager
    from .netpol import KubeRouter
    from .node import node_components
    from .writestore import servers

    return [Cassandra(), *servers(both=both_write_stores), Etcd(), KubeApiserver(), KubeControllerManager(),
            Dockerd(), *node_components(), KubeRouter(), CoreDNS(), MetricsServer(), LocalPath(), Traefik(), Strimzi(),
            Kafka()]


def stop_all(comps: list[core.Component]) -> None:
    from .node import remove_leftovers

    for c in reversed(comps):
        if c.running():
            core.say(f"stopping {c.name}")
        c.stop()
    remove_leftovers()


def services() -> list[core.Component]:
    from .services import simplecqrs_components

    return simplecqrs_components()


def bring_up(components: list[core.Component]) -> None:
    """Install everything, start every component whose dependencies answer, wait, repeat."""
    core.ensure_dirs()
    for c in components:
        c.install()
    pending = list(components)
    started: set[str] = set()
    while pending:
        # A requirement outside this list (the infrastructure, for the services) is already up.
        waiting_for = {c.name for c in pending}
        batch = [c for c in pending if not set(getattr(c, "requires", ())) & waiting_for]
        if not batch:
            raise core.StackError(pending[0].name, "dependencies can never be met")
        for c in batch:
            if c.running() or c.name in started:
                continue
            core.say(f"starting {c.name}")
            c.start()
            started.add(c.name)
        for c in batch:
            if c.name in started:
                c.wait_ready()  # started above: wait for a real answer
            else:
                c.up()  # was running: check it answers (and restart it if it does not)
            pending.remove(c)


def cmd_up(args: argparse.Namespace) -> int:
    from .writestore import record_choice

    t0 = time.monotonic()
    record_choice()
    comps = infrastructure(both_write_stores=False)
    bring_up(comps)
    if not args.infra_only:
        svc = services()
        bring_up(svc)
        comps += svc
    core.say(f"stack up in {time.monotonic() - t0:.0f}s")
    core.print_table([c.status() for c in comps])
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    comps = infrastructure()
    try:
        comps += services()
    except ImportError:
        pass
    stop_all(comps)  # services first, then the node, the control plane and the stores
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .writestore import PORT, chosen

    core.say(f"write store: {chosen()} on 127.0.0.1:{PORT} (SIMPLECQRS_WRITE_STORE; the other server runs only for tests)")
    comps = infrastructure()
    try:
        comps += services()
    except ImportError:
        pass
    core.print_table([c.status() for c in comps])
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    if any(c.running() for c in infrastructure()):
        print("the stack is running: `make down` first", file=sys.stderr)
        return 1
    if not args.yes:
        answer = input(f"remove {core.DATA}, {core.LOGS}, {core.ETC} and {core.RUN}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 1
    for d in (core.DATA, core.LOGS, core.ETC, core.RUN, core.LOCAL / "bench", core.KUBECONFIG):
        if d.is_dir():
            shutil.rmtree(d)
        elif d.exists():
            d.unlink()
    core.say("local data removed (downloads and builds stay cached in " f"{core.CACHE})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Start the infrastructure that is not running, run pytest, stop what this run started.

    The exit code is pytest's, except that "no tests collected" (5) is a failure.
    SIMPLECQRS_KEEP_STACK=1 leaves everything running for faster reruns.
    """
    import os
    import subprocess

    if args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    comps = infrastructure()
    was_running = {c.name for c in comps if c.running()}
    try:
        bring_up(comps)
        core.say("running pytest " + " ".join(args.pytest_args))
        rc = subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], cwd=core.ROOT)
    finally:
        if os.environ.get("SIMPLECQRS_KEEP_STACK") != "1":
            for c in reversed(comps):
                if c.name not in was_running and c.running():
                    core.say(f"stopping {c.name} (started for this test run)")
                    c.stop()
            if "kubelet" not in was_running:
                from .node import remove_leftovers

                remove_leftovers()
    if rc == 5:
        print("ERROR pytest collected no tests", file=sys.stderr)
        return 1
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.stack")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="install, start and wait for the stack")
    up.add_argument("--infra-only", action="store_true", help="stores and control plane only")
    sub.add_parser("down", help="stop what `up` started (pid files)")
    sub.add_parser("status", help="print the component table")
    clean = sub.add_parser("clean", help="remove local data")
    clean.add_argument("--yes", action="store_true")
    test = sub.add_parser("test", help="bring up the infrastructure, run pytest, stop what it started")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "clean": cmd_clean, "test": cmd_test}[args.cmd](args)
    except core.StackError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
