"""Pure functions: an OrderService in, the manifests of its child objects out.

No API calls here, so every manifest is unit-testable.  Configuration reaches the
containers as the environment variables of app/config.py (the names the local stack
and the charts use); credentials only through secretKeyRef.
"""
from __future__ import annotations

import base64
import ipaddress
from typing import Any

from .addresses import canonical_host
from .resource import KAFKA_ROLES, MYSQL_CA_KEY, OWNER_ANNOTATION, OrderService

API_PORT = 8080
SERVICE_PORT = 80        # the API Service's port (name http), what the Ingress and HTTPRoute send to
RELAY_PORT = 9101
METRICS_PORT = 9102
UID = 10001  # the image's non-root user

# The image's one command line (app/cli.py); `simplecqrs api` execs gunicorn.
API_COMMAND = ["simplecqrs", "api"]
RELAY_COMMAND = ["simplecqrs", "relay"]
CONSUMER_COMMAND = ["simplecqrs", "consume"]
RELAY_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def _meta(osvc: OrderService, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": osvc.namespace, "labels": osvc.labels(component),
            "ownerReferences": [osvc.owner_reference]}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": str(v)} for k, v in values.items()]


KAFKA_SASL = {"scram-sha-512": ("SASL_PLAINTEXT", "SCRAM-SHA-512")}  # authentication -> protocol, mechanism


def kafka_env(osvc: OrderService, role: str | None = None) -> list[dict[str, Any]]:
    """Where the events are; with Kafka users (spec.kafka.strimzi.authentication), `role`'s own
    user from the Secret the operator keeps in this namespace.  role None: no Kafka access."""
    k = osvc.kafka
    env = _env({"KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers, "KAFKA_TOPIC": k.topic,
                "KAFKA_DLQ_TOPIC": k.dead_letter_topic, "KAFKA_CONSUMER_GROUP": k.consumer_group})
    if k.users and role:
        protocol, mechanism = KAFKA_SASL[k.authentication]
        env += _env({"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism}) + [
            _secret_env("KAFKA_SASL_USERNAME", osvc.kafka_secret(role), "username"),
            _secret_env("KAFKA_SASL_PASSWORD", osvc.kafka_secret(role), "password")]
    return env


def cassandra_env(osvc: OrderService) -> list[dict[str, Any]]:
    c = osvc.cassandra
    env = _env({"CASSANDRA_CONTACT_POINTS": ",".join(c.contact_points), "CASSANDRA_PORT": c.port,
                "CASSANDRA_LOCAL_DC": c.local_dc, "CASSANDRA_KEYSPACE": c.keyspace,
                "CASSANDRA_REPLICATION": c.replication_setting})
    if c.credentials_secret:
        ref = c.credentials_secret
        env += [_secret_env("CASSANDRA_USERNAME", ref.name, "username"),
                _secret_env("CASSANDRA_PASSWORD", ref.name, "password")]
    return env


MYSQL_CA_DIR = "/etc/simplecqrs/mysql-ca"  # the CA Secret's mount in the API and relay containers


RELAY_KEYS = ("relay-username", "relay-password")  # the relay's user in the credentials Secret


def mysql_env(osvc: OrderService, user: str = "app") -> list[dict[str, Any]]:
    """The write store's settings, logged in as the application (`app`) or the outbox relay (`relay`)."""
    m = osvc.mysql
    tls = {"MYSQL_SSL_MODE": m.tls_mode} if m.tls_mode else {}
    if m.ca_secret:
        tls["MYSQL_SSL_CA"] = f"{MYSQL_CA_DIR}/{MYSQL_CA_KEY}"
    keys = RELAY_KEYS if user == "relay" else ("username", "password")
    return _env({"MYSQL_HOST": m.host, "MYSQL_PORT": m.port, "MYSQL_DATABASE": m.database,
                 "OUTBOX_RELAY": m.outbox_relay, **tls}) + [
        _secret_env("MYSQL_USER", osvc.credentials_secret, keys[0]),
        _secret_env("MYSQL_PASSWORD", osvc.credentials_secret, keys[1])]


def _with_mysql_ca(osvc: OrderService, deployment: dict[str, Any], containers: tuple[str, ...]) -> None:
    """Mount spec.mysql.tls.caSecretRef (its one key) where MYSQL_SSL_CA points, in `containers`."""
    ref = osvc.mysql.ca_secret
    if not ref:
        return
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "mysql-ca", "secret": {"secretName": ref.name, "defaultMode": 0o444,
                                                          "items": [{"key": MYSQL_CA_KEY, "path": MYSQL_CA_KEY}]}})
    for c in pod["containers"]:
        if c["name"] in containers:
            c["volumeMounts"].append({"name": "mysql-ca", "mountPath": MYSQL_CA_DIR, "readOnly": True})


