"""Provision the local stack's stores (what the operator does on a cluster), idempotently:
the MySQL database, migrations and least-privileged app user; the Cassandra keyspace
and read-model tables; the Kafka topic and its dead-letter topic.

    python -m scripts.stack.provision [PARTITIONS]     (settings from the environment)
"""
from __future__ import annotations

import sys

from app import broker
from app.config import load
from app.readmodel import schema
from app.readmodel.session import connect
from app.writemodel import migrations

from . import core


def main() -> int:
    partitions = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    s = load()
    applied = migrations.provision(s.mysql, host="127.0.0.1")
    print(f"mysql {s.mysql.database}: migrations applied now: {applied or 'none'}; app user {s.mysql.user}")
    session = connect(s.cassandra, keyspace=False, request_timeout=60)
    try:
        print(f"cassandra {s.cassandra.keyspace}: migrations applied now: {schema.migrate(session, s.cassandra) or 'none'}")
    finally:
        session.cluster.shutdown()
    admin = broker.admin(s.kafka)
    try:
        print(f"kafka {s.kafka.topic}: {broker.ensure_topic(admin, s.kafka.topic, partitions)}")
        print(f"kafka {s.kafka.dead_letter_topic}: {broker.ensure_topic(admin, s.kafka.dead_letter_topic, 1)}")
    finally:
        admin.close()
    (core.ETC / "provisioned").write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
