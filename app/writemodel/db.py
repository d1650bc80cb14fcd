"""MySQL connections (pymysql), shared by the API, the outbox relay, the operator and scripts.

Connections are made lazily, after gunicorn forks (never at import time), and
reused per thread.  A connection that failed is dropped so the next use
reconnects: the API survives a MySQL restart without being restarted itself.
"""
from __future__ import annotations

import ssl
import threading

import pymysql
import pymysql.constants.CLIENT

from ..config import MySQLSettings

# Errors that mean "the server is unreachable or the connection died"; the
# transaction (if any) did not commit unless it died during COMMIT itself.
CONNECTION_ERRORS = {2003, 2006, 2013, 2014, 2055, 1927, 1053, 4031}
# Errors after which the whole transaction may be retried safely.
RETRYABLE_TXN_ERRORS = {1205, 1213}  # lock wait timeout, deadlock


def error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (pymysql.err.InterfaceError, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, pymysql.err.OperationalError) and error_code(exc) in CONNECTION_ERRORS


# The client's --ssl-mode names, as MySQL's own clients and connectors spell them.
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


def tls_args(s: MySQLSettings) -> dict:
    """pymysql arguments for MYSQL_SSL_MODE / MYSQL_SSL_CA, with MySQL's client semantics.

    PREFERRED (the default when no CA is given): TLS whenever the server offers it, its
    certificate unchecked.  REQUIRED: no TLS, no connection.  VERIFY_CA (the default when
    MYSQL_SSL_CA is given): the certificate must chain to that CA (or to the system's CAs).
    VERIFY_IDENTITY: and must name MYSQL_HOST.  Over TLS, caching_sha2_password needs no RSA
    key exchange; without TLS, PyMySQL does it with `cryptography`."""
    mode = (s.ssl_mode or ("VERIFY_CA" if s.ssl_ca else "PREFERRED")).upper()
    if mode not in SSL_MODES:
        raise ValueError(f"MYSQL_SSL_MODE must be one of {', '.join(SSL_MODES)}, got {s.ssl_mode!r}")
    if mode == "DISABLED":
        return {"ssl_disabled": True}
    if mode == "PREFERRED":
        return {}  # PyMySQL's own default: TLS when offered, unverified
    ctx = ssl.create_default_context(cafile=s.ssl_ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # MySQL's auto-generated certificates lack extensions the strict X.509 check wants.
    ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    if mode != "VERIFY_IDENTITY":
        ctx.check_hostname = False
    if mode == "REQUIRED":
        ctx.verify_mode = ssl.CERT_NONE
    return {"ssl": ctx}


class RefusedAuthPlugin:
    """A server that asks for `mysql_clear_password` (or MariaDB's `dialog`) wants the password
    itself; PyMySQL would send it as written.  No connection of ours answers that: a real server of
    ours never asks (caching_sha2_password, mysql_native_password, ed25519), and a server that does
    is the one a changed host name points at."""

    def __init__(self, conn: pymysql.connections.Connection):
        self.conn = conn

    def authenticate(self, pkt):
        raise pymysql.err.OperationalError(2059, "the server asked for the password in clear text "
                                                 "(mysql_clear_password or dialog); refused")


REFUSED_AUTH_PLUGINS = {"mysql_clear_password": RefusedAuthPlugin, "dialog": RefusedAuthPlugin}


def server_kind(conn: pymysql.connections.Connection) -> str:
    """The server kind, "mariadb" or "mysql": the two differ in a little SQL (orders.py's upsert)."""
    return "mariadb" if "mariadb" in conn.get_server_info().lower() else "mysql"


def connect(s: MySQLSettings, *, admin: bool = False, database: str | None = "", autocommit: bool = False,
            read_timeout: float = 10.0, multi_statements: bool = False) -> pymysql.connections.Connection:
    """Open one connection; `database=None` connects to no database (admin bootstrap).

    `multi_statements` lets one round trip carry a whole transaction (the order
    command); it is only turned on for connections whose SQL is fixed text with
    bound parameters."""
    user, password = (s.admin_user, s.admin_password) if admin else (s.user, s.password)
    if not user:
        which = "MYSQL_ADMIN_USER" if admin else "MYSQL_USER"
        raise RuntimeError(f"{which} is not set")
    conn = pymysql.connect(
        host=s.host, port=s.port, user=user, password=password,
        database=(s.database if database == "" else database),
        charset="utf8mb4", autocommit=autocommit,
        client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS if multi_statements else 0,
        connect_timeout=s.connect_timeout, read_timeout=read_timeout, write_timeout=read_timeout,
        auth_plugin_map=REFUSED_AUTH_PLUGINS, **tls_args(s),
    )
    with conn.cursor() as cur:
        # READ COMMITTED: fewer gap locks, so concurrent upserts of one customer do not deadlock.
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("SET time_zone = '+00:00'")
    return conn


class ConnectionPool:
    """One reusable connection per thread (gunicorn gthread workers, the relay thread)."""

    def __init__(self, settings: MySQLSettings, *, multi_statements: bool = False):
        self.settings = settings
        self.multi_statements = multi_statements
        self._local = threading.local()

    def get(self) -> pymysql.connections.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.open:
            conn = connect(self.settings, multi_statements=self.multi_statements)
            self._local.conn = conn
        return conn

    def discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass
