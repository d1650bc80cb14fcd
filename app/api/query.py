"""The query side: reads the Cassandra read model only, never MySQL.

    GET /orders               paged (limit, page_token)
    GET /orders/<id>?wait=ms  404 until projected; `wait` holds the request for read-your-writes
    GET /customers            paged
    GET /customers/<email>    the customer and their orders, newest first (paged)
"""
from __future__ import annotations

import logging
import threading

import tenacity
from cassandra import DriverException, InvalidRequest
from cassandra.cluster import NoHostAvailable
from cassandra.protocol import ProtocolException
from flask import Blueprint, Flask, current_app, jsonify, request

from ..config import Settings
from ..readmodel.store import BadPageToken, ReadModel
from .errors import error, unavailable
from .validation import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, MAX_WAIT_MS

log = logging.getLogger(__name__)
bp = Blueprint("query", __name__)
DEFAULT_LIMIT, MAX_LIMIT = DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT


class LazyReader:
    """Connects to Cassandra on first use in this worker process, and again after a failure."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._model: ReadModel | None = None
        self._lock = threading.Lock()

    def model(self) -> ReadModel:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from ..readmodel.session import connect

                    session = connect(self.settings.cassandra, keyspace=False)
                    self._model = ReadModel(session, self.settings.cassandra.keyspace)
        return self._model

    def ping(self) -> None:
        self.model().ping()


def init(app: Flask, settings: Settings) -> None:
    app.extensions["simplecqrs.reader"] = LazyReader(settings)


class BadParam(ValueError):
    pass


def _int_param(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() accepts "²" and other digits int() refuses (a 500 the fuzzer found).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadParam(f"{name} must be an integer from {lo} to {hi}")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadParam(f"{name} must be an integer from {lo} to {hi}")
    return value


def _reader() -> ReadModel:
    return current_app.extensions["simplecqrs.reader"].model()


def _unavailable(e: Exception):
    settings: Settings = current_app.extensions["simplecqrs.settings"]
    log.warning("read store unavailable", extra={"error": f"{type(e).__name__}: {str(e)[:200]}"})
    return unavailable("the read store is unavailable; retry later", settings.api.retry_after_s)


def _guarded(fn):
    """Map client mistakes to 400 and read-store outages to 503 for every query route."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BadParam, BadPageToken) as e:
            return error(400, "bad_request", str(e))
        except (InvalidRequest, ProtocolException):
            return error(400, "bad_request", "page_token is not valid")
        except (NoHostAvailable, DriverException, OSError) as e:
            return _unavailable(e)
    wrapper.__name__ = fn.__name__
    return wrapper


@bp.get("/orders")
@_guarded
def list_orders():
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    items, nxt = _reader().list_orders(limit, request.args.get("page_token"))
    return jsonify({"items": items, "nextPageToken": nxt})


@bp.get("/orders/<order_id>")
@_guarded
def get_order(order_id: str):
    settings: Settings = current_app.extensions["simplecqrs.settings"]
    wait_ms = min(_int_param("wait", 0, 0, MAX_WAIT_MS), settings.api.max_wait_ms)
    # Read again until the order is there or `wait` is used up; fine-grained at first (5 ms, x1.5,
    # at most 50 ms): a fresh order usually appears within milliseconds.  A store error is raised
    # at once (503), never retried here.
    poll = tenacity.Retrying(retry=tenacity.retry_if_result(lambda found: found is None),
                             wait=tenacity.wait_exponential(multiplier=0.005, exp_base=1.5, max=0.05),
                             stop=tenacity.stop_before_delay(wait_ms / 1000),
                             retry_error_callback=lambda _state: None)
    order = poll(_reader().get_order, order_id)
    if order is None:
        return error(404, "not_found", f"order {order_id} is not in the read model (yet)")
    return jsonify(order)


@bp.get("/customers")
@_guarded
def list_customers():
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    items, nxt = _reader().list_customers(limit, request.args.get("page_token"))
    return jsonify({"items": items, "nextPageToken": nxt})


@bp.get("/customers/<path:email>")
@_guarded
def get_customer(email: str):
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    customer = _reader().get_customer(email.lower(), limit, request.args.get("page_token"))
    if customer is None:
        return error(404, "not_found", "no such customer")
    return jsonify(customer)
