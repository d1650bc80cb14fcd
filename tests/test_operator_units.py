"""The operator's pure parts: the OrderService wrapper, the child manifests, conditions,
and the shipped manifests (CRD, RBAC, Deployment).  No cluster, no stores."""
from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from simplecqrs_operator import children, conditions
from simplecqrs_operator.handlers import backoff
from simplecqrs_operator.resource import OrderService

from app.config import load as load_settings
from app.readmodel.schema import replication_cql

ROOT = Path(__file__).resolve().parents[1]
CRD = yaml.safe_load((ROOT / "k8s/crd/orderservice.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLE_FILE = ROOT / "k8s/examples/orderservice.yaml"
# The tests' canonical resource: the shipped example's shape with names and addresses of its own
# (the example itself names the local node's addresses and names that stay clear of `make up`'s).
EXAMPLE = yaml.safe_load(EXAMPLE_FILE.read_text())
EXAMPLE["metadata"]["name"] = "simplecqrs"
EXAMPLE["spec"]["kafka"].update(bootstrapServers="127.0.0.1:9092", topic="OnNewOrder", consumerGroup="simplecqrs-projector")
EXAMPLE["spec"]["mysql"].update(host="127.0.0.1", database="simplecqrs_w")
EXAMPLE["spec"]["cassandra"].update(contactPoints=["127.0.0.1"], keyspace="simplecqrs_r")


def with_defaults(schema: dict, value):
    """What the apiserver does with the CRD's `default`s (enough of it for these schemas)."""
    if schema.get("type") == "object" and isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = with_defaults(sub, value[key])
    return value


def body(**spec_patch) -> dict:
    b = copy.deepcopy(EXAMPLE)
    b["metadata"].update(namespace="shop", uid="1234-uid", generation=3)
    for dotted, v in spec_patch.items():
        node = b["spec"]
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return with_defaults(SCHEMA, b)


def osvc(**spec_patch) -> OrderService:
    return OrderService.from_body(body(**spec_patch))


def env_of(container: dict) -> dict[str, str]:
    """The container's environment, secretKeyRefs resolved to '<secret>/<key>'."""
    out = {}
    for e in container["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = f"{ref['name']}/{ref['key']}"
    return out


# ---------------------------------------------------------------- the resource
def test_example_gets_the_crd_defaults_and_derived_names():
    o = osvc()
    assert (o.name, o.namespace, o.deletion_policy) == ("simplecqrs", "shop", "Retain")
    assert o.kafka.dead_letter_topic == "OnNewOrder.DLQ"
    assert o.kafka.consumer_group == "simplecqrs-projector"
    assert o.mysql.app_user == "simplecqrs_w_app" and len(o.mysql.app_user) <= 32
    assert o.mysql.admin_secret.name == body()["spec"]["mysql"]["adminSecretRef"]["name"]
    assert o.cassandra.replication_setting == "SimpleStrategy:1"
    assert o.api.resources["requests"]["cpu"] == "100m"
    assert OrderService.from_body(body(kafka__consumerGroup=None)).kafka.consumer_group == "simplecqrs-projector"


def test_replication_settings_are_what_the_read_model_code_accepts():
    nts = osvc(cassandra__replication={"strategy": "NetworkTopologyStrategy", "datacenters": {"dc2": 3, "dc1": 2}})
    assert nts.cassandra.replication_setting == "NetworkTopologyStrategy:dc1=2,dc2=3"
    assert replication_cql(nts.cassandra.replication_setting) == \
        "{'class': 'NetworkTopologyStrategy', 'dc1': 2, 'dc2': 3}"
    assert replication_cql(osvc().cassandra.replication_setting) == \
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def test_longest_database_name_still_gives_a_valid_mysql_user():
    db = "d" * SCHEMA["properties"]["spec"]["properties"]["mysql"]["properties"]["database"]["maxLength"]
    assert len(osvc(mysql__database=db).mysql.app_user) == 32


# ---------------------------------------------------------------- children
def containers(o: OrderService) -> dict[str, dict]:
    pods = [children.api_deployment(o, "h"), children.consumer_deployment(o)]
    return {c["name"]: c for d in pods for c in d["spec"]["template"]["spec"]["containers"]}


def test_workload_environment_is_read_back_by_app_config():
    """The Deployments set exactly the names app/config.py reads, with the spec's values."""
    o = osvc(cassandra__credentialsSecretRef={"name": "cass"})
    api, relay, consumer = (containers(o)[n] for n in ("api", "relay", "consumer"))
    for container in (api, relay, consumer):
        with mock.patch.dict(os.environ, env_of(container), clear=True):
            s = load_settings()
        assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
        assert (s.kafka.topic, s.kafka.dead_letter_topic) == ("OnNewOrder", "OnNewOrder.DLQ")
    for container in (api, consumer):
        with mock.patch.dict(os.environ, env_of(container), clear=True):
            s = load_settings()
        assert s.kafka.consumer_group == "simplecqrs-projector"
        assert (s.cassandra.hosts, s.cassandra.port, s.cassandra.local_dc) == (["127.0.0.1"], 9042, "datacenter1")
        assert (s.cassandra.keyspace, s.cassandra.replication) == ("simplecqrs_r", "SimpleStrategy:1")
        assert (s.cassandra.username, s.cassandra.password) == ("cass/username", "cass/password")
    for container, key in ((api, ""), (relay, "relay-")):
        with mock.patch.dict(os.environ, env_of(container), clear=True):
            s = load_settings()
        assert (s.mysql.host, s.mysql.port, s.mysql.database) == ("127.0.0.1", 3306, "simplecqrs_w")
        # The relay logs in as its own user (the outbox tables and replication, no application rights).
        assert (s.mysql.user, s.mysql.password) == (f"simplecqrs-mysql-app/{key}username",
                                                    f"simplecqrs-mysql-app/{key}password")
        assert s.outbox.relay == "binlog"
        assert not s.mysql.admin_user  # the admin account never reaches the workloads
    assert s.outbox.metrics_host == "0.0.0.0" and s.outbox.metrics_port == 9101
    with mock.patch.dict(os.environ, env_of(api), clear=True):
        assert load_settings().api.role == "both"
    assert env_of(api)["API_BIND"] == "0.0.0.0:8080"
    assert env_of(consumer)["CONSUMER_METRICS_PORT"] == "9102"
    assert "MYSQL_PASSWORD" not in env_of(consumer)  # the consumer never touches MySQL


def test_every_variable_the_workloads_set_is_one_the_app_reads():
    source = "".join((ROOT / f).read_text() for f in ("app/config.py", "app/gunicorn_conf.py", "app/metrics.py"))
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source))
    for c in containers(osvc(cassandra__credentialsSecretRef={"name": "cass"})).values():
        names = {e["name"] for e in c["env"]}
        assert names <= read, names - read


def test_credentials_only_from_secrets():
    for c in containers(osvc(cassandra__credentialsSecretRef={"name": "cass"})).values():
        for e in c["env"]:
            if "PASSWORD" in e["name"] or e["name"].endswith(("_USER", "_USERNAME")):
                assert "value" not in e and "secretKeyRef" in e["valueFrom"], e


def test_containers_are_locked_down():
    o = osvc()
    for d in (children.api_deployment(o, "h"), children.consumer_deployment(o)):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
            assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_api_pods_run_the_outbox_relay_beside_gunicorn():
    o = osvc()
    pod = children.api_deployment(o, "h")["spec"]["template"]["spec"]
    api, relay = pod["containers"]
    assert api["command"] == ["simplecqrs", "api"]      # execs gunicorn (app/cli.py)
    assert relay["command"] == ["simplecqrs", "relay"] and relay["image"] == api["image"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # A Kafka outage makes the relay unready; the pod must stay in the Service and keep taking orders.
    assert "readinessProbe" not in relay
    consumer = children.consumer_deployment(o)["spec"]["template"]["spec"]["containers"][0]
    assert consumer["command"] == ["simplecqrs", "consume"]
    assert consumer["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_every_child_is_owned_and_labelled():
    o = osvc(api__ingress={"host": "shop.example.com"}, api__httpRoute={"parentRefs": [{"name": "shared"}]},
             consumer__autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70})
    wanted, unwanted = children.workloads(o, "h")
    assert unwanted == []
    assert sorted(m["kind"] for m in wanted) == ["Deployment", "Deployment", "HTTPRoute", "HorizontalPodAutoscaler",
                                                 "Ingress", "NetworkPolicy", "PodDisruptionBudget",
                                                 "PodDisruptionBudget", "Service"]
    for m in wanted + [children.credentials_secret(o, "pw", "rpw")]:
        meta = m["metadata"]
        assert meta["namespace"] == "shop"
        assert meta["ownerReferences"] == [{"apiVersion": "simplecqrs.io/v1alpha1", "kind": "OrderService",
                                            "name": "simplecqrs", "uid": "1234-uid", "controller": True,
                                            "blockOwnerDeletion": True}]
        assert meta["labels"]["app.kubernetes.io/instance"] == "simplecqrs"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "simplecqrs-operator"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of"} <= set(
            meta["labels"])


def test_optional_children_follow_the_spec():
    plain = osvc()
    wanted, unwanted = children.workloads(plain, "h")
    assert sorted(unwanted) == [("HTTPRoute", "simplecqrs-api"), ("HorizontalPodAutoscaler", "simplecqrs-consumer"),
                                ("Ingress", "simplecqrs-api")]
    assert children.consumer_deployment(plain)["spec"]["replicas"] == 2

    scaled = osvc(consumer__autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60},
                  api__ingress={"host": "shop.example.com", "className": "nginx", "tlsSecretName": "shop-tls"})
    assert "replicas" not in children.consumer_deployment(scaled)["spec"]  # the HPA owns it
    hpa = children.consumer_hpa(scaled)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["scaleTargetRef"]["name"] == "simplecqrs-consumer"
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    ing = children.api_ingress(scaled)["spec"]
    assert ing["ingressClassName"] == "nginx"
    assert ing["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    assert ing["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "simplecqrs-api"


def test_http_route_attaches_to_the_named_gateways_and_sends_to_the_api_service():
    routed = osvc(api__httpRoute={"parentRefs": [{"name": "shared", "namespace": "gateways", "sectionName": "https"},
                                                 {"name": "internal"}],
                                  "hostnames": ["shop.example.com"]})
    wanted, unwanted = children.workloads(routed, "h")
    (route,) = [m for m in wanted if m["kind"] == "HTTPRoute"]
    assert ("HTTPRoute", "simplecqrs-api") not in unwanted
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["metadata"]["name"] == "simplecqrs-api"
    assert route["metadata"]["ownerReferences"][0]["kind"] == "OrderService"
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "shared", "namespace": "gateways", "sectionName": "https"},
                                  {"name": "internal"}]   # no namespace: the route's own
    assert spec["hostnames"] == ["shop.example.com"]
    (rule,) = spec["rules"]
    assert rule["backendRefs"] == [{"name": "simplecqrs-api", "port": children.SERVICE_PORT}]
    service_ports = children.api_service(routed)["spec"]["ports"]
    assert [p["port"] for p in service_ports] == [children.SERVICE_PORT]
    no_hosts = children.api_http_route(osvc(api__httpRoute={"parentRefs": [{"name": "shared"}]}))
    assert "hostnames" not in no_hosts["spec"]   # every host name of the listeners
    assert ("HTTPRoute", "simplecqrs-api") in children.namespace_children(routed)


