"""Apache Kafka for the local stack: a Strimzi `Kafka` cluster that the Cluster Operator runs as pods.

`local` in the namespace `kafka`: Kafka 4.3.1 (Strimzi 1.2.0's default), KRaft, three nodes in one
KafkaNodePool `dual-role` whose nodes are controllers and brokers both.  One pool, not separate
controller and broker pools: three controller JVMs more would cost ~1.2 GiB and, on two cores, CPU
for nothing a single laptop cluster needs; a production cluster with its own controllers keeps them
apart so a broker's load never starves the quorum (the chart's `kafka.deploy` lets users choose).
Replication between brokers and the controller quorum use mutual TLS on Strimzi's internal
listeners (9090, 9091), with the CAs the Cluster Operator makes; the data lives on volumes of the
default StorageClass (local-path), so it outlives pods, restarts and `make down`.

Listeners (every client listener plaintext on the wire; everything stays on this machine):
- `scram` 9095, internal, SCRAM-SHA-512: what pods use, `POD_SCRAM_BOOTSTRAP` (the Service DNS name),
  as on any cluster; the product's relay and consumers log in as their KafkaUsers (simple authorization).
- `plain` 9092, internal, no user: `POD_PLAIN_BOOTSTRAP`, for instances that use no KafkaUsers
  (the tests' OrderServices without `kafka.strimzi.authentication`; the chart's development Kafka
  has the same listener).
- `host` 9094, nodeport on 127.0.0.1: `HOST_BOOTSTRAP` 127.0.0.1:31092, brokers advertised as
  127.0.0.1:31093-31095.  Host tools, `scripts/bench`, `scripts/audit` and the tests connect here
  without a user (principal User:ANONYMOUS).  kube-proxy serves NodePorts only on 127.0.0.1 and the
  node address (node.py's nodePortAddresses), never on a public interface.
- `node` 9096, nodeport on the node address, SCRAM-SHA-512: `NODE_SCRAM_BOOTSTRAP` 10.244.0.1:31192,
  brokers 31193-31195, one address that pods and the host both reach (tests that log in as a
  KafkaUser from the host, and pods of OrderServices that a test points at it).
A NodePort rather than a forward of 127.0.0.1:9092: each broker needs an address of its own that
clients come back to, and a NodePort is how Kubernetes gives one; the ports are fixed here.

Authorization is `simple` with one addition: a resource without any ACL is open to every principal
(allow.everyone.if.no.acl.found), because the tests' many instances share this cluster and most use
no users; a topic or group that a KafkaUser has ACLs on is closed to every other principal,
ANONYMOUS included.  The stack's SCRAM admin (`scram_admin()`, .local/etc/credentials.env) is a
super user: a KafkaUser whose password comes from a Secret of ours.  A production cluster would
not keep allow.everyone.if.no.acl.found or an unauthenticated listener.

Topics: the cluster's defaults stay Kafka's (min.insync.replicas 1), because test instances make
single-replica topics through the Admin API; the product's topics say replicas 3 and
min.insync.replicas 2 themselves (values-local.yaml: KafkaTopic spec and config).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from . import console, core, errors, kafkaimage, network, node, strimzi, waits
from .credentials import credentials

VERSION = strimzi.KAFKA_VERSION
METADATA_VERSION = "4.3-IV0"
NAMESPACE = "kafka"
CLUSTER = "local"
POOL = "dual-role"
NODES = 3
NODE_IDS = tuple(range(NODES))
POD_NAMES = tuple(f"{CLUSTER}-{POOL}-{i}" for i in NODE_IDS)
CLUSTER_LABEL = f"strimzi.io/cluster={CLUSTER}"
FIELD_MANAGER = "simplecqrs-stack"

HOST_PORT, HOST_BROKER_PORTS = 31092, tuple(31093 + i for i in NODE_IDS)
NODE_PORT, NODE_BROKER_PORTS = 31192, tuple(31193 + i for i in NODE_IDS)
HOST_BOOTSTRAP = f"127.0.0.1:{HOST_PORT}"                     # host processes, no user
NODE_SCRAM_BOOTSTRAP = f"{network.GATEWAY}:{NODE_PORT}"       # pods and host, SCRAM-SHA-512
POD_SCRAM_BOOTSTRAP = f"{CLUSTER}-kafka-bootstrap.{NAMESPACE}.svc:9095"  # pods, SCRAM-SHA-512
POD_PLAIN_BOOTSTRAP = f"{CLUSTER}-kafka-bootstrap.{NAMESPACE}.svc:9092"  # pods, no user
SCRAM_MECHANISM = "SCRAM-SHA-512"
ADMIN_SECRET = f"{CLUSTER}-kafka-admin"       # the admin's password, for its KafkaUser


def scram_admin() -> tuple[str, str]:
    """(username, password) of the stack's SCRAM super user (generated once per checkout into
    .local/etc/credentials.env, mode 0600)."""
    creds = credentials()
    return creds["KAFKA_SCRAM_ADMIN_USER"], creds["KAFKA_SCRAM_ADMIN_PASSWORD"]


def _brokers(ports: tuple[int, ...], host: str) -> list[dict]:
    return [{"broker": i, "nodePort": port, "advertisedHost": host, "advertisedPort": port}
            for i, port in zip(NODE_IDS, ports, strict=True)]


def manifests() -> list[dict]:
    """The namespace's Kafka, its node pool, and the admin's Secret and KafkaUser."""
    user, password = scram_admin()
    labels = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
    heap = "384m"
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": ADMIN_SECRET, "namespace": NAMESPACE, "labels": labels},
         "stringData": {"password": password}},
        {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaNodePool",
         "metadata": {"name": POOL, "namespace": NAMESPACE, "labels": {**labels, "strimzi.io/cluster": CLUSTER}},
         "spec": {"replicas": NODES, "roles": ["controller", "broker"],
                  "storage": {"type": "jbod", "volumes": [{
                      "id": 0, "type": "persistent-claim", "size": "2Gi", "class": "standard",
                      "deleteClaim": True, "kraftMetadata": "shared"}]},
                  # Measured idle: ~330 MiB resident each with a 384 MiB heap (README, "Budgets").
                  "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
                  "jvmOptions": {"-Xms": heap, "-Xmx": heap}}},
        {"apiVersion": "kafka.strimzi.io/v1", "kind": "Kafka",
         "metadata": {"name": CLUSTER, "namespace": NAMESPACE, "labels": labels},
         "spec": {
             "kafka": {
                 "version": VERSION, "metadataVersion": METADATA_VERSION,
                 "listeners": [
                     {"name": "plain", "port": 9092, "type": "internal", "tls": False},
                     {"name": "scram", "port": 9095, "type": "internal", "tls": False,
                      "authentication": {"type": "scram-sha-512"}},
                     {"name": "host", "port": 9094, "type": "nodeport", "tls": False,
                      "configuration": {"bootstrap": {"nodePort": HOST_PORT},
                                        "brokers": _brokers(HOST_BROKER_PORTS, "127.0.0.1")}},
                     {"name": "node", "port": 9096, "type": "nodeport", "tls": False,
                      "authentication": {"type": "scram-sha-512"},
                      "configuration": {"bootstrap": {"nodePort": NODE_PORT},
                                        "brokers": _brokers(NODE_BROKER_PORTS, network.GATEWAY)}},
                 ],
                 "authorization": {"type": "simple", "superUsers": [user]},
                 "config": {
                     "allow.everyone.if.no.acl.found": "true",
                     "auto.create.topics.enable": "false",
                     "default.replication.factor": NODES,
                     # As the chart's Kafka: a write needs two of the three replicas (Strimzi warns without
                     # it, and its status then changed at every reconciliation, each change a new one).
                     "min.insync.replicas": 2,
                     "offsets.topic.replication.factor": NODES,
                     "transaction.state.log.replication.factor": NODES,
                     "transaction.state.log.min.isr": 2,
                     "share.coordinator.state.topic.replication.factor": NODES,
                     "share.coordinator.state.topic.min.isr": 2,
                     # Few partitions for the internal topics (50 by default: the first consumer group
                     # and the first transaction wait for them all), groups join at once.
                     "offsets.topic.num.partitions": 3,
                     "transaction.state.log.num.partitions": 3,
                     "share.coordinator.state.topic.num.partitions": 3,
                     "group.initial.rebalance.delay.ms": 0,
                     # Two cores: fewer threads than the defaults (3 network, 8 I/O).
                     "num.network.threads": 2, "num.io.threads": 4,
                 },
             },
             "entityOperator": {
                 "topicOperator": {"resources": {"requests": {"cpu": "50m", "memory": "256Mi"},
                                                 "limits": {"memory": "256Mi"}}},
                 "userOperator": {"resources": {"requests": {"cpu": "50m", "memory": "256Mi"},
                                                "limits": {"memory": "256Mi"}}},
                 "template": {"userOperatorContainer": {"env": [
                     # Every user found in Kafka without a KafkaUser here is ignored, not deleted: the
                     # cluster is shared with what no KafkaUser describes (User:ANONYMOUS's grant, users
                     # and ACLs that instances without Strimzi make through the Admin API).  KafkaUsers
                     # are still reconciled, deletions included (the watch).
                     {"name": "STRIMZI_IGNORED_USERS_PATTERN", "value": ".*"}]}},
             },
         }},
        {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser",
         "metadata": {"name": user, "namespace": NAMESPACE, "labels": {**labels, "strimzi.io/cluster": CLUSTER}},
         "spec": {"authentication": {"type": "scram-sha-512", "password": {
             "valueFrom": {"secretKeyRef": {"name": ADMIN_SECRET, "key": "password"}}}}}},
    ]


def kafka_resource() -> dict:
    out = node.kubectl("-n", NAMESPACE, "get", "kafka", CLUSTER, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def condition(obj: dict, kind: str = "Ready") -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c.get("type") == kind), {})


def _admin():
    """An admin client as the stack's super user, on the node's SCRAM listener: it sees every topic,
    the ones closed by KafkaUsers' ACLs too."""
    from app import broker  # the product's Kafka clients (kafka-python), imported when first needed
    from app.config import KafkaSettings

    user, password = scram_admin()
    return broker.admin(KafkaSettings(bootstrap_servers=NODE_SCRAM_BOOTSTRAP, security_protocol="SASL_PLAINTEXT",
                                      sasl_mechanism=SCRAM_MECHANISM, sasl_username=user, sasl_password=password),
                        client_id="simplecqrs-stack")


