"""Oracle MySQL 9.7, the default write store (writestore.py), from Debian sid.

bookworm ships no MySQL server; sid ships Oracle's `mysql-server-core`.  Installing it into
this bookworm host would pull in sid's libc, so it lives in a minbase sid root of its own in
the per-user cache (debootstrap, about 2 minutes once), and runs from there through that
root's own dynamic loader: no chroot, so the data directory, socket and logs stay under
.local/ like every other component's.

`--initialize-insecure` makes root@localhost without a password; the init file switches it
to auth_socket in the same step, so root is never open: only the operating-system user root
logs in, over the socket.  The server makes its own TLS certificates on first start and
offers TLS 1.2/1.3; new users get caching_sha2_password (MySQL 9 has no
mysql_native_password).
"""
from __future__ import annotations

import shutil
import subprocess

from . import commands, images, paths, ports, processes
from .mysqlserver import MySQLServer

SUITE = "sid"
PACKAGES = ("mysql-server-core", "mysql-client-core")
ROOT = paths.CACHE / "rootfs" / "sid-mysql"
LOADER = ROOT / "lib64" / "ld-linux-x86-64.so.2"
LIBRARY_PATH = f"{ROOT}/usr/lib/x86_64-linux-gnu:{ROOT}/lib/x86_64-linux-gnu"
ROOT_AUTH = ("INSTALL PLUGIN auth_socket SONAME 'auth_socket.so';\n"   # recorded in mysql.plugin: loaded at every start
             "ALTER USER 'root'@'localhost' IDENTIFIED WITH auth_socket;\n")


def from_root(program: str) -> list[str]:
    """argv prefix running one of the sid root's programs with the root's own libraries."""
    return [str(LOADER), "--library-path", LIBRARY_PATH, str(ROOT / program)]


class OracleMySQL(MySQLServer):
    name = "mysql"

    def install(self) -> None:
        images.debian_root(SUITE, PACKAGES, ROOT, required=("usr/sbin/mysqld", "usr/bin/mysql",
                                                            "lib64/ld-linux-x86-64.so.2"))

    def cli(self) -> list[str]:
        return from_root("usr/bin/mysql")

    def server_flags(self) -> list[str]:
        share = ROOT / "usr" / "share" / "mysql"
        return [f"--basedir={ROOT / 'usr'}", f"--lc-messages-dir={share}", f"--character-sets-dir={share / 'charsets'}",
                f"--plugin-dir={ROOT / 'usr' / 'lib' / 'mysql' / 'plugin'}",
                "--secure-file-priv=",      # the package's /var/lib/mysql-files is not ours
                "--mysqlx=OFF"]

    def start(self) -> None:
        ports.require_ports_free(self.name, self.port)
        if not self.datadir.is_dir():
            # Initialised beside, renamed into place when complete: a failed run leaves nothing
            # that a later start would take for a data directory.
            tmp = self.datadir.with_name(f".{self.name}.init")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            init = paths.ETC / "mysql-init.sql"
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text(ROOT_AUTH)
            commands.run([*from_root("usr/sbin/mysqld"), "--no-defaults", "--initialize-insecure", "--user=root",
                          f"--datadir={tmp}", *self.server_flags(), f"--init-file={init}"],
                         "MySQL initialise data directory", log=paths.LOGS / "mysql-install.log")
            tmp.rename(self.datadir)
        processes.spawn(self.name, [*from_root("usr/sbin/mysqld"), *self.common_flags(), *self.server_flags()])

    def version(self) -> str:
        out = subprocess.run([*from_root("usr/sbin/mysqld"), "--version"], capture_output=True, text=True).stdout
        return out.split()[2].split("-")[0] if out else "?"
