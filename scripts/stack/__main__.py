"""`python -m scripts.stack {up,down,status,test,clean}` — the local stack.

`make up` / `make down` / `make status` / `make test` / `make clean` call this.  `up --infra-only`
brings up the stores, the control plane, the node and its add-ons (what `make test`
needs); `up` adds simplecqrs on top, as pods installed by its Helm charts (services.py).
"""
from __future__ import annotations

import shutil
import sys
import time

import click

from . import console, core, errors, paths
from .commandline import run_click


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
            console.say(f"stopping {c.name}")
        c.stop()
    remove_leftovers()


def services() -> list[core.Component]:
    from .services import simplecqrs_components

    return simplecqrs_components()


def bring_up(components: list[core.Component]) -> None:
    """Install everything, start every component whose dependencies answer, wait, repeat."""
    paths.ensure_dirs()
    for c in components:
        c.install()
    pending = list(components)
    started: set[str] = set()
    while pending:
        # A requirement outside this list (the infrastructure, for the services) is already up.
        waiting_for = {c.name for c in pending}
        batch = [c for c in pending if not set(getattr(c, "requires", ())) & waiting_for]
        if not batch:
            raise errors.StackError(pending[0].name, "dependencies can never be met")
        for c in batch:
            if c.running() or c.name in started:
                continue
            console.say(f"starting {c.name}")
            c.start()
            started.add(c.name)
        for c in batch:
            if c.name in started:
                c.wait_ready()  # started above: wait for a real answer
            else:
                c.up()  # was running: check it answers (and restart it if it does not)
            pending.remove(c)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             help=__doc__)
def command() -> None:
    pass


@command.command("up", help="install, start and wait for the stack")
@click.option("--infra-only", is_flag=True, help="stores and control plane only")
def cmd_up(infra_only: bool) -> int:
    from .writestore import record_choice

    t0 = time.monotonic()
    record_choice()
    comps = infrastructure(both_write_stores=False)
    bring_up(comps)
    if not infra_only:
        svc = services()
        bring_up(svc)
        comps += svc
    console.say(f"stack up in {time.monotonic() - t0:.0f}s")
    core.print_table([c.status() for c in comps])
    return 0


@command.command("down", help="stop what `up` started (pid files)")
def cmd_down() -> int:
    comps = infrastructure()
    try:
        comps += services()
    except ImportError:
        pass
    stop_all(comps)  # services first, then the node, the control plane and the stores
    return 0


@command.command("status", help="print the component table")
def cmd_status() -> int:
    from .writestore import PORT, chosen

    console.say(f"write store: {chosen()} on 127.0.0.1:{PORT} (SIMPLECQRS_WRITE_STORE; the other server runs only for tests)")
    comps = infrastructure()
    try:
        comps += services()
    except ImportError:
        pass
    core.print_table([c.status() for c in comps])
    return 0


@command.command("clean", help="remove local data")
@click.option("--yes", is_flag=True)
def cmd_clean(yes: bool) -> int:
    if any(c.running() for c in infrastructure()):
        print("the stack is running: `make down` first", file=sys.stderr)
        return 1
    if not yes:
        try:
            answer = input(f"remove {paths.DATA}, {paths.LOGS}, {paths.ETC} and {paths.RUN}? [y/N] ")
        except EOFError:                    # stdin closed: no (exit 1, not click's Abort)
            print()
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            return 1
    for d in (paths.DATA, paths.LOGS, paths.ETC, paths.RUN, paths.LOCAL / "bench", paths.KUBECONFIG):
        if d.is_dir():
            shutil.rmtree(d)
        elif d.exists():
            d.unlink()
    console.say("local data removed (downloads and builds stay cached in " f"{paths.CACHE})")
    return 0


@command.command("test", short_help="bring up the infrastructure, run pytest, stop what it started",
                 context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def cmd_test(pytest_args: tuple[str, ...]) -> int:
    """Start the infrastructure that is not running, run pytest, stop what this run started.

    PYTEST_ARGS, after `--`, go to pytest (`make test PYTEST_ARGS=...`).  The exit code is pytest's,
    except that "no tests collected" (5) is a failure.  SIMPLECQRS_KEEP_STACK=1 leaves everything
    running for faster reruns.
    """
    import os
    import subprocess

    comps = infrastructure()
    was_running = {c.name for c in comps if c.running()}
    try:
        bring_up(comps)
        console.say("running pytest " + " ".join(pytest_args))
        rc = subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=paths.ROOT)
    finally:
        if os.environ.get("SIMPLECQRS_KEEP_STACK") != "1":
            for c in reversed(comps):
                if c.name not in was_running and c.running():
                    console.say(f"stopping {c.name} (started for this test run)")
                    c.stop()
            if "kubelet" not in was_running:
                from .node import remove_leftovers

                remove_leftovers()
    if rc == 5:
        print("ERROR pytest collected no tests", file=sys.stderr)
        return 1
    return rc


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.stack` (the Makefile): the subcommand's exit code, 1 with one line for a
    StackError, 2 for a usage error, 130 when interrupted."""
    return run_click(command, argv, "python -m scripts.stack")


if __name__ == "__main__":
    sys.exit(main())
