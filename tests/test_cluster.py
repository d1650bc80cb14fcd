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

import functools
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import conftest
import pymysql
import pytest
import requests
import support
import yaml
from support import order

from scripts.stack import ingress, network, node, paths, services
from scripts.stack import kafka as stack_kafka
from scripts.stack.node import kubectl

# kubectl and HTTP polls: once a second is plenty (conftest's default suits local processes)
wait_for = functools.partial(conftest.wait_for, interval=1.0)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

HELM = paths.BIN / "helm"
INGRESS = "http://127.0.0.1"


def kjson(*args: str) -> dict | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def helm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([str(HELM), f"--kubeconfig={paths.KUBECONFIG}", *args], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"helm {' '.join(args[:2])}: {out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def image(stack) -> str:
    """The product image, built by docker from the Dockerfile and imported into the node."""
    services.ProductImage().start()
    return services.image_ref()


@pytest.fixture(scope="module")
def operator(image):
    """The operator as a Deployment from its chart (kept if `make up` installed it), for this
    module only: left running, it would serve every namespace of the modules after this one."""
    had = kjson("-n", services.OPERATOR_NAMESPACE, "deployment", "simplecqrs-operator") is not None
    # The CRD as a user upgrading applies it (Helm never upgrades a chart's crds/): a new field or rule.
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=simplecqrs-stack",
            "-f", str(services.OPERATOR_CHART / "crds"))
    helm("upgrade", "--install", "simplecqrs-operator", str(services.OPERATOR_CHART), "-n",
         services.OPERATOR_NAMESPACE, "--create-namespace", "--set", f"image.tag={image.split(':', 1)[1]}",
         "--set", "rbac.scope=cluster",     # as make up installs it: every namespace of these tests
         "--set", "image.pullPolicy=Never", "--wait", "--timeout=5m")
    yield
    if not had:  # (unchecked: a test may have uninstalled it already)
        subprocess.run([str(HELM), f"--kubeconfig={paths.KUBECONFIG}", "uninstall", "simplecqrs-operator", "-n",
                        services.OPERATOR_NAMESPACE, "--wait"], capture_output=True, timeout=300)


def admin_secret(ns: str) -> None:
    services.apply_admin_secret(ns, "mysql-admin")


