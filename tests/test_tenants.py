"""Tenant isolation on the node: whoever may create an OrderService gets nothing beyond their own
instance.  Every attack is tried as a tenant tries it: as a ServiceAccount of the tenant's namespace
bound only to the ClusterRole `simplecqrs-edit` there (k8s/operator/rbac-tenants.yaml), through
`kubectl --as`.  The objects, Secrets and Deployments a tenant attacks are made by the test as the
namespace's owner (or another application) would make them; the victim is a second tenant's running
instance.  Each attack ends with the condition the attacker sees, and the victim's objects, data and
pods as they were (README, "Tenant isolation").
"""
from __future__ import annotations

import json

import pymysql
import pytest
import test_cluster as journeys
from test_cluster import admin_secret, kjson, order_round_trip, orderservice_spec, started_instance, wait_for

from scripts.stack import network, services
from scripts.stack.node import kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# test_cluster's fixtures, by name: the product image, and the operator as a Deployment from its chart.
image = journeys.image
operator = journeys.operator

TEAM = "team"   # each tenant namespace's ServiceAccount, bound to simplecqrs-edit


def as_tenant(ns: str, *args: str, input: str | None = None):
    return kubectl(f"--as=system:serviceaccount:{ns}:{TEAM}", *args, input=input, check=False)


def tenant_rights(ns: str) -> None:
    kubectl("-n", ns, "create", "serviceaccount", TEAM)
    kubectl("-n", ns, "create", "rolebinding", f"{TEAM}-orders", "--clusterrole=simplecqrs-edit",
            f"--serviceaccount={ns}:{TEAM}")


def small(spec: dict) -> dict:
    spec["api"]["replicas"] = spec["consumer"]["replicas"] = 1
    return spec


def condition(ns: str, name: str, type_: str) -> dict:
    obj = kjson("-n", ns, "orderservice", name) or {}
    return services.conditions(obj).get(type_, {})


def wait_condition(ns: str, name: str, type_: str, reason: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (c := condition(ns, name, type_)).get("reason") == reason and c, timeout,
                    f"{ns}/{name} {type_} {reason}")


def apply_as_tenant(ns: str, name: str, spec: dict):
    return as_tenant(ns, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "simplecqrs.io/v1alpha1", "kind": "OrderService",
        "metadata": {"name": name, "namespace": ns}, "spec": spec}))


class Tenants:
    def __init__(self, attacker: str, victim, image: str, tag: str):
        self.attacker, self.victim, self.image, self.tag = attacker, victim, image, tag

    def spec(self, suffix: str) -> dict:
        return small(orderservice_spec(f"{self.tag}{suffix}", self.image))


@pytest.fixture(scope="module")
def tenants(operator, image, run_id):
    """Tenant B runs an instance (the victim); tenant A has a namespace with its own admin Secret
    (given by its namespace's owner) and nothing else."""
    attacker, tag = f"tenant-a-{run_id}", f"ta{run_id}"
    victim = started_instance(f"tenant-b-{run_id}", f"tb{run_id}", small(orderservice_spec(f"tb{run_id}", image)))
    inst = next(victim)
    tenant_rights(inst.ns)
    kubectl("create", "namespace", attacker)
    tenant_rights(attacker)
    admin_secret(attacker)
    try:
        yield Tenants(attacker, inst, image, tag)
    finally:
        for osvc in (kjson("-n", attacker, "orderservices") or {}).get("items", []):
            kubectl("-n", attacker, "delete", "orderservice", osvc["metadata"]["name"], "--timeout=120s", check=False)
        kubectl("delete", "namespace", attacker, "--wait=false", check=False)
        next(victim, None)     # its own cleanup: the instance, then the namespace


def victim_state(t: Tenants) -> dict:
    """What must not change: the victim's Deployments (generation, template), its Service and Secret."""
    ns, name = t.victim.ns, t.victim.name
    out = {}
    for kind, obj_name in (("deployment", f"{name}-api"), ("deployment", f"{name}-consumer"),
                           ("service", f"{name}-api"), ("secret", f"{name}-mysql-app"),
                           ("networkpolicy", name)):
        obj = kjson("-n", ns, kind, obj_name)
        out[(kind, obj_name)] = (obj["metadata"]["resourceVersion"] if kind != "deployment"
                                 else (obj["metadata"]["generation"], json.dumps(obj["spec"]["template"])))
    return out


