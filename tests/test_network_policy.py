"""NetworkPolicies hold on the local node: kube-router's firewall (scripts/stack/netpol.py) enforces the
policy the operator writes for `make up`'s OrderService (`simplecqrs` in `simplecqrs`: the API port 8080
only from the ingress controller, pods of the namespace labelled simplecqrs.io/api-client=true and the
monitoring namespaces) and the ones Strimzi's Cluster Operator writes for the Kafka pods.

Probe pods run the product image already on the node (imagePullPolicy Never, restricted
securityContext, no token) and try TCP connections from inside the cluster with Python's socket module
(`kubectl exec`): a connection the policies do not admit is refused (kube-router REJECTs it) or times
out; one they admit opens.  The host's own paths keep working: Traefik (a host process) through the
Ingress, Kafka's status check.  The last test stops the enforcer: its chains and ipsets are gone and the
unlabelled pod gets through, then it starts again and the policy holds again.
"""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests
from test_cluster import helm, kjson, order_round_trip, via_ingress, wait_for

from scripts.stack import kafka as stack_kafka
from scripts.stack import netpol, network, processes, services
from scripts.stack.node import kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

API_PORT = 8080                       # the API container's port (the Service's 80 targets it)
API_CLIENT = "simplecqrs.io/api-client"
API_SELECTOR = f"app.kubernetes.io/instance={services.INSTANCE},app.kubernetes.io/component=api"
KAFKA_SELECTOR = f"{stack_kafka.CLUSTER_LABEL},strimzi.io/kind=Kafka,strimzi.io/name={stack_kafka.CLUSTER}-kafka"
KAFKA_CLIENT_PORT, KAFKA_REPLICATION_PORT = 9092, 9091   # open to every pod; Kafka's own pods and operators only
PROBE_LABELS = {"app.kubernetes.io/name": "netpol-probe", "app.kubernetes.io/part-of": "simplecqrs-tests"}

# Sleeps until SIGTERM (PID 1 ignores signals it has no handler for: the pods would take their grace period).
SLEEP = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(86400)"
# One TCP connect per host:port argument; prints {target: open | refused | timeout | error <errno>}.
CONNECT = """
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        out[target] = "open"
    except ConnectionRefusedError:
        out[target] = "refused"
    except TimeoutError:
        out[target] = "timeout"
    except OSError as e:
        out[target] = f"error {e.errno}"
print(json.dumps(out))
"""
# GET of one URL; prints the status code.
HTTP_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).status)"


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def make_up_instance(stack):
    """`make up`'s OrderService, Ready.  Brought up as `make up` does when it is not running (`make test`
    starts only the infrastructure), and then uninstalled again afterwards."""
    from scripts.stack.__main__ import bring_up

    had_instance = services.orderservice() is not None
    had_operator = kjson("-n", services.OPERATOR_NAMESPACE, "deployment", "simplecqrs-operator") is not None
    if not (had_instance and services.Instance().ready()):
        bring_up(services.simplecqrs_components())
    yield services.orderservice()
    if not had_instance:   # the OrderService first: its finalizer needs the operator
        helm("uninstall", services.INSTANCE, "-n", services.NAMESPACE, "--wait", "--timeout=5m")
    if not had_operator:
        helm("uninstall", "simplecqrs-operator", "-n", services.OPERATOR_NAMESPACE, "--wait", "--timeout=5m")


def probe_pod(ns: str, name: str, image: str, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {**PROBE_LABELS, **labels}},
            "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 2,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "probe", "image": image, "imagePullPolicy": "Never", "command": ["python", "-c", SLEEP],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}}]}}


class Probe:
    def __init__(self, ns: str, name: str):
        self.ns, self.name = ns, name

    def connect(self, *targets: str) -> dict[str, str]:
        out = kubectl("-n", self.ns, "exec", self.name, "--", "python", "-c", CONNECT, *targets, timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def get(self, url: str) -> int:
        out = kubectl("-n", self.ns, "exec", self.name, "--", "python", "-c", HTTP_GET, url, check=False, timeout=60)
        return int(out.stdout.strip() or 0) if out.returncode == 0 else 0

    def __repr__(self) -> str:
        return f"{self.ns}/{self.name}"


@pytest.fixture(scope="module")
def probes(make_up_instance, run_id):
    """Four probe pods: in a namespace of their own, one plain and one with the client label (a label
    admits only within the instance's namespace); in the instance's namespace, one without the label and
    one with it."""
    image = make_up_instance["spec"]["api"]["image"]          # the image the instance runs: on the node
    other = f"netpol-{run_id}"
    kubectl("create", "namespace", other)
    names = {"outsider": (other, {}), "outsider_labelled": (other, {API_CLIENT: "true"}),
             "unlabelled": (services.NAMESPACE, {}), "client": (services.NAMESPACE, {API_CLIENT: "true"})}
    pods = {key: Probe(ns, f"netpol-{run_id}-{key.replace('_', '-')}") for key, (ns, _) in names.items()}
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        probe_pod(p.ns, p.name, image, names[key][1]) for key, p in pods.items()]}))
    try:
        for p in pods.values():
            kubectl("-n", p.ns, "wait", "--for=condition=Ready", f"pod/{p.name}", "--timeout=120s", timeout=150)
        yield pods
    finally:
        kubectl("-n", services.NAMESPACE, "delete", "pod", pods["unlabelled"].name, pods["client"].name,
                "--wait=false", check=False)
        kubectl("delete", "namespace", other, "--wait=false", check=False)


