"""The operator on the real control plane and the real stores.

The operator runs as a subprocess (`simplecqrs operator --namespace <ns>`) with the
token of its own ServiceAccount, bound by k8s/operator/rbac-namespaced.yaml: every test also
proves that Role is enough.  It serves only this run's namespace, so other test runs and the
`make up` operator never see these objects.  Pods never run here (no kubelet): API and consumer
readiness must say so.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import kubernetes
import pymysql
import pytest
import requests
import yaml
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAuthorizationFailedError
from simplecqrs_operator.credentials import ALLOWED_HOSTS, BINLOG_LABEL, UNVERIFIED_TRANSPORT
from simplecqrs_operator.resource import CREDENTIALS_LABEL

from app import broker
from app.config import KafkaSettings
from scripts.stack import kafka as stack_kafka
from scripts.stack import paths, services
from scripts.stack.instance import Proc, ProcessDied, free_port, wait_for
from scripts.stack.node import kubectl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SA = "simplecqrs-operator"
OPERATOR_ENV = {  # quick retries and resync, so the tests do not wait on production timings
    "SIMPLECQRS_OPERATOR_RESYNC_SECONDS": "10", "SIMPLECQRS_OPERATOR_BACKOFF_SECONDS": "1",
    "SIMPLECQRS_OPERATOR_BACKOFF_MAX_SECONDS": "4", "SIMPLECQRS_OPERATOR_DELETE_ATTEMPTS": "3"}


# ---------------------------------------------------------------- helpers
def apply(obj: dict | list, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    docs = obj if isinstance(obj, list) else [obj]
    return kubectl("apply", *args, "-f", "-", input=yaml.safe_dump_all(docs), check=check)


def get(kind: str, name: str, ns: str) -> dict | None:
    out = kubectl("-n", ns, "get", kind, name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def condition(obj: dict | None, type_: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return {}


def events(ns: str, name: str) -> list[dict]:
    out = kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def has_event(ns: str, name: str, reason: str, type_: str | None = None) -> dict | None:
    return next((e for e in events(ns, name) if e["reason"] == reason and (type_ is None or e["type"] == type_)),
                None)


def secret_value(ns: str, name: str, key: str) -> str:
    return base64.b64decode(get("secret", name, ns)["data"][key]).decode()


def mysql_query(admin, sql: str, args=(), user: str | None = None, password: str | None = None,
                database: str | None = None) -> list[tuple]:
    conn = pymysql.connect(host="127.0.0.1", port=admin.port, user=user or admin.admin_user,
                           password=password if user else admin.admin_password, database=database,
                           autocommit=True, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return list(cur.fetchall())
    finally:
        conn.close()


def cassandra_tables(keyspace: str) -> set[str]:
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], port=9042, protocol_version=5)
    try:
        session = cluster.connect()
        rows = session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))
        return {r.table_name for r in rows}
    finally:
        cluster.shutdown()


def kafka_admin():
    return broker.admin(KafkaSettings(bootstrap_servers=stack_kafka.HOST_BOOTSTRAP))


def topic_partitions(topic: str) -> int:
    client = kafka_admin()
    try:
        return broker.partition_count(client, topic)
    finally:
        client.close()


def topic_config(topic: str, key: str) -> str:
    client = kafka_admin()
    try:
        found = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, [key])], config_filter="all")
        return found["topic"][topic][key]["value"]
    finally:
        client.close()


def kubernetes_client() -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(paths.KUBECONFIG))


class Names:
    """Store names for one OrderService of this run (unique per run and per resource)."""

    def __init__(self, run_id: str, tag: str):
        self.resource = f"{tag}"
        self.topic = f"OnNewOrder-op{run_id}{tag}"
        self.database = f"op{run_id}{tag}_w"[:28]
        self.keyspace = f"op{run_id}{tag}_r"
        self.group = f"op{run_id}{tag}-projector"


def orderservice(ns: str, names: Names, **spec_patch) -> dict:
    """The shipped example with this run's names; `a__b=v` sets spec.a.b."""
    body = yaml.safe_load((ROOT / "k8s/examples/orderservice.yaml").read_text())
    body["metadata"] = {"name": names.resource, "namespace": ns}
    spec = body["spec"]
    # This module runs the operator as a process on the host (kopf in a subprocess, so tests can
    # kill and restart it at will): the stores at the host's addresses.  Their pods would run on the
    # local node and could not reach 127.0.0.1, so they get an image that never resolves (cheap:
    # ErrImagePull, then back-off); tests/test_cluster.py runs the real thing as pods.
    spec["kafka"]["bootstrapServers"] = stack_kafka.HOST_BOOTSTRAP
    spec["mysql"]["host"] = "127.0.0.1"
    spec["cassandra"]["contactPoints"] = ["127.0.0.1"]
    spec["api"]["image"] = spec["consumer"]["image"] = "image.invalid/simplecqrs:not-for-pods"
    spec["kafka"].update(topic=names.topic, consumerGroup=names.group, partitions=3)
    spec["mysql"]["database"] = names.database
    spec["cassandra"]["keyspace"] = names.keyspace
    for dotted, value in spec_patch.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return body


def wait_conditions(ns: str, name: str, types: tuple[str, ...], status: str = "True", timeout: float = 60) -> dict:
    def check():
        obj = get("orderservice", name, ns)
        return obj if all(condition(obj, t).get("status") == status for t in types) else None
    return wait_for(check, timeout, f"{name}: {types} {status}", interval=0.5)


def drop_leftovers(admin, names: Names) -> None:
    """Retain leaves data behind on purpose; a test run removes its own."""
    from app.config import CassandraSettings
    from app.readmodel import schema
    from app.readmodel.session import connect

    mysql_query(admin, f"DROP DATABASE IF EXISTS `{names.database}`")
    mysql_query(admin, "DROP USER IF EXISTS %s@'%%'", (f"{names.database}_app",))
    s = CassandraSettings(contact_points="127.0.0.1", keyspace=names.keyspace)
    session = connect(s, keyspace=False, request_timeout=60)
    try:
        schema.drop(session, s)
    finally:
        session.cluster.shutdown()
    client = kafka_admin()
    try:
        for topic in (names.topic, f"{names.topic}.DLQ"):
            try:
                client.delete_topics([topic])
            except Exception:  # noqa: BLE001 - not there
                pass
    finally:
        client.close()


