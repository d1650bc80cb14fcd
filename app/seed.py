"""Post N realistic fake orders, like the demo's seeder: a few customers with several orders each.

    simplecqrs seed --count 10 --url http://127.0.0.1:8080 [--concurrency 4]     (app/cli.py)
    scripts/seed --count 10 [--instance NAMESPACE/NAME]     (locally: the instance's API, scripts/host.py)

Prints a progress bar and a summary (sent, created, failed, rate).  Every
request carries an Idempotency-Key, so a retried POST never doubles an order.
It only talks HTTP to the API: no store settings are needed.
"""
from __future__ import annotations

import json
import random
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

FIRST = ["Alexanne", "Brody", "Camila", "Dax", "Elva", "Finn", "Greta", "Hugo", "Ines", "Jonas", "Kaia", "Luca"]
LAST = ["Glover", "Hansen", "Ito", "Jovanovic", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Pereira"]
WORDS = ("repellendus aut et eaque velit quod necessitatibus eos dolorem ipsum quia dolor sit amet "
         "consectetur adipisci numquam eius modi tempora incidunt").split()
DOMAINS = ["augusta.biz", "example.com", "mailinator.test", "acme.io"]


def fake_orders(count: int, rng: random.Random) -> list[dict]:
    customers = []
    for _ in range(max(1, count // 3)):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        customers.append({"firstName": first, "lastName": last,
                          "email": f"{first}.{last}.{rng.randrange(1000)}@{rng.choice(DOMAINS)}"})
    return [dict(rng.choice(customers), description=" ".join(rng.sample(WORDS, 4)), quantity=rng.randint(1, 10))
            for _ in range(count)]


def post(url: str, body: dict, retries: int = 5, host: str = "") -> int:
    data = json.dumps(body).encode()
    key = str(uuid.uuid4())
    for attempt in range(retries):
        req = urllib.request.Request(f"{url}/orders", data=data, method="POST", headers={  # noqa: S310 - the user's own API
            "Content-Type": "application/json", "Idempotency-Key": key, **({"Host": host} if host else {})})
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the user's own API
                return resp.status
        except urllib.error.HTTPError as e:
            if e.code != 503 or attempt == retries - 1:
                return e.code
            time.sleep(float(e.headers.get("Retry-After", "1")))
        except OSError:
            if attempt == retries - 1:
                return 0
            time.sleep(1)
    return 0


def run(count: int = 10, url: str = "http://127.0.0.1:8080", host_header: str = "", concurrency: int = 4,
        seed: int | None = None) -> int:
    """Post `count` fake orders to the API at `url` (with the Host header `host_header` when not empty:
    an Ingress host), `concurrency` at a time; `seed` makes the data repeatable.  The exit code: 0 when
    every order was created, else 1."""
    orders = fake_orders(count, random.Random(seed))
    started = time.monotonic()
    created = failed = 0
    with ThreadPoolExecutor(concurrency) as pool:
        for i, status in enumerate(pool.map(lambda b: post(url.rstrip("/"), b, host=host_header), orders), 1):
            if status == 201:
                created += 1
            else:
                failed += 1
            done = int(30 * i / len(orders))
            sys.stdout.write(f"\r[{'#' * done}{'.' * (30 - done)}] {i}/{len(orders)}")
            sys.stdout.flush()
    took = time.monotonic() - started
    print(f"\nsent {len(orders)}, created {created}, failed {failed}, "
          f"{len(orders) / took if took else 0:.1f} orders/s")
    return 0 if failed == 0 else 1
