"""JSON errors for everything: a client never sees an HTML page or a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def error(status: int, code: str, message: str, *, fields: dict | None = None, headers: dict | None = None):
    body = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def unavailable(message: str, retry_after_s: int):
    return error(503, "unavailable", message, headers={"Retry-After": str(retry_after_s)})


_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "validation_failed", 429: "too_many_requests"}


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        status = e.code or 500
        resp = error(status, _CODES.get(status, "error"), e.description or e.name)
        if status == 405 and getattr(e, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(e.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unhandled error")
        return error(500, "internal_error", "internal error; the request was not completed")
