"""The relay process: publish until SIGTERM, with /healthz, /readyz and /metrics on OUTBOX_METRICS_PORT.

    simplecqrs relay [--reset-position]        (app/cli.py: the command line)

OUTBOX_RELAY (app/config.py) picks the relay: the binlog (app/relay/binlog.py) or polling the
table (app/relay/poll.py).
"""
from __future__ import annotations

import logging
import signal

from .. import healthserver, logs
from ..config import load
from . import binlog
from .binlog import BinlogRelay
from .poll import PollingRelay

log = logging.getLogger(__name__)
RELAYS = {"binlog": BinlogRelay, "poll": PollingRelay}   # by OUTBOX_RELAY (app/config.py, RELAYS)


def run(reset_position: bool = False) -> int:
    """The relay process: publish until SIGTERM, with /healthz, /readyz and /metrics on OUTBOX_METRICS_PORT.

    reset_position: forget the binlog relay's saved position instead, and return (its next start
    republishes the retained outbox rows and follows the binlog from its end).  The exit code."""
    settings = load()
    logs.setup(settings.log_level)
    if reset_position:
        found = binlog.reset_position(settings)
        log.warning("binlog relay position reset" if found else "no binlog relay position was saved",
                    extra={"database": settings.mysql.database})
        return 0
    relay = RELAYS[settings.outbox.relay](settings)
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    signal.signal(signal.SIGINT, lambda *_: relay.stop())
    server = healthserver.serve(settings.outbox.metrics_host, settings.outbox.metrics_port,
                                alive=relay.progress.alive,
                                ready=lambda: relay.publishing)
    log.info("outbox relay started", extra={"relay": settings.outbox.relay, "topic": settings.kafka.topic,
                                            "metrics_port": settings.outbox.metrics_port})
    relay.run()
    server.shutdown()
    log.info("outbox relay stopped")
    return 0
