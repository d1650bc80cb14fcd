"""The request rules of the routes that are not the order's own (those are in app/order.py).

The routes check these and the OpenAPI document (app/api/openapi.py) publishes them, so the
two cannot drift.
"""
from __future__ import annotations

IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"   # 1 to 255 printable ASCII characters
DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT = 50, 500  # ?limit= of the list routes
MAX_WAIT_MS = 60_000                          # ?wait= of GET /orders/<id> (API_MAX_WAIT_MS caps it further)