def test_credentials_hash_rolls_the_api_pods_only():
    o = osvc()
    a, b = children.api_deployment(o, "aaa"), children.api_deployment(o, "bbb")
    assert a["spec"]["template"]["metadata"]["annotations"] != b["spec"]["template"]["metadata"]["annotations"]
    assert children.api_deployment(o, "aaa") == a  # pure: same input, same manifest


def test_kafka_topics_for_strimzi():
    o = osvc(kafka__strimzi={"cluster": "events", "namespace": "kafka"}, kafka__partitions=12)
    events, dlq = children.kafka_topics(o, "kafka.strimzi.io/v1beta2")
    assert events["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert events["metadata"]["namespace"] == "kafka"
    assert events["metadata"]["labels"]["strimzi.io/cluster"] == "events"
    assert "ownerReferences" not in events["metadata"]  # another namespace: deleted by the operator itself
    assert events["spec"] == {"topicName": "OnNewOrder", "partitions": 12, "replicas": 1,
                              "config": {"retention.ms": "604800000"}}
    assert dlq["spec"] == {"topicName": "OnNewOrder.DLQ", "partitions": 1, "replicas": 1}
    assert osvc(kafka__strimzi={"cluster": "events"}).kafka.strimzi_namespace == "shop"


SCRAM = {"cluster": "local", "namespace": "kafka", "authentication": {"type": "scram-sha-512"}}


def test_kafka_users_get_exactly_what_each_role_does():
    o = osvc(kafka__strimzi=SCRAM, kafka__bootstrapServers="10.244.0.1:9095")
    relay, consumer = children.kafka_users(o, "kafka.strimzi.io/v1")
    assert [u["metadata"]["name"] for u in (relay, consumer)] == ["shop.simplecqrs.relay", "shop.simplecqrs.consumer"]
    for u in (relay, consumer):
        assert u["metadata"]["namespace"] == "kafka" and "ownerReferences" not in u["metadata"]
        assert u["metadata"]["labels"]["strimzi.io/cluster"] == "local"
        assert u["spec"]["authentication"] == {"type": "scram-sha-512"}

    def grants(user: dict) -> set[tuple[str, str, str]]:
        return {(a["resource"]["type"], a["resource"]["name"], op) for a in user["spec"]["authorization"]["acls"]
                for op in a["operations"]}
    assert grants(relay) == {("topic", "OnNewOrder", "Write"), ("topic", "OnNewOrder", "Describe")}
    assert grants(consumer) == {("topic", "OnNewOrder", "Read"), ("topic", "OnNewOrder", "Describe"),
                                ("group", "simplecqrs-projector", "Read"),
                                ("topic", "OnNewOrder.DLQ", "Write"), ("topic", "OnNewOrder.DLQ", "Describe")}
    assert all(a["resource"]["patternType"] == "literal" for u in (relay, consumer)
               for a in u["spec"]["authorization"]["acls"])


def test_only_the_relay_and_the_consumer_get_a_kafka_user_and_only_their_own():
    o = osvc(kafka__strimzi=SCRAM)
    api_pod = children.api_deployment(o, "h", {"relay": "r1"})["spec"]["template"]
    api, relay = (env_of(c) for c in api_pod["spec"]["containers"])
    assert "KAFKA_SASL_USERNAME" not in api and "KAFKA_SECURITY_PROTOCOL" not in api   # gunicorn never talks to Kafka
    assert relay["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and relay["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert relay["KAFKA_SASL_PASSWORD"] == "simplecqrs-kafka-relay/password"
    assert api_pod["metadata"]["annotations"]["simplecqrs.io/kafka-credentials-hash"] == "r1"
    consumer_pod = children.consumer_deployment(o, {"relay": "r1", "consumer": "c1"})["spec"]["template"]
    consumer = env_of(consumer_pod["spec"]["containers"][0])
    assert consumer["KAFKA_SASL_USERNAME"] == "simplecqrs-kafka-consumer/username"
    with mock.patch.dict(os.environ, consumer, clear=True):
        k = load_settings().kafka   # the names app/config.py reads
    assert (k.security_protocol, k.sasl_mechanism, k.sasl_username) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "simplecqrs-kafka-consumer/username")
    assert consumer_pod["metadata"]["annotations"]["simplecqrs.io/kafka-credentials-hash"] == "c1"
    secret = children.kafka_user_secret(o, "relay", "s3cret")
    assert base64.b64decode(secret["data"]["username"]).decode() == "shop.simplecqrs.relay"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    # Without authentication (or without Strimzi) nothing of it appears.
    for plain in (osvc(), osvc(kafka__strimzi={"cluster": "local"})):
        relay = env_of(children.api_deployment(plain, "h")["spec"]["template"]["spec"]["containers"][1])
        assert not {k for k in relay if k.startswith(("KAFKA_SASL", "KAFKA_SECURITY"))}


def test_strimzi_version_preference_follows_what_is_served():
    from simplecqrs_operator.kube import preferred_strimzi_version

    docs = {"v1": {"resources": [{"name": "kafkatopics"}, {"name": "kafkausers"}]},
            "v1beta2": {"resources": [{"name": "kafkatopics"}]}}
    assert preferred_strimzi_version(["v1"], "kafkatopics", docs.get) == "kafka.strimzi.io/v1"        # Strimzi 1.2
    assert preferred_strimzi_version(["v1", "v1beta2"], "kafkatopics", docs.get) == "kafka.strimzi.io/v1"  # 0.51
    assert preferred_strimzi_version(["v1beta2"], "kafkatopics", docs.get) == "kafka.strimzi.io/v1beta2"
    assert preferred_strimzi_version(["v1beta2"], "kafkausers", docs.get) is None
    assert preferred_strimzi_version([], "kafkatopics", docs.get) is None


def test_strimzi_readiness_is_strimzis_own():
    from simplecqrs_operator.topics import strimzi_ready

    def obj(generation, observed, *conds):
        return {"metadata": {"generation": generation}, "status": {"observedGeneration": observed,
                                                                   "conditions": list(conds)}}
    assert strimzi_ready(obj(2, 2, {"type": "Ready", "status": "True"}))[0]
    assert strimzi_ready(obj(3, 2, {"type": "Ready", "status": "True"}))[:2] == (False, "NotReconciled")
    refused = {"type": "Ready", "status": "False", "reason": "NotSupported", "message": "Decreasing partitions not supported"}
    assert strimzi_ready(obj(2, 2, refused)) == (False, "NotSupported", "Decreasing partitions not supported")
    assert strimzi_ready({"metadata": {"generation": 1}})[:2] == (False, "NotReconciled")


def test_kafka_client_security_settings():
    from app.broker import security
    from app.config import KafkaSettings

    assert security(KafkaSettings(security_protocol="PLAINTEXT")) == {}
    scram = security(KafkaSettings(security_protocol="sasl_plaintext", sasl_username="u", sasl_password="p"))
    assert scram == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                     "sasl_plain_username": "u", "sasl_plain_password": "p"}
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        security(KafkaSettings(security_protocol="SASL_PLAINTEXT"))
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL"):
        security(KafkaSettings(security_protocol="SSL_MAYBE"))