def _partitions(admin, topic: str) -> list[dict]:
    (described,) = admin.describe_topics([topic])
    if described.get("error_code") or not described.get("partitions"):
        raise errors.StackError("kafka", f"topic {topic}: error {described.get('error_code')}, no partitions")
    return described["partitions"]


def brokers_answering() -> int:
    """How many brokers the cluster's metadata lists (a real Metadata request, as the super user)."""
    from kafka.errors import KafkaError

    try:
        admin = _admin()
    except KafkaError:
        return 0
    try:
        return len(admin.describe_cluster()["brokers"])
    finally:
        admin.close()


GRANTS = "simplecqrs-kafka-tenants"   # the operator's ownership.KAFKA_GRANTS


def grant(namespace: str, *names: str) -> None:
    """As the Kafka namespace's owner: let OrderServices of `namespace` claim these topic and
    consumer-group names (`*` at the end: a prefix) on this shared cluster.  One field manager per
    namespace, so the grants of different namespaces add up in the one ConfigMap."""
    node.kubectl("apply", "--server-side", f"--field-manager=simplecqrs-grant-{namespace}", "-f", "-",
                 input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": GRANTS, "namespace": NAMESPACE},
                                   "data": {namespace: ",".join(names)}}))


def ensure_anonymous_grant() -> None:
    """Grant User:ANONYMOUS All on the Cluster resource (idempotent: on every start).  The host
    listener's clients (tests, host tools) create topics and ACLs; left to allow.everyone.if.no.acl.
    found, that stops the moment any ACL exists on the Cluster resource (e.g. a KafkaUser's `type:
    cluster` rule).  Cluster ACLs imply nothing on topics or groups."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

    admin = _admin()
    try:
        done = admin.create_acls([ACL("User:ANONYMOUS", "*", ACLOperation.ALL, ACLPermissionType.ALLOW,
                                      ResourcePattern(ResourceType.CLUSTER, "kafka-cluster"))])
        if done["failed"]:
            raise errors.StackError("kafka", f"granting User:ANONYMOUS on the cluster: {done['failed'][0]}")
    finally:
        admin.close()


def leader_counts(topic: str) -> dict[int, int]:
    """{broker id: partitions of `topic` it leads}."""
    admin = _admin()
    try:
        counts: dict[int, int] = {}
        for p in _partitions(admin, topic):
            counts[p["leader_id"]] = counts.get(p["leader_id"], 0) + 1
        return counts
    finally:
        admin.close()


def _node_pods() -> list[dict]:
    out = node.kubectl("-n", NAMESPACE, "get", "pods", "-l", f"{CLUSTER_LABEL},strimzi.io/pool-name={POOL}",
                       "-o", "json", check=False)
    return json.loads(out.stdout)["items"] if out.returncode == 0 else []


def pods_ready() -> bool:
    """Every node's pod Ready: only then do its NodePorts have an endpoint.  (A restarted broker is
    back in the ISR before its readiness probe passes; until then the host's clients that metadata
    sends to it are refused.)"""
    pods = _node_pods()
    return len(pods) == NODES and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])) for p in pods)


def wait_in_sync(topic: str, timeout: float = 240) -> float:
    """Wait until every broker answers, every node's pod is Ready and every partition of `topic` has
    all its replicas in sync (a killed broker back and caught up); returns the seconds it took."""
    def in_sync() -> bool:
        if not pods_ready():
            return False
        admin = _admin()           # one client per poll: the brokers it lists, then the topic's replicas
        try:
            return (len(admin.describe_cluster()["brokers"]) == NODES
                    and all(len(p["isr_nodes"]) == len(p["replica_nodes"]) for p in _partitions(admin, topic)))
        finally:
            admin.close()

    return waits.wait_until(in_sync, component="kafka", what=f"{topic}'s replicas in sync", timeout=timeout)


def _container(node_id: int) -> str | None:
    """The running Kafka container of a node (its id in the node's runtime), if any."""
    out = node.crictl("ps", "-q", "--name", "^kafka$", "--label", f"io.kubernetes.pod.name={POD_NAMES[node_id]}",
                      "--label", f"io.kubernetes.pod.namespace={NAMESPACE}", check=False)
    ids = out.stdout.split()
    return ids[0] if ids else None


def _init_pid(container: str) -> int:
    return json.loads(node.crictl("inspect", container).stdout)["info"]["pid"]


def broker_pids() -> dict[int, int]:
    """{node id: pid of its Kafka container's first process} for the nodes running now."""
    return {i: _init_pid(c) for i in NODE_IDS if (c := _container(i))}


def _restarts() -> dict[str, int]:
    """{node pod uid: its containers' restarts}: a new pod or a restarted container changes it."""
    return {p["metadata"]["uid"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", []))
            for p in _node_pods()}


def wait_settled(topic: str, quiet: float = 30, timeout: float = 600) -> float:
    """wait_in_sync(), then until no node's container has restarted for `quiet` seconds with every pod
    Ready; returns the seconds it took.  Measured here: a node SIGKILLed while it led the KRaft quorum
    can fail again on its next start (`Cannot transition to Follower with leader <itself>`: Strimzi's
    kafka_run.sh removes the quorum-state file at every start) until the others have moved to a new
    epoch; the kubelet restarts it and it comes back by itself, a minute or more later."""
    t0 = time.monotonic()
    while True:
        wait_in_sync(topic, timeout=max(1.0, timeout - (time.monotonic() - t0)))
        before = _restarts()
        quiet_until = time.monotonic() + quiet
        while time.monotonic() < quiet_until and pods_ready():
            time.sleep(2)
        after = _restarts()
        if after == before and pods_ready():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise errors.StackError("kafka", f"nodes still restarting after {timeout:.0f}s: {after}")


def kill_broker(node_id: int) -> str:
    """SIGKILL the Kafka container of one node through the node's runtime (not a graceful delete):
    the kubelet restarts it in the same pod.  Returns the container id that was killed."""
    container = _container(node_id)
    if not container:
        raise errors.StackError("kafka", f"no running kafka container in pod {NAMESPACE}/{POD_NAMES[node_id]}")
    # The container's first process (tini; Kafka is its child): killed, the whole container goes
    # with it (its PID namespace ends), as when the kernel's OOM killer or a crash takes it.
    os.kill(_init_pid(container), signal.SIGKILL)
    return container


CUT_CHAIN = "SIMPLECQRS-KAFKA-CUT"


@contextlib.contextmanager
def cut_off():
    """Kafka away, as the host's clients see it, for the block: every packet to the host listeners
    (127.0.0.1 and node NodePorts, matched by their original destination port after kube-proxy's
    DNAT) answered with a TCP reset, open connections included.  The brokers keep running.  Used by
    the tests where a whole-cluster outage is the subject (the relay's backlog, the producer's
    delivery timeout); single brokers are killed for real (kill_broker)."""
    from .network import chain_exists, delete_chain, sh

    ports = [f"{HOST_PORT}:{HOST_BROKER_PORTS[-1]}", f"{NODE_PORT}:{NODE_BROKER_PORTS[-1]}"]
    if not chain_exists("filter", CUT_CHAIN):
        sh("iptables", "-w", "-N", CUT_CHAIN)
    for r in ports:
        sh("iptables", "-w", "-A", CUT_CHAIN, "-p", "tcp", "-m", "conntrack", "--ctorigdstport", r,
           "-j", "REJECT", "--reject-with", "tcp-reset")
    sh("iptables", "-w", "-I", "OUTPUT", "-j", CUT_CHAIN)
    try:
        yield
    finally:
        delete_chain("filter", CUT_CHAIN)


class Strimzi(core.Component):
    """Strimzi's CRDs and its Cluster Operator (strimzi.py: built from source, installed by its own
    Helm chart into `kafka`), pointed at the operator image and the Kafka image built here."""

    name = "strimzi"
    address = f"ns {strimzi.NAMESPACE}, deploy/{strimzi.DEPLOYMENT}"
    start_timeout = 240
    process = False
    requires = ("kube-proxy", "dockerd", "local-path-provisioner", "coredns")

    def install(self) -> None:
        strimzi.build()

    def running(self) -> bool:
        return node.Kubelet().running() and bool(strimzi.deployment())

    def _values(self) -> dict:
        return strimzi.chart_values(strimzi.image(), *kafkaimage.split(kafkaimage.image()))

    def up(self) -> None:
        # As core.Component.up(), except that a release installed from other images or values
        # (a new build) is upgraded.
        if self.running():
            if strimzi.installed_with(self._values()) and self._ready_quietly():
                console.detail(f"{self.name} answering on {self.address}")
                return
            console.say(f"updating {self.name}")
        else:
            console.say(f"starting {self.name}")
        self.start()
        self.wait_ready()

    def start(self) -> None:
        values = self._values()
        t0 = time.monotonic()
        strimzi.install(values)
        console.detail(f"strimzi: CRDs and the Cluster Operator applied in {time.monotonic() - t0:.1f}s "
                       f"({values['image']['name']}:{values['image']['tag']})")

    def ready(self) -> bool:
        return strimzi.available()

    def stop(self) -> None:
        """Nothing of its own: its pods stop with the node; its objects stay in the apiserver."""

    def version(self) -> str:
        return strimzi.VERSION

    def status(self) -> core.Status:
        s = super().status()
        s.log = f"kubectl -n {strimzi.NAMESPACE} logs deploy/{strimzi.DEPLOYMENT}"
        return s


class Kafka(core.Component):
    """The Kafka and KafkaNodePool above; ready when Strimzi says Ready and every broker answers on
    the host listener."""

    name = "kafka"
    address = f"{HOST_BOOTSTRAP} (host), {POD_SCRAM_BOOTSTRAP} (pods)"
    start_timeout = 600          # a first start: CAs, three JVMs on two cores, the Entity Operator
    process = False
    requires = ("strimzi",)

    def running(self) -> bool:
        return node.Kubelet().running() and bool(kafka_resource())

    def up(self) -> None:
        # Applied on every `make up` (server-side apply: unchanged objects stay as they are).
        console.say(f"{'checking' if self.running() else 'starting'} {self.name}")
        self.start()
        self.wait_ready()

    def start(self) -> None:
        node.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests()}))

    def ready(self) -> bool:
        k = kafka_resource()
        st = k.get("status") or {}
        return (condition(k).get("status") == "True" and st.get("observedGeneration", 0) >= k["metadata"]["generation"]
                and brokers_answering() == NODES)

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        super().wait_ready()
        ensure_anonymous_grant()
        console.detail(f"kafka: {NODES} nodes Ready in {time.monotonic() - t0:.0f}s")

    def stop(self) -> None:
        """Nothing of its own: its pods stop with the node; its objects and volumes stay."""
        from .network import delete_chain

        delete_chain("filter", CUT_CHAIN)      # a test stopped inside cut_off()

    def version(self) -> str:
        return VERSION

    def status(self) -> core.Status:
        s = super().status()
        s.log = f"kubectl -n {NAMESPACE} logs {POD_NAMES[0]} (and -1, -2)"
        return s
