"""The OpenAPI 3 document served at /openapi.json, kept beside the routes it describes.

Tests fuzz the running API from this document (schemathesis) and check every
response against it, so it must say exactly what the API does.
"""
from __future__ import annotations

from ..order import CUSTOMER_FIELDS, FIELDS, ORDER_FIELDS, Field
from .validation import IDEMPOTENCY_KEY_PATTERN, MAX_PAGE_LIMIT, MAX_WAIT_MS

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _err(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_RETRY = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait before retrying"}}

# The order's schemas come from its declaration (app/order.py, FIELDS): what POST /orders accepts
# (the same bounds and patterns validate_order() checks) and what the queries answer.
def _json_type(f: Field) -> str:
    return "string" if f.text else "integer"


def _accepted(f: Field) -> dict:
    """The schema of one field of POST /orders."""
    if f.text:
        schema = {"type": "string", "minLength": f.min_length, "maxLength": f.max_length, "pattern": f.pattern}
    else:
        schema = {"type": "integer", "minimum": f.minimum, "maximum": f.maximum}
    return {**schema, "description": f.doc} if f.doc else schema


_NEW_ORDER = {
    "type": "object",
    "additionalProperties": False,
    "required": [f.name for f in FIELDS if f.required],
    "properties": {f.name: _accepted(f) for f in FIELDS},
    "example": {f.name: f.example for f in FIELDS},
}

_CUSTOMER = {
    "type": "object",
    "required": [f.name for f in CUSTOMER_FIELDS],
    "properties": {f.name: {"type": _json_type(f)} for f in CUSTOMER_FIELDS},
}

_ORDER = {
    "type": "object",
    "required": ["id", *(f.name for f in ORDER_FIELDS), "customer", "createdAt"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        **{f.name: {"type": _json_type(f)} for f in ORDER_FIELDS},
        "customer": {"$ref": "#/components/schemas/Customer"},
        "createdAt": {"type": "string", "format": "date-time"},
    },
}


def _page(item_ref: str) -> dict:
    return {
        "type": "object",
        "required": ["items", "nextPageToken"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": item_ref}},
            "nextPageToken": {"type": ["string", "null"]},
        },
    }


_PAGING = [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT}},
    {"name": "page_token", "in": "query", "required": False, "schema": {"type": "string"}},
]

_COMMAND_PATHS = {
    "/orders": {
        "post": {
            "summary": "Place an order (writes MySQL; the OnNewOrder event follows through the outbox)",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}}],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewOrder"}}}},
            "responses": {
                "201": {"description": "created (or replayed for a repeated Idempotency-Key)",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["id"],
                            "properties": {"id": {"type": "string", "format": "uuid"}}}}}},
                "400": _err("malformed JSON, duplicate keys or a bad Idempotency-Key"),
                "413": _err("body larger than the limit"),
                "415": _err("Content-Type is not application/json"),
                "409": _err("the Idempotency-Key was used before with a different body"),
                "422": _err("a field is invalid (named in `fields`)"),
                "503": {**_err("the write store is unavailable; nothing was written"), "headers": _RETRY},
            },
        },
    },
}

_QUERY_PATHS = {
    "/orders": {
        "get": {
            "summary": "Orders from the read model, one page at a time",
            "parameters": _PAGING,
            "responses": {"200": {"description": "a page of orders", "content": {"application/json": {
                "schema": _page("#/components/schemas/Order")}}},
                "400": _err("bad limit or page_token"),
                "503": {**_err("the read store is unavailable"), "headers": _RETRY}},
        },
    },
    "/orders/{id}": {
        "get": {
            "summary": "One order with its customer; `wait` holds the request until it is projected",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "wait", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS},
                 "description": "milliseconds to wait for the order to appear (capped by API_MAX_WAIT_MS)"},
            ],
            "responses": {"200": {"description": "the order", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Order"}}}},
                "400": _err("bad wait"), "404": _err("not (yet) in the read model"),
                "503": {**_err("the read store is unavailable"), "headers": _RETRY}},
        },
    },
    "/customers": {
        "get": {
            "summary": "Customers from the read model, one page at a time",
            "parameters": _PAGING,
            "responses": {"200": {"description": "a page of customers", "content": {"application/json": {
                "schema": _page("#/components/schemas/Customer")}}},
                "400": _err("bad limit or page_token"),
                "503": {**_err("the read store is unavailable"), "headers": _RETRY}},
        },
    },
    "/customers/{email}": {
        "get": {
            "summary": "One customer (by email) and their orders, newest first",
            "parameters": [{"name": "email", "in": "path", "required": True, "schema": {"type": "string"}}, *_PAGING],
            "responses": {"200": {"description": "the customer", "content": {"application/json": {"schema": {
                "allOf": [{"$ref": "#/components/schemas/Customer"}, {
                    "type": "object", "required": ["orders", "nextPageToken"],
                    "properties": {"orders": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
                                   "nextPageToken": {"type": ["string", "null"]}}}]}}}},
                "400": _err("bad limit or page_token"), "404": _err("unknown customer"),
                "503": {**_err("the read store is unavailable"), "headers": _RETRY}},
        },
    },
}

_OPS_PATHS = {
    "/healthz": {"get": {"summary": "the process is alive",
                         "responses": {"200": {"description": "alive", "content": {"application/json": {
                             "schema": {"type": "object"}}}}}}},
    "/readyz": {"get": {"summary": "the stores this process needs answer",
                        "responses": {"200": {"description": "ready", "content": {"application/json": {
                            "schema": {"type": "object"}}}},
                            "503": {"description": "not ready", "content": {"application/json": {
                                "schema": {"type": "object"}}}}}}},
}


def document(role: str = "both") -> dict:
    paths: dict = {k: dict(v) for k, v in _OPS_PATHS.items()}
    parts = ([_COMMAND_PATHS] if role in ("command", "both") else []) + \
            ([_QUERY_PATHS] if role in ("query", "both") else [])
    for part in parts:
        for path, ops in part.items():
            paths.setdefault(path, {}).update(ops)
    return {
        "openapi": "3.1.0",
        "info": {"title": "simplecqrs", "version": "1.0.0",
                 "description": "Orders: commands write MySQL and publish OnNewOrder through an outbox; "
                                "queries read the Cassandra projection (eventually consistent)."},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR, "NewOrder": _NEW_ORDER, "Customer": _CUSTOMER,
                                   "Order": _ORDER}},
    }