def test_a_tenant_may_manage_orderservices_in_its_namespace_and_nothing_else(tenants):
    a, b = tenants.attacker, tenants.victim.ns

    def can(*args: str) -> bool:
        return as_tenant(a, "auth", "can-i", *args).stdout.strip() == "yes"

    assert can("create", "orderservices.simplecqrs.io", "-n", a)
    assert can("delete", "orderservices.simplecqrs.io", "-n", a)
    assert not can("get", "orderservices.simplecqrs.io", "-n", b)
    assert not can("patch", "orderservices.simplecqrs.io", "-n", b)
    for verb, what in (("get", "secrets"), ("create", "deployments.apps"), ("create", "services"),
                       ("create", "networkpolicies.networking.k8s.io"), ("create", "pods")):
        assert not can(verb, what, "-n", a), f"a tenant may {verb} {what}"
    # The roles aggregate into Kubernetes' own: a namespace's editors and viewers get them.
    for role, verb in (("edit", "create"), ("admin", "delete"), ("view", "list")):
        rules = kjson("clusterrole", role)["rules"]
        assert any("orderservices" in r.get("resources", []) and verb in r.get("verbs", []) for r in rules), role


def test_an_orderservice_named_after_someone_elses_objects_takes_none_of_them(tenants):
    """Takeover by name: OrderServices named `default-deny` and `payments` in a namespace whose
    owner made the NetworkPolicy `default-deny` and whose other application has the Service
    `payments-api`.  Both report ResourceConflict, write nothing, and leave both objects as they
    were, also after the tenant deletes them (no owner reference ever put on them)."""
    a = tenants.attacker
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": a},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    other_app = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "payments-api", "namespace": a},
                 "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    for obj in (deny, other_app):
        kubectl("apply", "-f", "-", input=json.dumps(obj))
    before = {k: kjson("-n", a, k, n) for k, n in (("networkpolicy", "default-deny"), ("service", "payments-api"))}

    for name, taken in (("default-deny", "NetworkPolicy default-deny"), ("payments", "Service payments-api")):
        out = apply_as_tenant(a, name, tenants.spec(name.replace("-", "")[:6]))
        assert out.returncode == 0, out.stderr
        refused = wait_condition(a, name, "ChildrenApplied", "ResourceConflict")
        assert taken in refused["message"] and "not made by this operator" in refused["message"], refused
        assert condition(a, name, "Ready")["status"] == "False"
        assert kjson("-n", a, "deployment", f"{name}-api") is None
        assert kjson("-n", a, "secret", f"{name}-mysql-app") is None, "a conflicting instance writes nothing"
    after = {k: kjson("-n", a, k, n) for k, n in (("networkpolicy", "default-deny"), ("service", "payments-api"))}
    for kind in before:
        assert after[kind]["metadata"]["resourceVersion"] == before[kind]["metadata"]["resourceVersion"], kind
        assert not after[kind]["metadata"].get("ownerReferences"), kind

    for name in ("default-deny", "payments"):
        assert as_tenant(a, "-n", a, "delete", "orderservice", name, "--timeout=120s").returncode == 0
    assert kjson("-n", a, "networkpolicy", "default-deny") and kjson("-n", a, "service", "payments-api")


