"""Every setting simplecqrs reads, in one place.

All come from environment variables with safe defaults; nothing secret has a
default.  The README's configuration table lists the same names, and the Helm
charts, manifests, operator and local scripts set exactly these.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None


RELAYS = ("binlog", "poll")
DEFAULT_RELAY = "binlog"  # measured against the poller: README, "Outbox relays"


def _relay_kind() -> str:
    kind = _env("OUTBOX_RELAY", DEFAULT_RELAY).strip().lower()
    if kind not in RELAYS:
        raise ValueError(f"environment variable OUTBOX_RELAY must be one of {', '.join(RELAYS)}, got {kind!r}")
    return kind


@dataclass(frozen=True)
class MySQLSettings:
    host: str = field(default_factory=lambda: _env("MYSQL_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("MYSQL_PORT", 3306))
    database: str = field(default_factory=lambda: _env("MYSQL_DATABASE", "simplecqrs_w"))
    user: str = field(default_factory=lambda: _env("MYSQL_USER"))
    password: str = field(default_factory=lambda: _env("MYSQL_PASSWORD"), repr=False)
    admin_user: str = field(default_factory=lambda: _env("MYSQL_ADMIN_USER"))
    admin_password: str = field(default_factory=lambda: _env("MYSQL_ADMIN_PASSWORD"), repr=False)
    connect_timeout: float = field(default_factory=lambda: _float("MYSQL_CONNECT_TIMEOUT", 3.0))
    # DISABLED | PREFERRED | REQUIRED | VERIFY_CA | VERIFY_IDENTITY; empty: VERIFY_CA when a CA
    # file is given, else PREFERRED (app/writemodel/db.py, tls_args).
    ssl_mode: str = field(default_factory=lambda: _env("MYSQL_SSL_MODE"))
    ssl_ca: str = field(default_factory=lambda: _env("MYSQL_SSL_CA"))


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    topic: str = field(default_factory=lambda: _env("KAFKA_TOPIC", "OnNewOrder"))
    dead_letter_topic: str = field(default_factory=lambda: _env("KAFKA_DLQ_TOPIC", "OnNewOrder.DLQ"))
    consumer_group: str = field(default_factory=lambda: _env("KAFKA_CONSUMER_GROUP", "simplecqrs-projector"))
    linger_ms: int = field(default_factory=lambda: _int("KAFKA_LINGER_MS", 5))
    compression: str = field(default_factory=lambda: _env("KAFKA_COMPRESSION", "lz4"))
    # PLAINTEXT | SASL_PLAINTEXT | SASL_SSL; with SASL, the mechanism (SCRAM-SHA-512 for the users
    # Strimzi's User Operator makes) and the user's name and password (app/broker.py, security).
    security_protocol: str = field(default_factory=lambda: _env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"))
    sasl_mechanism: str = field(default_factory=lambda: _env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"))
    sasl_username: str = field(default_factory=lambda: _env("KAFKA_SASL_USERNAME"))
    sasl_password: str = field(default_factory=lambda: _env("KAFKA_SASL_PASSWORD"), repr=False)


@dataclass(frozen=True)
class CassandraSettings:
    contact_points: str = field(default_factory=lambda: _env("CASSANDRA_CONTACT_POINTS", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("CASSANDRA_PORT", 9042))
    local_dc: str = field(default_factory=lambda: _env("CASSANDRA_LOCAL_DC", "datacenter1"))
    keyspace: str = field(default_factory=lambda: _env("CASSANDRA_KEYSPACE", "simplecqrs_r"))
    # "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3,dc2=3"
    replication: str = field(default_factory=lambda: _env("CASSANDRA_REPLICATION", "SimpleStrategy:1"))
    username: str = field(default_factory=lambda: _env("CASSANDRA_USERNAME"))
    password: str = field(default_factory=lambda: _env("CASSANDRA_PASSWORD"), repr=False)

    @property
    def hosts(self) -> list[str]:
        return [h.strip() for h in self.contact_points.split(",") if h.strip()]


@dataclass(frozen=True)
class ApiSettings:
    # command | query | both: which routes this process serves.
    role: str = field(default_factory=lambda: _env("API_ROLE", "both"))
    max_body_bytes: int = field(default_factory=lambda: _int("API_MAX_BODY_BYTES", 16 * 1024))
    max_wait_ms: int = field(default_factory=lambda: _int("API_MAX_WAIT_MS", 5000))
    retry_after_s: int = field(default_factory=lambda: _int("API_RETRY_AFTER_SECONDS", 2))


@dataclass(frozen=True)
class OutboxSettings:
    # binlog: follow MySQL's row-based binlog (app/relay/binlog.py); poll: poll the outbox table
    # (app/relay/poll.py), for a server whose binlog the relay may not read (README, "Outbox relays").
    relay: str = field(default_factory=lambda: _relay_kind())
    batch_size: int = field(default_factory=lambda: _int("OUTBOX_BATCH_SIZE", 500))
    poll_interval_s: float = field(default_factory=lambda: _float("OUTBOX_POLL_INTERVAL_SECONDS", 0.02))
    retention_hours: float = field(default_factory=lambda: _float("OUTBOX_RETENTION_HOURS", 24.0))
    max_backoff_s: float = field(default_factory=lambda: _float("OUTBOX_MAX_BACKOFF_SECONDS", 30.0))
    # /readyz of the API reports publishing as degraded once the oldest unpublished event is this old.
    degraded_after_s: float = field(default_factory=lambda: _float("OUTBOX_DEGRADED_AFTER_SECONDS", 30.0))
    # /healthz fails after this long without publishing while a backlog waits and Kafka answers
    # (app/liveness.py).  Keep it above the 15 s flush timeout and OUTBOX_MAX_BACKOFF_SECONDS.
    stall_s: float = field(default_factory=lambda: _float("OUTBOX_STALL_SECONDS", 60.0))
    metrics_port: int = field(default_factory=lambda: _int("OUTBOX_METRICS_PORT", 9101))
    metrics_host: str = field(default_factory=lambda: _env("OUTBOX_METRICS_HOST", "127.0.0.1"))


@dataclass(frozen=True)
class ConsumerSettings:
    max_in_flight: int = field(default_factory=lambda: _int("CONSUMER_MAX_IN_FLIGHT", 128))
    max_poll_records: int = field(default_factory=lambda: _int("CONSUMER_MAX_POLL_RECORDS", 500))
    # /healthz fails after this long without projecting while partitions lag and Kafka answers.
    stall_s: float = field(default_factory=lambda: _float("CONSUMER_STALL_SECONDS", 60.0))
    # Projected offsets are committed at most this often (consumer/projector.py says why).
    commit_interval_s: float = field(default_factory=lambda: _float("CONSUMER_COMMIT_INTERVAL_SECONDS", 1.0))
    metrics_port: int = field(default_factory=lambda: _int("CONSUMER_METRICS_PORT", 9102))
    metrics_host: str = field(default_factory=lambda: _env("CONSUMER_METRICS_HOST", "127.0.0.1"))


@dataclass(frozen=True)
class Settings:
    mysql: MySQLSettings = field(default_factory=MySQLSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = field(default_factory=CassandraSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "INFO"))


def load() -> Settings:
    """Read the environment now (tests build Settings with their own values instead)."""
    return Settings()
