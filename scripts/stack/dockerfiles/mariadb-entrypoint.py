"""Entrypoint of the development MariaDB image (dev-stores.Dockerfile).

First start (no completed initialisation in /var/lib/mysql): `mariadb-install-db`, then a
temporary server without networking sets the root password from MARIADB_ROOT_PASSWORD (or
MYSQL_ROOT_PASSWORD) for 'root'@'localhost' and 'root'@'%'; only then is the directory marked
initialised, so a crash half-way starts over instead of serving a database without a password.
Every start then execs mariadbd on 0.0.0.0:3306 with the container's arguments appended.
Development only; the password never reaches a command line (stdin of the client).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

DATADIR = Path("/var/lib/mysql")
MARKER = DATADIR / ".simplecqrs-initialised"
INIT_SOCKET = "/run/mysqld/init.sock"


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def initialise(password: str) -> None:
    for child in DATADIR.iterdir():          # a half-made directory from an earlier crash
        subprocess.run(["rm", "-rf", str(child)], check=True)
    subprocess.run(["mariadb-install-db", f"--datadir={DATADIR}", "--skip-test-db", "--skip-name-resolve",
                    "--auth-root-authentication-method=normal"], check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(["mariadbd", f"--datadir={DATADIR}", "--skip-networking", f"--socket={INIT_SOCKET}"])
    try:
        for _ in range(120):
            if subprocess.run(["mariadb-admin", f"--socket={INIT_SOCKET}", "-uroot", "ping"],
                              capture_output=True).returncode == 0:
                break
            if server.poll() is not None:
                sys.exit(f"mariadbd exited {server.returncode} during initialisation")
            time.sleep(1)
        pw = sql_string(password)
        # mariadb-install-db also made password-less root@127.0.0.1, root@::1, root@<hostname>.
        others = ", ".join(f"'root'@{sql_string(h)}" for h in ("127.0.0.1", "::1", socket.gethostname()))
        sql = (f"DROP USER IF EXISTS {others};"
               f"ALTER USER 'root'@'localhost' IDENTIFIED BY {pw};"
               f"CREATE USER 'root'@'%' IDENTIFIED BY {pw};"
               "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;")
        subprocess.run(["mariadb", f"--socket={INIT_SOCKET}", "-uroot"], input=sql.encode(), check=True)
    finally:
        server.terminate()
        server.wait(timeout=120)
    MARKER.touch()
    print("mariadb: initialised /var/lib/mysql", flush=True)


def main() -> None:
    if not MARKER.exists():
        password = os.environ.get("MARIADB_ROOT_PASSWORD") or os.environ.get("MYSQL_ROOT_PASSWORD")
        if not password:
            sys.exit("MARIADB_ROOT_PASSWORD is required on the first start")
        initialise(password)
    # Debian's 50-server.cnf binds 127.0.0.1: a pod serves on its own address.
    os.execvp("mariadbd", ["mariadbd", f"--datadir={DATADIR}", "--bind-address=0.0.0.0", *sys.argv[1:]])


if __name__ == "__main__":
    main()