def test_secrets_not_made_for_orderservices_are_never_wired_into_pods(tenants):
    """A basic-auth Secret (username/password) named as the Cassandra credentials, and a registry
    Secret named as a pull Secret, neither labelled for OrderServices: refused before any value is
    read; no pod is made that would carry them."""
    a, name = tenants.attacker, "creds"
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"name": "web-basic-auth", "namespace": a},
        "stringData": {"username": "web", "password": "not-for-cassandra"}}))
    kubectl("-n", a, "create", "secret", "docker-registry", "registry-creds", "--docker-server=registry.example.com",
            "--docker-username=ci", "--docker-password=not-for-pods")
    spec = tenants.spec("cr")
    spec["cassandra"]["credentialsSecretRef"] = {"name": "web-basic-auth"}
    spec["imagePullSecrets"] = [{"name": "registry-creds"}]
    assert apply_as_tenant(a, name, spec).returncode == 0
    refused = wait_condition(a, name, "ChildrenApplied", "SecretNotAllowed")
    assert "web-basic-auth" in refused["message"] and "registry-creds" in refused["message"], refused
    assert wait_condition(a, name, "ReadStoreReady", "SecretNotLabelled")["status"] == "False"
    assert kjson("-n", a, "deployment", f"{name}-api") is None and kjson("-n", a, "deployment",
                                                                           f"{name}-consumer") is None
    assert as_tenant(a, "-n", a, "delete", "orderservice", name, "--timeout=120s").returncode == 0


def test_the_admin_password_goes_only_where_its_secret_allows(tenants):
    """The namespace's admin Secret may be sent to the stack's MySQL (its annotation says so).  An
    OrderService that names another host, from the start or by an edit later, is refused before the
    operator connects anywhere with it."""
    a, name = tenants.attacker, "moved"
    spec = tenants.spec("mv")
    spec["mysql"]["host"] = "mysql.attacker.svc.cluster.local"
    assert apply_as_tenant(a, name, spec).returncode == 0
    refused = wait_condition(a, name, "WriteStoreReady", "SecretDestinationNotAllowed")
    assert "mysql.attacker.svc.cluster.local" in refused["message"], refused
    # The same instance at the allowed address is provisioned; edited back to elsewhere, refused again.
    patch = lambda host: as_tenant(a, "-n", a, "patch", "orderservice", name, "--type=merge",  # noqa: E731
                                   "-p", json.dumps({"spec": {"mysql": {"host": host}}}))
    assert patch(network.GATEWAY).returncode == 0
    wait_condition(a, name, "WriteStoreReady", "Provisioned", timeout=180)
    assert patch("10.244.0.99").returncode == 0
    assert "10.244.0.99" in wait_condition(a, name, "WriteStoreReady", "SecretDestinationNotAllowed")["message"]
    assert as_tenant(a, "-n", a, "delete", "orderservice", name, "--timeout=180s").returncode == 0


