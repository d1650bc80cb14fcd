"""The Flask application factory.

    create_app()  -> Flask app serving the command routes, the query routes or
                     both (API_ROLE), plus /healthz, /readyz, /metrics, /openapi.json.

No connection is made at import or factory time: MySQL, Kafka and Cassandra
connections open on first use inside the worker process (gunicorn forks
without --preload), so no socket or thread is shared across a fork.
"""
from __future__ import annotations

import time

from flask import Flask, g, request

from .. import logs, metrics
from ..config import Settings, load
from . import errors

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load()
    logs.setup(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_body_bytes
    app.json.sort_keys = False
    app.extensions["simplecqrs.settings"] = settings
    errors.register(app)

    from . import health

    app.register_blueprint(health.bp)
    if settings.api.role in ("command", "both"):
        from . import command

        command.init(app, settings)
        app.register_blueprint(command.bp)
    if settings.api.role in ("query", "both"):
        from . import query

        query.init(app, settings)
        app.register_blueprint(query.bp)

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _observe(resp):
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        if route != "/metrics":
            metrics.observe_request(route, request.method, str(resp.status_code), time.perf_counter() - g.get("started", 0.0))
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    return app
