"""MariaDB from Debian's `mariadb-server`, run as a plain process on 127.0.0.1:3306.

The data directory, socket and pid live under .local/; the system service is
never used.  Root logs in only over the local socket (unix_socket auth); the
harness creates two password users whose passwords it generates into
.local/etc/credentials.env:

* the admin user (MYSQL_ADMIN_USER) owns schema changes: migrations, tests
  creating throw-away databases, the operator in the local stack;
* the application user (MYSQL_USER) may only read and write rows of the
  application database (created by scripts/stack's provisioning step).
"""
from __future__ import annotations

import os
import subprocess

from . import core, network
from .credentials import credentials

PORT = int(os.environ.get("MYSQL_PORT", "3306"))
DATADIR = core.DATA / "mariadb"
SOCKET = core.RUN / "mysqld.sock"


def client(sql: str, *, database: str | None = None, timeout: float = 10) -> str:
    """Run SQL as root over the local socket with the mariadb CLI; returns tab-separated output."""
    argv = ["mariadb", "--no-defaults", f"--socket={SOCKET}", "-uroot", "--batch", "--skip-column-names",
            f"--connect-timeout={int(timeout)}", "-e", sql]
    if database:
        argv.append(database)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout


class MariaDB(core.Component):
    name = "mariadb"
    address = f"127.0.0.1:{PORT}"
    start_timeout = 90

    def install(self) -> None:
        if core.which("mariadbd") and core.which("mariadb-install-db"):
            return
        core.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                 "mariadb-server mariadb-client", "MariaDB apt-get install mariadb-server", shell=True)

    def start(self) -> None:
        core.require_ports_free(self.name, PORT)
        if not (DATADIR / "mysql").is_dir():
            DATADIR.mkdir(parents=True, exist_ok=True)
            core.run(["mariadb-install-db", "--no-defaults", f"--datadir={DATADIR}", "--user=root",
                      "--auth-root-authentication-method=socket", "--skip-test-db"],
                     "MariaDB initialise data directory", log=core.LOGS / "mariadb-install.log")
        core.spawn(self.name, [
            "mariadbd", "--no-defaults", f"--datadir={DATADIR}", "--user=root",
            "--bind-address=127.0.0.1", f"--port={PORT}", f"--socket={SOCKET}",
            f"--pid-file={core.RUN / 'mariadbd.pid'}", f"--log-error={self.log}",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
            # Row images and strict mode as a MySQL 8 server has them by default.
            "--sql-mode=STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
            "--innodb-buffer-pool-size=256M", "--max-connections=500",
            "--skip-name-resolve",
        ])

    def ready(self) -> bool:
        return client("SELECT 1").strip() == "1"

    def version(self) -> str:
        out = subprocess.run(["mariadbd", "--version"], capture_output=True, text=True).stdout
        return out.split()[2].split("-")[0] if out else "?"

    def up(self) -> None:
        super().up()
        self.ensure_admin_user()

    def ensure_admin_user(self) -> None:
        """The password admin user the migrations, tests and operator use (idempotent)."""
        creds = credentials()
        user, pw = creds["MYSQL_ADMIN_USER"], creds["MYSQL_ADMIN_PASSWORD"]
        # From the host (tests, scripts) and from the local node's pods (the operator), whose
        # connections arrive forwarded from the pod bridge with their pod address as source.
        for host in ("127.0.0.1", f"{network.GATEWAY.rsplit('.', 1)[0]}.0/255.255.255.0"):
            client(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{pw}';"
                   f"ALTER USER '{user}'@'{host}' IDENTIFIED BY '{pw}';"
                   f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'{host}' WITH GRANT OPTION;")