def test_the_admin_password_leaves_only_over_a_connection_that_verifies_the_server(tenants, admin_mysql):
    """An admin Secret whose owner has not accepted unverified connections: an OrderService naming no
    CA is refused before the operator connects; naming the server's CA (VERIFY_CA), it is provisioned
    with the same Secret.  (The local MariaDB speaks no TLS: there, only the refusal is shown.)"""
    a, name = tenants.attacker, "strict"
    services.apply_labelled_secret(a, "strict-admin", {"username": admin_mysql.admin_user,
                                                       "password": admin_mysql.admin_password},
                                   hosts=(network.GATEWAY,), labels={"simplecqrs.io/binlog": "true"})
    spec = tenants.spec("st")
    spec["mysql"]["adminSecretRef"] = {"name": "strict-admin"}
    assert apply_as_tenant(a, name, spec).returncode == 0
    refused = wait_condition(a, name, "WriteStoreReady", "TransportNotVerified")
    assert "simplecqrs.io/unverified-transport=true" in refused["message"] and "caSecretRef" in refused["message"]
    conn = pymysql.connect(host="127.0.0.1", port=admin_mysql.port, user=admin_mysql.admin_user,
                           password=admin_mysql.admin_password, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE user LIKE %s", (f"{spec['mysql']['database']}_%",))
            assert cur.fetchone()[0] == 0, "users were made over an unverified connection"
    finally:
        conn.close()
    if ca := services.apply_mysql_ca_secret(a):
        assert as_tenant(a, "-n", a, "patch", "orderservice", name, "--type=merge", "-p", json.dumps(
            {"spec": {"mysql": {"tls": {"caSecretRef": {"name": ca}}}}})).returncode == 0
        wait_condition(a, name, "WriteStoreReady", "Provisioned", timeout=180)
    assert as_tenant(a, "-n", a, "delete", "orderservice", name, "--timeout=180s").returncode == 0


def test_a_tenant_naming_another_tenants_stores_gets_nothing_and_drops_nothing(tenants, admin_mysql):
    """Tenant A names tenant B's database, keyspace and topic on the same servers (the operator sees
    both): the older instance owns them, A's reports ResourceConflict for each, runs no pods, and its
    deletion with policy Delete drops none of them.  B serves throughout, its pods untouched."""
    a, victim = tenants.attacker, tenants.victim
    before = victim_state(tenants)
    victim_spec = victim.get()["spec"]
    spec = tenants.spec("th")
    spec["deletionPolicy"] = "Delete"
    for store, key in (("mysql", "database"), ("cassandra", "keyspace"), ("kafka", "topic")):
        spec[store][key] = victim_spec[store][key]
    assert apply_as_tenant(a, "thief", spec).returncode == 0
    for type_ in ("WriteStoreReady", "ReadStoreReady", "TopicReady"):
        conflict = wait_condition(a, "thief", type_, "ResourceConflict")
        assert f"OrderService {victim.ns}/{victim.name}" in conflict["message"], conflict
    assert condition(a, "thief", "ChildrenApplied")["reason"] == "StoreConflict"
    assert kjson("-n", a, "deployment", "thief-api") is None
    assert as_tenant(a, "-n", a, "delete", "orderservice", "thief", "--timeout=180s").returncode == 0
    # Its own stores, but the victim's consumer group on the same cluster: its consumers would join
    # the victim's projector and take partitions from it.
    joiner = tenants.spec("jo")
    joiner["kafka"]["consumerGroup"] = victim_spec["kafka"]["consumerGroup"]
    assert apply_as_tenant(a, "joiner", joiner).returncode == 0
    conflict = wait_condition(a, "joiner", "TopicReady", "ResourceConflict")
    assert "consumer group" in conflict["message"] and f"{victim.ns}/{victim.name}" in conflict["message"], conflict
    assert kjson("-n", a, "deployment", "joiner-consumer") is None
    assert as_tenant(a, "-n", a, "delete", "orderservice", "joiner", "--timeout=180s").returncode == 0

    conn = pymysql.connect(host="127.0.0.1", port=admin_mysql.port, user=admin_mysql.admin_user,
                           password=admin_mysql.admin_password)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (victim_spec["mysql"]["database"],))
            assert cur.fetchall(), "the victim's database was dropped"
    finally:
        conn.close()
    order_round_trip(victim.ns, victim.host, f"{victim.name}-api")
    assert victim_state(tenants) == before


def test_the_binlog_is_read_only_where_the_servers_owner_allows_it(tenants, admin_mysql):
    """A shared server's admin Secret (labelled and annotated for OrderServices, without the binlog
    label): the default binlog relay is refused before any grant; `poll` runs, and its relay user
    holds no global privilege."""
    a, name = tenants.attacker, "shared"
    services.apply_labelled_secret(a, "shared-admin", {"username": admin_mysql.admin_user,
                                                       "password": admin_mysql.admin_password},
                                   hosts=(network.GATEWAY,), unverified=True)
    spec = tenants.spec("sh")
    spec["mysql"]["adminSecretRef"] = {"name": "shared-admin"}
    assert apply_as_tenant(a, name, spec).returncode == 0
    refused = wait_condition(a, name, "WriteStoreReady", "BinlogNotAllowed")
    assert "simplecqrs.io/binlog=true" in refused["message"] and "poll" in refused["message"], refused
    relay_user = f"{spec['mysql']['database']}_rpl"
    conn = pymysql.connect(host="127.0.0.1", port=admin_mysql.port, user=admin_mysql.admin_user,
                           password=admin_mysql.admin_password, autocommit=True)   # (each read sees the latest)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE user = %s", (relay_user,))
            assert cur.fetchone()[0] == 0, "a relay user was made before the owner's consent"
        assert as_tenant(a, "-n", a, "patch", "orderservice", name, "--type=merge", "-p",
                         json.dumps({"spec": {"mysql": {"outboxRelay": "poll"}}})).returncode == 0
        wait_condition(a, name, "WriteStoreReady", "Provisioned", timeout=180)
        with conn.cursor() as cur:
            cur.execute("SELECT Repl_slave_priv, Repl_client_priv FROM mysql.user WHERE user = %s", (relay_user,))
            assert cur.fetchall() == (("N", "N"),)
    finally:
        conn.close()
    assert as_tenant(a, "-n", a, "delete", "orderservice", name, "--timeout=180s").returncode == 0


