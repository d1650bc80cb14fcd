"""The OrderService custom resource as a typed object, so nothing else digs through nested dicts.

Defaults live in the CRD (k8s/crd/orderservice.yaml): the apiserver fills them in, so a
body read from the cluster always has them.  The few values derived from others (the
dead-letter topic, the consumer group, the app user) are derived here, once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.config import DEFAULT_RELAY, CassandraSettings, KafkaSettings, MySQLSettings

GROUP = "simplecqrs.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "OrderService"
PLURAL = "orderservices"

APP = "simplecqrs"
MANAGER = "simplecqrs-operator"  # field manager, managed-by label, event source


@dataclass(frozen=True)
class SecretRef:
    """A Secret of the OrderService's namespace holding `username` and `password` (fixed keys).

    The Secret must carry the label CREDENTIALS_LABEL=true: whoever may create an OrderService
    must not be able to make the operator read an arbitrary Secret of the namespace and send its
    values to an address of their choosing (Strimzi and cert-manager guard similar references)."""

    name: str

    @classmethod
    def from_spec(cls, spec: dict | None) -> SecretRef | None:
        return cls(spec["name"]) if spec else None


CREDENTIALS_LABEL = f"{GROUP}/credentials"
# On the Strimzi objects in the Kafka cluster's namespace ("<namespace>/<name>" of the OrderService),
# where owner references cannot point across namespaces: the operator changes or deletes only those
# that carry its instance's value (ownership.owned).
OWNER_ANNOTATION = f"{GROUP}/owner"
MYSQL_CA_KEY = "ca.crt"  # the key cert-manager and kubernetes.io/tls Secrets use
KAFKA_ROLES = ("relay", "consumer")  # the processes that talk to Kafka: a KafkaUser each


@dataclass(frozen=True)
class Kafka:
    bootstrap_servers: str
    topic: str
    partitions: int
    replication_factor: int
    consumer_group: str
    config: dict[str, str]
    strimzi_cluster: str | None
    strimzi_namespace: str | None
    authentication: str = ""    # "" (none) or "scram-sha-512": a KafkaUser per role (spec.kafka.strimzi)

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.DLQ"

    @property
    def users(self) -> bool:
        return bool(self.strimzi_cluster and self.authentication)


@dataclass(frozen=True)
class MySQL:
    host: str
    port: int
    database: str
    admin_secret: SecretRef
    tls_mode: str = ""                  # MYSQL_SSL_MODE; empty: VERIFY_CA with a CA, else PREFERRED
    ca_secret: SecretRef | None = None  # key MYSQL_CA_KEY: the CA the server's certificate must chain to
    outbox_relay: str = DEFAULT_RELAY   # OUTBOX_RELAY: binlog or poll

    @property
    def verifies_server(self) -> bool:
        """Whether connections check the server's certificate (a CA given, or a VERIFY_* mode)."""
        return self.tls_mode in ("VERIFY_CA", "VERIFY_IDENTITY") or (not self.tls_mode and self.ca_secret is not None)

    @property
    def app_user(self) -> str:
        return f"{self.database}_app"  # database has at most 28 characters; MySQL user names 32

    @property
    def relay_user(self) -> str:
        """The outbox relay's own user: only the outbox tables (and, for the binlog, replication)."""
        return f"{self.database}_rpl"


@dataclass(frozen=True)
class Cassandra:
    contact_points: list[str]
    port: int
    local_dc: str
    keyspace: str
    replication: dict[str, Any]
    credentials_secret: SecretRef | None

    @property
    def replication_setting(self) -> str:
        """The CASSANDRA_REPLICATION form: 'SimpleStrategy:1' or 'NetworkTopologyStrategy:dc1=3,dc2=3'."""
        if self.replication["strategy"] == "SimpleStrategy":
            return f"SimpleStrategy:{self.replication['replicationFactor']}"
        dcs = ",".join(f"{dc}={rf}" for dc, rf in sorted(self.replication["datacenters"].items()))
        return f"NetworkTopologyStrategy:{dcs}"


@dataclass(frozen=True)
class Workload:
    image: str
    replicas: int
    resources: dict[str, Any]
    ingress: dict[str, str] | None = None
    http_route: dict[str, Any] | None = None     # Gateway API: parentRefs, hostnames
    autoscaling: dict[str, int] | None = None


