"""The write store: Oracle MySQL (the default) or MariaDB, each a plain process on loopback.

One setting picks the server the product uses, on MYSQL_PORT (3306):

    SIMPLECQRS_WRITE_STORE=mysql     Oracle MySQL 9.7 from Debian sid, in a root of its own (mysql.py)
    SIMPLECQRS_WRITE_STORE=mariadb   MariaDB 10.11 from Debian bookworm (mariadb.py)

`make up` starts the chosen one and records the choice in .local/etc/write-store, so `make
status` and `make down` later know it without the variable.  `make test` also starts the other
on SECOND_PORT (3307): the command, outbox and fault tests run on both servers (conftest.py).

Both servers: data, socket and pid under .local/; root logs in only over the local socket as
the operating-system user root (auth_socket / unix_socket); the harness creates the password
admin user (MYSQL_ADMIN_USER, generated into .local/etc/credentials.env) the migrations, tests
and operator use.  The application user (MYSQL_USER) may only read and write rows of its
database (created by provisioning, app/writemodel/migrations.py).
"""
from __future__ import annotations

import os

from . import core, errors, paths
from .addresses import MYSQL_PORT as PORT
from .addresses import MYSQL_SECOND_PORT as SECOND_PORT

SERVERS = ("mysql", "mariadb")
CHOICE_FILE = paths.ETC / "write-store"


def chosen() -> str:
    """The server on PORT: $SIMPLECQRS_WRITE_STORE, else what `make up` recorded, else mysql."""
    name = os.environ.get("SIMPLECQRS_WRITE_STORE") or (
        CHOICE_FILE.read_text().strip() if CHOICE_FILE.exists() else "mysql")
    if name not in SERVERS:
        raise errors.StackError("write-store", f"SIMPLECQRS_WRITE_STORE must be one of {SERVERS}, got {name!r}")
    return name


def other() -> str:
    return next(n for n in SERVERS if n != chosen())


def name_on(port: int) -> str:
    """Which server listens on `port` (PORT: the chosen one; SECOND_PORT: the other)."""
    return chosen() if port == PORT else other()


def record_choice() -> None:
    CHOICE_FILE.parent.mkdir(parents=True, exist_ok=True)
    CHOICE_FILE.write_text(chosen() + "\n")


def servers(*, both: bool) -> list[core.Component]:
    """The chosen server on PORT, and with `both` the other on SECOND_PORT."""
    from .mariadb import MariaDB
    from .mysql import OracleMySQL

    kinds = {"mysql": OracleMySQL, "mariadb": MariaDB}
    comps = [kinds[chosen()](PORT)]
    if both:
        comps.append(kinds[other()](SECOND_PORT))
    return comps