# ---------------------------------------------------------------- the operator under test
class Operator:
    """`simplecqrs operator` as a real process, with the ServiceAccount's kubeconfig."""

    def __init__(self, ns: str, kubeconfig: Path, tag: str, **env: str):
        self.port = free_port()
        self.proc = Proc(f"operator-{ns}-{tag}", [
            sys.executable, "-m", "app.cli", "operator", "--namespace", ns, "--lease", SA,
            "--liveness", f"http://127.0.0.1:{self.port}/healthz"],
            {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT), **OPERATOR_ENV, **env})

    def start(self) -> Operator:
        self.proc.log.unlink(missing_ok=True)
        self.proc.start()
        wait_for(lambda: self.alive() and requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok,
                 60, "operator liveness endpoint")
        return self

    def alive(self) -> bool:
        if not self.proc.alive():
            raise ProcessDied(f"operator exited:\n{self.proc.tail()}")
        return True

    def log(self) -> str:
        return self.proc.log.read_text(errors="replace")

    def leads(self) -> bool:
        return "holding the leader Lease" in self.log()


def hand_over(cluster: dict, tag: str, **env: str) -> Operator:
    """Stop the module's operator (it releases the Lease) and start another that takes over
    (with `env`); it becomes the module's operator, stopped by the fixture."""
    cluster["operator"].proc.stop()
    op = Operator(cluster["ns"], cluster["kubeconfig"], tag, **env).start()
    op.proc.outlives_test = True
    cluster["operator"] = op
    wait_for(op.leads, 60, f"operator {tag} to hold the Lease")
    return op


def operators_serving(ns: str) -> list[tuple[str, str, int]]:
    """(namespace, name, replicas) of the operator Deployments that serve `ns`: cluster-wide
    ones (WATCH_NAMESPACE empty or unset) and any that watch `ns` itself (a value taken from the
    pod's own namespace, `valueFrom`, is never this module's namespace)."""
    found = json.loads(kubectl("get", "deployments", "-A", "-l", services.OPERATOR_SELECTOR, "-o", "json").stdout)
    serving = []
    for d in found["items"]:
        env = {e["name"]: e.get("value", None if "valueFrom" in e else "") for c in d["spec"]["template"]["spec"]["containers"]
               for e in c.get("env", [])}
        replicas = d["spec"].get("replicas", 1)
        if replicas and env.get("WATCH_NAMESPACE", "") in ("", ns):
            serving.append((d["metadata"]["namespace"], d["metadata"]["name"], replicas))
    return serving


@pytest.fixture(scope="module")
def only_operator_under_test(stack, run_id):
    """Every operator Deployment that would serve this module's namespace beside the one under
    test (`make up`'s, or test_cluster's when it ran first) is scaled to zero for the module and
    back after.  Two operators would both reconcile the module's OrderServices: one in a pod cannot
    reach the stores at 127.0.0.1, reports them Unreachable, and the last status written wins."""
    paused = operators_serving(f"op-{run_id}")
    for namespace, name, _ in paused:
        kubectl("-n", namespace, "scale", "deployment", name, "--replicas=0")
    try:
        for namespace, _, _ in paused:
            wait_for(lambda n=namespace: not json.loads(kubectl(
                "-n", n, "get", "pods", "-l", services.OPERATOR_SELECTOR, "-o", "json",
            ).stdout)["items"], 120, f"the operator pods in {namespace} gone")
        yield
    finally:
        for namespace, name, replicas in paused:
            kubectl("-n", namespace, "scale", "deployment", name, f"--replicas={replicas}", check=False)


