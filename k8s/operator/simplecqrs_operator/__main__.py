"""python -m simplecqrs_operator: run the OrderService operator (kopf).

    python -m simplecqrs_operator                    # cluster-wide (ClusterRole: k8s/operator/rbac.yaml)
    python -m simplecqrs_operator --namespace shop   # one namespace (Role: k8s/operator/rbac-namespaced.yaml)

Two or more replicas are safe with peering (the default): each replica records itself in the
peering object (ClusterKopfPeering or KopfPeering named by --peering), and only the one with the
highest priority works while the others stand by.  The priority is the start time, so a
restarted replica takes over at once instead of waiting for a crashed one's record to expire.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simplecqrs_operator", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--namespace", default=os.environ.get("WATCH_NAMESPACE") or None,
                   help="serve only this namespace (env WATCH_NAMESPACE); default: the whole cluster")
    p.add_argument("--peering", default=os.environ.get("SIMPLECQRS_OPERATOR_PEERING", "simplecqrs-operator"),
                   help="name of the kopf peering object shared by the replicas (default: %(default)s)")
    p.add_argument("--standalone", action="store_true",
                   default=os.environ.get("SIMPLECQRS_OPERATOR_STANDALONE", "") in ("1", "true"),
                   help="run without peering: only when a single instance of the operator runs")
    p.add_argument("--liveness", default=os.environ.get("SIMPLECQRS_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz"),
                   help="liveness endpoint URL (default: %(default)s); '' disables it")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def missing_peering(namespace: str | None, name: str) -> str | None:
    """Why peering cannot work, or None.  Without its peering object kopf would wait, silently
    and forever, for the peers' first keep-alive; better to stop here and say what is missing."""
    from .kube import Kube, client

    if namespace:
        url, what = f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}", f"KopfPeering {namespace}/{name}"
    else:
        url, what = f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}", f"ClusterKopfPeering {name}"
    if Kube(client()).get(url) is None:
        return (f"{what} does not exist: apply k8s/crd/kopf-peering.yaml and the peering object "
                "(k8s/operator/deployment.yaml or rbac-namespaced.yaml), or run a single replica with --standalone")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.standalone and (problem := missing_peering(args.namespace, args.peering)):
        print(f"simplecqrs-operator: {problem}", file=sys.stderr)
        return 2
    import kopf

    from . import handlers  # noqa: F401 - registers the handlers

    # kopf's log format, each object's messages prefixed with [namespace/name].
    kopf.configure(verbose=args.verbose, log_prefix=True)
    for noisy in ("kubernetes", "urllib3", "cassandra", "kafka", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    kopf.run(
        clusterwide=args.namespace is None,
        namespaces=[args.namespace] if args.namespace else (),
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=time.time_ns(),
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
