"""The local stack's ingress controller: Traefik, built from the Go module proxy, run as a host process.

Like kube-proxy in "Kubernetes The Hard Way", Traefik runs on the host, not in a pod: it watches the
local apiserver (Ingresses, Services, EndpointSlices, ...) and proxies http://127.0.0.1:80 straight to
the endpoint addresses (pod IPs on the node's bridge are reachable from the host).

- Entry points: `web` on 127.0.0.1:80 (the Ingress routes); `api` on 127.0.0.1:8080, every request
  to the local instance's API Service (services.py: `make up`'s OrderService), so the scripts and the
  README's examples keep their address without a Host header; `traefik` on 127.0.0.1:9000 (GET /ping,
  Prometheus /metrics, the read-only API /api/http/routers ...; no dashboard: the module proxy's
  Traefik embeds an empty web UI).  Both on loopback only: left undefined, Traefik would open `traefik`
  on :8080 of every interface.  Port 80 needs root or CAP_NET_BIND_SERVICE (the stack runs as root).
- Ingress provider: only class `traefik` (the IngressClass created here, controller
  traefik.io/ingress-controller, marked the cluster's default), or the legacy annotation
  kubernetes.io/ingress.class: traefik.  An Ingress without a class is NOT served: instead, as the
  default class, `traefik` is written into spec.ingressClassName of new class-less Ingresses by the
  apiserver's DefaultIngressClass admission, so what is served is visible in the object, and Ingresses
  meant for another controller (e.g. className: nginx) are never taken over.
- allowEmptyServices: a Service without serving endpoints answers 503 (the backend is down) instead of
  the route vanishing (404, "no such route"); allowExternalNameServices stays off: an ExternalName
  Service could point this host process at any address the host reaches (its own loopback services).
- Its own identity: a client certificate CN=simplecqrs-ingress (signed by the local CA) in
  .local/etc/traefik.kubeconfig (Traefik reads $KUBECONFIG), and a ClusterRole with only what its
  Ingress and Gateway providers' informers need, applied server-side at each start
  (kube.prepare_host_client, as for kube-router).
- Gateway API: the standard channel's CRDs (sigs.k8s.io/gateway-api, gotools.GATEWAY_API_VERSION, from
  the Go module proxy), the GatewayClass `traefik` and one Gateway, `default/local`, whose listener
  `web` (port 80: Traefik maps a listener to the entry point of the same port) admits HTTPRoutes from
  every namespace, as a cluster's shared Gateway does.  An OrderService's spec.api.httpRoute names it.
- Status: Ingresses it serves get status.loadBalancer.ingress[0].ip = 127.0.0.1; the Gateway its
  address 127.0.0.1, and the GatewayClass, Gateway and routes their conditions.
- Logs: .local/logs/traefik.log (its own), .local/logs/traefik-access.log (one line per request).
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
from pathlib import Path

from . import core, errors, gotools, kube, paths, processes

HTTP_PORT = 80
API_PORT = 8080                   # the `api` entry point: the local instance's API, any Host
ADMIN_PORT = 9000                 # the `traefik` entry point: /ping, /metrics, /api
HOST = "127.0.0.1"
INGRESS_CLASS = "traefik"
CONTROLLER = "traefik.io/ingress-controller"   # the only controller name Traefik's provider accepts
USER = "simplecqrs-ingress"       # CN of its client certificate = its RBAC user (no reserved `system:` prefix)
CONFIG = paths.ETC / "traefik.yaml"
DYNAMIC_CONFIG = paths.ETC / "traefik-routes.yaml"
KUBECONFIG = paths.ETC / "traefik.kubeconfig"
ACCESS_LOG = paths.LOGS / "traefik-access.log"
FIELD_MANAGER = "simplecqrs-stack"
LABELS = {"app.kubernetes.io/managed-by": FIELD_MANAGER, "app.kubernetes.io/component": "ingress-controller"}

# What the Ingress provider's informers list and watch (pkg/provider/kubernetes/ingress/client.go,
# WatchAll): Services, EndpointSlices, Secrets (TLS certificates of Ingresses; every Secret not
# labelled owner=helm) and Ingresses in all namespaces; IngressClasses and Nodes cluster-wide (Nodes:
# for NodePort load-balancing; without them its caches never sync and no route is ever served).
# The Gateway provider's (pkg/provider/kubernetes/gateway/client.go, WatchAll): Namespaces (for
# allowedRoutes selectors), ConfigMaps (BackendTLSPolicy CA certificates), and the standard channel's
# kinds.  Nothing is read outside the informers (no `get`); the only writes are the status updates.
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_KINDS = ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"]
RULES = [
    {"apiGroups": [""], "resources": ["services", "secrets", "nodes", "namespaces", "configmaps"],
     "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": ["list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
    {"apiGroups": [GATEWAY_GROUP], "resources": GATEWAY_KINDS, "verbs": ["list", "watch"]},
    {"apiGroups": [GATEWAY_GROUP], "resources": [f"{k}/status" for k in GATEWAY_KINDS if k != "referencegrants"],
     "verbs": ["update"]},
]
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"   # the controllerName Traefik's Gateway provider serves
GATEWAY_NAMESPACE, GATEWAY_NAME, GATEWAY_LISTENER = "default", "local", "web"


def _static_config() -> str:
    """Traefik's static configuration (YAML)."""
    return f"""# Generated by scripts/stack/ingress.py at each start; edits are overwritten.
global:
  checkNewVersion: false          # no calls home
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "{HOST}:{HTTP_PORT}"
    asDefault: true               # Ingress routers attach here only, never to `traefik`
    transport:
      lifeCycle:
        graceTimeOut: 5s          # on SIGTERM: finish in-flight requests for at most 5s
  api:
    address: "{HOST}:{API_PORT}"
    transport:
      lifeCycle:
        graceTimeOut: 5s
  traefik:
    address: "{HOST}:{ADMIN_PORT}"
    transport:
      lifeCycle:
        graceTimeOut: 1s
ping:
  entryPoint: traefik
metrics:
  prometheus:
    entryPoint: traefik
api:
  insecure: true                  # read-only API on the loopback `traefik` entry point
  dashboard: false                # the module proxy's build embeds no web UI
providers:
  file:
    filename: "{DYNAMIC_CONFIG}"
  kubernetesGateway:
    statusAddress:
      ip: "{HOST}"
  kubernetesIngress:
    ingressClass: {INGRESS_CLASS}
    allowEmptyServices: true
    allowExternalNameServices: false
    ingressEndpoint:
      ip: "{HOST}"
log:
  level: INFO
  noColor: true                   # plain text in .local/logs/traefik.log
accessLog:
  filePath: "{ACCESS_LOG}"
"""


