"""`simplecqrs`: the product's one command line (pyproject's [project.scripts]; on the image's PATH).

    simplecqrs --help                          the subcommands, each with its own --help
    simplecqrs api                             the HTTP API: execs gunicorn -c python:app.gunicorn_conf app.wsgi:app
    simplecqrs relay [--reset-position]        the outbox relay (app/relay/main.py)
    simplecqrs consume [--migrate]             one projector of the consumer group (consumer/main.py)
    simplecqrs operator [--namespace NS] ...   the OrderService operator (simplecqrs_operator/main.py)
    simplecqrs audit [--json] [--show N]       the two models compared (app/audit.py)
    simplecqrs rebuild-read-model [--source S] [--keep-old]   (app/readmodel/rebuild.py)
    simplecqrs seed [--count N] [--url URL] ...   fake orders through the API (app/seed.py)
    simplecqrs bench [ARGS]                    a checkout's scripts/bench (the local stack's benchmark)

Every process reads its settings from the environment (app/config.py; the README's Configuration): the
options only choose what to do.  A subcommand imports its module when it runs, so `simplecqrs relay`
loads neither the consumer nor the operator, and --help loads none of them.  Each module does its work in
a plain function, `run(...)`, whose return value is the exit code; a usage error exits with 2.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
GUNICORN = ["-m", "gunicorn", "-c", "python:app.gunicorn_conf", "app.wsgi:app"]   # after the interpreter
LEASE = "simplecqrs-operator"
LIVENESS = "http://0.0.0.0:8080/healthz"
API_URL = "http://127.0.0.1:8080"


@click.group(context_settings=CONTEXT)
def simplecqrs() -> None:
    """simplecqrs, the event-driven CQRS order service: one command, a subcommand per process or tool.

    Settings come from the environment (MYSQL_*, KAFKA_*, CASSANDRA_*, API_*, OUTBOX_*, CONSUMER_*, ...:
    the README's Configuration); `simplecqrs COMMAND --help` describes each command.
    """


@simplecqrs.result_callback()
def _exit_code(code: int | None, **_params: object) -> int:
    """A subcommand returns its exit code; a nonzero one ends the process with it."""
    if code:
        click.get_current_context().exit(code)
    return 0


@simplecqrs.command(short_help="serve the HTTP API (gunicorn)")
def api() -> None:
    """Serve the HTTP API: exec gunicorn -c python:app.gunicorn_conf app.wsgi:app.

    API_ROLE picks the routes (command, query or both), API_BIND the address, GUNICORN_* the workers.
    gunicorn replaces this process (same PID), so SIGTERM reaches its master directly.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *GUNICORN])


@simplecqrs.command(short_help="publish the outbox to Kafka")
@click.option("--reset-position", is_flag=True,
              help="forget the binlog relay's saved position (after it reported the position lost) and exit; its "
                   "next start republishes the retained outbox rows and follows the binlog from its end")
def relay(reset_position: bool) -> int:
    """The outbox relay: publish the outbox's committed events to Kafka until SIGTERM.

    OUTBOX_RELAY picks it: binlog (the default) follows MySQL's binlog, poll polls the outbox table.
    /healthz, /readyz and /metrics on OUTBOX_METRICS_HOST:OUTBOX_METRICS_PORT.
    """
    from app.relay.main import run

    return run(reset_position=reset_position)


@simplecqrs.command(short_help="project the events into Cassandra")
@click.option("--migrate", is_flag=True, help="create the read-model schema first (idempotent)")
def consume(migrate: bool) -> int:
    """One projector of the consumer group: the topic's events into the Cassandra read model, until SIGTERM.

    /healthz (the loop turns and moves work), /readyz (Cassandra answers) and /metrics on
    CONSUMER_METRICS_HOST:CONSUMER_METRICS_PORT.
    """
    from consumer.main import run

    return run(migrate=migrate)


@simplecqrs.command(short_help="run the OrderService operator (kopf)")
@click.option("-n", "--namespace", default=lambda: os.environ.get("WATCH_NAMESPACE") or None,
              help="serve only this namespace (env WATCH_NAMESPACE); default: the whole cluster")
@click.option("--lease", default=lambda: os.environ.get("SIMPLECQRS_OPERATOR_LEASE") or LEASE,
              help=f"name of the leader-election Lease the replicas share (env SIMPLECQRS_OPERATOR_LEASE; "
                   f"default: {LEASE})")
@click.option("--lease-namespace", default=lambda: os.environ.get("SIMPLECQRS_OPERATOR_LEASE_NAMESPACE") or None,
              help="its namespace (env SIMPLECQRS_OPERATOR_LEASE_NAMESPACE); default: the watched namespace, "
                   "else the pod's own")
@click.option("--standalone", is_flag=True,
              default=lambda: os.environ.get("SIMPLECQRS_OPERATOR_STANDALONE", "") in ("1", "true"),
              help="no leader election: only when a single instance of the operator runs "
                   "(env SIMPLECQRS_OPERATOR_STANDALONE=1)")