# ---------------------------------------------------------------- conditions
def test_conditions_keep_transition_time_until_status_changes():
    first = conditions.merge([], [conditions.true("TopicReady", "Provisioned", "6 partitions")], 1, "T1")
    topic = next(c for c in first if c["type"] == "TopicReady")
    assert topic == {"type": "TopicReady", "status": "True", "reason": "Provisioned", "message": "6 partitions",
                     "lastTransitionTime": "T1", "observedGeneration": 1}
    second = conditions.merge(first, [conditions.true("TopicReady", "Provisioned", "8 partitions")], 2, "T2")
    topic = next(c for c in second if c["type"] == "TopicReady")
    assert (topic["lastTransitionTime"], topic["message"], topic["observedGeneration"]) == ("T1", "8 partitions", 2)
    third = conditions.merge(second, [conditions.false("TopicReady", "Unreachable", "down")], 3, "T3")
    assert next(c for c in third if c["type"] == "TopicReady")["lastTransitionTime"] == "T3"
    assert [c["type"] for c in conditions.transitions(second, third)] == ["TopicReady"]


def test_ready_needs_every_part():
    parts = [conditions.true(t, "Ok") for t in conditions.PARTS]
    ready = next(c for c in conditions.merge([], parts, 1) if c["type"] == "Ready")
    assert ready["status"] == "True"
    parts[-1] = conditions.false(conditions.CONSUMER, "ReplicasUnavailable", "0/2 available")
    ready = next(c for c in conditions.merge([], parts, 1) if c["type"] == "Ready")
    assert ready["status"] == "False" and "ConsumerReady: 0/2 available" in ready["message"]
    assert [c["type"] for c in conditions.merge([], parts, 1)][0] == "Ready"


