"""MariaDB 10.11 from Debian's `mariadb-server`, one of the two write stores (writestore.py).

The system service is never used: mariadbd runs as a plain process with its data, socket and pid
under .local/.  Root logs in only over the local socket (unix_socket auth, MariaDB's default).
"""
from __future__ import annotations

import shutil
import subprocess

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from . import commands, console, errors, paths, ports, processes
from .mysqlserver import MySQLServer


class MariaDB(MySQLServer):
    name = "mariadb"

    def install(self) -> None:
        if paths.which("mariadbd") and paths.which("mariadb-install-db"):
            return
        commands.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                     "mariadb-server mariadb-client", "MariaDB apt-get install mariadb-server", shell=True)

    def cli(self) -> list[str]:
        return ["mariadb"]

    def start(self) -> None:
        ports.require_ports_free(self.name, self.port)
        if not (self.datadir / "mysql").is_dir():
            self.initialise()
        processes.spawn(self.name, [
            "mariadbd", *self.common_flags(), "--collation-server=utf8mb4_unicode_ci",
            # Strict mode as a MySQL 8 server has it by default.
            "--sql-mode=STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
            "--binlog-format=ROW",  # MariaDB's default is MIXED; MySQL 9's is ROW (and the option deprecated)
        ])

    def initialise(self) -> None:
        """A new data directory, made beside and renamed into place when complete (as MySQL's).

        Tried twice: a CI run once saw the bootstrap fail on a clean clone where every run before
        and since passed; the server's own [ERROR] lines are printed each time (commands.run)."""
        tmp = self.datadir.with_name(f".{self.name}.init")

        def bootstrap() -> None:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(self.datadir, ignore_errors=True)  # an older, unfinished one (no mysql/ inside)
            tmp.mkdir(parents=True)
            commands.run(["mariadb-install-db", "--no-defaults", f"--datadir={tmp}", "--user=root",
                          "--auth-root-authentication-method=socket", "--skip-test-db"],
                         "MariaDB initialise data directory", log=paths.LOGS / "mariadb-install.log")

        Retrying(retry=retry_if_exception_type(errors.StackError), stop=stop_after_attempt(2), reraise=True,
                 before_sleep=lambda _: console.say("MariaDB initialise failed (its errors above); trying once more"),
                 )(bootstrap)
        tmp.rename(self.datadir)

    def version(self) -> str:
        out = subprocess.run(["mariadbd", "--version"], capture_output=True, text=True).stdout
        return out.split()[2].split("-")[0] if out else "?"
