"""`python -m consumer.main` (or `simplecqrs-consumer`): one projector process.

Serves GET /healthz (the poll loop is turning), GET /readyz (Cassandra answers)
and GET /metrics on CONSUMER_METRICS_HOST:CONSUMER_METRICS_PORT.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import logs
from app.config import load
from app.readmodel import schema
from app.readmodel.session import connect
from app.readmodel.store import ReadModel

from .projector import Projector

log = logging.getLogger("consumer")
STALL_S = 60.0


def serve_health(projector_ref: dict, model: ReadModel, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                p = projector_ref.get("p")
                alive = p is None or time.monotonic() - p.last_loop < STALL_S
                self._send(200 if alive else 503, b'{"status":"ok"}' if alive else b'{"status":"stalled"}')
            elif self.path == "/readyz":
                try:
                    model.ping()
                    self._send(200, b'{"status":"ready"}')
                except Exception:  # noqa: BLE001
                    self._send(503, b'{"status":"read store unavailable"}')
            else:
                self._send(404, b'{"error":"not_found"}')

        def _send(self, status, body, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simplecqrs-consumer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--migrate", action="store_true", help="create the read-model schema first (idempotent)")
    args = parser.parse_args(argv)

    settings = load()
    logs.setup(settings.log_level)
    session = connect(settings.cassandra, keyspace=False)
    if args.migrate:
        schema.migrate(session, settings.cassandra)
    model = ReadModel(session, settings.cassandra.keyspace)
    ref: dict = {}
    server = serve_health(ref, model, settings.consumer.metrics_host, settings.consumer.metrics_port)
    projector = Projector(settings, model)
    ref["p"] = projector

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


if __name__ == "__main__":
    sys.exit(main())
