"""The users' journeys on the local node: the product as pods, as a user runs it.

Everything here is real: the image is built by `docker build` from the Dockerfile and imported
into the node's containerd; the operator runs as a Deployment installed by its Helm chart, under
its own ServiceAccount and RBAC; the API and consumer pods run on the kubelet; HTTP goes through
the stack's Traefik and the instance's Ingress on 127.0.0.1:80.  The stores are the ones the stack
runs on the host (pods reach them through the node's forwards: scripts/stack/network.py).

Each test uses names of its own (namespace, topic, database, keyspace, Ingress host), so it never
sees another test's or `make up`'s instance.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pymysql
import pytest
import requests
from support import order

from scripts.stack import core, network, node, services

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

HELM = core.BIN / "helm"
INGRESS = "http://127.0.0.1"


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return node.kubectl(*args, input=input, check=check, timeout=timeout)


def kjson(*args: str) -> dict | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def wait_for(check, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, OSError, KeyError, TypeError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"not {what} after {timeout:.0f}s (last: {str(last)[:500]})")


def helm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([str(HELM), f"--kubeconfig={core.KUBECONFIG}", *args], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"helm {' '.join(args[:2])}: {out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def image(stack) -> str:
    """The product image, built by docker from the Dockerfile and imported into the node."""
    services.ProductImage().start()
    return services.image_ref()


@pytest.fixture(scope="session")
def operator(image):
    """The operator as a Deployment from its chart (kept if `make up` installed it)."""
    had = kjson("-n", services.OPERATOR_NAMESPACE, "deployment", "simplecqrs-operator") is not None
    helm("upgrade", "--install", "simplecqrs-operator", str(services.OPERATOR_CHART), "-n",
         services.OPERATOR_NAMESPACE, "--create-namespace", "--set", f"image.tag={image.split(':', 1)[1]}",
         "--set", "image.pullPolicy=Never", "--wait", "--timeout=5m")
    yield
    if not had:
        helm("uninstall", "simplecqrs-operator", "-n", services.OPERATOR_NAMESPACE, "--wait")


def admin_secret(ns: str) -> None:
    from scripts.stack.credentials import credentials

    creds = credentials()
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "mysql-admin", "namespace": ns, "labels": {"simplecqrs.io/credentials": "true"}},
        "type": "Opaque", "stringData": {"username": creds["MYSQL_ADMIN_USER"], "password": creds["MYSQL_ADMIN_PASSWORD"]}}))


def orderservice_spec(tag: str, image: str, policy: str = "Delete") -> dict:
    """An OrderService like values-local.yaml's, with names of its own."""
    return {
        "deletionPolicy": policy,
        "kafka": {"bootstrapServers": f"{network.GATEWAY}:{network.KAFKA_POD_PORT}", "topic": f"OnNewOrder-{tag}",
                  "partitions": 3, "replicationFactor": 1, "consumerGroup": f"projector-{tag}"},
        "mysql": {"host": network.GATEWAY, "port": 3306, "database": f"scqrs_{tag}",
                  "adminSecretRef": {"name": "mysql-admin"}},
        "cassandra": {"contactPoints": [network.GATEWAY], "port": 9042, "localDatacenter": "datacenter1",
                      "keyspace": f"scqrs_{tag}", "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1}},
        "api": {"image": image, "replicas": 2, "ingress": {"host": f"{tag}.simplecqrs.local", "className": "traefik"}},
        "consumer": {"image": image, "replicas": 2},
    }


@pytest.fixture
def namespace(stack, run_id):
    ns = f"journey-{run_id}-{uuid.uuid4().hex[:4]}"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def ready(ns: str, name: str) -> dict | None:
    obj = kjson("-n", ns, "orderservice", name)
    conds = services.conditions(obj)
    return obj if conds.get("Ready", {}).get("status") == "True" else None


def via_ingress(host: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, f"{INGRESS}{path}", headers={"Host": host, **kw.pop("headers", {})},
                            timeout=kw.pop("timeout", 15), **kw)


# ---------------------------------------------------------------- journeys
def test_apply_an_orderservice_serve_through_the_ingress_then_delete_it(operator, image, namespace, admin_mysql):
    """kubectl apply in a fresh namespace: stores provisioned, pods Running, Ready=True; an order
    POSTed through the Ingress is read back through it; deletion (policy Delete) removes the pods
    and drops the stores."""
    tag = namespace.replace("-", "")[-12:]
    name = "orders"
    admin_secret(namespace)
    obj = {"apiVersion": "simplecqrs.io/v1alpha1", "kind": "OrderService",
           "metadata": {"name": name, "namespace": namespace}, "spec": orderservice_spec(tag, image)}
    kubectl("apply", "-f", "-", input=json.dumps(obj))
    os_obj = wait_for(lambda: ready(namespace, name), 300, "Ready")
    assert (os_obj["status"]["api"], os_obj["status"]["consumer"]) == ("2/2", "2/2")
    pods = kjson("-n", namespace, "pods")["items"]
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    assert len(running) == 4, [(p["metadata"]["name"], p["status"]["phase"]) for p in pods]

    host = f"{tag}.simplecqrs.local"
    body = order()
    r = wait_for(lambda: (resp := via_ingress(host, "POST", "/orders", json=body)).status_code == 201 and resp,
                 60, "an order accepted through the Ingress")
    oid = r.json()["id"]
    got = wait_for(lambda: (resp := via_ingress(host, "GET", f"/orders/{oid}", params={"wait": 5000})).status_code
                   == 200 and resp.json(), 60, "the order read back through the Ingress")
    assert got["id"] == oid and got["quantity"] == body["quantity"]

    kubectl("delete", "-n", namespace, "orderservice", name, "--timeout=180s")
    wait_for(lambda: not kjson("-n", namespace, "pods")["items"], 120, "the pods gone")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user=admin_mysql.admin_user, password=admin_mysql.admin_password)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (f"scqrs_{tag}",))
            assert cur.fetchall() == ()
    finally:
        conn.close()
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], port=9042)
    try:
        rows = cluster.connect().execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                                         (f"scqrs_{tag}",))
        assert list(rows) == []
    finally:
        cluster.shutdown()


def test_helm_install_both_charts_then_helm_test(operator, image, namespace):
    """The instance chart installed like a user would (values-local.yaml), then `helm test`: its
    test pod runs in the cluster and makes a round trip through the API Service."""
    tag = namespace.replace("-", "")[-12:]
    admin_secret(namespace)
    release = f"t{tag}"[:20]
    helm("install", release, str(services.APP_CHART), "-n", namespace, "-f", str(services.LOCAL_VALUES),
         "--set", f"image.tag={image.split(':', 1)[1]}", "--set", f"orderService.name={release}",
         "--set", "orderService.deletionPolicy=Delete", "--set", f"ingress.host={tag}.simplecqrs.local",
         "--set", f"kafka.topic=OnNewOrder-{tag}", "--set", f"mysql.database=scqrs_{tag}",
         "--set", f"cassandra.keyspace=scqrs_{tag}", "--set", "mysql.adminSecret.name=mysql-admin", "--wait", "--timeout=5m")
    try:
        wait_for(lambda: ready(namespace, release), 300, "Ready")
        out = helm("test", release, "-n", namespace, "--timeout=5m")
        assert "Phase:          Succeeded" in out.stdout, out.stdout
    finally:
        helm("uninstall", release, "-n", namespace, "--wait", "--timeout=5m")

