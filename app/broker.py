"""Kafka connection setup (kafka-python), shared by the outbox relay, the consumer,
the operator and the scripts: one place for producer, consumer and admin settings."""
from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from .config import KafkaSettings


def servers(s: KafkaSettings) -> list[str]:
    return [h.strip() for h in s.bootstrap_servers.split(",") if h.strip()]


def security(s: KafkaSettings) -> dict:
    """How every client of `s` authenticates: nothing on PLAINTEXT, else SASL with the user's
    name and password (SCRAM-SHA-512 for a KafkaUser of Strimzi's User Operator)."""
    protocol = (s.security_protocol or "PLAINTEXT").upper()
    if protocol not in ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SASL_PLAINTEXT or SASL_SSL, got {protocol!r}")
    if protocol == "PLAINTEXT":
        return {}
    if not s.sasl_username or not s.sasl_password:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    return dict(security_protocol=protocol, sasl_mechanism=s.sasl_mechanism,
                sasl_plain_username=s.sasl_username, sasl_plain_password=s.sasl_password)


# kafka-python's own client metrics (Sensor.record on every request and record: 3-7% of the relay's and
# the consumer's Python under load in the flame graphs) are read by nothing here: the relay and the
# consumer export their own Prometheus metrics (docs/performance.md).
NO_CLIENT_METRICS = {"metrics_enabled": False}


def producer(s: KafkaSettings, **overrides) -> KafkaProducer:
    """Durable and ordered: acks from all in-sync replicas, idempotent, lightly batched, compressed
    as KAFKA_COMPRESSION says.

    max_block_ms bounds how long send() may block on metadata while Kafka is down,
    so a relay thread notices the outage in seconds rather than a minute.
    """
    cfg = dict(
        bootstrap_servers=servers(s), acks="all", enable_idempotence=True,
        compression_type=None if s.compression in ("", "none") else s.compression, linger_ms=s.linger_ms, batch_size=64 * 1024,
        max_block_ms=5000, request_timeout_ms=10000, delivery_timeout_ms=30000,
        max_in_flight_requests_per_connection=5, retry_backoff_ms=200, reconnect_backoff_max_ms=5000,
        bootstrap_timeout_ms=5000, client_id="simplecqrs-outbox", **NO_CLIENT_METRICS, **security(s),
    )
    cfg.update(overrides)
    return KafkaProducer(**cfg)


def consumer(s: KafkaSettings, *, group_id: str | None, **overrides) -> KafkaConsumer:
    """Manual commits only (never what poll() returned, only what was projected);
    a new group starts from the earliest offset so no event published before it is skipped.
    Metadata every 30 s (the default is 5 min): partitions added to the topic (the operator grows
    it when spec.kafka.partitions does) are assigned and consumed within half a minute."""
    cfg = dict(
        bootstrap_servers=servers(s), group_id=group_id, enable_auto_commit=False, metadata_max_age_ms=30000,
        auto_offset_reset="earliest", max_poll_records=500, max_poll_interval_ms=300000,
        session_timeout_ms=10000, heartbeat_interval_ms=3000, request_timeout_ms=30500,
        reconnect_backoff_max_ms=5000, client_id="simplecqrs-consumer", **NO_CLIENT_METRICS, **security(s),
    )
    cfg.update(overrides)
    return KafkaConsumer(**cfg)


def admin(s: KafkaSettings, **overrides) -> KafkaAdminClient:
    cfg = dict(bootstrap_servers=servers(s), request_timeout_ms=15000, client_id="simplecqrs-admin", **security(s))
    cfg.update(overrides)
    return KafkaAdminClient(**cfg)


def ensure_topic(client: KafkaAdminClient, name: str, partitions: int, replication: int = 1,
                 config: dict[str, str] | None = None) -> str:
    """Create the topic or grow its partitions (never shrink); returns what was done.
    Looks first: an existing topic with enough partitions takes metadata requests only."""
    if name not in client.list_topics():
        try:
            client.create_topics([NewTopic(name, partitions, replication, topic_configs=config or {})])
            return "created"
        except TopicAlreadyExistsError:         # created meanwhile by someone else
            pass
    current = partition_count(client, name)
    if current < partitions:
        client.create_partitions({name: NewPartitions(total_count=partitions)})
        return f"partitions {current} -> {partitions}"
    return "unchanged"


def partition_count(client: KafkaAdminClient, name: str) -> int:
    meta = client.describe_topics([name])
    return len(meta[0]["partitions"])


def ensure_topic_config(client: KafkaAdminClient, name: str, config: dict[str, str]) -> dict[str, str]:
    """Set the given topic configs where they differ (other keys keep their values); returns what changed."""
    if not config:
        return {}
    described = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name, list(config))],
                                        config_filter="all")
    current = {key: entry["value"] for key, entry in described["topic"][name].items()}
    changes = {key: value for key, value in config.items() if current.get(key) != value}
    if changes:
        result = client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(changes))])
        if result["topic"][name] != "OK":
            raise RuntimeError(f"altering the config of topic {name} failed: {result['topic'][name]}")
    return changes
