"""Versioned schema migrations from ``sql/migrations``.

Each file ``NNNN_name.sql`` is applied once, in its own transaction, and recorded in
``public.mb_schema_migrations`` with a checksum; an advisory lock keeps two processes from
migrating at the same time. Re-running applies nothing; a changed file that was already
applied is an error (write a new migration instead).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(
    os.environ.get("MB_MIGRATIONS_DIR", Path(__file__).resolve().parents[2] / "sql" / "migrations")
)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x4D42_5343  # "MBSC": one advisory lock id for schema changes


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return found


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    migrations = load_migrations(directory)
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS public.mb_schema_migrations (
                       version INTEGER PRIMARY KEY,
                       name TEXT NOT NULL,
                       checksum TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            rows = conn.execute(
                "SELECT version, name, checksum FROM public.mb_schema_migrations"
            ).fetchall()
            done = {v: (n, c) for v, n, c in rows}
            for m in migrations:
                if m.version in done:
                    if done[m.version][1] != m.checksum:
                        raise MigrationError(
                            f"migration {m.name} was changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(m.sql.encode())  # trusted file from sql/, not user input
                    conn.execute(
                        "INSERT INTO public.mb_schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                applied_now.append(m.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def applied_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version FROM public.mb_schema_migrations ORDER BY version"
        ).fetchall()
    return [r[0] for r in rows]
