"""Versioned, idempotent MySQL migrations, and the least-privileged application user.

The operator and the local stack (`make up`) both call `provision()`:

  1. CREATE DATABASE IF NOT EXISTS
  2. apply every migrations/NNNN_name.sql not yet recorded in schema_migrations,
     under a named lock so two appliers never race
  3. create/update the application user with SELECT, INSERT, UPDATE, DELETE on
     that database only: no DDL, no other database;
  4. create/update the outbox relay's user (when given): rights on the outbox tables only, and
     with the binlog relay the two global replication privileges it cannot do without.

Each step looks before it writes: an up-to-date database takes only reads, and the user is
left alone when it logs in with its password and already holds its grants.  (The operator
calls this every resync: an `ALTER USER ... IDENTIFIED BY` each time would fill the binlog
and fail under `password_history`.)

Run by hand: `python -m app.writemodel.migrations` (reads MYSQL_* settings).
"""
from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

from ..config import MySQLSettings, load
from .db import connect, error_code

MIGRATIONS = Path(__file__).with_name("migrations")
APP_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# The relay's user, per table: the outbox (read; mark published, by the poller; prune), the
# idempotency keys (prune: a DELETE's WHERE reads), its own position.  With the binlog relay also
# REPLICATION SLAVE (read the binlog) and REPLICATION CLIENT (SHOW BINARY LOGS, BINARY LOG STATUS):
# global privileges, since MySQL has none for one database's binlog, so this user never holds the
# application's rights.
RELAY_TABLE_PRIVILEGES = {"outbox": "SELECT, UPDATE, DELETE", "idempotency_keys": "SELECT, DELETE",
                          "outbox_relay": "SELECT, INSERT, UPDATE, DELETE"}
REPLICATION_PRIVILEGES = "REPLICATION SLAVE, REPLICATION CLIENT"
LOGIN_REFUSED = {1045, 1698}    # ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
_IDENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_USER = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def quote_ident(name: str) -> str:
    """Identifiers cannot be bound as parameters: allow only a safe alphabet, then backquote."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid MySQL identifier {name!r}")
    return f"`{name}`"


def migrations() -> list[tuple[int, str, str]]:
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        out.append((version, path.stem, path.read_text()))
    return out


def pending(cur, database: str) -> list[tuple[int, str, str]]:
    """The migrations not yet recorded in `database` (all of them if it or its table is missing)."""
    cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, "schema_migrations"))
    if cur.fetchone()[0] == 0:
        return migrations()
    cur.execute(f"SELECT version FROM {quote_ident(database)}.schema_migrations")
    done = {row[0] for row in cur.fetchall()}
    return [m for m in migrations() if m[0] not in done]


def pending_for(s: MySQLSettings) -> list[str]:
    """The names of the migrations `s.database` still needs (read with the admin account)."""
    conn = connect(s, admin=True, database=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            return [name for _, name, _ in pending(cur, s.database)]
    finally:
        conn.close()


def migrate(s: MySQLSettings, applied: list[str] | None = None) -> list[str]:
    """Create the database and apply pending migrations; returns the names applied now.
    `applied`, if given, has each name appended as it is applied (and is returned): a caller that
    fails on a later one still knows what this call did (the operator reports it as an Event)."""
    db = quote_ident(s.database)
    applied_now: list[str] = [] if applied is None else applied
    # Look first, on a connection with the short default read timeout: it also bounds the MySQL
    # handshake (PyMySQL reads it under read_timeout), so a server that accepts and never answers
    # holds the caller for seconds, not for the DDL's two minutes.
    if not pending_for(s):
        return applied_now                      # up to date: reads only, nothing written
    # Multi-statement: a migration file goes to the server as written, and the server's own parser
    # splits it (no splitting on ";" here, which a literal or a comment could contain).
    conn = connect(s, admin=True, database=None, autocommit=True, read_timeout=120, multi_statements=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"USE {db}")
            cur.execute("SELECT GET_LOCK(%s, 60)", (f"simplecqrs-migrate-{s.database}",))
            if cur.fetchone()[0] != 1:
                raise RuntimeError("could not take the migration lock within 60 s")
            try:
                cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                            " version INT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL,"
                            " applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))")
                cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
                for version, name, sql in migrations():
                    if version in done:
                        continue
                    # DDL commits implicitly in MySQL; each statement is written to be re-runnable.
                    cur.execute(sql)
                    while cur.nextset():        # the results of the later statements (an error raises)
                        pass
                    cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                    applied_now.append(name)
            finally:
                cur.execute("SELECT RELEASE_LOCK(%s)", (f"simplecqrs-migrate-{s.database}",))
    finally:
        conn.close()
    return applied_now


def user_state(s: MySQLSettings, wanted: list[str]) -> str:
    """"ok" when the user of `s` logs in with its password and its grants contain each of
    `wanted` (texts of SHOW GRANTS without backquotes); otherwise "no-login" or "no-grants".
    Looked at as the user itself: any user may SHOW GRANTS for itself, so the admin needs no
    read access to the mysql schema."""
    try:
        conn = connect(s, database=None, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - only "cannot log in" is an answer; an outage is raised
        # Access denied: no such user, or another password (MariaDB answers an unknown user with 1698).
        if error_code(exc) in LOGIN_REFUSED:
            return "no-login"
        raise
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = " ".join(row[0] for row in cur.fetchall()).replace("`", "")
    finally:
        conn.close()
    return "ok" if all(w in grants for w in wanted) else "no-grants"


def app_user_state(s: MySQLSettings) -> str:
    return user_state(s, [f"GRANT {APP_PRIVILEGES} ON {s.database}.* TO "])


def _ensure_user(s: MySQLSettings, host: str, grants: list[str], wanted: list[str]) -> list[str]:
    """Create or repair the user of `s` with `grants` (GRANT statements without their "TO ...");
    returns what it changed (nothing when the user is as it should be)."""
    if not _USER.match(s.user):
        raise ValueError(f"invalid MySQL user name {s.user!r}")
    state = user_state(s, wanted)
    if state == "ok":
        return []
    conn = connect(s, admin=True, database=None, autocommit=True)
    changed = []
    try:
        with conn.cursor() as cur:
            if state == "no-login":
                # Missing, or there with another password (e.g. its Secret was replaced).
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (s.user, host, s.password))
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (s.user, host, s.password))
                changed.append("password")
            for grant in grants:
                cur.execute(f"{grant} TO %s@%s", (s.user, host))
            changed.append("grants")
    finally:
        conn.close()
    return changed


def ensure_app_user(s: MySQLSettings, host: str = "%") -> list[str]:
    """The application user: row access to its own database, nothing else."""
    db = quote_ident(s.database)
    return _ensure_user(s, host, [f"GRANT {APP_PRIVILEGES} ON {db}.*"], [f"GRANT {APP_PRIVILEGES} ON {s.database}.* TO "])


def relay_grants(database: str, binlog: bool) -> tuple[list[str], list[str]]:
    """(GRANT statements, texts SHOW GRANTS shows for them) of the relay's user.  MariaDB shows
    the replication privileges under its own names (REPLICATION REPLICA, BINLOG MONITOR), so the
    check looks for the table grants, which both servers show alike, and for "REPLICATION"."""
    db = quote_ident(database)
    grants = [f"GRANT {p} ON {db}.{quote_ident(t)}" for t, p in RELAY_TABLE_PRIVILEGES.items()]
    wanted = [f"GRANT {p} ON {database}.{t} TO " for t, p in RELAY_TABLE_PRIVILEGES.items()]
    if binlog:
        grants.append(f"GRANT {REPLICATION_PRIVILEGES} ON *.*")
        wanted.append("GRANT REPLICATION")
    return grants, wanted


def ensure_relay_user(s: MySQLSettings, relay: tuple[str, str], host: str = "%", binlog: bool = True) -> list[str]:
    """The outbox relay's user (`relay`: name and password) on the database of `s`."""
    grants, wanted = relay_grants(s.database, binlog)
    return _ensure_user(replace(s, user=relay[0], password=relay[1]), host, grants, wanted)


def drop(s: MySQLSettings, host: str = "%", relay_user: str = "") -> None:
    """Remove the database, the application user and the relay's (the operator's deletionPolicy: Delete)."""
    conn = connect(s, admin=True, database=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(s.database)}")
            for user in (s.user, relay_user):
                if user and _USER.match(user):
                    cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
    finally:
        conn.close()


def provision(s: MySQLSettings, host: str = "%", relay: tuple[str, str] | None = None,
              binlog: bool = True, applied: list[str] | None = None) -> list[str]:
    """migrate(), ensure_app_user() and (given its login) ensure_relay_user(); returns the
    migrations applied now (`applied`: as migrate's)."""
    applied = migrate(s, applied)
    if s.user:
        ensure_app_user(s, host)
    if relay:
        ensure_relay_user(s, relay, host, binlog)
    return applied


if __name__ == "__main__":
    settings = load().mysql
    names = provision(settings)
    print(f"database {settings.database}: applied {names or 'nothing (up to date)'}; "
          f"user {settings.user or '(none)'} has {APP_PRIVILEGES}")
    sys.exit(0)