def orderservice_spec(tag: str, image: str, policy: str = "Delete", *, strimzi: bool = False) -> dict:
    """An OrderService like values-local.yaml's, with names of its own.  strimzi: its topics and
    SCRAM users made by the stack's Strimzi operators, as values-local.yaml has them; else the
    operator makes the topics with the admin API and the pods connect without a user."""
    kafka = {"bootstrapServers": stack_kafka.POD_PLAIN_BOOTSTRAP}
    if strimzi:
        kafka = {"bootstrapServers": stack_kafka.POD_SCRAM_BOOTSTRAP,
                 "strimzi": {"cluster": stack_kafka.CLUSTER, "namespace": stack_kafka.NAMESPACE,
                             "authentication": {"type": "scram-sha-512"}}}
    return {
        "deletionPolicy": policy,
        "kafka": {**kafka, "topic": f"OnNewOrder-{tag}",
                  "partitions": 3, "replicationFactor": 1, "consumerGroup": f"projector-{tag}"},
        "mysql": {"host": network.GATEWAY, "port": 3306, "database": f"scqrs_{tag}",
                  "adminSecretRef": {"name": "mysql-admin"}},
        "cassandra": {"contactPoints": [network.GATEWAY], "port": 9042, "localDatacenter": "datacenter1",
                      "keyspace": f"scqrs_{tag}", "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1}},
        "api": {"image": image, "replicas": 2, "ingress": {"host": f"{tag}.simplecqrs.local", "className": "traefik"}},
        "consumer": {"image": image, "replicas": 2},
        "networkPolicy": {"egressCIDRs": [network.STORES_SEEN_BY_POLICY]},   # the host's stores (values-local.yaml)
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


def what_pods_say(ns: str, *deployments: str, tail: int = 40) -> str:
    """For a failure's message: the namespace's pods and the last log lines of each Deployment's
    containers (an API's relay, a consumer's projection)."""
    out = [kubectl("-n", ns, "get", "pods", "-o", "wide", check=False).stdout]
    for deploy in deployments:
        logs = kubectl("-n", ns, "logs", f"deploy/{deploy}", "--all-containers", f"--tail={tail}", check=False)
        out.append(f"--- {deploy}\n{logs.stdout[-6000:]}{logs.stderr[-1000:]}")
    return "\n".join(out)


def order_round_trip(ns: str, host: str, api: str) -> None:
    """An order POSTed through the Ingress and read back through it; on failure, the API's logs and
    the namespace's pods in the message."""
    body = order()
    try:
        r = wait_for(lambda: (resp := via_ingress(host, "POST", "/orders", json=body)).status_code == 201
                     and resp, 120, "an order accepted through the Ingress")
    except AssertionError as e:   # say why: what the API and its relay logged, and the pods' states
        raise AssertionError(f"{e}\n{what_pods_say(ns, api)}") from None
    oid = r.json()["id"]
    got = wait_for(lambda: (resp := via_ingress(host, "GET", f"/orders/{oid}", params={"wait": 5000}))
                   .status_code == 200 and resp.json(), 120, "the order read back through the Ingress")
    assert got["id"] == oid and got["quantity"] == body["quantity"]


def release_topics_and_claims(ns: str) -> None:
    """After the development stores are uninstalled: the retained KafkaTopics keep Strimzi's
    finalizer, which nothing serves once the namespace's Kafka (and its Topic Operator) is gone, so
    it is released by hand, as after any such uninstall; the StatefulSets' claims outlive them, and
    deleting the claims deletes the volumes."""
    for kt in (kjson("-n", ns, "kafkatopics") or {}).get("items", []):
        kubectl("-n", ns, "patch", "kafkatopic", kt["metadata"]["name"], "--type=merge",
                "-p", '{"metadata":{"finalizers":[]}}', check=False)
    kubectl("-n", ns, "delete", "pvc", "--all", "--timeout=120s")
    wait_for(lambda: not [pv for pv in kjson("pv")["items"]
                          if pv["spec"].get("claimRef", {}).get("namespace") == ns], 120, "the volumes deleted")


# ---------------------------------------------------------------- journeys
def test_apply_an_orderservice_serve_through_the_ingress_then_delete_it(operator, image, namespace, admin_mysql):
    """kubectl apply in a fresh namespace: stores provisioned, its topics and Kafka users made by
    Strimzi's operators, pods Running, Ready=True; an order POSTed through the Ingress is read back
    through it (so the relay and the consumers authenticated with SCRAM and were authorised by their
    ACLs); deletion (policy Delete) removes the pods, the KafkaTopics and users, and drops the stores."""
    tag = namespace.replace("-", "")[-12:]
    name = "orders"
    admin_secret(namespace)
    stack_kafka.grant(namespace, f"OnNewOrder-{tag}", f"projector-{tag}")   # the shared cluster's owner's consent
    obj = {"apiVersion": "simplecqrs.io/v1alpha1", "kind": "OrderService",
           "metadata": {"name": name, "namespace": namespace}, "spec": orderservice_spec(tag, image, strimzi=True)}
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

    # Gateway API beside the Ingress: an HTTPRoute on the stack's shared Gateway (Traefik's Gateway
    # provider), accepted by it and serving the API under its own host name; dropped from the spec, deleted.
    gw_host = f"{tag}.gw.simplecqrs.local"
    kubectl("-n", namespace, "patch", "orderservice", name, "--type=merge", "-p", json.dumps({"spec": {"api": {
        "httpRoute": {"parentRefs": [{"name": ingress.GATEWAY_NAME, "namespace": ingress.GATEWAY_NAMESPACE,
                                      "sectionName": ingress.GATEWAY_LISTENER}], "hostnames": [gw_host]}}}}))

    def route_accepted() -> bool:
        route = kjson("-n", namespace, "httproute", f"{name}-api") or {}
        return any(c["type"] == "Accepted" and c["status"] == "True" and p["controllerName"] == ingress.GATEWAY_CONTROLLER
                   for p in route.get("status", {}).get("parents", []) for c in p.get("conditions", []))
    wait_for(route_accepted, 120, "the HTTPRoute accepted by the Gateway")
    order_round_trip(namespace, gw_host, f"{name}-api")
    kubectl("-n", namespace, "patch", "orderservice", name, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": "/spec/api/httpRoute"}]))
    wait_for(lambda: kjson("-n", namespace, "httproute", f"{name}-api") is None, 120, "the HTTPRoute deleted")
    assert via_ingress(host, "GET", f"/orders/{oid}").status_code == 200   # the Ingress untouched

    relay = kjson("-n", namespace, "secret", f"{name}-kafka-relay")
    assert relay and relay["metadata"]["ownerReferences"][0]["kind"] == "OrderService"

    kubectl("delete", "-n", namespace, "orderservice", name, "--timeout=180s")
    wait_for(lambda: not kjson("-n", namespace, "pods")["items"], 120, "the pods gone")
    strimzi_objects = kjson("-n", stack_kafka.NAMESPACE, "kafkatopics,kafkausers")["items"]
    assert not [o["metadata"]["name"] for o in strimzi_objects if o["metadata"]["name"].startswith(f"{namespace}.")]
    conn = pymysql.connect(host="127.0.0.1", port=admin_mysql.port, user=admin_mysql.admin_user,
                           password=admin_mysql.admin_password)
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
    # values-local.yaml's Kafka is the stack's shared cluster: its owner grants the names (the topic,
    # and the chart's default group <release>-projector)
    stack_kafka.grant(namespace, f"OnNewOrder-{tag}*", f"{release}-projector")
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


def test_values_dev_runs_the_development_stores_on_the_node(operator, image, namespace):
    """values-dev.yaml as a kind user installs it: the chart's own MySQL and Cassandra StatefulSets,
    from images built here with the official images' contract, and the chart's own Strimzi `Kafka` +
    `KafkaNodePool` (kafka.deploy.enabled), which the stack's Cluster Operator reconciles (it watches
    every namespace) from the Kafka image built here; all on volumes of the node's default
    StorageClass.  The operator provisions them (the topics as KafkaTopics of that cluster), the
    instance becomes Ready, and an order goes in and comes back through the Ingress."""
    from scripts.stack import devstores

    refs = devstores.build()
    tag = namespace.replace("-", "")[-12:]
    release = f"d{tag}"[:20]
    # values-local.yaml for the image and the Ingress class the node has; its Kafka (the stack's
    # cluster, 3 replicas) is replaced by the chart's own one-node cluster.
    helm("install", release, str(services.APP_CHART), "-n", namespace,
         "-f", str(services.APP_CHART / "values-dev.yaml"), "-f", str(services.LOCAL_VALUES),
         *devstores.helm_values(refs), "--set", "kafka.deploy.enabled=true", "--set", "kafka.replicationFactor=1",
         "--set", "kafka.config=null", "--set", "kafka.deploy.storage=1Gi",
         # (a small CPU request: the node's 2 cores are mostly requested already by the stack's Kafka)
         "--set", "kafka.deploy.resources.requests.cpu=50m",
         "--set", f"image.tag={image.split(':', 1)[1]}", "--set", f"orderService.name={release}",
         "--set", f"ingress.host={tag}.simplecqrs.local", "--set", f"kafka.topic=OnNewOrder-{tag}",
         "--timeout=5m")
    try:
        os_obj = wait_for(lambda: ready(namespace, release), 900, "Ready on the chart's own stores")
        stores = f"{release}-simplecqrs"  # the chart's fullname: the release name, then the chart's
        assert (os_obj["spec"]["mysql"]["host"], os_obj["spec"]["cassandra"]["contactPoints"]) == (
            f"{stores}-mysql.{namespace}.svc", [f"{stores}-cassandra.{namespace}.svc"])
        assert os_obj["spec"]["kafka"]["bootstrapServers"] == f"{stores}-kafka-bootstrap.{namespace}.svc:9092"
        # (the instance can be Ready first: Strimzi writes the Kafka's Ready when its reconciliation ends)
        wait_for(lambda: services.conditions(kjson("-n", namespace, "kafka", stores)).get("Ready", {}).get("status")
                 == "True", 300, "the chart's Kafka Ready")
        (pool,) = kjson("-n", namespace, "kafkanodepools")["items"]
        assert pool["status"]["nodeIds"] == [0] and sorted(pool["status"]["roles"]) == ["broker", "controller"]
        topic_ready = services.conditions(os_obj)["TopicReady"]
        assert topic_ready["status"] == "True" and "Strimzi" in topic_ready["message"], topic_ready
        claims = kjson("-n", namespace, "pvc")["items"]
        assert sorted((c["status"]["phase"], c["spec"]["storageClassName"]) for c in claims) == [
            ("Bound", "standard")] * 3, claims
        for pod in ("mysql-0", "cassandra-0"):
            p = kjson("-n", namespace, "pod", f"{stores}-{pod}")
            assert p["spec"]["containers"][0]["image"] in refs.values() and p["status"]["phase"] == "Running"

        order_round_trip(namespace, f"{tag}.simplecqrs.local", f"{release}-api")
    finally:
        helm("uninstall", release, "-n", namespace, "--wait", "--timeout=5m")
        release_topics_and_claims(namespace)


def test_kustomize_kind_overlay_runs_on_the_node(operator, image, run_id, tmp_path):
    """The kind overlay and k8s/dev/orderservice.yaml as the README's kustomize steps apply them (the
    secret env file generated by the README's own command), with what only this node needs changed in
    a wrapper kustomization around them: the namespace (make up's instance is `simplecqrs/simplecqrs`),
    the store images built here (no registry), a small CPU request for the Kafka node (the node's two
    cores are mostly requested by the stack's three Kafka nodes), and the image and Ingress class of
    the instance.  Strimzi's Cluster Operator reconciles the overlay's `Kafka` + `KafkaNodePool`, the
    operator provisions the overlay's MySQL (binlog relay: it needs the overlay's binlog flags) and
    Cassandra, the instance becomes Ready, and an order goes in and comes back through the Ingress."""
    from scripts.stack import devstores

    refs = devstores.build()
    ns, tag = f"kustomize-{run_id}", f"k{run_id}"
    dev = tmp_path / "k8s" / "dev"       # a clone's k8s/dev, without any generated env file
    shutil.copytree(paths.ROOT / "k8s" / "dev", dev, ignore=shutil.ignore_patterns("*.env"))
    readme = (paths.ROOT / "README.md").read_text()
    (command,) = [line.strip() for line in readme.splitlines() if "> k8s/dev/base/secrets/mysql.env" in line
                  and line.strip().startswith("printf")]
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)   # (k8s/dev/base/secrets exists in a clone)
    wrapper = tmp_path / "node"
    wrapper.mkdir()
    repo = {k: v.rsplit(":", 1) for k, v in refs.items()}
    (wrapper / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": ns,
        "resources": ["../k8s/dev/overlays/kind"],
        "images": [{"name": k, "newName": name, "newTag": t} for k, (name, t) in repo.items()],
        "patches": [{"target": {"group": "kafka.strimzi.io", "kind": "KafkaNodePool"},
                     "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/resources/requests/cpu",
                                               "value": "50m"}])}]}))
    (osvc,) = yaml.safe_load_all((dev / "orderservice.yaml").read_text())
    osvc["metadata"]["namespace"] = ns
    spec = osvc["spec"]
    spec["kafka"]["bootstrapServers"] = spec["kafka"]["bootstrapServers"].replace(".simplecqrs.svc", f".{ns}.svc")
    spec["kafka"]["topic"] = f"OnNewOrder-{tag}"
    spec["mysql"]["host"] = spec["mysql"]["host"].replace(".simplecqrs.svc", f".{ns}.svc")
    spec["cassandra"]["contactPoints"] = [c.replace(".simplecqrs.svc", f".{ns}.svc")
                                          for c in spec["cassandra"]["contactPoints"]]
    spec["api"]["image"] = spec["consumer"]["image"] = image
    spec["api"]["ingress"] = {"host": f"{tag}.simplecqrs.local", "className": "traefik"}
    name = osvc["metadata"]["name"]
    try:
        kubectl("apply", "-k", wrapper, timeout=300)
        kubectl("apply", "-f", "-", input=json.dumps(osvc))
        wait_for(lambda: ready(ns, name), 900, "Ready on the overlay's stores")
        wait_for(lambda: services.conditions(kjson("-n", ns, "kafka", spec["kafka"]["strimzi"]["cluster"]))
                 .get("Ready", {}).get("status") == "True", 300, "the overlay's Kafka Ready")
        (pool,) = kjson("-n", ns, "kafkanodepools")["items"]
        assert pool["status"]["nodeIds"] == [0] and sorted(pool["status"]["roles"]) == ["broker", "controller"]
        topic_ready = services.conditions(kjson("-n", ns, "orderservice", name))["TopicReady"]
        assert topic_ready["status"] == "True" and "Strimzi" in topic_ready["message"], topic_ready
        order_round_trip(ns, f"{tag}.simplecqrs.local", f"{name}-api")
    finally:
        kubectl("-n", ns, "delete", "orderservice", name, "--timeout=180s", check=False)
        kubectl("delete", "-k", wrapper, "--ignore-not-found", "--wait=false", timeout=300, check=False)
        release_topics_and_claims(ns)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---------------------------------------------------------------- one instance for the journeys below
class Instance:
    def __init__(self, ns: str, name: str, tag: str):
        self.ns, self.name, self.tag = ns, name, tag
        self.host = f"{tag}.simplecqrs.local"

    def get(self) -> dict:
        return kjson("-n", self.ns, "orderservice", self.name)

    def patch(self, spec: dict) -> None:
        kubectl("-n", self.ns, "patch", "orderservice", self.name, "--type=merge", "-p", json.dumps({"spec": spec}))

    def settings(self, admin_mysql):
        from dataclasses import replace

        from app.config import CassandraSettings, KafkaSettings, Settings

        return Settings(mysql=replace(admin_mysql, database=f"scqrs_{self.tag}"),
                        kafka=KafkaSettings(bootstrap_servers=stack_kafka.HOST_BOOTSTRAP, topic=f"OnNewOrder-{self.tag}",
                                            dead_letter_topic=f"OnNewOrder-{self.tag}.DLQ",
                                            consumer_group=f"projector-{self.tag}"),
                        cassandra=CassandraSettings(contact_points="127.0.0.1", port=9042, local_dc="datacenter1",
                                                    keyspace=f"scqrs_{self.tag}"))

    def pods(self, component: str) -> list[dict]:
        return kjson("-n", self.ns, "pods", "-l", f"app.kubernetes.io/component={component}")["items"]

    def rolled_out(self) -> bool:
        return services.rolled_out(self.ns, self.name)


