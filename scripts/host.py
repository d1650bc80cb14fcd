"""The host tools' front door: scripts/audit, bench, seed and rebuild-read-model run through here.

    scripts/audit [--instance NAMESPACE/NAME] [--debug] [the tool's own options]

audit, seed and rebuild-read-model are the product's own commands, `simplecqrs audit` etc. (app/cli.py),
run here in-process with the instance's settings; bench is scripts/bench.py.

Which settings: the instance's, read live when the tool starts (scripts/stack/services.instance_env:
its OrderService and the Secrets the operator keeps, through the kubeconfig `make up` writes, with
the stores at the host's addresses).  Not a file written once: the suite re-creates instances and
the operator rotates passwords, and a snapshot would hold the old ones (issue 29).  Default instance:
`make up`'s, simplecqrs/simplecqrs.  An environment that sets MYSQL_USER itself, without --instance,
is used as it is (a shell that sourced .local/etc/app.env, a store of your own).

Errors a user meets (no stack, no such instance, a store down, a refused login) are one line that
names the instance, the store and what helps; --debug shows the traceback instead.
"""
from __future__ import annotations

import importlib
import os
import sys
import urllib.error

TOOLS = ("audit", "rebuild-read-model", "seed", "bench")   # all but bench: `simplecqrs <tool>` (app/cli.py)
# The bench makes its own databases, topics and keyspaces on the stack's stores: an instance's
# settings only when --instance names one.
OWN_SETTINGS = {"bench"}
DEFAULT_INSTANCE = "simplecqrs/simplecqrs"


def own_options(argv: list[str]) -> tuple[str | None, bool, list[str]]:
    """(--instance, --debug, the rest for the tool): the front door's options, wherever they stand."""
    instance, debug, rest = None, False, []
    args = iter(argv)
    for arg in args:
        if arg == "--debug":
            debug = True
        elif arg == "--instance":
            instance = next(args, None)
        elif arg.startswith("--instance="):
            instance = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return instance, debug, rest


def explain(exc: BaseException, env: dict[str, str]) -> str:
    """One line for the failures a user meets; anything else by its type and message."""
    from cassandra.cluster import NoHostAvailable
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

    from app.writemodel import db
    from scripts.stack import errors

    who = env.get("SIMPLECQRS_INSTANCE") or "the MYSQL_*, KAFKA_*, CASSANDRA_* settings of this shell"
    mysql = f"MySQL at {env.get('MYSQL_HOST', '127.0.0.1')}:{env.get('MYSQL_PORT', '3306')}"
    if isinstance(exc, errors.StackError):
        return str(exc)
    if isinstance(exc, urllib.error.URLError):
        return f"the API at {env.get('API_URL')} does not answer ({who}): {exc.reason}"
    if db.error_code(exc) == 1045:
        return (f"{mysql} refused the login of {env.get('MYSQL_USER')} ({who}): not the password the server has; "
                f"set no MYSQL_* yourself and the tools read the instance's current one")
    if db.is_connection_error(exc):
        return f"{mysql} does not answer ({who}): `make status` shows the stores, `make up` starts them"
    if isinstance(exc, NoHostAvailable):
        return (f"Cassandra at {env.get('CASSANDRA_CONTACT_POINTS')}:{env.get('CASSANDRA_PORT')} does not answer "
                f"({who}): `make status`, `make up`")
    if isinstance(exc, (NodeNotReadyError, KafkaConnectionError, KafkaTimeoutError)):
        return f"Kafka at {env.get('KAFKA_BOOTSTRAP_SERVERS')} does not answer ({who}): `make status`, `make up`"
    return f"{type(exc).__name__}: {exc} ({who}; --debug shows the traceback)"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        print(f"usage: python -m scripts.host {{{','.join(TOOLS)}}} [--instance NAMESPACE/NAME] [--debug] ...",
              file=sys.stderr)
        return 2
    tool, (instance, debug, rest) = argv[0], own_options(argv[1:])
    try:
        helping = "--help" in rest or "-h" in rest     # the help needs no instance (nor a stack)
        if instance or (tool not in OWN_SETTINGS and not os.environ.get("MYSQL_USER") and not helping):
            from scripts.stack import services

            os.environ.update(services.instance_env(instance or DEFAULT_INSTANCE))
        if tool == "bench":   # measures the instance --instance names (make up's by default), its own way
            return importlib.import_module("scripts.bench").main([*rest, *(["--instance", instance] if instance else [])])
        from app import cli

        return cli.main([tool, *rest])
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if debug:
            raise
        print(f"{tool}: {explain(exc, dict(os.environ))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
