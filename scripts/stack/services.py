"""The simplecqrs processes of the local stack: provisioning, the API (gunicorn) and the consumers.

Configuration reaches them as the same environment variables the charts and
the operator set (README, "Configuration"); credentials come from
.local/etc/credentials.env.
"""
from __future__ import annotations

import os
import urllib.request

from . import core
from .credentials import credentials

API_BIND = os.environ.get("API_BIND", "127.0.0.1:8080")
CONSUMERS = int(os.environ.get("SIMPLECQRS_CONSUMERS", "2"))
TOPIC_PARTITIONS = int(os.environ.get("SIMPLECQRS_TOPIC_PARTITIONS", "6"))
VENV_PY = core.ROOT / ".venv" / "bin" / "python"


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of every simplecqrs process in the local stack."""
    env = dict(os.environ)
    creds = credentials()
    env.update({
        "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": "3306",
        "MYSQL_DATABASE": env.get("MYSQL_DATABASE", "simplecqrs_w"),
        "MYSQL_USER": creds["MYSQL_USER"], "MYSQL_PASSWORD": creds["MYSQL_PASSWORD"],
        "MYSQL_ADMIN_USER": creds["MYSQL_ADMIN_USER"], "MYSQL_ADMIN_PASSWORD": creds["MYSQL_ADMIN_PASSWORD"],
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "CASSANDRA_CONTACT_POINTS": "127.0.0.1", "CASSANDRA_PORT": "9042",
        "PYTHONPATH": str(core.ROOT),
    })
    env.update(overrides)
    return env


def _http_ok(url: str, timeout: float = 3) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.status == 200


class Provision(core.Component):
    """Not a process: creates the MySQL schema and app user, the keyspace and the topic (idempotent)."""

    name = "provision"
    address = "-"

    def running(self) -> bool:
        return False

    def start(self) -> None:
        core.run([str(VENV_PY), "-m", "scripts.stack.provision", str(TOPIC_PARTITIONS)],
                 "provision schema, keyspace and topic", cwd=core.ROOT, env=app_env(),
                 log=core.LOGS / "provision.log", timeout=300)

    def up(self) -> None:
        self.start()

    def status(self) -> core.Status:
        return core.Status(self.name, "done" if (core.ETC / "provisioned").exists() else "pending", "-", "-",
                           "provision.log")


class Api(core.Component):
    name = "api"
    address = API_BIND
    start_timeout = 60
    requires = ("provision",)

    def start(self) -> None:
        core.require_port_free(self.name, int(API_BIND.rsplit(":", 1)[1]))
        core.spawn(self.name, [str(core.ROOT / ".venv" / "bin" / "gunicorn"), "-c", "python:app.gunicorn_conf",
                               "app.wsgi:app"], cwd=core.ROOT, env=app_env(
            API_BIND=API_BIND, PROMETHEUS_MULTIPROC_DIR=str(core.RUN / "api-metrics")))

    def ready(self) -> bool:
        return _http_ok(f"http://{API_BIND}/readyz")

    def version(self) -> str:
        return "0.1.0"


class Consumer(core.Component):
    start_timeout = 60
    requires = ("provision",)

    def __init__(self, index: int):
        self.index = index
        self.port = 9101 + index
        self.name = f"consumer-{index}"
        self.address = f"127.0.0.1:{self.port} (metrics)"

    def start(self) -> None:
        core.require_port_free(self.name, self.port)
        core.spawn(self.name, [str(VENV_PY), "-m", "consumer.main"], cwd=core.ROOT,
                   env=app_env(CONSUMER_METRICS_PORT=str(self.port)))

    def ready(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.port}/readyz")

    def version(self) -> str:
        return "0.1.0"


def simplecqrs_processes() -> list[core.Component]:
    return [Provision(), Api(), *[Consumer(i) for i in range(1, CONSUMERS + 1)]]
