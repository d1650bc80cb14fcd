"""The HTTP contract that needs no store: validation, malformed bodies, 404/405, JSON errors.

Flask's test client on the real application (create_app), in seconds.  No connection is made at
factory time and these requests are answered before any store is touched; everything that reaches
MySQL, Kafka or Cassandra is tested on the real stack (tests/test_command.py, tests/test_query.py).
"""
from __future__ import annotations

import pytest
from support import order

from app.api import create_app
from app.config import MySQLSettings, Settings


@pytest.fixture(scope="module")
def client():
    # A port nothing listens on: a request that touched MySQL would fail loudly, not pass by accident.
    return create_app(Settings(mysql=MySQLSettings(host="127.0.0.1", port=9, user="nobody", password="x"))).test_client()


@pytest.mark.parametrize("body,field,status", [
    ({"quantity": True}, "quantity", 422),
    ({"quantity": 0}, "quantity", 422),
    ({"quantity": -3}, "quantity", 422),
    ({"quantity": 2.5}, "quantity", 422),
    ({"quantity": "6"}, "quantity", 422),
    ({"quantity": 10**9}, "quantity", 422),
    ({"email": "not-an-email"}, "email", 422),
    ({"email": ""}, "email", 422),
    ({"firstName": ""}, "firstName", 422),
    ({"lastName": None}, "lastName", 422),
    ({"description": "x" * 501}, "description", 422),
    ({"firstName": "\u0000nul"}, "firstName", 422),
    ({"coupon": "FREE"}, "coupon", 422),
])
def test_invalid_fields_are_named(client, body, field, status):
    r = client.post("/orders", json=order(**body))
    assert r.status_code == status, r.text
    err = r.get_json()
    assert err["error"] == "validation_failed" and field in err["fields"]


def test_missing_fields_are_each_named(client):
    r = client.post("/orders", json={"description": "x"})
    assert r.status_code == 422
    assert set(r.get_json()["fields"]) == {"quantity", "email", "firstName", "lastName"}


@pytest.mark.parametrize("data,ctype,status", [
    (b'{"description": ', "application/json", 400),
    (b'{"a":1,"a":2}', "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400),
    (b"description=x", "application/x-www-form-urlencoded", 415),
    (b"{}", "text/plain", 415),
    (b'{"description": "' + b"x" * 40000 + b'"}', "application/json", 413),
])
def test_malformed_requests(client, data, ctype, status):
    r = client.post("/orders", data=data, headers={"Content-Type": ctype})
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json") and r.get_json()["error"]


@pytest.mark.parametrize("data,key", [
    (b'{"a":1,"b":2,"a":3}', "a"),
    (b'{"description":"x","extra":{"k":1,"k":2}}', "k"),   # nested objects too
])
def test_a_duplicate_key_is_named(client, data, key):
    r = client.post("/orders", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and f"duplicate key {key!r}" in r.get_json()["message"], r.text


def test_unknown_route_and_wrong_method_answer_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    r = client.delete("/orders")
    assert r.status_code == 405 and r.get_json()["error"] == "method_not_allowed" and "POST" in r.headers["Allow"]


@pytest.mark.parametrize("key", ["k", "x" * 255, "x" * 256, "with space", "é", "a!~"])
def test_idempotency_key_rule_is_the_published_one(client, key):
    """The route and /openapi.json take the rule from one constant: they agree on every key."""
    import re

    doc = client.get("/openapi.json").get_json()
    (param,) = [p for p in doc["paths"]["/orders"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    published_ok = re.fullmatch(param["schema"]["pattern"], key) is not None
    try:
        r = client.post("/orders", json={"description": "x"}, headers={"Idempotency-Key": key})
    except ValueError:  # a header value that HTTP itself cannot carry (non-Latin-1)
        assert not published_ok
        return
    assert (r.status_code != 400) == published_ok, r.get_json()


def test_page_limit_rule_is_the_published_one(client):
    doc = client.get("/openapi.json").get_json()
    (limit,) = [p for p in doc["paths"]["/orders"]["get"]["parameters"] if p["name"] == "limit"]
    top = limit["schema"]["maximum"]
    r = client.get(f"/orders?limit={top + 1}")
    assert r.status_code == 400 and "limit" in r.get_json()["message"]


@pytest.mark.parametrize("value", ["²", "١٢", "٣", "1²", "-1", " 1", "1e3"])
def test_integer_parameters_accept_ascii_digits_only(client, value):
    """"²".isdigit() is True yet int("²") fails: the fuzzer got a 500 from ?wait=² before."""
    r = client.get("/orders", query_string={"limit": value})
    assert r.status_code == 400 and "limit" in r.get_json()["message"]