@pytest.mark.parametrize("deployment, status, reason, counts", [
    (None, "False", "DeploymentMissing", "0/0"),
    ({"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {}}, "False", "ReplicasUnavailable", "0/2"),
    ({"metadata": {"generation": 2}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 1, "availableReplicas": 2, "updatedReplicas": 2}},
     "False", "ReplicasUnavailable", "2/2"),  # a rollout the controller has not seen yet
    ({"metadata": {"generation": 2}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 2, "availableReplicas": 2, "updatedReplicas": 2}}, "True", "Available", "2/2"),
    ({"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {"observedGeneration": 1}},
     "False", "ScaledToZero", "0/0"),
])
def test_workload_conditions_from_deployments(deployment, status, reason, counts):
    cond, got = conditions.from_deployment("ApiReady", "x-api", deployment)
    assert (cond.status, cond.reason, got) == (status, reason, counts)


def test_backoff_doubles_and_is_capped():
    assert [backoff(r) for r in range(3)] == [2, 4, 8]
    assert backoff(30) == 60


# ---------------------------------------------------------------- shipped manifests
def _docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]


def test_crd_is_structural_with_status_and_columns():
    (version,) = CRD["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")] == [
        "Ready", "Partitions", "API", "Consumer", "Age"]
    assert CRD["spec"]["names"]["shortNames"] == ["osvc"]
    status = SCHEMA["properties"]["status"]["properties"]
    assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True  # kopf's progress is not pruned
    kafka = SCHEMA["properties"]["spec"]["properties"]["kafka"]["properties"]
    assert {"rule": "self >= oldSelf", "message": kafka["partitions"]["x-kubernetes-validations"][0]["message"]} in \
        kafka["partitions"]["x-kubernetes-validations"]


