"""The stack harness: a real round trip with every component of `make up`."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pymysql
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from app import broker
from app.config import KafkaSettings
from scripts.stack import errors, paths, ports, processes, writestore
from scripts.stack.instance import wait_for
from scripts.stack.node import kubectl


def test_write_store_insert_then_select(stack, admin_mysql, run_id):
    db = f"harness_t{run_id}"
    conn = pymysql.connect(host="127.0.0.1", port=admin_mysql.port, user=admin_mysql.admin_user,
                           password=admin_mysql.admin_password, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute(f"INSERT INTO `{db}`.t VALUES (%s, %s)", (1, "hello"))
            cur.execute(f"SELECT v FROM `{db}`.t WHERE id = %s", (1,))
            assert cur.fetchone() == ("hello",)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        conn.close()


@pytest.mark.parametrize("server", writestore.SERVERS)
def test_both_write_stores_listen_on_loopback_only_and_root_only_over_the_socket(stack, server):
    """Each server answers on loopback; root has no password login, only the socket's peer check."""
    store = stack[server]
    assert store.client("SELECT @@bind_address").strip() == "127.0.0.1"
    if server == "mysql":
        assert store.client("SELECT host, plugin FROM mysql.user WHERE user = 'root'").split() == ["localhost", "auth_socket"]
    else:  # MariaDB's root is unix_socket OR an invalid password (mysql.global_priv)
        priv = store.client("SELECT priv FROM mysql.global_priv WHERE user = 'root' AND host = 'localhost'")
        assert '"unix_socket"' in priv and "invalid" in priv


def test_kafka_produce_then_consume_keyed_message(stack, run_id):
    """On the Strimzi cluster's host listener (127.0.0.1 NodePorts), a topic with a replica on every node."""
    from scripts.stack import kafka

    topic = f"harness-t{run_id}"
    s = KafkaSettings(bootstrap_servers=kafka.HOST_BOOTSTRAP)
    admin = broker.admin(s)
    try:
        admin.create_topics([NewTopic(topic, 2, kafka.NODES)])
        producer = KafkaProducer(bootstrap_servers=kafka.HOST_BOOTSTRAP, acks="all")
        key, value = uuid.uuid4().hex.encode(), json.dumps({"hello": "kafka"}).encode()
        meta = producer.send(topic, key=key, value=value).get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka.HOST_BOOTSTRAP, group_id=f"harness-{run_id}",
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=20000)
        got = [(m.key, m.value, m.partition) for m in consumer]
        consumer.close()
        assert got == [(key, value, meta.partition)]
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_strimzis_operators_and_kafka_run_as_restricted_pods_with_the_crds_their_build_generated(stack):
    """The Cluster Operator (Strimzi's Helm chart), the Entity Operator it deploys and the three Kafka
    nodes all run as non-root pods from the images built here; the CRDs the apiserver serves are the
    ones that build generated (and, for the topic and user CRDs, Strimzi 1.2.0's published ones)."""
    import yaml

    from scripts.stack import kafka, kafkaimage, strimzi

    def pods(selector: str) -> list[dict]:
        return json.loads(kubectl("-n", strimzi.NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]

    operator, = pods(strimzi.OPERATOR_SELECTOR)
    entity, = pods(f"{kafka.CLUSTER_LABEL},strimzi.io/kind=Kafka,strimzi.io/name={kafka.CLUSTER}-entity-operator")
    nodes = pods(f"{kafka.CLUSTER_LABEL},strimzi.io/kind=Kafka,strimzi.io/pool-name={kafka.POOL}")
    assert sorted(p["metadata"]["name"] for p in nodes) == sorted(kafka.POD_NAMES)
    for pod in (operator, entity, *nodes):
        name = pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Running", name
        for c in pod["spec"]["containers"]:
            sc = c.get("securityContext") or {}
            assert sc.get("runAsNonRoot") or (pod["spec"].get("securityContext") or {}).get("runAsNonRoot"), name
            assert sc.get("allowPrivilegeEscalation") is False and sc["capabilities"]["drop"] == ["ALL"], (name, sc)
            assert c["image"].split("/")[-1].startswith((f"{strimzi.REPOSITORY}:", f"{kafkaimage.REPOSITORY}:")), c["image"]
    def pruned(node):   # the apiserver stores no empty `properties: {}` (status.clusterSecurity has one)
        if isinstance(node, dict):
            return {k: pruned(v) for k, v in node.items() if not (k == "properties" and v == {})}
        return [pruned(v) for v in node] if isinstance(node, list) else node

    ref = paths.REF
    for generated, crd in strimzi.CRDS.items():
        served = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)
        built = yaml.safe_load((strimzi.HOME / "crds" / generated).read_text())
        schemas = [{v["name"]: pruned(v["schema"]) for v in c["spec"]["versions"]} for c in (served, built)]
        assert schemas[0] == schemas[1], crd
        if crd in ("kafkatopics.kafka.strimzi.io", "kafkausers.kafka.strimzi.io"):
            published = yaml.safe_load((ref / f"strimzi-{crd.split('.')[0].removesuffix('s')}.yaml").read_text())
            assert schemas[1] == {v["name"]: v["schema"] for v in published["spec"]["versions"]}, crd


