"""Run the OrderService operator (kopf): `simplecqrs operator` (app/cli.py: the command line).

    simplecqrs operator                    # cluster-wide (ClusterRole: k8s/operator/rbac.yaml)
    simplecqrs operator --namespace shop   # one namespace (Role: k8s/operator/rbac-namespaced.yaml)

Two or more replicas are safe: they elect a leader with a Lease (leader.py) and only the holder
runs kopf; the others wait and take over when it stops (at once: it releases the Lease) or dies
(after the Lease's 15 s).  A replica that loses the Lease exits, so two never reconcile at once.
"""
from __future__ import annotations

import contextlib
import http.server
import logging
import sys
import threading
import urllib.parse

SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def where_the_lease_lives(namespace: str | None, lease_namespace: str | None) -> str | None:
    """Where the Lease lives: where the operator's RBAC lets it write one (rbac-namespaced.yaml: the
    watched namespace; rbac.yaml: the operator's own namespace)."""
    if lease_namespace or namespace:
        return lease_namespace or namespace
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


def run(namespace: str | None = None, lease: str = "simplecqrs-operator", lease_namespace: str | None = None,
        standalone: bool = False, liveness: str = "http://0.0.0.0:8080/healthz", verbose: bool = False) -> int:
    """Operate until stopped.  namespace: serve only this one (None: the whole cluster); lease, lease_namespace:
    the leader-election Lease the replicas share (its namespace by default the watched one, else the pod's own);
    standalone: no leader election (a single instance only); liveness: the liveness endpoint's URL ('' none);
    verbose: debug logging.  The exit code: 2 when the Lease has nowhere to live."""
    lease_ns = None if standalone else where_the_lease_lives(namespace, lease_namespace)
    if not standalone and lease_ns is None:
        print("simplecqrs operator: outside a pod in cluster mode, say where the leader Lease lives "
              "(--lease-namespace), or run a single instance with --standalone", file=sys.stderr)
        return 2
    import kopf

    from . import handlers, kube, leader  # noqa: F401 - handlers: registers them

    # kopf's log format, each object's messages prefixed with [namespace/name].
    kopf.configure(verbose=verbose, log_prefix=True)
    for noisy in ("kubernetes", "urllib3", "cassandra", "kafka", "aiohttp.access", "leaderelection"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def operate() -> None:
        kopf.run(
            clusterwide=namespace is None,
            namespaces=[namespace] if namespace else (),
            standalone=True,                # coordination is the Lease's job, not kopf peering's
            memo=kopf.Memo(namespace=namespace),   # the resync loop's scope (handlers.py)
            liveness_endpoint=liveness or None,
        )

    if standalone:
        operate()
    else:
        kube.client()                       # loads the credentials the Lease client uses too
        leader.run_as_leader(lease, lease_ns, operate, waiting=standby_liveness(liveness))
    return 0