@click.option("--liveness", default=lambda: os.environ.get("SIMPLECQRS_OPERATOR_LIVENESS", LIVENESS),
              help=f"liveness endpoint URL (env SIMPLECQRS_OPERATOR_LIVENESS; default: {LIVENESS}); '' disables it")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def operator(namespace: str | None, lease: str, lease_namespace: str | None, standalone: bool, liveness: str,
             verbose: bool) -> int:
    """Run the OrderService operator (kopf): the whole cluster, or one namespace with --namespace.

    Two or more replicas are safe: they elect a leader with a Lease and only the holder reconciles; the
    others take over when it stops or dies.  Outside a pod, name --lease-namespace or use --standalone
    (exit code 2 otherwise).
    """
    from simplecqrs_operator.main import run

    return run(namespace=namespace, lease=lease, lease_namespace=lease_namespace, standalone=standalone,
               liveness=liveness, verbose=verbose)


@simplecqrs.command(short_help="compare the write model and the read model")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--show", type=click.IntRange(min=0), default=10, show_default=True,
              help="how many differences of each kind to list")
def audit(as_json: bool, show: int) -> int:
    """Compare the write model (MySQL) and the read model (Cassandra), order by order.

    For every order: present in both, and every field equal (description, quantity, customer email and names
    as given with the order, creation time), in orders_by_id and in the customer's list; for every customer:
    the names.  Prints a summary (missing, extra, different) and exits 0 only when the two models are equal
    (1 otherwise).  Settings: the MYSQL_* and CASSANDRA_* variables.
    """
    from app.audit import run

    return run(as_json=as_json, show=show)


@simplecqrs.command("rebuild-read-model", short_help="rebuild the read model without downtime")
@click.option("--source", type=click.Choice(["auto", "topic", "mysql"]), default="auto", show_default=True,
              help="backfill from the topic's beginning, from the MySQL write model, or auto: the topic when it "
                   "still holds every event")
@click.option("--keep-old", is_flag=True, help="keep the previous generation's tables")
def rebuild_read_model(source: str, keep_old: bool) -> int:
    """Rebuild the read model from scratch into fresh tables, then switch reads to them without downtime.

    \b
    1. create generation N+1 of the read-model tables beside the active N;
    2. mark N+1 as written too: the running consumers write every new event to both;
    3. backfill N+1 from the topic's beginning, or from the MySQL write model when the topic no longer
       holds every event (auto checks: a partition whose log start offset is above 0, or fewer events
       than orders);
    4. switch reads to N+1, stop writing N, and drop N's tables unless --keep-old.

    Prints the result as JSON.  Settings: the MYSQL_*, CASSANDRA_* and KAFKA_* variables.
    """
    from app.readmodel.rebuild import run

    return run(source=source, keep_old=keep_old)


@simplecqrs.command("seed", short_help="post realistic fake orders to the API")
@click.option("--count", type=click.IntRange(min=0), default=10, show_default=True, help="how many orders")
@click.option("--url", default=lambda: os.environ.get("API_URL", API_URL),
              help=f"the API's base URL (env API_URL; default: {API_URL})")
@click.option("--host-header", default=lambda: os.environ.get("API_HOST_HEADER", ""),
              help="the Host header: the instance's Ingress host (env API_HOST_HEADER)")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="requests in flight at once")
@click.option("--seed", "random_seed", type=int, default=None, help="random seed for repeatable data")
def seed_command(count: int, url: str, host_header: str, concurrency: int, random_seed: int | None) -> int:
    """Post realistic fake orders, like the demo's seeder: a few customers with several orders each.

    Prints a progress bar and a summary (sent, created, failed, rate); exits 0 only when every order was
    created.  Every request carries an Idempotency-Key, so a retried POST never doubles an order.
    """
    from app.seed import run

    return run(count=count, url=url, host_header=host_header, concurrency=concurrency, seed=random_seed)


@simplecqrs.command(short_help="measure the product (a checkout's scripts/bench)", add_help_option=False,
                    context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> int:
    """scripts/bench of this checkout, with ARGS (`simplecqrs bench --help` lists its options).

    The benchmark drives the local stack (make up) and its baselines, so it lives with the harness in
    scripts/, not in the image: from an installed image this says so and exits 2."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench"
    if not script.is_file():
        raise click.UsageError("bench runs from a checkout of simplecqrs (scripts/bench drives the local stack)")
    return subprocess.call([str(script), *args])


def exit_code(command: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """Run a click command in-process and turn its outcome into an exit code: the command's (0 when it
    returns nothing), 2 for a usage error (click's message on stderr), 130 when interrupted.  Any other
    exception propagates.  The harness's command lines use it too (scripts/stack/commandline.py)."""
    try:
        return command.main(args=argv, prog_name=prog_name, standalone_mode=False) or 0
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 130


def main(argv: list[str] | None = None) -> int:
    """The `simplecqrs` executable (argv: sys.argv[1:] by default); scripts/host.py calls it in-process.

    The exit code: the subcommand's, 2 for a usage error (the message on stderr), 130 when interrupted.
    Any other exception propagates (a traceback), as it did from the processes' former entry points."""
    return exit_code(simplecqrs, argv, "simplecqrs")


if __name__ == "__main__":
    sys.exit(main())
