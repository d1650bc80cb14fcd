"""What the two write-store servers share (mysql.py: Oracle MySQL, mariadb.py: MariaDB): a root
client over the local socket, the common server flags, readiness, and the password admin user the
migrations, tests and operator use.  Which one runs where: writestore.py.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from . import core, paths
from .addresses import GATEWAY, MYSQL_PORT
from .credentials import credentials


class MySQLServer(core.Component):
    """What both servers share: a root-over-socket client, readiness and the admin user."""

    start_timeout = 90

    def __init__(self, port: int = MYSQL_PORT):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.datadir = paths.DATA / self.name
        self.socket = paths.RUN / f"{self.name}.sock"

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
            f"--pid-file={paths.RUN / f'{self.name}d.pid'}", f"--log-error={self.log}",
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
        for host in ("127.0.0.1", f"{GATEWAY.rsplit('.', 1)[0]}.0/255.255.255.0"):
            self.client(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{pw}';"
                        f"ALTER USER '{user}'@'{host}' IDENTIFIED BY '{pw}';"
                        f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'{host}' WITH GRANT OPTION;")

    def ca_file(self) -> Path | None:
        """The CA of the server's TLS certificate, where it made one."""
        ca = self.datadir / "ca.pem"
        return ca if ca.exists() else None