API_DRAIN_SECONDS = 10  # preStop sleep of the API container


def _container(name: str, image: str, command: list[str], env: list, resources: dict, port: int,
               port_name: str, *, readiness: bool = True) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": port_name}, "periodSeconds": 10, "timeoutSeconds": 3,
             "failureThreshold": 3}
    container = {
        "name": name, "image": image, "command": command, "env": env, "resources": resources,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": {**probe, "initialDelaySeconds": 10},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if readiness:
        container["readinessProbe"] = {**probe, "httpGet": {"path": "/readyz", "port": port_name},
                                       "failureThreshold": 2}
    return container


def _deployment(osvc: OrderService, name: str, component: str, replicas: int | None, containers: list[dict],
                annotations: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": osvc.selector(component)},
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": osvc.labels(component), "annotations": annotations},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "terminationGracePeriodSeconds": 30,
                "containers": containers,
                # The only writable paths: gunicorn's worker files, Prometheus multiprocess files.
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            },
        },
    }
    pod = spec["template"]["spec"]
    if osvc.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in osvc.image_pull_secrets]
    pod.update(osvc.placement)  # nodeSelector, tolerations, affinity, topologySpreadConstraints
    if replicas is not None:  # left out while an HPA owns the replica count (reconcile.keep_live_replicas)
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(osvc, name, component), "spec": spec}


def _kafka_hash(kafka_hashes: dict[str, str], role: str) -> dict[str, str]:
    return {"simplecqrs.io/kafka-credentials-hash": kafka_hashes[role]} if role in kafka_hashes else {}


def api_deployment(osvc: OrderService, credentials_hash: str, kafka_hashes: dict[str, str] | None = None) -> dict[str, Any]:
    """The API pods: gunicorn, and the outbox relay beside it (app/relay/: its own process,
    never inside the request workers).  The relay has no readiness probe: while Kafka is down
    the API keeps taking orders, so the pod stays in the Service.  Only the relay talks to Kafka."""
    kafka_hashes = kafka_hashes or {}
    env = mysql_env(osvc) + kafka_env(osvc) + cassandra_env(osvc) + _env({
        "API_ROLE": "both", "API_BIND": f"0.0.0.0:{API_PORT}", "PROMETHEUS_MULTIPROC_DIR": "/tmp/metrics"})
    api = _container("api", osvc.api.image, API_COMMAND, env, osvc.api.resources, API_PORT, "http")
    # Drain before stopping: a terminating pod leaves the EndpointSlices at once, but kube-proxy
    # and the ingress controller learn it a moment later and would still send it requests that a
    # stopped gunicorn refuses (502s on every rollout).  gunicorn gets SIGTERM after the sleep.
    api["lifecycle"] = {"preStop": {"sleep": {"seconds": API_DRAIN_SECONDS}}}
    relay_env = mysql_env(osvc, "relay") + kafka_env(osvc, "relay") + _env({
        "OUTBOX_METRICS_HOST": "0.0.0.0", "OUTBOX_METRICS_PORT": RELAY_PORT})
    relay = _container("relay", osvc.api.image, RELAY_COMMAND, relay_env, RELAY_RESOURCES, RELAY_PORT,
                       "relay-metrics", readiness=False)
    # A new password (a re-created credentials Secret, a Kafka user's new password) rolls the pods,
    # which read it at start.
    deployment = _deployment(osvc, osvc.api_name, "api", osvc.api.replicas, [api, relay],
                             {"simplecqrs.io/credentials-hash": credentials_hash,
                              **_kafka_hash(kafka_hashes, "relay")})
    # The drain, then gunicorn's graceful timeout (GUNICORN_GRACEFUL_TIMEOUT, 20 s), then a margin.
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = API_DRAIN_SECONDS + 20 + 10
    _with_mysql_ca(osvc, deployment, ("api", "relay"))
    return deployment


