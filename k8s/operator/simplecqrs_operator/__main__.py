"""python -m simplecqrs_operator: run the OrderService operator (kopf).

    python -m simplecqrs_operator                    # cluster-wide (ClusterRole: k8s/operator/rbac.yaml)
    python -m simplecqrs_operator --namespace shop   # one namespace (Role: k8s/operator/rbac-namespaced.yaml)

Two or more replicas are safe: they elect a leader with a Lease (leader.py) and only the holder
runs kopf; the others wait and take over when it stops (at once: it releases the Lease) or dies
(after the Lease's 15 s).  A replica that loses the Lease exits, so two never reconcile at once.
"""
from __future__ import annotations

import argparse
import contextlib
import http.server
import logging
import os
import sys
import threading
import urllib.parse

SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simplecqrs_operator", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--namespace", default=os.environ.get("WATCH_NAMESPACE") or None,
                   help="serve only this namespace (env WATCH_NAMESPACE); default: the whole cluster")
    p.add_argument("--lease", default=os.environ.get("SIMPLECQRS_OPERATOR_LEASE", "simplecqrs-operator"),
                   help="name of the leader-election Lease the replicas share (default: %(default)s)")
    p.add_argument("--lease-namespace", default=os.environ.get("SIMPLECQRS_OPERATOR_LEASE_NAMESPACE") or None,
                   help="its namespace; default: the watched namespace, else the pod's own")
    p.add_argument("--standalone", action="store_true",
                   default=os.environ.get("SIMPLECQRS_OPERATOR_STANDALONE", "") in ("1", "true"),
                   help="no leader election: only when a single instance of the operator runs")
    p.add_argument("--liveness", default=os.environ.get("SIMPLECQRS_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz"),
                   help="liveness endpoint URL (default: %(default)s); '' disables it")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def lease_namespace(args: argparse.Namespace) -> str | None:
    """Where the Lease lives: where the operator's RBAC lets it write one (rbac-namespaced.yaml: the
    watched namespace; rbac.yaml: the operator's own namespace)."""
    if args.lease_namespace or args.namespace:
        return args.lease_namespace or args.namespace
    try:
        with open(SA_NAMESPACE) as f:
            return f.read().strip() or None
    except OSError:
        return None


@contextlib.contextmanager
def standby_liveness(url: str):
    """While a replica waits for the Lease, its liveness endpoint (kopf's, once it leads) answers
    200 from a plain HTTP server, so the kubelet does not restart a healthy standby."""
    if not url:
        yield
        return
    parts = urllib.parse.urlsplit(url)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            ok = self.path.split("?")[0] == (parts.path or "/")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"standby": true}' if ok else b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Health)
    threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()               # kopf binds the same port next


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    lease_ns = None if args.standalone else lease_namespace(args)
    if not args.standalone and lease_ns is None:
        print("simplecqrs-operator: outside a pod in cluster mode, say where the leader Lease lives "
              "(--lease-namespace), or run a single instance with --standalone", file=sys.stderr)
        return 2
    import kopf

    from . import handlers, kube, leader  # noqa: F401 - handlers: registers them

    # kopf's log format, each object's messages prefixed with [namespace/name].
    kopf.configure(verbose=args.verbose, log_prefix=True)
    for noisy in ("kubernetes", "urllib3", "cassandra", "kafka", "aiohttp.access", "leaderelection"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def operate() -> None:
        kopf.run(
            clusterwide=args.namespace is None,
            namespaces=[args.namespace] if args.namespace else (),
            standalone=True,                # coordination is the Lease's job, not kopf peering's
            memo=kopf.Memo(namespace=args.namespace),   # the resync loop's scope (handlers.py)
            liveness_endpoint=args.liveness or None,
        )

    if args.standalone:
        operate()
    else:
        kube.client()                       # loads the credentials the Lease client uses too
        leader.run_as_leader(args.lease, lease_ns, operate, waiting=standby_liveness(args.liveness))
    return 0


if __name__ == "__main__":
    sys.exit(main())
