"""`simplecqrs consume [--migrate]` (app/cli.py: the command line): one projector process.

Serves GET /healthz (the loop turns and moves work: app/liveness.py), GET /readyz (Cassandra answers)
and GET /metrics on CONSUMER_METRICS_HOST:CONSUMER_METRICS_PORT.
"""
from __future__ import annotations

import logging
import signal

from app import healthserver, logs
from app.config import load
from app.readmodel import schema
from app.readmodel.session import connect
from app.readmodel.store import ReadModel

from .projector import Projector

log = logging.getLogger("consumer")


def run(migrate: bool = False) -> int:
    """Project until SIGTERM; migrate: create the read-model schema first (idempotent).  The exit code."""
    settings = load()
    logs.setup(settings.log_level)
    session = connect(settings.cassandra, keyspace=False)
    if migrate:
        schema.migrate(session, settings.cassandra)
    model = ReadModel(session, settings.cassandra.keyspace)
    projector = Projector(settings, model)
    server = healthserver.serve(settings.consumer.metrics_host, settings.consumer.metrics_port,
                                alive=projector.progress.alive,
                                ready=lambda: model.ping() is None)

    def stop(signum, _frame):
        log.info("stopping", extra={"signal": signum})
        projector.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("consumer started", extra={"topic": settings.kafka.topic, "group": settings.kafka.consumer_group,
                                        "metrics_port": settings.consumer.metrics_port})
    try:
        projector.run()
    finally:
        projector.consumer.close(autocommit=False)
        if projector.dlq is not None:
            projector.dlq.close(timeout=5)
        server.shutdown()
        session.cluster.shutdown()
    log.info("consumer stopped")
    return 0