def started_instance(ns: str, tag: str, spec: dict):
    """A namespace of its own with the admin Secret and the OrderService `shop` of `spec`, rolled out;
    removed (instance, then namespace) when the generator is closed.  For module fixtures."""
    kubectl("create", "namespace", ns)
    admin_secret(ns)
    inst = Instance(ns, "shop", tag)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "simplecqrs.io/v1alpha1", "kind": "OrderService",
                                                 "metadata": {"name": inst.name, "namespace": ns}, "spec": spec}))
    wait_for(lambda: ready(ns, inst.name), 300, f"{ns}/{inst.name} Ready")
    wait_for(inst.rolled_out, 300, f"{ns}/{inst.name} rolled out")
    yield inst
    kubectl("-n", ns, "delete", "orderservice", inst.name, "--timeout=180s", check=False)
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def instance(operator, image, run_id):
    tag = f"j{run_id}"
    spec = orderservice_spec(tag, image)
    spec["kafka"]["partitions"] = 6
    yield from started_instance(f"journeys-{run_id}", tag, spec)


class Load:
    """Steady POSTs through the Ingress from a few threads; every outcome recorded."""

    def __init__(self, host: str, threads: int = 4, pause: float = 0.05):
        import threading

        self.host, self.threads, self.pause = host, threads, pause
        self.stop_event = threading.Event()
        self.acked: list[str] = []
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as http:
            while not self.stop_event.is_set():
                try:
                    r = http.post(f"{INGRESS}/orders", json=order(), headers={"Host": self.host}, timeout=30)
                    self.statuses.append(r.status_code)
                    if r.status_code == 201:
                        self.acked.append(r.json()["id"])
                except requests.RequestException as e:
                    self.errors.append(type(e).__name__)
                time.sleep(self.pause)

    def __enter__(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for w in self._workers:
            w.join(60)

    def server_errors(self) -> list[int]:
        return [s for s in self.statuses if s >= 500]


def audit_equal_with(settings, acked: list[str], timeout: float = 180):
    """The audit equal (support.audit_equal), and every acknowledged order in the write model."""
    from app.audit import write_model

    report = support.audit_equal(settings, timeout=timeout, interval=2)
    orders, _ = write_model(settings)
    assert set(acked) <= set(orders), f"{len(set(acked) - set(orders))} acknowledged orders not in MySQL"
    return report


def test_bench_quick_measures_the_instance_as_deployed(instance, tmp_path):
    """scripts/bench's default form on this module's instance: its pods through the Ingress, CPU per
    container off the node's cgroups and per host process, freshness off the pods' own histograms, a
    py-spy flame graph of a gunicorn worker, the relay and a consumer.  Measured, never asserted."""
    import math

    out = tmp_path / "bench.json"
    run = subprocess.run([str(paths.ROOT / "scripts" / "bench"), "--quick", "--instance", f"{instance.ns}/{instance.name}",
                          "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=paths.ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    d = result["deployed"]
    assert result["settings"]["form"] == "deployed" and d["instance"] == f"{instance.ns}/{instance.name}"
    assert d["host_header"] == instance.host, "through the Ingress, by the instance's host"
    for key in ("command_ratio", "db_ratio", "vs_naive_ratio", "freshness_p99_ratio", "projection_ratio"):
        value = d.get(key, result.get(key))
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    cpu = d["cpu_s_per_1000_orders"]
    for row in ("pod:api", "pod:relay", "pod:consumer"):
        assert cpu.get(row, 0) > 0, (row, cpu)
    assert any(k.startswith("pod:kafka/") for k in cpu) and "host:cassandra" in cpu, cpu
    assert d["cpu_s_per_1000_orders_total"] >= sum(cpu[r] for r in ("pod:api", "pod:relay", "pod:consumer"))
    published, fresh = d["published_ms"]["p50"]["median"], d["freshness_ms"]["p50"]["median"]
    assert 0 < published <= fresh, (d["published_ms"], d["freshness_ms"])
    # The floors beside ours, at the same rate: the bare Flask + INSERT app and the write store under it;
    # the brokers, Cassandra and the raw process under the freshness baseline.
    command_floor = d["floors"]["command"]["cpu_s_per_1000_orders"]
    assert command_floor.get("host:bench-floor (bare Flask + one INSERT)", 0) > 0, command_floor
    projection_floor = d["floors"]["projection"]["cpu_s_per_1000_orders"]
    assert {"pod:kafka/kafka", "host:cassandra"} <= set(projection_floor), projection_floor
    assert any(k.startswith("host:bench ") and v > 0 for k, v in projection_floor.items()), projection_floor
    assert set(d["profiles"]) == {"api-worker", "relay", "consumer"}, d["profiles"]
    for name, prof in d["profiles"].items():
        assert not prof.get("error"), (name, prof)
        assert Path(prof["svg"]).read_text().lstrip().startswith("<?xml"), name
        assert prof["samples"] > 0 and prof["self"], (name, prof)
    assert "deployed instance" in out.with_suffix(".txt").read_text()


def test_scaling_consumers_partitions_and_autoscaling(instance, admin_mysql):
    """replicas 2 -> 4: four consumers share the partitions; partitions 6 -> 12 grows the topic;
    autoscaling on keeps the replicas it had (no drop to 1) and the HPA reads metrics."""
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient

    instance.patch({"consumer": {"replicas": 4}, "kafka": {"partitions": 12}})
    wait_for(instance.rolled_out, 240, "4 consumers rolled out")
    assert len([p for p in instance.pods("consumer") if p["status"]["phase"] == "Running"]) == 4
    c = KafkaConsumer(bootstrap_servers=stack_kafka.HOST_BOOTSTRAP)
    try:
        assert wait_for(lambda: len(c.partitions_for_topic(f"OnNewOrder-{instance.tag}") or ()) == 12, 60,
                        "the topic grown to 12 partitions")
    finally:
        c.close()

    admin = KafkaAdminClient(bootstrap_servers=stack_kafka.HOST_BOOTSTRAP)
    try:
        def shared() -> bool:  # 4 members, each with partitions, together all 12
            group = admin.describe_groups([f"projector-{instance.tag}"])[f"projector-{instance.tag}"]
            owned = [sum((len(a["partitions"]) for a in m["member_assignment"]["assigned_partitions"]), 0)
                     for m in group["members"] if m.get("member_assignment")]
            return len(group["members"]) == 4 and all(owned) and sum(owned) == 12
        wait_for(shared, 150, "four consumers sharing the 12 partitions")
    finally:
        admin.close()

    instance.patch({"consumer": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 80},
                                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}})
    wait_for(lambda: kjson("-n", instance.ns, "hpa", f"{instance.name}-consumer"), 60, "the HPA created")
    time.sleep(5)  # a reconcile pass after the HPA exists
    d = kjson("-n", instance.ns, "deployment", f"{instance.name}-consumer")
    assert d["spec"]["replicas"] == 4, "autoscaling on dropped the consumers from 4"

    def hpa_reads_metrics():
        st = kjson("-n", instance.ns, "hpa", f"{instance.name}-consumer")["status"]
        cur = [m for m in st.get("currentMetrics") or [] if m.get("resource", {}).get("name") == "cpu"]
        return cur and cur[0]["resource"]["current"].get("averageUtilization") is not None
    wait_for(hpa_reads_metrics, 180, "the HPA reading CPU metrics from metrics-server")
    instance.patch({"consumer": {"autoscaling": None, "replicas": 2}})
    wait_for(instance.rolled_out, 240, "back to 2 consumers")


def test_rolling_update_under_load_through_the_ingress(instance, admin_mysql):
    """A rollout of the API (a pod-template change) under steady load: no 5xx, no connection error,
    and the read model equals the write model afterwards."""
    with Load(instance.host) as load:
        time.sleep(3)
        instance.patch({"api": {"resources": {"requests": {"cpu": "60m", "memory": "128Mi"},
                                              "limits": {"memory": "512Mi"}}}})
        time.sleep(2)
        wait_for(instance.rolled_out, 240, "the API rolled out")
        time.sleep(3)
    assert load.acked, "no order was accepted"
    assert load.server_errors() == [] and load.errors == [], (
        f"{len(load.server_errors())} 5xx ({sorted(set(load.server_errors()))}), errors {load.errors[:5]}, "
        f"of {len(load.statuses)} requests")
    audit_equal_with(instance.settings(admin_mysql), load.acked)


def crictl_kill(pod: dict) -> None:
    """Kill a pod's containers the hard way (SIGKILL through the runtime, no graceful delete)."""
    for status in pod["status"]["containerStatuses"]:
        cid = status["containerID"].split("://", 1)[1]
        node.crictl("stop", "--timeout=0", cid, check=False)


@pytest.mark.faults
def test_pods_killed_under_load_lose_no_acknowledged_order(instance, admin_mysql):
    """An API pod, a consumer pod and the operator pod killed under load (crictl, not a delete):
    every acknowledged order ends up in both models."""
    with Load(instance.host) as load:
        time.sleep(3)
        crictl_kill(instance.pods("api")[0])
        time.sleep(5)
        crictl_kill(instance.pods("consumer")[0])
        time.sleep(5)
        (op,) = kjson("-n", services.OPERATOR_NAMESPACE, "pods", "-l", services.OPERATOR_SELECTOR)["items"]
        crictl_kill(op)
        time.sleep(10)
    assert load.acked
    wait_for(instance.rolled_out, 180, "the instance back to Ready")
    report = audit_equal_with(instance.settings(admin_mysql), load.acked)
    assert report.orders_write >= len(set(load.acked))


@pytest.mark.faults
def test_cassandra_down_commands_keep_working_queries_answer_503(instance, stack, admin_mysql):
    """The read store stopped: the API pods stay Ready and POST /orders answers 201; queries answer
    503 with Retry-After; when it returns, everything converges."""
    cassandra = stack["cassandra"]
    body = order()
    oid = via_ingress(instance.host, "POST", "/orders", json=body).json()["id"]
    cassandra.stop()
    try:
        # (a list: a 503 Response is falsy)
        (r,) = wait_for(lambda: (resp := via_ingress(instance.host, "GET", f"/orders/{oid}")).status_code == 503
                        and [resp], 60, "queries answering 503")
        assert int(r.headers["Retry-After"]) >= 1
        accepted = []
        for _ in range(5):
            r = via_ingress(instance.host, "POST", "/orders", json=order())
            assert r.status_code == 201, r.text
            accepted.append(r.json()["id"])
        time.sleep(25)  # > readiness period x failure threshold: a pod failing /readyz would be out by now
        api = instance.pods("api")
        assert all(c["ready"] for p in api for c in p["status"]["containerStatuses"] if c["name"] == "api")
        assert via_ingress(instance.host, "POST", "/orders", json=order()).status_code == 201
    finally:
        cassandra.up()
    audit_equal_with(instance.settings(admin_mysql), [oid, *accepted])
