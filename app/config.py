"""Every setting simplecqrs reads, declared once in VARIABLES, one environment variable a line.

Each entry names the variable, the settings attribute it fills ("mysql.port": MySQLSettings.port),
its type and its default; the settings classes below are frozen dataclasses made from it, and read
the environment when they are built (tests build them with their own values instead).  Nothing
secret has a default.  The README's configuration table lists the same names and defaults
(tests/test_settings.py holds them together), and the Helm charts, manifests, operator and local
scripts set exactly these.

Adding a setting: one line in VARIABLES, and its row in the README's table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

RELAYS = ("binlog", "poll")
DEFAULT_RELAY = "binlog"  # measured against the poller: README, "Outbox relays"


@dataclass(frozen=True)
class Var:
    """One environment variable.  Unset, it takes `default`; set, it is parsed by `type`:
    str as given (empty stays empty), int and float as numbers (empty means the default),
    and with `choices` a word, stripped and lower-cased, that must be one of them."""
    name: str
    into: str                      # "<group>.<attribute>" of the settings class it fills; no group: Settings itself
    type: type = str
    default: object = ""           # "" for none
    secret: bool = False           # kept out of repr()
    choices: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.into.rpartition(".")[0]

    @property
    def attr(self) -> str:
        return self.into.rpartition(".")[2]

    def read(self) -> object:
        raw = os.environ.get(self.name)
        return self.default if raw is None else self.parse(raw)

    def parse(self, raw: str) -> object:
        if self.choices:
            word = raw.strip().lower()
            if word not in self.choices:
                raise ValueError(f"environment variable {self.name} must be one of {', '.join(self.choices)}, "
                                 f"got {word!r}")
            return word
        if self.type is str:
            return raw
        if raw == "":
            return self.default
        try:
            return self.type(raw)
        except ValueError:
            what = "an integer" if self.type is int else "a number"
            raise ValueError(f"environment variable {self.name} must be {what}, got {raw!r}") from None


VARIABLES: tuple[Var, ...] = (
    Var("MYSQL_HOST", "mysql.host", default="127.0.0.1"),
    Var("MYSQL_PORT", "mysql.port", int, 3306),
    Var("MYSQL_DATABASE", "mysql.database", default="simplecqrs_w"),
    Var("MYSQL_USER", "mysql.user"),
    Var("MYSQL_PASSWORD", "mysql.password", secret=True),
    Var("MYSQL_ADMIN_USER", "mysql.admin_user"),
    Var("MYSQL_ADMIN_PASSWORD", "mysql.admin_password", secret=True),
    Var("MYSQL_CONNECT_TIMEOUT", "mysql.connect_timeout", float, 3.0),
    # DISABLED | PREFERRED | REQUIRED | VERIFY_CA | VERIFY_IDENTITY; empty: VERIFY_CA when a CA
    # file is given, else PREFERRED (app/writemodel/db.py, tls_args, which rejects anything else).
    Var("MYSQL_SSL_MODE", "mysql.ssl_mode"),
    Var("MYSQL_SSL_CA", "mysql.ssl_ca"),

    Var("KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers", default="127.0.0.1:9092"),
    Var("KAFKA_TOPIC", "kafka.topic", default="OnNewOrder"),
    Var("KAFKA_DLQ_TOPIC", "kafka.dead_letter_topic", default="OnNewOrder.DLQ"),
    Var("KAFKA_CONSUMER_GROUP", "kafka.consumer_group", default="simplecqrs-projector"),
    # How long the relay's producer waits to fill a batch.  25 ms, not 5: at 100 orders/s over 6
    # partitions a 5 ms batch held one event, and the three brokers (each record sent to two followers)
    # spent 2.15 s of CPU per 1000 orders; at 25 ms 1.10, for about 10 ms more at the acknowledgement and
    # no measurable change in freshness (docs/performance.md).
    Var("KAFKA_LINGER_MS", "kafka.linger_ms", int, 25),
    # none, or gzip | snappy | lz4 | zstd.  none by default: at the rates a relay batches an event or
    # two per request, and compressing a few hundred bytes cost CPU in the relay, every broker that
    # validates the batch and every consumer, for no bytes worth saving (docs/performance.md).
    Var("KAFKA_COMPRESSION", "kafka.compression", default="none"),
    # PLAINTEXT | SASL_PLAINTEXT | SASL_SSL; with SASL, the mechanism (SCRAM-SHA-512 for the users
    # Strimzi's User Operator makes) and the user's name and password (app/broker.py, security).
    Var("KAFKA_SECURITY_PROTOCOL", "kafka.security_protocol", default="PLAINTEXT"),
    Var("KAFKA_SASL_MECHANISM", "kafka.sasl_mechanism", default="SCRAM-SHA-512"),
    Var("KAFKA_SASL_USERNAME", "kafka.sasl_username"),
    Var("KAFKA_SASL_PASSWORD", "kafka.sasl_password", secret=True),

    Var("CASSANDRA_CONTACT_POINTS", "cassandra.contact_points", default="127.0.0.1"),   # comma-separated
    Var("CASSANDRA_PORT", "cassandra.port", int, 9042),
    Var("CASSANDRA_LOCAL_DC", "cassandra.local_dc", default="datacenter1"),
    Var("CASSANDRA_KEYSPACE", "cassandra.keyspace", default="simplecqrs_r"),
    # "SimpleStrategy:1" or "NetworkTopologyStrategy:dc1=3,dc2=3"
    Var("CASSANDRA_REPLICATION", "cassandra.replication", default="SimpleStrategy:1"),
    Var("CASSANDRA_USERNAME", "cassandra.username"),
    Var("CASSANDRA_PASSWORD", "cassandra.password", secret=True),

    Var("API_ROLE", "api.role", default="both"),   # command | query | both: which routes this process serves
    Var("API_MAX_BODY_BYTES", "api.max_body_bytes", int, 16 * 1024),
    Var("API_MAX_WAIT_MS", "api.max_wait_ms", int, 5000),
    Var("API_RETRY_AFTER_SECONDS", "api.retry_after_s", int, 2),

    # binlog: follow MySQL's row-based binlog (app/relay/binlog.py); poll: poll the outbox table
    # (app/relay/poll.py), for a server whose binlog the relay may not read (README, "Outbox relays").
    Var("OUTBOX_RELAY", "outbox.relay", default=DEFAULT_RELAY, choices=RELAYS),
    Var("OUTBOX_BATCH_SIZE", "outbox.batch_size", int, 500),
    Var("OUTBOX_POLL_INTERVAL_SECONDS", "outbox.poll_interval_s", float, 0.02),
    Var("OUTBOX_RETENTION_HOURS", "outbox.retention_hours", float, 24.0),
    Var("OUTBOX_MAX_BACKOFF_SECONDS", "outbox.max_backoff_s", float, 30.0),
    # /readyz of the API reports publishing as degraded once the oldest unpublished event is this old.
    Var("OUTBOX_DEGRADED_AFTER_SECONDS", "outbox.degraded_after_s", float, 30.0),
    # /healthz fails after this long without publishing while a backlog waits and Kafka answers
    # (app/liveness.py).  Keep it above the 15 s flush timeout and OUTBOX_MAX_BACKOFF_SECONDS.
    Var("OUTBOX_STALL_SECONDS", "outbox.stall_s", float, 60.0),
    Var("OUTBOX_METRICS_PORT", "outbox.metrics_port", int, 9101),
    Var("OUTBOX_METRICS_HOST", "outbox.metrics_host", default="127.0.0.1"),

    Var("CONSUMER_MAX_IN_FLIGHT", "consumer.max_in_flight", int, 128),
    Var("CONSUMER_MAX_POLL_RECORDS", "consumer.max_poll_records", int, 500),
    # /healthz fails after this long without projecting while partitions lag and Kafka answers.
    Var("CONSUMER_STALL_SECONDS", "consumer.stall_s", float, 60.0),
    # Projected offsets are committed at most this often (consumer/projector.py says why).
    Var("CONSUMER_COMMIT_INTERVAL_SECONDS", "consumer.commit_interval_s", float, 1.0),
    Var("CONSUMER_METRICS_PORT", "consumer.metrics_port", int, 9102),
    Var("CONSUMER_METRICS_HOST", "consumer.metrics_host", default="127.0.0.1"),

    Var("LOG_LEVEL", "log_level", default="INFO"),

    # gunicorn's, read by app/gunicorn_conf.py only (GunicornSettings is not part of Settings).
    Var("API_BIND", "gunicorn.bind", default="127.0.0.1:8080"),
    Var("GUNICORN_WORKERS", "gunicorn.workers", int, 2),
    Var("GUNICORN_THREADS", "gunicorn.threads", int, 4),
    # gthread: measured against sync processes and gevent (README, "What changed to get here"); sync is
    # the other choice gunicorn ships without an extra package.
    Var("GUNICORN_WORKER_CLASS", "gunicorn.worker_class", default="gthread"),
    Var("GUNICORN_TIMEOUT", "gunicorn.timeout", int, 30),
    Var("GUNICORN_GRACEFUL_TIMEOUT", "gunicorn.graceful_timeout", int, 20),
)

_made: set[str] = set()   # the groups a settings class was made for


def _from_table(group: str):
    """Make the class a frozen dataclass: its own fields, then one per variable of `group`, in the
    table's order, each read from the environment when the class is built without it."""
    def make(cls):
        mine = [v for v in VARIABLES if v.group == group]
        for v in mine:
            setattr(cls, v.attr, field(default_factory=v.read, repr=not v.secret))
        cls.__annotations__ = {**cls.__dict__.get("__annotations__", {}), **{v.attr: v.type for v in mine}}
        _made.add(group)
        return dataclass(frozen=True)(cls)
    return make


