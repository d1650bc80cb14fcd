"""Compare the write model (MySQL) and the read model (Cassandra), order by order.

    simplecqrs audit [--json] [--show N]     (app/cli.py; locally with an instance's settings: scripts/audit)

For every order: present in both, and every field equal (description,
quantity, customer email and names as given with the order, creation time),
in orders_by_id and in the customer's list; for every customer: the names.
Prints a summary (missing, extra, different) and exits 0 only when the two
models are equal.  Settings come from the usual MYSQL_* and CASSANDRA_* variables.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC

from cassandra.query import SimpleStatement

from app.config import Settings, load
from app.events import format_time
from app.readmodel.session import connect as cassandra_connect
from app.readmodel.store import ReadModel
from app.writemodel.db import connect as mysql_connect


@dataclass
class Report:
    orders_write: int = 0
    orders_read: int = 0
    customers_write: int = 0
    customers_read: int = 0
    missing: list[str] = field(default_factory=list)      # in MySQL, not in Cassandra
    extra: list[str] = field(default_factory=list)        # in Cassandra, not in MySQL
    different: list[str] = field(default_factory=list)    # in both, some field differs

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def summary(self) -> str:
        return (f"write model: {self.orders_write} orders, {self.customers_write} customers; "
                f"read model: {self.orders_read} orders, {self.customers_read} customers; "
                f"missing {len(self.missing)}, extra {len(self.extra)}, different {len(self.different)}"
                f" -> {'EQUAL' if self.equal else 'NOT EQUAL'}")


def _ts(dt) -> str:
    return format_time(dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt)


def write_model(s: Settings) -> tuple[dict, dict]:
    conn = mysql_connect(s.mysql, admin=not s.mysql.user, read_timeout=300)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, customer_email, first_name, last_name, description, quantity, created_at FROM orders")
            orders = {r[0]: (r[1], r[2], r[3], r[4], int(r[5]), _ts(r[6])) for r in cur.fetchall()}
            cur.execute("SELECT email, first_name, last_name FROM customers")
            customers = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
        conn.rollback()
    finally:
        conn.close()
    return orders, customers


def read_model(s: Settings) -> tuple[dict, dict, dict]:
    session = cassandra_connect(s.cassandra, keyspace=False, request_timeout=60)
    try:
        model = ReadModel(session, s.cassandra.keyspace)
        gen = model.state(refresh=True)[0]
        ks = model.ks

        def scan(cql):
            return session.execute(SimpleStatement(cql, fetch_size=2000))

        by_id = {str(r.order_id): (r.email, r.first_name, r.last_name, r.description, r.quantity, _ts(r.created_at))
                 for r in scan(f"SELECT * FROM {ks}.orders_by_id_g{gen}")}
        by_customer = {str(r.order_id): (r.email, r.first_name, r.last_name, r.description, r.quantity,
                                         _ts(r.created_at))
                       for r in scan(f"SELECT * FROM {ks}.orders_by_customer_g{gen}")}
        customers = {r.email: (r.first_name, r.last_name)
                     for r in scan(f"SELECT email, first_name, last_name FROM {ks}.customers_g{gen}")}
    finally:
        session.cluster.shutdown()
    return by_id, by_customer, customers


def audit(s: Settings) -> Report:
    w_orders, w_customers = write_model(s)
    r_by_id, r_by_customer, r_customers = read_model(s)
    rep = Report(orders_write=len(w_orders), orders_read=len(r_by_id),
                 customers_write=len(w_customers), customers_read=len(r_customers))
    for oid, row in w_orders.items():
        if oid not in r_by_id:
            rep.missing.append(f"order {oid}")
        elif r_by_id[oid] != row:
            rep.different.append(f"order {oid}: write {row} != read {r_by_id[oid]}")
        if oid not in r_by_customer:
            rep.missing.append(f"order {oid} in its customer's list")
        elif r_by_customer[oid] != row:
            rep.different.append(f"order {oid} in customer list: write {row} != read {r_by_customer[oid]}")
    rep.extra += [f"order {oid}" for oid in r_by_id.keys() - w_orders.keys()]
    rep.extra += [f"order {oid} in a customer list" for oid in r_by_customer.keys() - w_orders.keys()]
    for email, names in w_customers.items():
        if email not in r_customers:
            rep.missing.append(f"customer {email}")
        elif r_customers[email] != names:
            rep.different.append(f"customer {email}: write {names} != read {r_customers[email]}")
    rep.extra += [f"customer {e}" for e in r_customers.keys() - w_customers.keys()]
    return rep


def run(as_json: bool = False, show: int = 10) -> int:
    """Audit the stores of the environment's settings and print the report: as JSON, or `show` differences
    of each kind and the summary.  The exit code: 0 when the two models are equal, else 1."""
    rep = audit(load())
    if as_json:
        print(json.dumps({"equal": rep.equal, "orders_write": rep.orders_write, "orders_read": rep.orders_read,
                          "customers_write": rep.customers_write, "customers_read": rep.customers_read,
                          "missing": rep.missing, "extra": rep.extra, "different": rep.different}, indent=1))
    else:
        for kind in ("missing", "extra", "different"):
            for line in getattr(rep, kind)[:show]:
                print(f"{kind}: {line}")
        print(rep.summary())
    return 0 if rep.equal else 1
