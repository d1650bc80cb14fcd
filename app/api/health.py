"""/healthz (process alive), /readyz (dependencies answer), /metrics, /openapi.json."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from .. import metrics
from .openapi import document

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when this process's stores answer.  Command role: MySQL must answer;
    events waiting in the outbox longer than OUTBOX_DEGRADED_AFTER_SECONDS (Kafka
    or the relay down) are reported as degraded publishing, not as down: orders
    are still accepted.  Query role: Cassandra must answer.  Both roles in one process (the
    default): MySQL decides; Cassandra down is reported as degraded queries (they answer 503
    with Retry-After themselves), so a read-store outage never takes the pods out of the Service
    and stops the writes the outbox design keeps taking."""
    checks: dict[str, str] = {}
    ready = True
    pool = current_app.extensions.get("simplecqrs.mysql")
    if pool is not None:
        from ..writemodel.db import is_connection_error
        from ..writemodel.outbox import backlog

        settings = current_app.extensions["simplecqrs.settings"]
        try:
            try:
                pending, oldest = backlog(pool, settings.outbox.relay)  # also proves MySQL answers
            except Exception as e:  # noqa: BLE001
                if not is_connection_error(e):
                    raise
                pool.discard()  # a connection left over from before a MySQL restart: try a fresh one
                pending, oldest = backlog(pool, settings.outbox.relay)
            checks["mysql"] = "ok"
            checks["publishing"] = ("ok" if oldest < settings.outbox.degraded_after_s else
                                    f"degraded: {pending} events waiting, oldest {oldest:.0f}s old")
        except Exception as e:  # noqa: BLE001
            pool.discard()
            checks["mysql"] = f"down: {type(e).__name__}"
            ready = False
    reader = current_app.extensions.get("simplecqrs.reader")
    if reader is not None:
        try:
            reader.ping()
            checks["cassandra"] = "ok"
        except Exception as e:  # noqa: BLE001
            checks["cassandra"] = f"down: {type(e).__name__}"
            if pool is None:  # query role only: nothing this pod can serve
                ready = False
    body = jsonify({"status": "ready" if ready else "not ready", "checks": checks})
    body.status_code = 200 if ready else 503
    return body


@bp.get("/metrics")
def metrics_endpoint():
    pool = current_app.extensions.get("simplecqrs.mysql")
    if pool is not None:
        from ..writemodel.outbox import backlog

        try:
            relay = current_app.extensions["simplecqrs.settings"].outbox.relay
            metrics.OUTBOX_BACKLOG.set(backlog(pool, relay)[0])
        except Exception:  # noqa: BLE001 - a scrape must not fail because MySQL is down
            pool.discard()
    data, ctype = metrics.render()
    return Response(data, content_type=ctype)


@bp.get("/openapi.json")
def openapi():
    settings = current_app.extensions["simplecqrs.settings"]
    return jsonify(document(settings.api.role))