def test_cassandra_keyspace_table_write_read(stack, run_id):
    from cassandra.cluster import Cluster

    ks = f"harness_t{run_id}"
    cluster = Cluster(["127.0.0.1"], port=9042, protocol_version=5)
    session = cluster.connect()
    try:
        session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        session.execute(f"CREATE TABLE {ks}.t (id uuid PRIMARY KEY, v text)")
        key = uuid.uuid4()
        session.execute(f"INSERT INTO {ks}.t (id, v) VALUES (%s, %s)", (key, "hello"))
        assert session.execute(f"SELECT v FROM {ks}.t WHERE id = %s", (key,)).one().v == "hello"
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets%(id)s.harness.simplecqrs.io}
spec:
  group: harness.simplecqrs.io
  scope: Namespaced
  names: {plural: widgets%(id)s, singular: widget%(id)s, kind: Widget%(id)s}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer, minimum: 1}}}
"""


def test_kubectl_configmap_and_crd_round_trip(stack, run_id):
    assert shutil.which("kubectl")
    name = f"harness-{run_id}"
    kubectl("create", "configmap", name, "--from-literal=k=v")
    assert json.loads(kubectl("get", "configmap", name, "-o", "json").stdout)["data"] == {"k": "v"}
    kubectl("delete", "configmap", name)
    assert kubectl("get", "configmap", name, check=False).returncode != 0

    kubectl("apply", "-f", "-", input=CRD % {"id": run_id})
    crd = f"widgets{run_id}.harness.simplecqrs.io"
    kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    bad = kubectl("apply", "-f", "-", check=False, input=(
        f"apiVersion: harness.simplecqrs.io/v1\nkind: Widget{run_id}\nmetadata: {{name: w}}\nspec: {{size: 0}}\n"))
    assert bad.returncode != 0 and "spec.size" in bad.stderr
    kubectl("delete", "crd", crd)


def test_kubernetes_client_configmap_and_crd(stack, run_id):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(paths.KUBECONFIG))
    core_v1 = client.CoreV1Api(api_client)
    ext = client.ApiextensionsV1Api(api_client)
    name = f"harness-py-{run_id}"
    core_v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name),
                                                                       data={"a": "b"}))
    assert core_v1.read_namespaced_config_map(name, "default").data == {"a": "b"}
    core_v1.delete_namespaced_config_map(name, "default")

    import yaml

    body = yaml.safe_load(CRD % {"id": f"py{run_id}"})
    ext.create_custom_resource_definition(body)
    got = ext.read_custom_resource_definition(body["metadata"]["name"])
    assert got.spec.group == "harness.simplecqrs.io"
    ext.delete_custom_resource_definition(body["metadata"]["name"])


def test_controller_manager_garbage_collects_and_finalizes_namespaces(stack, run_id):
    ns = f"harness-ns-{run_id}"
    kubectl("create", "namespace", ns)
    kubectl("-n", ns, "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2")
    # deployment-controller makes a ReplicaSet; without a kubelet its pods never run.
    rs = wait_for(lambda: json.loads(kubectl("-n", ns, "get", "rs", "-o", "json").stdout)["items"], 60, "a ReplicaSet")
    assert rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    kubectl("-n", ns, "delete", "deployment", "web")
    wait_for(lambda: not json.loads(kubectl("-n", ns, "get", "rs", "-o", "json").stdout)["items"], 60, "GC of the RS")
    kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: kubectl("get", "namespace", ns, check=False).returncode != 0, 90, "namespace deletion")


def test_kubectl_minor_matches_apiserver(stack):
    v = json.loads(kubectl("version", "-o", "json").stdout)
    assert v["serverVersion"]["minor"].rstrip("+") == v["clientVersion"]["minor"].rstrip("+")


# ---------------------------------------------------------------- restarts: the old process and its ports
# A process whose main thread has exited while another thread still holds a listening socket, as a
# SIGKILLed JVM is for a moment: its pid is a zombie, yet the port is still taken.
HOLDER = """
import ctypes, socket, sys, threading, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
threading.Thread(target=lambda: time.sleep(float(sys.argv[1]))).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def _holder(seconds: float) -> tuple[subprocess.Popen, int]:
    import sys

    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(seconds)], stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def test_a_process_is_alive_until_its_last_thread_has_exited():
    p, port = _holder(3)
    time.sleep(0.5)
    with open(f"/proc/{p.pid}/stat") as f:
        assert f.read().split(")")[-1].split()[0] == "Z", "the main thread should have exited"
    assert processes.pid_alive(p.pid) and ports.port_open(port)
    assert processes.wait_gone(p.pid, 15)
    assert not ports.port_open(port)


def test_a_start_waits_for_its_ports_then_fails_with_a_clear_line():
    p, port = _holder(2)
    t0 = time.monotonic()
    ports.require_ports_free("holder", port, timeout=30)  # released when the holder's thread ends
    assert time.monotonic() - t0 >= 1
    p.wait(10)
    p, port = _holder(30)
    try:
        with pytest.raises(errors.StackError, match=rf"holder: port\(s\) 127.0.0.1:{port} still in use .* after 1s"):
            ports.require_ports_free("holder", port, timeout=1)
    finally:
        p.kill()
        p.wait(10)