@_from_table("mysql")
class MySQLSettings:
    """The write store: MySQL."""


@_from_table("kafka")
class KafkaSettings:
    """Kafka: the brokers, the topics, the consumer group, the producer's batching, authentication."""


@_from_table("cassandra")
class CassandraSettings:
    """The read store: Cassandra."""

    @property
    def hosts(self) -> list[str]:
        return [h.strip() for h in self.contact_points.split(",") if h.strip()]


@_from_table("api")
class ApiSettings:
    """The HTTP API's limits and which routes it serves."""


@_from_table("outbox")
class OutboxSettings:
    """The outbox relay."""


@_from_table("consumer")
class ConsumerSettings:
    """The projector (consumer/)."""


@_from_table("")
class Settings:
    """Every setting of the API, the relay and the consumer."""

    mysql: MySQLSettings = field(default_factory=MySQLSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = field(default_factory=CassandraSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)


# Apart from Settings: only gunicorn's master reads these, so a bad one never stops the relay or the consumer.
@_from_table("gunicorn")
class GunicornSettings:
    """The API's gunicorn: its address, workers and timeouts."""


def _check_declaration() -> None:
    """VARIABLES is consistent: one line per name and per attribute, each of a class made from it,
    a default of its type, and no default for a secret."""
    for key in ("name", "into"):
        seen = [getattr(v, key) for v in VARIABLES]
        if len(seen) != len(set(seen)):
            raise AssertionError(f"VARIABLES: a {key} declared twice: {sorted(k for k in seen if seen.count(k) > 1)}")
    for v in VARIABLES:
        if v.group not in _made:
            raise AssertionError(f"{v.name}: no settings class is made for {v.group!r}")
        if v.type not in (str, int, float) or type(v.default) is not v.type:
            raise AssertionError(f"{v.name}: str, int or float, with a default of that type")
        if v.choices and (v.type is not str or v.default not in v.choices):
            raise AssertionError(f"{v.name}: choices are words, the default one of them")
        if v.secret and v.default:
            raise AssertionError(f"{v.name}: nothing secret has a default")


_check_declaration()


def load() -> Settings:
    """Read the environment now (tests build Settings with their own values instead)."""
    return Settings()