def _routes() -> str:
    """The `api` entry point's one route: everything to the Service the local instance's Ingress uses
    (the Ingress provider names it <namespace>-<service>-<port name>)."""
    from .services import INSTANCE, NAMESPACE

    return f"""# Generated by scripts/stack/ingress.py at each start; edits are overwritten.
http:
  routers:
    local-api:
      entryPoints: [api]
      rule: "PathPrefix(`/`)"
      service: "{NAMESPACE}-{INSTANCE}-api-http@kubernetes"
"""


# ---------------------------------------------------------------- API objects
def apply_ingress_class() -> None:
    """The IngressClass `traefik`, the cluster's default: the stack's only ingress controller, so a new
    Ingress without a class gets `traefik` written into it at admission (as on k3s), rather than being
    served by nobody."""
    kube.apply_as_admin("/apis/networking.k8s.io/v1/ingressclasses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": INGRESS_CLASS, "labels": LABELS,
                     "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": CONTROLLER}}, FIELD_MANAGER)


def apply_gateway_api() -> None:
    """The Gateway API's standard CRDs (server-side apply: idempotent), then the GatewayClass and the
    shared Gateway.  The CRDs first and Established: Traefik's Gateway informers need them."""
    from .node import kubectl

    crds = sorted((gotools.module_dir(f"sigs.k8s.io/gateway-api@{gotools.GATEWAY_API_VERSION}", "traefik")
                   / "config" / "crd" / "standard").glob("gateway.networking.k8s.io_*.yaml"))
    crds = [c for c in crds if "_vap_" not in c.name]   # CRDs only (not its upgrade-guard admission policy)
    if not crds:
        raise errors.StackError("traefik", f"no Gateway API CRDs in sigs.k8s.io/gateway-api@{gotools.GATEWAY_API_VERSION}")
    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
            *[a for c in crds for a in ("-f", c)])
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            *[f"crd/{c.name.split('_', 1)[1].removesuffix('.yaml')}.{GATEWAY_GROUP}" for c in crds])
    objects = [
        {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "GatewayClass",
         "metadata": {"name": INGRESS_CLASS, "labels": LABELS}, "spec": {"controllerName": GATEWAY_CONTROLLER}},
        {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway",
         "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE, "labels": LABELS},
         "spec": {"gatewayClassName": INGRESS_CLASS, "listeners": [
             {"name": GATEWAY_LISTENER, "protocol": "HTTP", "port": HTTP_PORT,
              "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]
    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def _can_bind_port_80() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= HTTP_PORT
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------- component
class Traefik(core.Component):
    name = "traefik"
    address = f"http://{HOST}:{HTTP_PORT}"
    start_timeout = 60
    requires = ("kube-apiserver",)

    def install(self) -> None:
        gotools.build_traefik()
        gotools.module_dir(f"sigs.k8s.io/gateway-api@{gotools.GATEWAY_API_VERSION}", self.name)

    def start(self) -> None:
        if not _can_bind_port_80():
            raise errors.StackError(self.name, f"port {HTTP_PORT} needs root or CAP_NET_BIND_SERVICE "
                                               f"(setcap cap_net_bind_service=+ep {gotools.CACHE_BIN}/traefik-*)")
        exe = paths.BIN / "traefik"
        kube.prepare_host_client(self.name, exe, (HTTP_PORT, API_PORT, ADMIN_PORT), USER, KUBECONFIG, RULES, LABELS,
                                 "/apis/networking.k8s.io/v1/ingresses?limit=1", FIELD_MANAGER)
        apply_ingress_class()
        apply_gateway_api()
        CONFIG.write_text(_static_config())
        DYNAMIC_CONFIG.write_text(_routes())
        env = {k: v for k, v in os.environ.items()
               # In-cluster settings would win over KUBECONFIG (ingress/kubernetes.go newK8sClient).
               if k not in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
        env["KUBECONFIG"] = str(KUBECONFIG)
        processes.spawn(self.name, [str(exe), f"--configFile={CONFIG}"], env=env, cwd=paths.ETC)

    def ready(self) -> bool:
        conn = http.client.HTTPConnection(HOST, ADMIN_PORT, timeout=5)
        try:
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            return resp.status == 200 and resp.read().strip() == b"OK"
        finally:
            conn.close()

    def version(self) -> str:
        exe = paths.BIN / "traefik"
        if not exe.exists():
            return gotools.TRAEFIK_VERSION
        try:
            out = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return gotools.TRAEFIK_VERSION
        # "Version:      v3.6.12\nCodename: ..."
        for line in out.splitlines():
            if line.startswith("Version:"):
                return line.split()[-1]
        return gotools.TRAEFIK_VERSION
