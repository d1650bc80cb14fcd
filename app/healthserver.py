"""A tiny HTTP endpoint for the background processes (consumer, outbox relay):
GET /healthz, GET /readyz and GET /metrics (Prometheus), on a port of their own."""
from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def serve(host: str, port: int, *, alive: Callable[[], bool], ready: Callable[[], bool]) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; `alive`/`ready` answer 200 when true, 503 otherwise."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                check = alive if self.path == "/healthz" else ready
                try:
                    ok = bool(check())
                except Exception:  # noqa: BLE001
                    ok = False
                self._send(200 if ok else 503, b'{"status":"ok"}' if ok else b'{"status":"unavailable"}')
            else:
                self._send(404, b'{"error":"not_found"}')

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # requests are not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
