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
import subprocess
from pathlib import Path

from . import core, network
from .credentials import credentials

SERVERS = ("mysql", "mariadb")
CHOICE_FILE = core.ETC / "write-store"
PORT = int(os.environ.get("MYSQL_PORT", "3306"))
SECOND_PORT = 3307


def chosen() -> str:
    """The server on PORT: $SIMPLECQRS_WRITE_STORE, else what `make up` recorded, else mysql."""
    name = os.environ.get("SIMPLECQRS_WRITE_STORE") or (
        CHOICE_FILE.read_text().strip() if CHOICE_FILE.exists() else "mysql")
    if name not in SERVERS:
        raise core.StackError("write-store", f"SIMPLECQRS_WRITE_STORE must be one of {SERVERS}, got {name!r}")
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


class MySQLServer(core.Component):
    """What both servers share: a root-over-socket client, readiness and the admin user."""

    start_timeout = 90

    def __init__(self, port: int = PORT):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.datadir = core.DATA / self.name
        self.socket = core.RUN / f"{self.name}.sock"

    def cli(self) -> list[str]:
        """argv of the server's own command-line client."""
        raise NotImplementedError

    def client(self, sql: str, *, database: str | None = None, timeout: float = 10) -> str:
        """Run SQL as root over the local socket; returns tab-separated output."""
        argv = [*self.cli(), "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch",
                "--skip-column-names", f"--connect-timeout={int(timeout)}", "-e", sql]
        if database:
            argv.append(database)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout

    def common_flags(self) -> list[str]:
        return [
            "--no-defaults", f"--datadir={self.datadir}", "--user=root",
            "--bind-address=127.0.0.1", f"--port={self.port}", f"--socket={self.socket}",
            f"--pid-file={core.RUN / f'{self.name}d.pid'}", f"--log-error={self.log}",
            "--character-set-server=utf8mb4", "--innodb-buffer-pool-size=256M", "--max-connections=500",
            "--skip-name-resolve",
            # A row-based binlog with full images and column names: the binlog relay's input
            # (app/relay/binlog.py; MySQL 9 has the binlog on by default, MariaDB off).
            "--log-bin=binlog", "--server-id=1", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
        ]

    def ready(self) -> bool:
        return self.client("SELECT 1").strip() == "1"

    def wait_ready(self) -> None:
        super().wait_ready()
        self.ensure_admin_user()

    def ensure_admin_user(self) -> None:
        """The password admin user the migrations, tests and operator use (idempotent)."""
        creds = credentials()
        user, pw = creds["MYSQL_ADMIN_USER"], creds["MYSQL_ADMIN_PASSWORD"]
        # From the host (tests, scripts) and from the local node's pods (the operator), whose
        # connections arrive forwarded from the pod bridge with their pod address as source.
        for host in ("127.0.0.1", f"{network.GATEWAY.rsplit('.', 1)[0]}.0/255.255.255.0"):
            self.client(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{pw}';"
                        f"ALTER USER '{user}'@'{host}' IDENTIFIED BY '{pw}';"
                        f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'{host}' WITH GRANT OPTION;")

    def ca_file(self) -> Path | None:
        """The CA of the server's TLS certificate, where it made one."""
        ca = self.datadir / "ca.pem"
        return ca if ca.exists() else None