def api_targets() -> list[str]:
    """Every API pod's address at port 8080, and the API Service's (port 80, DNATed to a pod's 8080)."""
    pods = kjson("-n", services.NAMESPACE, "pods", "-l", API_SELECTOR)["items"]
    ips = [p["status"]["podIP"] for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
    assert len(ips) >= 2, f"the instance's API pods: {ips}"
    svc = kjson("-n", services.NAMESPACE, "service", f"{services.INSTANCE}-api")["spec"]["clusterIP"]
    return [f"{ip}:{API_PORT}" for ip in ips] + [f"{svc}:80"]


def kafka_ips() -> list[str]:
    pods = kjson("-n", stack_kafka.NAMESPACE, "pods", "-l", KAFKA_SELECTOR)["items"]
    ips = [p["status"]["podIP"] for p in pods if p["status"].get("podIP")]
    assert len(ips) == stack_kafka.NODES, ips
    return ips


def admitted(probe: Probe, targets: list[str], timeout: float = 60) -> None:
    """Every target opens from `probe`, waited for: a new pod's address reaches the policy's ipset with
    the enforcer's next sync, a moment after the pod started."""
    last: dict = {}

    def all_open() -> bool:
        last.update(probe.connect(*targets))
        return all(last[t] == "open" for t in targets)

    try:
        wait_for(all_open, timeout, f"{probe} admitted to {targets}", interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}: {last}") from None


def refused(probe: Probe, targets: list[str]) -> None:
    got = probe.connect(*targets)
    assert all(got[t] in ("refused", "timeout") for t in targets), f"{probe} got through: {got}"


def listeners(pid: int) -> list[str]:
    """Local addresses of the process's listening TCP sockets."""
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def pod_network_pods() -> list[str]:
    """The node's pods on the pod network (kube-router gives each a chain): with an address, not hostNetwork."""
    return [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in kjson("pods", "-A")["items"]
            if p["status"].get("podIP") and not p["spec"].get("hostNetwork")
            and p["status"].get("phase") in ("Pending", "Running")]


def log_since_start(component) -> str:
    text = component.log.read_text(errors="replace")
    return text[text.rfind("--- "):]


def rss_mib(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 - read at once
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


# ---------------------------------------------------------------- the enforcer
def test_the_enforcer_runs_only_the_firewall_and_listens_on_loopback_only(stack):
    enforcer = stack["kube-router"]
    pid = processes.read_pid(enforcer.name)
    assert pid is not None and enforcer.ready(), "kube-router is not running with its rules in place"
    argv = open(f"/proc/{pid}/cmdline").read().split("\0")  # noqa: SIM115
    for flag in ("--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                 "--run-loadbalancer=false", "--health-port=0"):
        assert flag in argv, argv
    # Metrics on loopback only; no GoBGP gRPC (50051), no BGP (179), no health server (20244).
    assert listeners(pid) == [f"127.0.0.1:{netpol.METRICS_PORT}"], listeners(pid)
    assert netpol.full_syncs() >= 1
    assert any(c.startswith("KUBE-NWPLCY-") for c in netpol.chains()), netpol.chains()
    # One pod chain per pod of the node, no more: each sync renames them, the stale ones are deleted.
    wait_for(lambda: len([c for c in netpol.chains() if c.startswith("KUBE-POD-FW-")]) == len(pod_network_pods()),
             60, "one KUBE-POD-FW chain per pod")
    assert "Aborting sync" not in log_since_start(enforcer)
    print(f"\nkube-router pid {pid}: {rss_mib(pid):.0f} MiB resident, {netpol.full_syncs()} full syncs, "
          f"{len(netpol.chains())} chains, {len(netpol.ipsets())} ipsets")


def test_its_restores_leave_the_rest_of_the_filter_table_alone(stack):
    """kube-router restores the whole filter table it saved a moment before; through its wrapper only its
    own chains are written, so a rule another program added since (kube-proxy, kafka.cut_off()) stays."""
    canary, jump = "SIMPLECQRS-NETPOL-CANARY", ["OUTPUT", "-d", "192.0.2.1/32", "-j", "SIMPLECQRS-NETPOL-CANARY"]
    iptables = ["iptables", "-w", "-t", "filter"]
    try:
        subprocess.run([*iptables, "-N", canary], check=True, timeout=60)
        subprocess.run([*iptables, "-A", canary, "-j", "RETURN"], check=True, timeout=60)
        subprocess.run([*iptables, "-I", *jump], check=True, timeout=60)
        saved = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True, check=True,
                               timeout=60).stdout
        without = "".join(line for line in saved.splitlines(keepends=True) if canary not in line)
        out = subprocess.run([str(netpol.PATH_DIR / "iptables-restore"), "--wait", "-T", "filter"], input=without,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert subprocess.run([*iptables, "-C", *jump], timeout=60).returncode == 0, "the jump was removed"
        assert "-A SIMPLECQRS-NETPOL-CANARY -j RETURN" in subprocess.run(
            [*iptables, "-S", canary], capture_output=True, text=True, timeout=60).stdout
        # And through a real full sync of the enforcer (a namespace's labels change: it syncs).
        syncs = netpol.full_syncs()
        kubectl("label", "namespace", "default", f"simplecqrs.io/netpol-test={time.time_ns()}", "--overwrite")
        wait_for(lambda: netpol.full_syncs() > syncs, 60, "a full sync of kube-router")
        assert subprocess.run([*iptables, "-C", *jump], timeout=60).returncode == 0, "the jump was removed"
    finally:
        kubectl("label", "namespace", "default", "simplecqrs.io/netpol-test-", check=False)
        network.delete_chain("filter", canary)


# ---------------------------------------------------------------- the instance's policy
def test_a_pod_in_another_namespace_cannot_reach_the_api_port(probes):
    admitted(probes["client"], api_targets())          # the policy is in force for the probes' pods by now
    refused(probes["outsider"], api_targets())
    refused(probes["outsider_labelled"], api_targets())   # the label counts in the instance's namespace only


def test_a_pod_of_the_instance_namespace_without_the_client_label_cannot_reach_it(probes):
    admitted(probes["client"], api_targets())
    refused(probes["unlabelled"], api_targets())


def test_a_labelled_client_reaches_the_api_pods_and_the_service(probes):
    admitted(probes["client"], api_targets())
    url = f"http://{services.INSTANCE}-api.{services.NAMESPACE}.svc/readyz"
    assert wait_for(lambda: probes["client"].get(url) == 200, 60, f"GET {url} from the labelled client")


def test_orders_still_go_through_the_ingress(make_up_instance):
    assert via_ingress(services.INGRESS_HOST, "GET", "/readyz").status_code == 200
    assert requests.get(f"{services.API_URL}/readyz", timeout=15).status_code == 200   # Traefik's `api` entry point
    order_round_trip(services.NAMESPACE, services.INGRESS_HOST, f"{services.INSTANCE}-api")


# ---------------------------------------------------------------- Strimzi's policies
def test_kafka_serves_and_its_replication_port_is_closed_to_other_pods(probes):
    assert stack_kafka.Kafka().ready(), "the stack's Kafka is not Ready (Strimzi's status, every broker answering)"
    ips = kafka_ips()
    admitted(probes["outsider"], [f"{ip}:{KAFKA_CLIENT_PORT}" for ip in ips])    # Strimzi admits every pod here
    refused(probes["outsider"], [f"{ip}:{KAFKA_REPLICATION_PORT}" for ip in ips])


# ---------------------------------------------------------------- stop and start again
def test_stopping_the_enforcer_removes_its_rules_and_starting_it_restores_the_policy(stack, probes):
    enforcer = stack["kube-router"]
    targets = api_targets()
    refused(probes["unlabelled"], targets)
    try:
        enforcer.stop()
        assert not netpol.chains() and not netpol.ipsets(), (netpol.chains(), netpol.ipsets())
        assert "KUBE-ROUTER" not in subprocess.run(["iptables-save", "-t", "filter"], capture_output=True,
                                                   text=True, timeout=60).stdout
        # Nothing enforces the policy now: the unlabelled pod gets through, so it was the enforcer that refused it.
        admitted(probes["unlabelled"], targets, timeout=20)
    finally:
        t0 = time.monotonic()
        enforcer.up()
        took = time.monotonic() - t0
    pid = processes.read_pid(enforcer.name)
    print(f"\nkube-router ready {took:.1f}s after its start; {rss_mib(pid):.0f} MiB resident")
    refused(probes["unlabelled"], targets)
    admitted(probes["client"], targets)