@pytest.fixture(scope="module")
def cluster(stack, run_id, admin_mysql, tmp_path_factory, only_operator_under_test):
    """This run's namespace with the CRDs, the admin Secret, the operator's ServiceAccount and Role,
    and the operator running under that ServiceAccount: the only one serving the namespace."""
    ns, kafka_ns = f"op-{run_id}", f"op-{run_id}-kafka"
    # The CRDs are cluster-wide and shared with other runs: applied (idempotent), never deleted.
    kubectl("apply", "-f", str(ROOT / "k8s/crd/orderservice.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/orderservices.simplecqrs.io",
            "--timeout=60s")
    for n in (ns, kafka_ns):
        kubectl("create", "namespace", n)
    apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "simplecqrs-mysql-admin", "namespace": ns,
                                                              "labels": {CREDENTIALS_LABEL: "true",
                                                                         BINLOG_LABEL: "true"},
                                                              "annotations": {ALLOWED_HOSTS: "127.0.0.1",
                                                                              UNVERIFIED_TRANSPORT: "true"}},
           "stringData": {"username": admin_mysql.admin_user, "password": admin_mysql.admin_password}})
    sa = next(d for d in yaml.safe_load_all((ROOT / "k8s/operator/deployment.yaml").read_text())
              if d["kind"] == "ServiceAccount")
    rbac = list(yaml.safe_load_all((ROOT / "k8s/operator/rbac-namespaced.yaml").read_text()))
    for doc in [sa, *rbac]:
        doc["metadata"]["namespace"] = ns
        for subject in doc.get("subjects", []):
            subject["namespace"] = ns
    apply([sa, *rbac])
    token = kubectl("-n", ns, "create", "token", SA, "--duration=2h").stdout.strip()
    admin_config = yaml.safe_load(paths.KUBECONFIG.read_text())
    kubeconfig = tmp_path_factory.mktemp("operator") / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin_config["clusters"],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": admin_config["clusters"][0]["name"], "user": SA,
                                              "namespace": ns}}],
        "current-context": SA}))
    kubeconfig.chmod(0o600)
    env = {"ns": ns, "kafka_ns": kafka_ns, "kubeconfig": kubeconfig, "run_id": run_id,
           "operator": Operator(ns, kubeconfig, "a").start(), "leftovers": []}
    yield env
    # Delete what is left while an operator still runs, so finalizers are honoured.
    kubectl("-n", ns, "delete", "orderservices", "--all", "--timeout=60s", check=False)
    for obj in json.loads(kubectl("-n", ns, "get", "orderservices", "-o", "json").stdout)["items"]:
        kubectl("-n", ns, "patch", "orderservice", obj["metadata"]["name"], "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False)
    env["operator"].proc.stop()
    for n in (ns, kafka_ns):
        kubectl("delete", "namespace", n, "--wait=false", check=False)
    for names in env["leftovers"]:
        drop_leftovers(admin_mysql, names)


@pytest.fixture(scope="module")
def example(cluster, admin_mysql):
    """k8s/examples/orderservice.yaml (deletionPolicy Retain) with this run's names, applied once;
    the tests below scale it, edit it and finally delete it."""
    names = Names(cluster["run_id"], "shop")
    cluster["leftovers"].append(names)
    t0 = time.monotonic()
    apply(orderservice(cluster["ns"], names))
    obj = wait_conditions(cluster["ns"], names.resource, ("TopicReady", "WriteStoreReady", "ReadStoreReady"))
    return {"names": names, "ready_after": time.monotonic() - t0, "first": obj}


# ---------------------------------------------------------------- provisioning and status
def test_example_provisions_the_stores(cluster, example, admin_mysql):
    # How long it took is reported, never asserted (timings are measured in scripts/, not tested).
    print(f"stores provisioned {example['ready_after']:.1f} s after the apply")
    names = example["names"]
    # Write store: database, migrations, and a least-privileged user whose password is in the Secret.
    tables = {r[0] for r in mysql_query(admin_mysql, f"SHOW TABLES FROM `{names.database}`")}
    assert {"orders", "outbox", "customers", "idempotency_keys", "schema_migrations"} <= tables
    user, password = (secret_value(cluster["ns"], f"{names.resource}-mysql-app", k) for k in ("username", "password"))
    assert user == f"{names.database}_app"
    grants = " ".join(r[0] for r in mysql_query(admin_mysql, f"SHOW GRANTS FOR `{user}`@'%'"))
    assert f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{names.database}`.*" in grants
    assert "ALL PRIVILEGES" not in grants and "CREATE" not in grants
    assert mysql_query(admin_mysql, "SELECT COUNT(*) FROM orders", user=user, password=password,
                       database=names.database) == [(0,)]
    with pytest.raises(pymysql.err.OperationalError):  # no DDL for the application
        mysql_query(admin_mysql, "CREATE TABLE t (i INT)", user=user, password=password, database=names.database)
    # Read store: keyspace and read-model tables.
    assert {"orders_by_id_g1", "orders_by_customer_g1", "customers_g1", "read_model_state",
            "schema_migrations"} <= cassandra_tables(names.keyspace)
    # Topic with its partitions and config, and the dead-letter topic.
    assert topic_partitions(names.topic) == 3
    assert topic_partitions(f"{names.topic}.DLQ") == 1
    assert topic_config(names.topic, "retention.ms") == "604800000"
    # Events for the significant steps.
    ns = cluster["ns"]
    for reason in ("CredentialsCreated", "TopicCreated", "MigrationsApplied"):
        assert wait_for(lambda reason=reason: has_event(ns, names.resource, reason), 20, f"event {reason}")


def test_children_have_the_right_specs_owners_and_security(cluster, example):
    ns, names = cluster["ns"], example["names"]
    osvc = get("orderservice", names.resource, ns)
    owner = {"apiVersion": "simplecqrs.io/v1alpha1", "kind": "OrderService", "name": names.resource,
             "uid": osvc["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    children = {(kind, name): get(kind, name, ns) for kind, name in [
        ("deployment", f"{names.resource}-api"), ("deployment", f"{names.resource}-consumer"),
        ("service", f"{names.resource}-api"), ("pdb", f"{names.resource}-api"), ("pdb", f"{names.resource}-consumer"),
        ("networkpolicy", names.resource), ("secret", f"{names.resource}-mysql-app")]}
    for (kind, name), obj in children.items():
        assert obj is not None, f"{kind}/{name} missing"
        assert obj["metadata"]["ownerReferences"] == [owner], f"{kind}/{name}"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == names.resource
        assert labels["app.kubernetes.io/managed-by"] == "simplecqrs-operator"
        assert labels["app.kubernetes.io/part-of"] == "simplecqrs"
    assert get("ingress", f"{names.resource}-api", ns) is None  # no host in the example
    assert get("hpa", f"{names.resource}-consumer", ns) is None  # no autoscaling in the example

    api = children[("deployment", f"{names.resource}-api")]
    assert api["spec"]["replicas"] == 2
    pod = api["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"api", "relay"}  # gunicorn and the outbox relay beside it
    for c in containers.values():
        assert c["image"] == "image.invalid/simplecqrs:not-for-pods"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    c = containers["api"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    env = {e["name"]: e for e in c["env"]}
    assert env["MYSQL_DATABASE"]["value"] == names.database
    assert env["KAFKA_TOPIC"]["value"] == names.topic
    assert env["CASSANDRA_KEYSPACE"]["value"] == names.keyspace
    assert env["MYSQL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{names.resource}-mysql-app",
                                                                  "key": "password"}
    consumer = children[("deployment", f"{names.resource}-consumer")]
    cenv = {e["name"]: e.get("value") for e in consumer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert cenv["KAFKA_CONSUMER_GROUP"] == names.group and "MYSQL_PASSWORD" not in cenv
    svc = children[("service", f"{names.resource}-api")]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    # Every child is ours through server-side apply (except the Secret, created once).
    full = json.loads(kubectl("-n", ns, "get", "deployment", f"{names.resource}-api", "-o", "json",
                              "--show-managed-fields").stdout)
    managers = {m["manager"] for m in full["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"simplecqrs-operator"}


def test_api_and_consumer_readiness_is_reported_honestly(cluster, example):
    ns, name = cluster["ns"], example["names"].resource
    obj = get("orderservice", name, ns)
    api, consumer, ready = (condition(obj, t) for t in ("ApiReady", "ConsumerReady", "Ready"))
    assert (api["status"], api["reason"]) == ("False", "ReplicasUnavailable")
    assert "0/2 replicas available" in api["message"]
    assert (consumer["status"], consumer["reason"]) == ("False", "ReplicasUnavailable")
    assert ready["status"] == "False" and "ApiReady" in ready["message"]
    assert (obj["status"]["api"], obj["status"]["consumer"]) == ("0/2", "0/2")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    for c in obj["status"]["conditions"]:
        assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    line = kubectl("-n", ns, "get", "orderservices").stdout.splitlines()
    assert line[0].split() == ["NAME", "READY", "PARTITIONS", "API", "CONSUMER", "AGE"]
    assert line[1].split()[:5] == [name, "False", "3", "0/2", "0/2"]
    assert requests.get(f"http://127.0.0.1:{cluster['operator'].port}/healthz", timeout=5).ok


# ---------------------------------------------------------------- validation by the apiserver
@pytest.mark.parametrize("patch, field", [
    ({"kafka__partitions": 0}, "spec.kafka.partitions"),
    ({"deletionPolicy": "Destroy"}, "spec.deletionPolicy"),
    ({"mysql__database": "orders-db"}, "spec.mysql.database"),
    ({"consumer__autoscaling": {"minReplicas": 4, "maxReplicas": 2}}, "spec.consumer.autoscaling"),
    ({"cassandra__replication": {"strategy": "NetworkTopologyStrategy", "replicationFactor": 3}},
     "spec.cassandra.replication"),
    # Consumers beyond the partition count (3 here) would sit idle; the HPA needs a CPU request.
    ({"consumer__replicas": 4}, "consumer.replicas must not exceed kafka.partitions"),
    ({"consumer__autoscaling": {"maxReplicas": 4}}, "consumer.autoscaling.maxReplicas must not exceed kafka.partitions"),
    ({"consumer__autoscaling": {"maxReplicas": 2}, "consumer__resources": {"requests": {"memory": "1Gi"}}},
     "autoscaling needs resources.requests.cpu"),
])
def test_invalid_resources_are_refused_naming_the_field(cluster, patch, field):
    body = orderservice(cluster["ns"], Names(cluster["run_id"], "bad"), **patch)
    out = apply(body, "--dry-run=server", check=False)
    assert out.returncode != 0 and field in out.stderr, out.stderr


def test_resources_defaults_merge_with_what_the_user_sets(cluster):
    """Setting only limits keeps the default requests (the HPA scales on the CPU request)."""
    body = orderservice(cluster["ns"], Names(cluster["run_id"], "res"),
                        consumer__resources={"limits": {"memory": "1Gi"}}, api__resources={"requests": {"cpu": "1"}})
    out = apply(body, "--dry-run=server", "-o", "json")
    spec = json.loads(out.stdout)["spec"]
    assert spec["consumer"]["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
    assert spec["api"]["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "512Mi"}}


@pytest.mark.parametrize("name", ["Shop_1", "shop.v2", "s" * 41])
def test_bad_names_are_refused(cluster, name):
    body = orderservice(cluster["ns"], Names(cluster["run_id"], "bad"))
    body["metadata"]["name"] = name
    out = apply(body, "--dry-run=server", check=False)
    assert out.returncode != 0 and "metadata.name" in out.stderr, out.stderr


@pytest.mark.parametrize("patch, field, message", [
    ({"kafka": {"partitions": 2}}, "spec.kafka.partitions", "partitions may never decrease"),
    ({"kafka": {"topic": "Other"}}, "spec.kafka.topic", "immutable"),
    ({"mysql": {"database": "other_w"}}, "spec.mysql.database", "immutable"),
    ({"cassandra": {"replication": {"strategy": "SimpleStrategy", "replicationFactor": 3}}},
     "spec.cassandra.replication", "immutable"),
])
def test_changes_the_operator_cannot_honour_are_refused(cluster, example, patch, field, message):
    out = kubectl("-n", cluster["ns"], "patch", "orderservice", example["names"].resource, "--type=merge",
                  "-p", json.dumps({"spec": patch}), check=False)
    assert out.returncode != 0 and field in out.stderr and message in out.stderr, out.stderr


# ---------------------------------------------------------------- spec changes and drift
def test_scale_partitions_config_ingress_and_autoscaling_converge(cluster, example):
    ns, names = cluster["ns"], example["names"]
    api, consumer = f"{names.resource}-api", f"{names.resource}-consumer"
    kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge", "-p", json.dumps({"spec": {
        "kafka": {"partitions": 5, "config": {"retention.ms": "86400000"}},
        "api": {"replicas": 3, "ingress": {"host": "shop.example.com", "tlsSecretName": "shop-tls"}},
        "consumer": {"autoscaling": {"minReplicas": 1, "maxReplicas": 4}}}}))
    wait_for(lambda: get("deployment", api, ns)["spec"]["replicas"] == 3, 30, "API scaled to 3")
    wait_for(lambda: topic_partitions(names.topic) == 5, 30, "5 partitions")
    wait_for(lambda: topic_config(names.topic, "retention.ms") == "86400000", 30, "retention.ms updated")
    ingress = wait_for(lambda: get("ingress", api, ns), 30, "the Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "shop.example.com"
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    hpa = wait_for(lambda: get("hpa", consumer, ns), 30, "the HPA")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    obj = wait_for(lambda: (o := get("orderservice", names.resource, ns))["status"].get("observedGeneration")
                   == o["metadata"]["generation"] and o, 30, "observedGeneration")
    assert "5 partitions" in condition(obj, "TopicReady")["message"]
    assert has_event(ns, names.resource, "PartitionsIncreased")

    # Dropping the optional parts removes their objects; the consumer count is ours again.
    kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge", "-p", json.dumps({"spec": {
        "api": {"ingress": None}, "consumer": {"autoscaling": None, "replicas": 1}}}))
    wait_for(lambda: get("ingress", api, ns) is None and get("hpa", consumer, ns) is None, 30,
             "Ingress and HPA deleted")
    wait_for(lambda: get("deployment", consumer, ns)["spec"]["replicas"] == 1, 30, "consumer at 1 replica")
    wait_for(lambda: get("orderservice", names.resource, ns)["status"]["consumer"] == "0/1", 30, "status 0/1")


def test_deleted_or_edited_children_are_restored(cluster, example):
    ns, names = cluster["ns"], example["names"]
    api = f"{names.resource}-api"
    want = get("orderservice", names.resource, ns)["spec"]["api"]["replicas"]  # whatever earlier tests set
    uid = get("deployment", api, ns)["metadata"]["uid"]
    kubectl("-n", ns, "delete", "deployment", api)
    restored = wait_for(lambda: (d := get("deployment", api, ns)) and d["metadata"]["uid"] != uid and d, 20,
                        "the API Deployment back")
    assert restored["spec"]["replicas"] == want
    # A hand edit of a field the operator owns is reverted.
    kubectl("-n", ns, "scale", "deployment", api, f"--replicas={want + 4}")
    wait_for(lambda: get("deployment", api, ns)["spec"]["replicas"] == want, 20, f"replicas back to {want}")
    kubectl("-n", ns, "set", "env", f"deployment/{api}", "API_ROLE=query")
    wait_for(lambda: {e["name"]: e.get("value") for e in get("deployment", api, ns)["spec"]["template"]["spec"][
        "containers"][0]["env"]}["API_ROLE"] == "both", 20, "API_ROLE back to both")
    # Other children come back with the periodic resync.
    kubectl("-n", ns, "delete", "service", api)
    wait_for(lambda: get("service", api, ns), 30, "the Service back")


# ---------------------------------------------------------------- failures are reported, deletion is bounded
def test_unreachable_mysql_is_reported_retried_and_does_not_wedge_deletion(cluster, admin_mysql):
    ns = cluster["ns"]
    names = Names(cluster["run_id"], "down")
    cluster["leftovers"].append(names)
    dead_port = free_port()
    apply(orderservice(ns, names, deletionPolicy="Delete", mysql__port=dead_port))
    obj = wait_conditions(ns, names.resource, ("WriteStoreReady",), status="False")
    write = condition(obj, "WriteStoreReady")
    assert write["reason"] == "Unreachable" and f"127.0.0.1:{dead_port}" in write["message"]
    obj = wait_conditions(ns, names.resource, ("TopicReady", "ReadStoreReady"))
    assert condition(obj, "Ready")["status"] == "False"
    assert wait_for(lambda: has_event(ns, names.resource, "Unreachable", "Warning"), 20, "a Warning event")
    # Retried with backoff: fixing the port is enough.
    kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge", "-p",
            json.dumps({"spec": {"mysql": {"port": 3306}}}))
    wait_conditions(ns, names.resource, ("WriteStoreReady",), timeout=30)
    kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge", "-p",
            json.dumps({"spec": {"mysql": {"port": dead_port}}}))
    wait_conditions(ns, names.resource, ("WriteStoreReady",), status="False", timeout=30)

    # Delete while MySQL is unreachable: bounded retries, a clear event, and the resource goes.
    kubectl("-n", ns, "delete", "orderservice", names.resource, "--wait=false")
    wait_for(lambda: get("orderservice", names.resource, ns) is None, 60, "the OrderService gone")
    gave_up = has_event(ns, names.resource, "DeletionIncomplete", "Warning")
    assert gave_up and "database" in gave_up["message"] and "Unreachable" in gave_up["message"]
    assert has_event(ns, names.resource, "DeletionRetrying", "Warning")
    # What could be dropped was dropped; the database is left, and said so.
    assert cassandra_tables(names.keyspace) == set()
    assert names.topic not in kafka_admin_topics()
    assert mysql_query(admin_mysql, "SHOW DATABASES LIKE %s", (names.database,)) == [(names.database,)]


def test_a_pass_that_fails_after_making_the_topic_still_says_it_made_it(cluster):
    """A pass makes the topic, then the broker refuses its dead-letter topic (a name that collides with
    an existing one: Kafka counts '.' and '_' as one); TopicReady is False, and the TopicCreated Event is
    posted all the same: the next pass finds the topic there and has nothing to say of it."""
    ns = cluster["ns"]
    names = Names(cluster["run_id"], "half")
    cluster["leftovers"].append(names)
    blocker = f"{names.topic}_DLQ"      # collides with the dead-letter topic, {topic}.DLQ
    client = kafka_admin()
    try:
        broker.ensure_topic(client, blocker, 1)
        apply(orderservice(ns, names, deletionPolicy="Delete"))
        topic = condition(wait_conditions(ns, names.resource, ("TopicReady",), status="False"), "TopicReady")
        assert blocker in topic["message"], topic
        created = wait_for(lambda: has_event(ns, names.resource, "TopicCreated"), 30, "the TopicCreated event")
        assert names.topic in created["message"]
        client.delete_topics([blocker])
        wait_conditions(ns, names.resource, ("TopicReady",), timeout=60)
        assert [e["reason"] for e in events(ns, names.resource)].count("TopicCreated") == 1
    finally:
        try:
            client.delete_topics([blocker])
        except KafkaError:       # deleted above
            pass
        client.close()
        kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=120s", check=False)


def finalizers(ns: str, name: str) -> list[str]:
    return (get("orderservice", name, ns) or {}).get("metadata", {}).get("finalizers") or []


def test_only_delete_needs_a_finalizer_and_a_retain_instance_goes_without_the_operator(cluster):
    """A finalizer only where deletion has work to do (deletionPolicy Delete): it comes and goes
    with the policy, and a Retain instance is deleted at once while no operator runs (it used to
    hang on a finalizer that a kopf timer required)."""
    ns = cluster["ns"]
    names = Names(cluster["run_id"], "nofin")
    cluster["leftovers"].append(names)
    apply(orderservice(ns, names, deletionPolicy="Retain"))
    wait_conditions(ns, names.resource, ("TopicReady", "WriteStoreReady", "ReadStoreReady"))
    assert finalizers(ns, names.resource) == []
    kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge", "-p",
            '{"spec":{"deletionPolicy":"Delete"}}')
    wait_for(lambda: finalizers(ns, names.resource) == ["simplecqrs.io/finalizer"], 30, "the finalizer added")
    kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge", "-p",
            '{"spec":{"deletionPolicy":"Retain"}}')
    wait_for(lambda: finalizers(ns, names.resource) == [], 30, "the finalizer removed")

    cluster["operator"].proc.stop()
    try:
        kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=30s")
        assert get("orderservice", names.resource, ns) is None
    finally:
        hand_over(cluster, "a-after-retain")   # (the stopped one is stopped again: harmless)


def test_a_secret_without_the_credentials_label_is_refused(cluster, admin_mysql):
    """Whoever may create an OrderService must not make the operator read any Secret of the namespace
    and send its values to a store of their choosing: only Secrets labelled for it are used."""
    ns = cluster["ns"]
    names = Names(cluster["run_id"], "nolabel")
    cluster["leftovers"].append(names)
    apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "someone-elses", "namespace": ns,
                                                              "labels": {BINLOG_LABEL: "true"},
                                                              "annotations": {ALLOWED_HOSTS: "127.0.0.1",
                                                                              UNVERIFIED_TRANSPORT: "true"}},
           "stringData": {"username": admin_mysql.admin_user, "password": admin_mysql.admin_password}})
    apply(orderservice(ns, names, deletionPolicy="Delete", mysql__adminSecretRef={"name": "someone-elses"}))
    obj = wait_conditions(ns, names.resource, ("WriteStoreReady",), status="False")
    refused = condition(obj, "WriteStoreReady")
    assert refused["reason"] == "SecretNotLabelled" and CREDENTIALS_LABEL in refused["message"]
    assert mysql_query(admin_mysql, "SHOW DATABASES LIKE %s", (names.database,)) == [], "the Secret was used"
    # Labelling the Secret is the owner's consent: then it is used.
    kubectl("-n", ns, "label", "secret", "someone-elses", f"{CREDENTIALS_LABEL}=true")
    wait_conditions(ns, names.resource, ("WriteStoreReady",), timeout=60)
    kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=60s")


def kafka_admin_topics() -> list[str]:
    client = kafka_admin()
    try:
        return client.list_topics()
    finally:
        client.close()


def test_two_orderservices_naming_one_database_the_younger_waits_and_never_drops_it(cluster, example, admin_mysql):
    """As Strimzi decides between two KafkaTopics of one topic: the older OrderService owns the
    database, the younger reports ResourceConflict, runs no workloads, and its deletion (policy
    Delete) drops only what is its own."""
    ns, owner = cluster["ns"], example["names"]
    twin = Names(cluster["run_id"], "twin")
    cluster["leftovers"].append(twin)
    apply(orderservice(ns, twin, deletionPolicy="Delete", mysql__database=owner.database))
    obj = wait_conditions(ns, twin.resource, ("TopicReady", "ReadStoreReady"))   # its own stores
    obj = wait_conditions(ns, twin.resource, ("WriteStoreReady", "Ready"), status="False")
    conflict = condition(obj, "WriteStoreReady")
    assert conflict["reason"] == "ResourceConflict" and f"OrderService {ns}/{owner.resource}" in conflict["message"]
    assert get("deployment", f"{twin.resource}-api", ns) is None
    assert get("deployment", f"{twin.resource}-consumer", ns) is None

    kubectl("-n", ns, "delete", "orderservice", twin.resource, "--timeout=60s")
    assert mysql_query(admin_mysql, "SHOW DATABASES LIKE %s", (owner.database,)) == [(owner.database,)]
    assert has_event(ns, twin.resource, "DataLeftToOwner")
    assert twin.topic not in kafka_admin_topics() and cassandra_tables(twin.keyspace) == set()
    owned = condition(get("orderservice", owner.resource, ns), "WriteStoreReady")
    assert owned["status"] == "True", owned


# ---------------------------------------------------------------- restarts and replicas
def test_one_replica_leads_another_takes_over_and_a_killed_operator_converges_on_restart(cluster, example,
                                                                                        admin_mysql):
    ns, op = cluster["ns"], cluster["operator"]
    # The module's operator holds the Lease; a second replica waits (its liveness endpoint answers)
    # and does nothing, however long it waits.
    name = example["names"].resource
    shop = f"[{ns}/{name}] Handler 'reconcile_on_change' succeeded"
    second = Operator(ns, cluster["kubeconfig"], "b").start()
    second.proc.outlives_test = True  # it becomes the module's operator below
    wait_for(lambda: "waiting for the leader Lease" in second.log(), 30, "the second replica to wait")
    assert op.leads() and get("lease", SA, ns)["spec"]["holderIdentity"] in op.log()
    kubectl("-n", ns, "patch", "orderservice", name, "--type=merge", "-p", '{"spec":{"api":{"replicas":4}}}')
    wait_for(lambda: get("deployment", f"{name}-api", ns)["spec"]["replicas"] == 4, 30, "scaled by the leader")
    assert not second.leads() and shop not in second.log()

    # The leader stops (SIGTERM, as in a rollout): it releases the Lease, the second takes over
    # and resumes the example alone.
    op.proc.stop()
    assert "released the leader Lease" in op.log()
    cluster["operator"] = second
    wait_for(second.leads, 60, "the second replica to take the Lease")
    assert get("lease", SA, ns)["spec"]["holderIdentity"] in second.log()
    wait_for(lambda: shop in second.log(), 60, "the second replica to resume the example")
    kubectl("-n", ns, "patch", "orderservice", name, "--type=merge", "-p", '{"spec":{"api":{"replicas":1}}}')
    wait_for(lambda: get("deployment", f"{name}-api", ns)["spec"]["replicas"] == 1, 30, "scaled by the new leader")
    op = second

    # Kill the operator in the middle of provisioning a new instance (the moment it has created the
    # credentials Secret, its first step), restart it: it converges.
    names = Names(cluster["run_id"], "kill")
    cluster["leftovers"].append(names)
    secrets = kubernetes.client.CoreV1Api(kubernetes_client())
    stream = kubernetes.watch.Watch().stream(secrets.list_namespaced_secret, ns, timeout_seconds=30,
                                             field_selector=f"metadata.name={names.resource}-mysql-app")
    apply(orderservice(ns, names, deletionPolicy="Delete"))
    assert next(stream)["type"] == "ADDED"
    op.proc.signal(signal.SIGKILL)
    op.proc.proc.wait(10)
    mid = get("orderservice", names.resource, ns)
    assert not all(condition(mid, t).get("status") == "True" for t in ("TopicReady", "WriteStoreReady",
                                                                       "ReadStoreReady")), "killed too late"
    # The killed leader never released its Lease: the restarted replica takes it once it expires.
    restarted = Operator(ns, cluster["kubeconfig"], "a2").start()
    restarted.proc.outlives_test = True  # the module fixture stops it
    cluster["operator"] = restarted
    wait_for(restarted.leads, 60, "the restarted operator to take the expired Lease")
    wait_conditions(ns, names.resource, ("TopicReady", "WriteStoreReady", "ReadStoreReady"))
    assert get("deployment", f"{names.resource}-api", ns) and get("deployment", f"{names.resource}-consumer", ns)
    assert topic_partitions(names.topic) == 3

    # Delete (deletionPolicy Delete): the topic, the database and the keyspace go, and so does the resource.
    kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=60s")
    assert mysql_query(admin_mysql, "SHOW DATABASES LIKE %s", (names.database,)) == []
    assert mysql_query(admin_mysql, "SELECT user FROM mysql.user WHERE user = %s", (f"{names.database}_app",)) == []
    assert cassandra_tables(names.keyspace) == set()
    assert names.topic not in kafka_admin_topics()
    assert has_event(ns, names.resource, "DataDeleted")


# ---------------------------------------------------------------- Strimzi (its real Topic and User Operators)
KAFKA_USER_CRD = "kafkausers.kafka.strimzi.io"


def scram_settings(username: str, password: str) -> KafkaSettings:
    """A client of the cluster's SCRAM-SHA-512 listener on the node address (pods and the host reach it)."""
    return KafkaSettings(bootstrap_servers=stack_kafka.NODE_SCRAM_BOOTSTRAP,
                         security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                         sasl_username=username, sasl_password=password)


def super_admin():
    """The super user Strimzi's operators use: sees every topic whatever its ACLs."""
    return broker.admin(scram_settings(*stack_kafka.scram_admin()))


def kafka_topics_as_super_user() -> dict[str, int]:
    client = super_admin()
    try:
        return {t["name"]: len(t["partitions"]) for t in client.describe_topics()}
    finally:
        client.close()


def strimzi_rbac_in(ns: str, operator_ns: str) -> list[dict]:
    """The operator's rules for a Kafka cluster in another namespace, taken from the shipped
    rbac-namespaced.yaml (its Strimzi rules, and reading the User Operator's Secrets)."""
    role = next(d for d in yaml.safe_load_all((ROOT / "k8s/operator/rbac-namespaced.yaml").read_text())
                if d and d["kind"] == "Role" and d["metadata"]["name"] == SA)
    rules = [r for r in role["rules"] if r["apiGroups"] == ["kafka.strimzi.io"] or r["resources"] == ["configmaps"]]
    rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    meta = {"name": f"simplecqrs-operator-{operator_ns}", "namespace": ns}
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
             "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": operator_ns}]}]


def test_strimzi_owns_the_topics_and_users_of_an_instance(cluster, admin_mysql):
    """spec.kafka.strimzi with SCRAM users, against the Topic and User Operators `make up` runs:
    TopicReady is Strimzi's own Ready; the users can do what their role does and nothing else;
    partitions grow through the KafkaTopic; a decrease is refused by the CRD and, when it gets past
    it (an instance re-created over a retained topic), reported with Strimzi's reason; Delete waits
    for Strimzi to delete the topics."""
    ns, kns = cluster["ns"], stack_kafka.NAMESPACE
    names = Names(cluster["run_id"], f"kt{uuid.uuid4().hex[:3]}")
    cluster["leftovers"].append(names)
    topic_obj, dlq_obj = f"{ns}.{names.resource}.events", f"{ns}.{names.resource}.dead-letter"
    users = {role: f"{ns}.{names.resource}.{role}" for role in ("relay", "consumer")}
    rbac = strimzi_rbac_in(kns, ns)
    apply(rbac)
    stack_kafka.grant(ns, f"{names.topic}*", names.group)   # the shared cluster owner's consent

    def os_body(**patch) -> dict:
        return orderservice(ns, names, kafka__bootstrapServers=stack_kafka.NODE_SCRAM_BOOTSTRAP,
                            kafka__strimzi={"cluster": stack_kafka.CLUSTER, "namespace": kns,
                                            "authentication": {"type": "scram-sha-512"}}, **patch)

    def topic_ready() -> dict:
        return condition(get("orderservice", names.resource, ns), "TopicReady")

    try:
        apply(os_body(deletionPolicy="Retain", kafka__partitions=3))
        wait_conditions(ns, names.resource, ("TopicReady", "WriteStoreReady", "ReadStoreReady"), timeout=120)
        assert "Strimzi" in topic_ready()["message"]
        kt = get("kafkatopics.kafka.strimzi.io", topic_obj, kns)
        assert kt["status"]["topicId"] and kt["metadata"]["finalizers"] == ["strimzi.io/topic-operator"]
        assert kafka_topics_as_super_user()[names.topic] == 3
        assert kafka_topics_as_super_user()[f"{names.topic}.DLQ"] == 1
        for user in users.values():
            assert condition(get("kafkausers.kafka.strimzi.io", user, kns), "Ready")["status"] == "True"

        # The users: the operator's copies of the User Operator's passwords, in the instance's namespace.
        relay = scram_settings(users["relay"], secret_value(ns, f"{names.resource}-kafka-relay", "password"))
        consumer = scram_settings(users["consumer"], secret_value(ns, f"{names.resource}-kafka-consumer", "password"))
        assert secret_value(ns, f"{names.resource}-kafka-relay", "username") == users["relay"]
        p = broker.producer(replace(relay, topic=names.topic))
        try:
            p.send(names.topic, b"from the relay user").get(timeout=30)    # Write on the topic
        finally:
            p.close()
        c = broker.consumer(replace(consumer, topic=names.topic), group_id=names.group,
                            consumer_timeout_ms=20000)
        try:                                                               # Read, in its own group
            c.subscribe([names.topic])
            assert b"from the relay user" in [m.value for m in c]
        finally:
            c.close()
        refused = broker.producer(consumer)
        try:                                        # the consumers' user may not write the events topic
            with pytest.raises(KafkaError, match="Authorization"):
                refused.send(names.topic, b"forged").get(timeout=30)
        finally:
            refused.close()
        with pytest.raises(KafkaError):             # a wrong password is refused at the handshake
            broker.producer(replace(relay, sasl_password="not-the-password"))
        anonymous = kafka_admin()                   # no user (the plaintext listener): the topic is closed
        try:
            try:
                code = anonymous.describe_topics([names.topic])[0]["error_code"]
            except TopicAuthorizationFailedError:
                code = TopicAuthorizationFailedError.errno
            assert code == TopicAuthorizationFailedError.errno
        finally:
            anonymous.close()

        # Partitions grow through the KafkaTopic; a decrease is refused by our CRD.
        kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge",
                "-p", json.dumps({"spec": {"kafka": {"partitions": 5}}}))
        wait_for(lambda: kafka_topics_as_super_user()[names.topic] == 5, 60, "the topic grown by Strimzi")
        out = kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge",
                      "-p", json.dumps({"spec": {"kafka": {"partitions": 4}}}), check=False)
        assert out.returncode != 0 and "partitions may never decrease" in out.stderr

        # Retain keeps the KafkaTopics (and users); an instance re-created with fewer partitions gets past
        # the CRD's rule, and Strimzi's own refusal is what TopicReady reports.
        kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=60s")
        assert get("kafkatopics.kafka.strimzi.io", topic_obj, kns) is not None
        apply(os_body(deletionPolicy="Delete", kafka__partitions=3))
        refused_cond = wait_for(lambda: (c := topic_ready()).get("status") == "False"
                                and c["reason"] == "NotSupported" and c, 60, "Strimzi's NotSupported in TopicReady")
        assert topic_obj in refused_cond["message"]
        assert kafka_topics_as_super_user()[names.topic] == 5             # nothing was removed
        kubectl("-n", ns, "patch", "orderservice", names.resource, "--type=merge",
                "-p", json.dumps({"spec": {"kafka": {"partitions": 5}}}))
        wait_for(lambda: topic_ready().get("status") == "True", 60, "TopicReady again")

        # Delete: the KafkaTopics go through Strimzi's finalizer, and the topics with them.
        kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=120s")
        assert get("kafkatopics.kafka.strimzi.io", topic_obj, kns) is None
        assert get("kafkatopics.kafka.strimzi.io", dlq_obj, kns) is None
        assert not {names.topic, f"{names.topic}.DLQ"} & set(kafka_topics_as_super_user())
        for user in users.values():
            wait_for(lambda u=user: get("kafkausers.kafka.strimzi.io", u, kns) is None, 30, f"KafkaUser {user} gone")
        assert has_event(ns, names.resource, "DataDeleted")
    finally:
        for kind, name in [("kafkatopics.kafka.strimzi.io", topic_obj), ("kafkatopics.kafka.strimzi.io", dlq_obj),
                           *[("kafkausers.kafka.strimzi.io", u) for u in users.values()]]:
            kubectl("-n", kns, "delete", kind, name, "--ignore-not-found", "--timeout=60s", check=False)
        kubectl("delete", "-f", "-", "--ignore-not-found", input=yaml.safe_dump_all(rbac), check=False)


# ---------------------------------------------------------------- RBAC
def test_namespaced_rbac_stays_in_its_namespace(cluster):
    ns, as_sa = cluster["ns"], f"--as=system:serviceaccount:{cluster['ns']}:{SA}"

    def can(*args: str) -> bool:
        return kubectl("auth", "can-i", as_sa, *args, check=False).stdout.strip() == "yes"

    assert can("patch", "deployments.apps", "-n", ns)
    assert can("watch", "orderservices.simplecqrs.io", "-n", ns)
    assert can("patch", "orderservices.simplecqrs.io", "--subresource=status", "-n", ns)
    assert can("create", "secrets", "-n", ns) and can("get", "secrets", "-n", ns)
    assert can("create", "events", "-n", ns)
    assert not can("list", "secrets", "-n", ns)          # only the Secrets it names
    assert not can("delete", "deployments.apps", "-n", ns)  # the garbage collector does that
    assert not can("delete", "orderservices.simplecqrs.io", "-n", ns)
    for other in ("default", "kube-system", cluster["kafka_ns"]):
        assert not can("get", "secrets", "-n", other)
        assert not can("patch", "deployments.apps", "-n", other)
        assert not can("watch", "orderservices.simplecqrs.io", "-n", other)
    assert not can("get", "secrets", "--all-namespaces")
    assert not can("list", "namespaces")
    assert not can("list", "customresourcedefinitions.apiextensions.k8s.io")


def test_cluster_mode_outside_a_pod_needs_a_lease_namespace(cluster):
    env = {**os.environ, "KUBECONFIG": str(paths.KUBECONFIG), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "app.cli", "operator"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "--lease-namespace" in out.stderr


def test_cluster_mode_manifests_are_accepted(cluster):
    """rbac.yaml and deployment.yaml as shipped (namespace simplecqrs), checked by the apiserver."""
    docs = [d for f in ("rbac.yaml", "deployment.yaml")
            for d in yaml.safe_load_all((ROOT / "k8s/operator" / f).read_text()) if d]
    for doc in docs:
        if doc["metadata"].get("namespace"):
            doc["metadata"]["namespace"] = cluster["ns"]
    out = apply(docs, "--dry-run=server", check=False)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- deletion with Retain (last: uses the example)
def test_retain_keeps_the_data_and_the_resource_goes(cluster, example, admin_mysql):
    ns, names = cluster["ns"], example["names"]
    partitions = get("orderservice", names.resource, ns)["spec"]["kafka"]["partitions"]  # whatever earlier tests set
    kubectl("-n", ns, "delete", "orderservice", names.resource, "--timeout=60s")
    assert get("orderservice", names.resource, ns) is None
    retained = wait_for(lambda: has_event(ns, names.resource, "DataRetained"), 20, "the DataRetained event")
    assert names.database in retained["message"] and names.keyspace in retained["message"]
    assert mysql_query(admin_mysql, "SHOW DATABASES LIKE %s", (names.database,)) == [(names.database,)]
    assert "orders_by_id_g1" in cassandra_tables(names.keyspace)
    assert topic_partitions(names.topic) == partitions
    # The children go with their owner (garbage collector).
    wait_for(lambda: get("deployment", f"{names.resource}-api", ns) is None, 60, "children garbage-collected")