def test_another_teams_topic_on_the_shared_kafka_cluster_is_not_claimed(tenants):
    """The stack's Strimzi cluster (namespace kafka) is shared: a tenant naming a topic and group it
    was not granted gets no KafkaTopic (Strimzi would adopt the topic) and no KafkaUser."""
    from scripts.stack import kafka as stack_kafka

    a, name = tenants.attacker, "borrow"
    spec = tenants.spec("bo")
    topic = f"payments-{tenants.tag}"             # another team's (unmanaged) topic and group
    spec["kafka"] = {**journeys.orderservice_spec("x", tenants.image, strimzi=True)["kafka"],
                     "topic": topic, "consumerGroup": "payments-readers"}
    assert apply_as_tenant(a, name, spec).returncode == 0
    refused = wait_condition(a, name, "TopicReady", "KafkaNamesNotGranted")
    assert f"{topic} and payments-readers" in refused["message"], refused
    assert kjson("-n", stack_kafka.NAMESPACE, "kafkatopic", f"{a}.{name}.events") is None
    assert kjson("-n", stack_kafka.NAMESPACE, "kafkauser", f"{a}.{name}.consumer") is None
    assert as_tenant(a, "-n", a, "delete", "orderservice", name, "--timeout=180s").returncode == 0


def connects_from(ns: str, pod: str, host: str, port: int) -> str:
    """What a TCP connection from the pod's relay container (it has python) to host:port gives."""
    out = kubectl("-n", ns, "exec", pod, "-c", "relay", "--", "python", "-c",
                  "import socket,sys\n"
                  "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print('open')\n"
                  "except OSError as e:\n print(type(e).__name__)", host, str(port), check=False)
    return out.stdout.strip() or out.stderr.strip()


def test_the_instances_pods_reach_only_their_stores_and_the_cluster_dns(tenants):
    """The NetworkPolicy's egress allow-list, enforced by the node's kube-router: an API pod connects
    to its MySQL and its Kafka listener, and to nothing else (the apiserver, another port of the
    same Kafka pods, a pod of another namespace)."""
    v = tenants.victim
    pod = v.pods("api")[0]["metadata"]["name"]
    assert connects_from(v.ns, pod, network.GATEWAY, 3306) == "open"
    assert connects_from(v.ns, pod, "local-kafka-bootstrap.kafka.svc", 9092) == "open"   # (the spec's listener)
    other = kjson("-n", "kube-system", "pods", "-l", "k8s-app=metrics-server")["items"][0]["status"]["podIP"]
    for host, port in (("kubernetes.default.svc", 443), ("local-kafka-brokers.kafka.svc", 9091), (other, 10250)):
        assert connects_from(v.ns, pod, host, port) in ("ConnectionRefusedError", "TimeoutError"), (host, port)


@pytest.mark.parametrize(("path", "value", "message"), [
    (("mysql", "database"), "mysql", "the server's own schemas"),
    (("cassandra", "keyspace"), "system_auth", "must not begin with system"),
    (("kafka", "topic"), "__consumer_offsets", "must not begin with __"),
    (("kafka", "config"), {"unclean.leader.election.enable": "true"}, "durability"),
    (("kafka", "config"), {"max.message.bytes": "104857600"}, "at most 8388608"),
    (("placement", "tolerations"), [{"operator": "Exists"}], "key: Required value"),
    (("placement", "tolerations"), [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
     "control plane's taints"),
    (("api", "image"), "evil image; rm -rf /", "should match"),
])
def test_the_apiserver_refuses_system_stores_and_unsafe_topic_settings(tenants, path, value, message):
    spec = tenants.spec("sys")
    spec.setdefault(path[0], {})[path[1]] = value
    out = apply_as_tenant(tenants.attacker, "system", spec)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert kjson("-n", tenants.attacker, "orderservice", "system") is None