def consumer_deployment(osvc: OrderService, kafka_hashes: dict[str, str] | None = None) -> dict[str, Any]:
    env = kafka_env(osvc, "consumer") + cassandra_env(osvc) + _env({
        "CONSUMER_METRICS_HOST": "0.0.0.0", "CONSUMER_METRICS_PORT": METRICS_PORT})
    container = _container("consumer", osvc.consumer.image, CONSUMER_COMMAND, env, osvc.consumer.resources,
                           METRICS_PORT, "metrics")
    replicas = None if osvc.consumer.autoscaling else osvc.consumer.replicas
    return _deployment(osvc, osvc.consumer_name, "consumer", replicas, [container],
                       _kafka_hash(kafka_hashes or {}, "consumer"))


def api_service(osvc: OrderService) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(osvc, osvc.api_name, "api"), "spec": {
        "type": "ClusterIP", "selector": osvc.selector("api"),
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def api_ingress(osvc: OrderService) -> dict[str, Any] | None:
    ing = osvc.api.ingress
    if not ing:
        return None
    spec: dict[str, Any] = {"rules": [{"host": ing["host"], "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": osvc.api_name, "port": {"name": "http"}}}}]}}]}
    if ing.get("className"):
        spec["ingressClassName"] = ing["className"]
    if ing.get("tlsSecretName"):
        spec["tls"] = [{"hosts": [ing["host"]], "secretName": ing["tlsSecretName"]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": _meta(osvc, osvc.api_name, "api"),
            "spec": spec}


def api_http_route(osvc: OrderService) -> dict[str, Any] | None:
    """Gateway API: the route from the Gateways the spec names to the API Service (same namespace, so
    no ReferenceGrant is needed).  Whether a Gateway admits it is its owner's choice (allowedRoutes);
    the route's status says so."""
    route = osvc.api.http_route
    if not route:
        return None
    parents = [{k: ref[k] for k in ("name", "namespace", "sectionName") if ref.get(k)} for ref in route["parentRefs"]]
    spec: dict[str, Any] = {"parentRefs": parents, "rules": [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"name": osvc.api_name, "port": SERVICE_PORT}]}]}
    if route.get("hostnames"):
        spec["hostnames"] = list(route["hostnames"])
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": _meta(osvc, osvc.api_name, "api"), "spec": spec}


def consumer_hpa(osvc: OrderService) -> dict[str, Any] | None:
    auto = osvc.consumer.autoscaling
    if not auto:
        return None
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(osvc, osvc.consumer_name, "consumer"), "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": osvc.consumer_name},
                "minReplicas": auto["minReplicas"], "maxReplicas": auto["maxReplicas"],
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": auto["targetCPUUtilizationPercentage"]}}}]}}


def pdb(osvc: OrderService, component: str) -> dict[str, Any]:
    name = osvc.api_name if component == "api" else osvc.consumer_name
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(osvc, name, component),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": osvc.selector(component)}}}


API_CLIENT_LABEL = "simplecqrs.io/api-client"


