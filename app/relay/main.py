"""The relay process: publish until SIGTERM, with /healthz, /readyz and /metrics on OUTBOX_METRICS_PORT.

    python -m app.relay [--reset-position]        (entry point `simplecqrs-relay`)

OUTBOX_RELAY (app/config.py) picks the relay: the binlog (app/relay/binlog.py) or polling the
table (app/relay/poll.py).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from .. import healthserver, logs
from ..config import load
from . import binlog
from .binlog import BinlogRelay, reset_position
from .poll import PollingRelay

log = logging.getLogger(__name__)
RELAYS = {"binlog": BinlogRelay, "poll": PollingRelay}   # by OUTBOX_RELAY (app/config.py, RELAYS)


def command_line(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simplecqrs-relay", description=binlog.__doc__.split("\n")[0])
    parser.add_argument("--reset-position", action="store_true",
                        help="forget the binlog relay's saved position (after it reported the position lost); "
                             "its next start republishes the retained outbox rows and follows the binlog from its end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The relay process: publish until SIGTERM, with /healthz, /readyz and /metrics on OUTBOX_METRICS_PORT."""
    args = command_line(argv)
    settings = load()
    logs.setup(settings.log_level)
    if args.reset_position:
        found = reset_position(settings)
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


if __name__ == "__main__":
    sys.exit(main())