@dataclass(frozen=True)
class OrderService:
    name: str
    namespace: str
    uid: str
    generation: int
    deletion_policy: str
    kafka: Kafka
    mysql: MySQL
    cassandra: Cassandra
    api: Workload
    consumer: Workload
    status: dict[str, Any] = field(default_factory=dict)
    ingress_namespaces: tuple[str, ...] = ("traefik",)
    ingress_cidrs: tuple[str, ...] = ()
    egress_cidrs: tuple[str, ...] = ()
    monitoring_namespaces: tuple[str, ...] = ("monitoring",)
    image_pull_secrets: tuple[str, ...] = ()
    placement: dict[str, Any] = field(default_factory=dict)   # nodeSelector, tolerations, affinity, ...

    @classmethod
    def from_body(cls, body: dict) -> OrderService:
        meta, spec = body["metadata"], body["spec"]
        k, m, c = spec["kafka"], spec["mysql"], spec["cassandra"]
        api, consumer = spec.get("api", {}), spec.get("consumer", {})
        strimzi = k.get("strimzi") or {}
        return cls(
            name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
            generation=meta.get("generation", 0),
            deletion_policy=spec.get("deletionPolicy", "Retain"),
            kafka=Kafka(
                bootstrap_servers=k["bootstrapServers"], topic=k["topic"], partitions=k["partitions"],
                replication_factor=k["replicationFactor"],
                consumer_group=k.get("consumerGroup") or f"{meta['name']}-projector",
                config=dict(k.get("config") or {}),
                strimzi_cluster=strimzi.get("cluster"),
                strimzi_namespace=strimzi.get("namespace") or (meta["namespace"] if strimzi else None),
                authentication=(strimzi.get("authentication") or {}).get("type", "")),
            mysql=MySQL(host=m["host"], port=m["port"], database=m["database"],
                        admin_secret=SecretRef.from_spec(m["adminSecretRef"]),
                        tls_mode=(m.get("tls") or {}).get("mode", ""),
                        ca_secret=SecretRef.from_spec((m.get("tls") or {}).get("caSecretRef")),
                        outbox_relay=m.get("outboxRelay") or DEFAULT_RELAY),
            cassandra=Cassandra(
                contact_points=list(c["contactPoints"]), port=c["port"], local_dc=c["localDatacenter"],
                keyspace=c["keyspace"], replication=c["replication"],
                credentials_secret=SecretRef.from_spec(c.get("credentialsSecretRef"))),
            api=Workload(image=api["image"], replicas=api["replicas"], resources=api.get("resources", {}),
                         ingress=api.get("ingress"), http_route=api.get("httpRoute")),
            consumer=Workload(image=consumer["image"], replicas=consumer["replicas"],
                              resources=consumer.get("resources", {}), autoscaling=consumer.get("autoscaling")),
            status=body.get("status") or {},
            ingress_namespaces=tuple((spec.get("networkPolicy") or {}).get("ingressNamespaces", ["traefik"])),
            ingress_cidrs=tuple((spec.get("networkPolicy") or {}).get("ingressCIDRs", [])),
            egress_cidrs=tuple((spec.get("networkPolicy") or {}).get("egressCIDRs", [])),
            monitoring_namespaces=tuple((spec.get("networkPolicy") or {}).get("monitoringNamespaces", ["monitoring"])),
            image_pull_secrets=tuple(s["name"] for s in spec.get("imagePullSecrets") or []),
            placement={k: v for k, v in (spec.get("placement") or {}).items() if v},
        )

    # ------------------------------------------------------------ names of the children
    @property
    def api_name(self) -> str:
        return f"{self.name}-api"

    @property
    def consumer_name(self) -> str:
        return f"{self.name}-consumer"

    @property
    def address(self) -> str:
        """namespace/name: what the Strimzi objects' OWNER_ANNOTATION holds."""
        return f"{self.namespace}/{self.name}"

    @property
    def credentials_secret(self) -> str:
        """The Secret the operator owns: the generated MySQL users and passwords, the application's
        (username, password) and the outbox relay's (relay-username, relay-password)."""
        return f"{self.name}-mysql-app"

    def kafka_topic_names(self) -> dict[str, str]:
        """KafkaTopic object names -> Kafka topic names.  The KafkaTopics may live in another
        namespace (the Kafka cluster's), so their names carry this OrderService's namespace."""
        prefix = f"{self.namespace}.{self.name}"
        return {f"{prefix}.events": self.kafka.topic, f"{prefix}.dead-letter": self.kafka.dead_letter_topic}

    def kafka_user_name(self, role: str) -> str:
        """The KafkaUser (and Kafka principal User:<name>) of a role.  It lives in the Kafka
        cluster's namespace, so the name carries this OrderService's namespace, as the topics do."""
        return f"{self.namespace}.{self.name}.{role}"

    def kafka_secret(self, role: str) -> str:
        """The Secret in this namespace with the role's Kafka `username` and `password`: the
        operator's copy of the one Strimzi's User Operator makes beside the KafkaUser."""
        return f"{self.name}-kafka-{role}"

    # ------------------------------------------------------------ metadata of the children
    def labels(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": APP,
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": APP,
            "app.kubernetes.io/managed-by": MANAGER,
        }

    @property
    def instance_selector(self) -> dict[str, str]:
        """Every pod of this instance."""
        return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": self.name}

    def selector(self, component: str) -> dict[str, str]:
        """The immutable subset of labels a Deployment selects its pods by."""
        return {**self.instance_selector, "app.kubernetes.io/component": component}

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}

    @property
    def reference(self) -> dict[str, str]:
        """What kopf.event() needs to post an Event about this object."""
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {
            "name": self.name, "namespace": self.namespace, "uid": self.uid}}

    # ------------------------------------------------------------ settings for the store code in app/
    def mysql_settings(self, *, admin: tuple[str, str], app_password: str = "", ca_file: str = "") -> MySQLSettings:
        return MySQLSettings(host=self.mysql.host, port=self.mysql.port, database=self.mysql.database,
                             user=self.mysql.app_user, password=app_password,
                             admin_user=admin[0], admin_password=admin[1], connect_timeout=5.0,
                             ssl_mode=self.mysql.tls_mode, ssl_ca=ca_file)

    def cassandra_settings(self, credentials: tuple[str, str] | None = None) -> CassandraSettings:
        user, password = credentials or ("", "")
        return CassandraSettings(contact_points=",".join(self.cassandra.contact_points), port=self.cassandra.port,
                                 local_dc=self.cassandra.local_dc, keyspace=self.cassandra.keyspace,
                                 replication=self.cassandra.replication_setting, username=user, password=password)

    def kafka_settings(self) -> KafkaSettings:
        """The operator's own admin client: used only where Strimzi does not own the topics."""
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers, topic=self.kafka.topic,
                             dead_letter_topic=self.kafka.dead_letter_topic,
                             consumer_group=self.kafka.consumer_group)