def _peer(host: str, namespace: str) -> dict[str, Any]:
    """A NetworkPolicy peer for a store's host: an address is itself; a Service name is its namespace
    (a policy cannot name a Service: any pod of that namespace, on the store's port); any other name
    may resolve to any address (the port still limits it)."""
    h = canonical_host(host, namespace)
    try:
        address = ipaddress.ip_address(h)
        return {"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}
    except ValueError:
        pass
    labels = h.split(".")
    if len(labels) >= 4 and labels[2] == "svc":
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": labels[1]}}}
    return {"ipBlock": {"cidr": "0.0.0.0/0"}}


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    return host, int(port)


def egress_rules(osvc: OrderService) -> list[dict[str, Any]]:
    """Where the pods may connect: the cluster DNS, and each store at its port (MySQL, Cassandra's
    contact points, Kafka's bootstrap servers; an addressed Kafka on any port of that address: its
    brokers advertise ports of their own there); and spec.networkPolicy.egressCIDRs at the same
    ports (the stores' and DNS's): where those appear at other addresses (an address translation
    on the way, a node-local DNS cache)."""
    tcp = lambda port: {"protocol": "TCP", "port": port}  # noqa: E731
    ns, m, c, k = osvc.namespace, osvc.mysql, osvc.cassandra, osvc.kafka
    # The policy sees the DNS pods' own ports, after the Service's translation: 53, or the ports named
    # dns/dns-tcp as CoreDNS's manifests name them (the local node's listens on 1053, as non-root).
    dns = {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, tcp(53), {"protocol": "UDP", "port": "dns"}, tcp("dns-tcp")]}
    rules = [dns, {"to": [_peer(m.host, ns)], "ports": [tcp(m.port)]},
             {"to": [_peer(h, ns) for h in c.contact_points], "ports": [tcp(c.port)]}]
    for host, port in map(_host_port, k.bootstrap_servers.split(",")):
        peer = _peer(host, ns)
        rules.append({"to": [peer]} if "cidr" in peer.get("ipBlock", {}) and peer["ipBlock"]["cidr"] != "0.0.0.0/0"
                     else {"to": [peer], "ports": [tcp(port)]})
    if osvc.egress_cidrs:
        ports = [p for rule in rules for p in rule.get("ports", [])]
        rules.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in osvc.egress_cidrs],
                      "ports": [p for i, p in enumerate(ports) if p not in ports[:i]]})
    unique: list[dict[str, Any]] = []
    for rule in rules:
        if rule not in unique:
            unique.append(rule)
    return unique


def network_policy(osvc: OrderService) -> dict[str, Any]:
    """The API port: from the ingress controller's namespaces or address ranges, labelled clients of this namespace and
    the monitoring namespaces; the relay's and consumer's metrics ports: from the monitoring namespaces.
    Nothing else reaches the pods (the stores are the pods' own outbound connections), and the pods
    reach nothing but the cluster DNS and their stores (egress_rules)."""
    def namespaces(names) -> list[dict[str, Any]]:  # none for an empty list (`In` needs values)
        return [{"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(names)}]}}] if names else []

    monitoring = namespaces(osvc.monitoring_namespaces)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(osvc, osvc.name, "network-policy"), "spec": {
                "podSelector": {"matchLabels": osvc.instance_selector},
                "policyTypes": ["Ingress", "Egress"],
                "egress": egress_rules(osvc),
                "ingress": [
                    {"ports": [{"protocol": "TCP", "port": API_PORT}],
                     "from": [*namespaces(osvc.ingress_namespaces),
                              *[{"ipBlock": {"cidr": cidr}} for cidr in osvc.ingress_cidrs],
                              {"podSelector": {"matchLabels": {API_CLIENT_LABEL: "true"}}}, *monitoring]},
                    # No monitoring namespace: an empty `from` would admit everyone, so the rule goes.
                    *([{"ports": [{"protocol": "TCP", "port": port} for port in (RELAY_PORT, METRICS_PORT)],
                        "from": monitoring}] if monitoring else []),
                ]}}


def workloads(osvc: OrderService, credentials_hash: str,
              kafka_hashes: dict[str, str] | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """(manifests to apply, (kind, name) of optional children to delete because the spec dropped them)."""
    wanted = [api_deployment(osvc, credentials_hash, kafka_hashes), consumer_deployment(osvc, kafka_hashes),
              api_service(osvc),
              pdb(osvc, "api"), pdb(osvc, "consumer"), network_policy(osvc)]
    unwanted = []
    for kind, name, manifest in (("Ingress", osvc.api_name, api_ingress(osvc)),
                                 ("HTTPRoute", osvc.api_name, api_http_route(osvc)),
                                 ("HorizontalPodAutoscaler", osvc.consumer_name, consumer_hpa(osvc))):
        if manifest:
            wanted.append(manifest)
        else:
            unwanted.append((kind, name))
    return wanted, unwanted


def namespace_children(osvc: OrderService) -> list[tuple[str, str]]:
    """(kind, name) of every object the instance writes in its namespace for its spec: the workloads,
    the credentials Secret and the copies of the Kafka users' Secrets.  What
    ownership.foreign_children checks before a pass writes anything."""
    wanted, _ = workloads(osvc, "", {role: "" for role in KAFKA_ROLES})
    secrets_ = [osvc.credentials_secret] + [osvc.kafka_secret(role) for role in KAFKA_ROLES if osvc.kafka.users]
    return [(m["kind"], m["metadata"]["name"]) for m in wanted] + [("Secret", s) for s in secrets_]


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def credentials_secret(osvc: OrderService, password: str, relay_password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(osvc, osvc.credentials_secret, "credentials"),
            "data": {"username": _b64(osvc.mysql.app_user), "password": _b64(password),
                     RELAY_KEYS[0]: _b64(osvc.mysql.relay_user), RELAY_KEYS[1]: _b64(relay_password)}}


def kafka_topics(osvc: OrderService, api_version: str) -> list[dict[str, Any]]:
    """Strimzi KafkaTopics for the events and dead-letter topics.  They live in the Kafka cluster's
    namespace, where owner references cannot point back here: the operator deletes them itself
    (deletionPolicy Delete) and otherwise leaves them, so Retain keeps the topics."""
    k = osvc.kafka
    labels = {**osvc.labels("topic"), "strimzi.io/cluster": k.strimzi_cluster}
    out = []
    for obj_name, topic in osvc.kafka_topic_names().items():
        events = topic == k.topic
        spec: dict[str, Any] = {"topicName": topic, "partitions": k.partitions if events else 1,
                                "replicas": k.replication_factor}
        if events and k.config:
            spec["config"] = dict(k.config)
        out.append({"apiVersion": api_version, "kind": "KafkaTopic", "metadata": {
            "name": obj_name, "namespace": k.strimzi_namespace, "labels": labels,
            "annotations": {OWNER_ANNOTATION: osvc.address}}, "spec": spec})
    return out


def kafka_user_acls(osvc: OrderService, role: str) -> list[dict[str, Any]]:
    """What each role may do, and nothing more: the relay writes the events topic (Write also
    covers the idempotent producer since Kafka 3.0, KIP-679); the consumers read it in their group
    and write the dead-letter topic.  Describe: the clients' metadata requests."""
    k = osvc.kafka

    def acl(kind: str, name: str, *operations: str) -> dict[str, Any]:
        return {"resource": {"type": kind, "name": name, "patternType": "literal"},
                "operations": list(operations), "host": "*"}

    if role == "relay":
        return [acl("topic", k.topic, "Write", "Describe")]
    return [acl("topic", k.topic, "Read", "Describe"), acl("group", k.consumer_group, "Read"),
            acl("topic", k.dead_letter_topic, "Write", "Describe")]


def kafka_users(osvc: OrderService, api_version: str) -> list[dict[str, Any]]:
    """Strimzi KafkaUsers, one per role, beside the KafkaTopics in the Kafka cluster's namespace (so,
    like them, without owner references: the operator deletes them under deletionPolicy Delete).
    Strimzi's User Operator makes the SCRAM credential, the ACLs and a Secret of the same name."""
    k = osvc.kafka
    labels = {**osvc.labels("kafka-user"), "strimzi.io/cluster": k.strimzi_cluster}
    return [{"apiVersion": api_version, "kind": "KafkaUser", "metadata": {
        "name": osvc.kafka_user_name(role), "namespace": k.strimzi_namespace, "labels": labels,
        "annotations": {OWNER_ANNOTATION: osvc.address}}, "spec": {
        "authentication": {"type": k.authentication},
        "authorization": {"type": "simple", "acls": kafka_user_acls(osvc, role)}}} for role in KAFKA_ROLES]


def kafka_user_secret(osvc: OrderService, role: str, password: str) -> dict[str, Any]:
    """This namespace's copy of a role's Kafka credentials (pods cannot mount another namespace's)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(osvc, osvc.kafka_secret(role), "kafka-user"),
            "data": {"username": _b64(osvc.kafka_user_name(role)), "password": _b64(password)}}