def test_namespaced_and_cluster_rbac_grant_the_same_namespaced_rules():
    (role, _) = _docs("k8s/operator/rbac-namespaced.yaml")
    (cluster_role, binding, lease_role, lease_binding) = _docs("k8s/operator/rbac.yaml")
    assert role["kind"] == "Role"
    for b in (binding, lease_binding):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "simplecqrs-operator", "namespace": "simplecqrs"}]
    cluster_only = [r for r in cluster_role["rules"] if r not in role["rules"]]
    assert cluster_only == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]}]
    # The leader-election Lease: in the watched namespace (Role), or the operator's own (its own Role).
    # Create cannot be limited to a name; get and update are, to the operator's one Lease.
    lease = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["simplecqrs-operator"],
              "verbs": ["get", "update"]}]
    assert [r for r in role["rules"] if r not in cluster_role["rules"]] == lease
    assert (lease_role["kind"], lease_role["metadata"]["namespace"], lease_role["rules"]) == ("Role", "simplecqrs", lease)
    assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    for rule in role["rules"] + cluster_role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_operator_deployment_is_locked_down_and_probed():
    sa, deployment = _docs("k8s/operator/deployment.yaml")
    assert sa["kind"] == "ServiceAccount"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    assert c["image"] == "simplecqrs:0.1.0"
    assert c["command"] == ["simplecqrs", "operator"]
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not c["securityContext"]["allowPrivilegeEscalation"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert deployment["spec"]["replicas"] == 2


def test_operator_command_help_runs():
    simplecqrs = Path(sys.executable).with_name("simplecqrs")   # the venv's command (pyproject's [project.scripts])
    out = subprocess.run([str(simplecqrs), "operator", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "--namespace" in out and "--liveness" in out


def test_local_stack_installs_the_chart_with_the_local_values():
    from scripts.stack import kafka, network, services

    local = yaml.safe_load(services.LOCAL_VALUES.read_text())
    defaults = yaml.safe_load((services.APP_CHART / "values.yaml").read_text())
    assert local["orderService"]["name"] == services.INSTANCE
    assert defaults["mysql"]["adminSecret"]["name"] == services.ADMIN_SECRET
    # the stores as pods on the local node reach them (scripts/stack/network.py)
    assert local["mysql"]["host"] == network.GATEWAY == local["cassandra"]["contactPoints"][0]
    # Kafka: the Strimzi cluster's SCRAM listener for pods, topics and users by its Entity Operator,
    # the topic replicated on every node with two in sync for a write
    assert local["kafka"]["bootstrapServers"] == kafka.POD_SCRAM_BOOTSTRAP
    assert local["kafka"]["strimzi"] == {"cluster": kafka.CLUSTER, "namespace": kafka.NAMESPACE,
                                         "authentication": "scram-sha-512"}
    assert local["kafka"]["replicationFactor"] == kafka.NODES and local["kafka"]["config"]["min.insync.replicas"] == "2"
    assert yaml.safe_load(EXAMPLE_FILE.read_text())["spec"]["mysql"]["host"] == network.GATEWAY


def test_network_policy_admits_only_the_ingress_controller_labelled_clients_and_monitoring():
    o = osvc(networkPolicy={"ingressNamespaces": ["ingress-nginx", "traefik"], "monitoringNamespaces": ["prom"]})
    api_rule, metrics_rule = children.network_policy(o)["spec"]["ingress"]
    assert [p["port"] for p in api_rule["ports"]] == [children.API_PORT]
    namespaces = [peer["namespaceSelector"]["matchExpressions"][0]["values"]
                  for peer in api_rule["from"] if "namespaceSelector" in peer]
    assert namespaces == [["ingress-nginx", "traefik"], ["prom"]]
    assert {"podSelector": {"matchLabels": {children.API_CLIENT_LABEL: "true"}}} in api_rule["from"]
    assert [p["port"] for p in metrics_rule["ports"]] == [children.RELAY_PORT, children.METRICS_PORT]
    assert [peer["namespaceSelector"]["matchExpressions"][0]["values"] for peer in metrics_rule["from"]] == [["prom"]]
    defaults = children.network_policy(osvc())["spec"]["ingress"][0]["from"][0]
    assert defaults["namespaceSelector"]["matchExpressions"][0]["values"] == ["traefik"]


def test_network_policy_admits_a_host_network_controller_by_address():
    """A controller on the host network (k3s's Traefik, the local stack's) has no namespace to
    select; it is admitted by its address range.  Empty namespace lists give no selector at all
    (`In` with no values is invalid, and an empty `from` would admit everyone)."""
    o = osvc(networkPolicy={"ingressNamespaces": [], "ingressCIDRs": ["10.244.0.1/32"], "monitoringNamespaces": []})
    (api_rule,) = children.network_policy(o)["spec"]["ingress"]
    assert api_rule["from"] == [{"ipBlock": {"cidr": "10.244.0.1/32"}},
                                {"podSelector": {"matchLabels": {children.API_CLIENT_LABEL: "true"}}}]


def test_the_watch_on_deployments_carries_the_managed_by_selector():
    """kopf computes each watch request's labelSelector with this same call (its watching module):
    the operator's own Deployments only, filtered by the apiserver, not every Deployment in scope."""
    import kopf
    from kopf._cogs.structs import references
    from simplecqrs_operator import handlers

    settings = kopf.OperatorSettings()
    with mock.patch.object(handlers.kube_api, "client"):
        handlers.configure(settings=settings, memo=kopf.Memo())
    deployments = references.Resource("apps", "v1", "deployments", kind="Deployment", namespaced=True)
    assert list(settings.watching.label_selectors.collect(deployments)) == [
        ",".join(f"{k}={v}" for k, v in handlers.MANAGED.items())]
    orderservices = references.Resource("simplecqrs.io", "v1alpha1", "orderservices", kind="OrderService")
    assert list(settings.watching.label_selectors.collect(orderservices)) == []


def test_pull_secrets_and_placement_reach_both_deployments():
    o = osvc(imagePullSecrets=[{"name": "regcred"}],
             placement={"nodeSelector": {"pool": "apps"}, "tolerations": [{"key": "apps", "operator": "Exists"}],
                        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                       "whenUnsatisfiable": "ScheduleAnyway"}]})
    for d in (children.api_deployment(o, "h"), children.consumer_deployment(o)):
        pod = d["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["nodeSelector"] == {"pool": "apps"} and pod["tolerations"][0]["key"] == "apps"
        assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
    plain = children.api_deployment(osvc(), "h")["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in plain and "nodeSelector" not in plain


def test_mysql_tls_reaches_the_api_and_relay_as_settings_and_a_mounted_ca():
    o = osvc(mysql__tls={"mode": "VERIFY_IDENTITY", "caSecretRef": {"name": "mysql-ca"}})
    deployment = children.api_deployment(o, "h")
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "mysql-ca", "secret": {"secretName": "mysql-ca", "defaultMode": 0o444,
                                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
    for c in pod["containers"]:  # api and relay
        with mock.patch.dict(os.environ, env_of(c), clear=True):
            s = load_settings()
        assert (s.mysql.ssl_mode, s.mysql.ssl_ca) == ("VERIFY_IDENTITY", "/etc/simplecqrs/mysql-ca/ca.crt")
        assert {"name": "mysql-ca", "mountPath": "/etc/simplecqrs/mysql-ca", "readOnly": True} in c["volumeMounts"]
    consumer = children.consumer_deployment(o)["spec"]["template"]["spec"]
    assert all(v["name"] != "mysql-ca" for v in consumer["volumes"])  # it never talks to MySQL
    plain = containers(osvc())["api"]
    assert not {"MYSQL_SSL_MODE", "MYSQL_SSL_CA"} & set(env_of(plain))  # the app's default: PREFERRED


def test_the_mysql_ca_secret_must_be_labelled_and_hold_ca_crt():
    from k8s.operator.simplecqrs_operator.credentials import read_ca
    from k8s.operator.simplecqrs_operator.resource import SecretRef

    class Secrets:  # kube.get of Secrets only: the label and key rules are pure logic
        def __init__(self, **secrets):
            self.secrets = secrets

        def get(self, kind, namespace, name):
            return self.secrets.get(name)

    pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    labelled = {"simplecqrs.io/credentials": "true"}
    kube = Secrets(good={"metadata": {"labels": labelled}, "data": {"ca.crt": base64.b64encode(pem.encode()).decode()}},
                   unlabelled={"metadata": {}, "data": {"ca.crt": "eA=="}},
                   nokey={"metadata": {"labels": labelled}, "data": {"tls.crt": "eA=="}})
    assert read_ca(kube, "shop", None) == ("", "", "")
    assert read_ca(kube, "shop", SecretRef("good")) == (pem, "", "")
    assert read_ca(kube, "shop", SecretRef("unlabelled"))[:2] == (None, "SecretNotLabelled")
    assert read_ca(kube, "shop", SecretRef("nokey"))[0] is None and "ca.crt" in read_ca(kube, "shop", SecretRef("nokey"))[2]
    assert read_ca(kube, "shop", SecretRef("gone"))[2] == "Secret gone not found"


def _osvc_body(name: str, created: str, *, ns: str = "shop", db: str = "orders", keyspace: str = "orders",
               topic: str = "OnNewOrder", host: str = "mysql.db", uid: str | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "uid": uid or name},
            "spec": {"kafka": {"bootstrapServers": "k1:9092,k2:9092", "topic": topic},
                     "mysql": {"host": host, "port": 3306, "database": db},
                     "cassandra": {"contactPoints": ["c1", "c2"], "port": 9042, "keyspace": keyspace}}}


def test_the_older_orderservice_owns_a_shared_store_the_younger_waits():
    from simplecqrs_operator import ownership
    from simplecqrs_operator.conditions import READ_STORE, TOPIC, WRITE_STORE

    old = _osvc_body("old", "2026-01-01T00:00:00Z")
    young = _osvc_body("young", "2026-02-01T00:00:00Z", keyspace="other", host="MYSQL.db")
    other = _osvc_body("other", "2025-01-01T00:00:00Z", db="x", keyspace="y", topic="z")
    assert ownership.conflicts(old, [old, young, other]) == {}
    taken = ownership.conflicts(young, [old, young, other])
    assert set(taken) == {TOPIC, WRITE_STORE}                  # the keyspace differs; host case does not count
    assert taken[WRITE_STORE]["metadata"]["name"] == "old"
    assert "OrderService shop/old" in ownership.describe(WRITE_STORE, taken[WRITE_STORE])
    # Same brokers in another order and spelling, from another namespace: still the same topic (names
    # compare as a pod resolves them: `k1` in namespace shop is k1.shop.svc.cluster.local).
    far = _osvc_body("far", "2026-03-01T00:00:00Z", ns="else", db="d", keyspace="k")
    far["spec"]["kafka"]["bootstrapServers"] = "k2.shop.svc:9092, K1.shop:9092"
    assert set(ownership.conflicts(far, [old, far])) == {TOPIC}
    # ...and so is the server: `mysql.db` and its full name are one MySQL (two turns of ALTER USER before).
    spelled = _osvc_body("spelled", "2026-03-02T00:00:00Z", host="mysql.db.svc.cluster.local.", keyspace="k2",
                         topic="t2")
    assert set(ownership.conflicts(spelled, [old, spelled])) == {WRITE_STORE}
    # A Strimzi topic is the Strimzi cluster's: the brokers' addresses do not matter.
    for b in (old, far):
        b["spec"]["kafka"]["strimzi"] = {"cluster": "kafka", "namespace": "kafka"}
    assert set(ownership.conflicts(far, [old, far])) == {TOPIC}
    # Same creation second: the uid decides, the same way for both.
    a, b = (_osvc_body(n, "2026-01-01T00:00:00Z", uid=u) for n, u in (("a", "1"), ("b", "2")))
    assert ownership.conflicts(a, [a, b]) == {} and set(ownership.conflicts(b, [a, b])) == {TOPIC, WRITE_STORE, READ_STORE}


def test_only_the_instances_own_objects_are_written():
    """Owner references with the instance's uid (children), or the owner annotation naming it (the
    Strimzi objects in the Kafka namespace); anything else of a child's name is a conflict."""
    from simplecqrs_operator import ownership

    o = osvc()
    names = children.namespace_children(o)
    assert ("NetworkPolicy", o.name) in names and ("Service", o.api_name) in names
    assert ("Secret", o.credentials_secret) in names and ("Deployment", o.consumer_name) in names
    ours = children.api_service(o)
    victims = {"Service": {"metadata": {"name": o.api_name, "namespace": o.namespace}},
               "Deployment": {"metadata": {"name": o.api_name, "namespace": o.namespace, "ownerReferences": [
                   {"kind": "ReplicaSet", "name": "x", "uid": "other", "controller": True}]}}}
    assert ownership.owned(ours, o.uid, o.address)
    assert not ownership.owned(victims["Service"], o.uid, o.address)
    topic = children.kafka_topics(o, "kafka.strimzi.io/v1")[0]
    assert ownership.owned(topic, o.uid, o.address)
    assert not ownership.owned(topic, o.uid, "other/ns")
    found = ownership.foreign_children({("Service", o.api_name): victims["Service"], ("Deployment", "d"): victims[
        "Deployment"], ("Secret", "s"): None, ("Ingress", "i"): ours}, o.uid, o.address)
    assert found == [f"Service {o.api_name} (not made by this operator)", "Deployment d (owned by ReplicaSet x)"]


def test_one_stalled_instance_does_not_stall_the_resync_of_the_others(monkeypatch):
    """A store that never answers holds its instance's pass; the resync gives it its deadline and
    goes on, and starts no second pass for it while the first runs."""
    import threading
    import time

    from simplecqrs_operator import handlers

    release, started, seen = threading.Event(), [], []

    def reconcile(kube, namespace, name):
        started.append(name)
        if name == "stuck":
            release.wait(10)
        seen.append(name)

    class Kube:
        def orderservices(self):
            return [{"metadata": {"namespace": "shop", "name": n}} for n in ("stuck", "ok")]

    stop = threading.Event()
    monkeypatch.setattr(handlers.reconcile, "reconcile", reconcile)
    monkeypatch.setattr(handlers, "RESYNC_DEADLINE_SECONDS", 0.2)
    loop = threading.Thread(target=handlers.resync_loop, args=(Kube(), stop, 0.05), daemon=True)
    loop.start()
    deadline = time.monotonic() + 5
    while seen.count("ok") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    release.set()
    loop.join(5)
    assert seen.count("ok") >= 3, seen            # the others kept their passes
    assert started.count("stuck") == 1, started   # never two passes of the stalled one


def test_the_charts_claim_only_kubernetes_versions_that_run_the_api_pods_prestop():
    """The API container's preStop `sleep` action is on by default from Kubernetes 1.30 (beta); the
    charts must not claim an older version, where the apiserver would refuse the Deployment."""
    api = children.api_deployment(osvc(), "h")["spec"]["template"]["spec"]["containers"][0]
    assert "sleep" in api["lifecycle"]["preStop"]
    for chart in ("simplecqrs", "simplecqrs-operator"):
        version = yaml.safe_load((ROOT / "charts" / chart / "Chart.yaml").read_text())["kubeVersion"]
        major, minor = re.match(r">=(\d+)\.(\d+)", version).groups()
        assert (int(major), int(minor)) >= (1, 30), (chart, version)


def test_the_pods_may_reach_only_the_cluster_dns_and_their_stores():
    o = osvc(mysql__host="mysql.db", mysql__port=3307, cassandra__contactPoints=["10.0.0.7", "cass.example.com"],
             kafka__bootstrapServers="local-kafka-bootstrap.kafka.svc:9095,10.0.0.9:31192",
             networkPolicy={"egressCIDRs": ["169.254.20.10/32"]})
    policy = children.network_policy(o)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    dns, mysql, cassandra, kafka, kafka_by_address, extra = policy["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {p["port"] for p in dns["ports"]} == {53, "dns", "dns-tcp"}     # the DNS pods' own ports
    assert mysql == {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}],
                     "ports": [{"protocol": "TCP", "port": 3307}]}
    assert cassandra["to"] == [{"ipBlock": {"cidr": "10.0.0.7/32"}}, {"ipBlock": {"cidr": "0.0.0.0/0"}}]
    assert kafka["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}]
    assert kafka_by_address == {"to": [{"ipBlock": {"cidr": "10.0.0.9/32"}}]}      # its brokers' other ports
    assert extra["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]        # at the stores' and DNS's ports only
    assert [p["port"] for p in extra["ports"]] == [53, 53, "dns", "dns-tcp", 3307, 9042, 9095]


def test_the_local_values_admit_the_stores_as_the_nodes_enforcer_sees_them():
    from scripts.stack import network

    for doc in (yaml.safe_load((ROOT / "charts/simplecqrs/values-local.yaml").read_text())["orderService"],
                EXAMPLE["spec"]):
        assert doc["networkPolicy"]["egressCIDRs"] == [network.STORES_SEEN_BY_POLICY]


def test_every_field_of_the_crd_is_described():
    """`kubectl explain orderservice.spec...` has no blank: every schema node says what it is."""
    missing = []

    def walk(node: dict, path: list[str]) -> None:
        if path and path != ["metadata"] and "description" not in node:
            missing.append(".".join(path))
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, [*path, key])
        if isinstance(node.get("items"), dict):
            for key, sub in (node["items"].get("properties") or {}).items():
                walk(sub, [*path, "[]", key])

    walk(SCHEMA, [])
    assert missing == [], f"fields without a description: {missing}"


def test_orderservices_come_from_kopfs_index_once_it_is_filled():
    """Before the first resource handler, the apiserver is listed; after, the index answers (no LIST
    per pass); an index that cannot be read falls back to the apiserver."""
    import kopf
    from simplecqrs_operator import handlers
    from simplecqrs_operator.kube import Kube

    listed = []

    class Api:   # the dynamic client's answer to a LIST, counted
        def get(self, **_):
            listed.append(1)
            return {"items": [{"metadata": {"name": "listed"}}]}

    kube = Kube(api=None)
    kube.resource = lambda kind, api_version=None: Api()
    index = {("shop", "a"): [{"metadata": {"name": "a"}}], ("shop", "b"): [{"metadata": {"name": "b"}}]}
    memo = kopf.Memo(kube=kube, index=index)
    assert [o["metadata"]["name"] for o in kube.orderservices()] == ["listed"] and len(listed) == 1
    handlers._use_index(memo)
    assert sorted(o["metadata"]["name"] for o in kube.orderservices()) == ["a", "b"] and len(listed) == 1

    class Changing(dict):   # kopf's event loop changed it during every read
        def values(self):
            raise RuntimeError("dictionary changed size during iteration")

    assert handlers.index_snapshot(Changing()) is None
    kube.index = lambda: handlers.index_snapshot(Changing())
    assert [o["metadata"]["name"] for o in kube.orderservices()] == ["listed"] and len(listed) == 2
