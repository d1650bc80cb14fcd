"""The command side: POST /orders.

    validate body -> place_order() (one MySQL transaction: customer, order, outbox)
    -> 201 {"id"} + Location.  The outbox relay (app/relay/, its own process) publishes the event.
"""
from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Flask, current_app, jsonify, request

from .. import metrics
from ..config import Settings
from ..order import ValidationFailed, validate_order
from ..writemodel.db import ConnectionPool
from ..writemodel.orders import IdempotencyConflict, StoreUnavailable, place_order
from .errors import error, unavailable
from .validation import IDEMPOTENCY_KEY_PATTERN

log = logging.getLogger(__name__)
bp = Blueprint("command", __name__)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def init(app: Flask, settings: Settings) -> None:
    app.extensions["simplecqrs.mysql"] = ConnectionPool(settings.mysql, multi_statements=True)


class BadBody(ValueError):
    pass


def _reject_duplicate_keys(pairs):
    obj = dict(pairs)          # built in C; the loop below runs only when a key repeats
    if len(obj) != len(pairs):
        seen = set()
        for k, _v in pairs:
            if k in seen:
                raise BadBody(f"duplicate key {k!r} in JSON object")
            seen.add(k)
    return obj


def parse_json_body() -> object:
    """The request body as JSON, or BadBody (400); media type and size are checked by the caller/Flask."""
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("body is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except RecursionError:
        raise BadBody("JSON nested too deeply") from None
    except ValueError as e:
        raise BadBody(f"malformed JSON: {e}") from None


def is_json_request() -> bool:
    mt = request.mimetype or ""
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


@bp.post("/orders")
def create_order():
    settings: Settings = current_app.extensions["simplecqrs.settings"]
    if not is_json_request():
        return error(415, "unsupported_media_type", "Content-Type must be application/json")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        return error(400, "bad_request", "Idempotency-Key must be 1 to 255 printable ASCII characters",
                     fields={"Idempotency-Key": "invalid"})
    try:
        order = validate_order(parse_json_body())
    except BadBody as e:
        return error(400, "bad_request", str(e))
    except ValidationFailed as e:
        return error(422, "validation_failed", "the order is not valid", fields=e.fields)
    try:
        placed = place_order(current_app.extensions["simplecqrs.mysql"], order, key)
    except IdempotencyConflict as e:
        # 409: the key conflicts with the state its first request left (the body itself is valid).
        return error(409, "idempotency_key_reused", str(e), fields={"Idempotency-Key": "reused with another body"})
    except StoreUnavailable as e:
        log.warning("write store unavailable", extra={"error": str(e)[:200]})
        return unavailable("the write store is unavailable; retry later", settings.api.retry_after_s)
    if placed.replayed:
        log.info("idempotent replay", extra={"order_id": placed.order_id})
    else:
        metrics.ORDERS_PLACED.inc()
        log.info("order placed", extra={"order_id": placed.order_id, "email_domain": order.email.split("@")[-1]})
    resp = jsonify({"id": placed.order_id})
    resp.status_code = 201
    resp.headers["Location"] = f"/orders/{placed.order_id}"
    if placed.replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp

