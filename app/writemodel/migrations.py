"""Versioned, idempotent MySQL migrations, and the least-privileged application user.

The operator and the local stack (`make up`) both call `provision()`:

  1. CREATE DATABASE IF NOT EXISTS
  2. apply every migrations/NNNN_name.sql not yet recorded in schema_migrations,
     under a named lock so two appliers never race
  3. create/update the application user with SELECT, INSERT, UPDATE, DELETE on
     that database only: no DDL, no other database.

Run by hand: `python -m app.writemodel.migrations` (reads MYSQL_* settings).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from ..config import MySQLSettings, load
from .db import connect

MIGRATIONS = Path(__file__).with_name("migrations")
APP_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
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


def _statements(sql: str) -> list[str]:
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def migrate(s: MySQLSettings) -> list[str]:
    """Create the database and apply pending migrations; returns the names applied now."""
    db = quote_ident(s.database)
    conn = connect(s, admin=True, database=None, autocommit=True, read_timeout=120)
    applied_now: list[str] = []
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
                    for stmt in _statements(sql):
                        cur.execute(stmt)
                    cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                    applied_now.append(name)
            finally:
                cur.execute("SELECT RELEASE_LOCK(%s)", (f"simplecqrs-migrate-{s.database}",))
    finally:
        conn.close()
    return applied_now


def ensure_app_user(s: MySQLSettings, host: str = "%") -> None:
    """Create or update the application user: row access to its own database, nothing else."""
    if not _USER.match(s.user):
        raise ValueError(f"invalid MySQL user name {s.user!r}")
    conn = connect(s, admin=True, database=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (s.user, host, s.password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (s.user, host, s.password))
            cur.execute(f"GRANT {APP_PRIVILEGES} ON {quote_ident(s.database)}.* TO %s@%s", (s.user, host))
    finally:
        conn.close()


def drop(s: MySQLSettings, host: str = "%") -> None:
    """Remove the database and the application user (the operator's deletionPolicy: Delete)."""
    conn = connect(s, admin=True, database=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(s.database)}")
            if s.user and _USER.match(s.user):
                cur.execute("DROP USER IF EXISTS %s@%s", (s.user, host))
    finally:
        conn.close()


def provision(s: MySQLSettings, host: str = "%") -> list[str]:
    applied = migrate(s)
    if s.user:
        ensure_app_user(s, host)
    return applied


if __name__ == "__main__":
    settings = load().mysql
    names = provision(settings)
    print(f"database {settings.database}: applied {names or 'nothing (up to date)'}; "
          f"user {settings.user or '(none)'} has {APP_PRIVILEGES}")
    sys.exit(0)
