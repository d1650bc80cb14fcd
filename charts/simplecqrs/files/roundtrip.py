"""helm test: post an order to the API and read it back through the query route.

Standard library only (it runs in the simplecqrs image as `python -c`).
SIMPLECQRS_API_URL is the API Service; SIMPLECQRS_TEST_TIMEOUT bounds the whole test.
Exit 0 when the order read back equals the order posted, 1 otherwise.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

URL = os.environ["SIMPLECQRS_API_URL"].rstrip("/")
if not URL.startswith(("http://", "https://")):
    sys.exit(f"SIMPLECQRS_API_URL must be an http(s) URL, got {URL!r}")
DEADLINE = time.monotonic() + float(os.environ.get("SIMPLECQRS_TEST_TIMEOUT", "120"))
KEY = uuid.uuid4().hex
ORDER = {"description": "helm test order", "quantity": 1, "email": f"helm-test-{KEY[:12]}@example.com",
         "firstName": "Helm", "lastName": "Test"}


def call(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method, headers={  # noqa: S310 - http(s), checked above
        "Accept": "application/json", **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - http(s), checked above
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def until(what, attempt):
    """Retry attempt() (-> (done, detail)) until it is done or the deadline passes."""
    detail = None
    while time.monotonic() < DEADLINE:
        try:
            done, detail = attempt()
            if done:
                return detail
        except (OSError, ValueError) as e:  # connection refused, DNS, timeouts, bad JSON
            detail = f"{type(e).__name__}: {e}"
        time.sleep(2)
    print(f"FAIL: {what}: {detail}", file=sys.stderr)
    sys.exit(1)


# The Idempotency-Key makes a retried POST (e.g. after a timeout) the same order.
def place():
    status, body = call("POST", "/orders", ORDER, {"Idempotency-Key": KEY})
    return status == 201, body if status == 201 else f"HTTP {status} {body}"


order_id = until("POST /orders", place)["id"]
print(f"posted order {order_id}")


def read_back():
    status, body = call("GET", f"/orders/{order_id}?wait=5000")
    return status == 200, body if status == 200 else f"HTTP {status} {body}"


got = until(f"GET /orders/{order_id}", read_back)
expected = {"id": order_id, "description": ORDER["description"], "quantity": ORDER["quantity"],
            "customer": {k: ORDER[k] for k in ("email", "firstName", "lastName")}}
wrong = {k: (v, got.get(k)) for k, v in expected.items() if got.get(k) != v}
if wrong:
    print(f"FAIL: the read model disagrees (posted, read): {wrong}", file=sys.stderr)
    sys.exit(1)
print(f"read back order {order_id} through the query route: OK")
