"""Versioned SQL migrations of the PostgreSQL store (:mod:`..postgres_store`).

The migrations are the ``NNNN_<name>.sql`` files of this package, applied in version order.
Each one runs in its own transaction together with the row recording it in
``chaingraph_schema_migrations(version, applied_at)``, so a migration is either applied and
recorded, or not at all.  Applied files must never be edited: add a new, higher-numbered one.

Several processes may start at once (API and workers of the distributed mode): every
transaction first takes the transaction-level advisory lock :data:`LOCK_KEY`
(``pg_advisory_xact_lock``, scoped to the database), then reads what is applied, so the
migrations are applied exactly once and the others wait for them, then find nothing to do.
The lock is released by the commit/rollback, so a crashed migrator never leaves it held.

A database whose recorded version is higher than the newest file here was migrated by newer
code; :func:`migrate` refuses it (:class:`SchemaTooNew`), as the SQLite store does.

Packaging note: the ``.sql`` files are package data (``importlib.resources`` reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..interfaces import StoreUnavailable

__all__ = [
    "LOCK_KEY",
    "MIGRATIONS_TABLE",
    "Migration",
    "SchemaTooNew",
    "applied_versions",
    "available",
    "latest_version",
    "migrate",
]

MIGRATIONS_TABLE = "chaingraph_schema_migrations"

#: ``pg_advisory_xact_lock`` key serialising migrators ("cgschema" in ASCII; distinct from
#: ChainGraph's recovery lock 987654321).
LOCK_KEY = 0x6367_7363_6865_6D61

_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_\-]+)\.sql$")

_SQL_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
    " version integer PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by newer code than this one."""

    def __init__(self, current: int, known: int) -> None:
        super().__init__(
            f"database schema version {current} is newer than this code (knows up to {known}):"
            " upgrade chaingraph-gw"
        )
        self.current = current
        self.known = known


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def available() -> tuple[Migration, ...]:
    """The migrations shipped in this package, by ascending version."""
    found: dict[int, Migration] = {}
    for entry in resources.files(__name__).iterdir():
        m = _FILE_RE.match(entry.name)
        if m is None:
            continue
        version = int(m.group(1))
        if version in found:
            raise RuntimeError(f"two migrations with version {version}: {found[version].name}, {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    if not found:
        raise RuntimeError(f"no migration files in {__name__}")
    return tuple(found[v] for v in sorted(found))


def latest_version() -> int:
    """The version the newest shipped migration brings the schema to."""
    return available()[-1].version


async def migrate(conn_or_pool: psycopg.AsyncConnection[Any] | AsyncConnectionPool) -> list[int]:
    """Apply the pending migrations in version order; returns the versions applied by this call
    (``[]`` when the schema was already current, e.g. another process just migrated it).

    ``conn_or_pool`` is an :class:`psycopg.AsyncConnection` (preferably in autocommit mode:
    inside a transaction the work nests as savepoints and the advisory lock is held until the
    caller's transaction ends) or a :class:`psycopg_pool.AsyncConnectionPool`.  psycopg errors
    propagate; :class:`SchemaTooNew` if the database is ahead of this code.
    """
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await _migrate(conn)
    return await _migrate(conn_or_pool)


async def applied_versions(conn_or_pool: psycopg.AsyncConnection[Any] | AsyncConnectionPool) -> list[int]:
    """The versions recorded in the migrations table, ascending (``[]`` if there is none)."""
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await _applied(conn)
    return await _applied(conn_or_pool)


async def _applied(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    cur = await conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version")
    return [r[0] for r in await cur.fetchall()]


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    migrations = available()
    known = migrations[-1].version
    applied_now: list[int] = []
    while True:
        # One transaction per migration, each under the lock: concurrent migrators queue here.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            await conn.execute(_SQL_CREATE_TABLE)
            cur = await conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")
            done = {r[0] for r in await cur.fetchall()}
            if done and max(done) > known:
                raise SchemaTooNew(max(done), known)
            pending = [m for m in migrations if m.version not in done]
            if not pending:
                return applied_now
            step = pending[0]
            # no parameters: sent as a simple query, so a file may hold several statements
            await conn.execute(step.sql.encode())
            await conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (version) VALUES (%s)", (step.version,))
        applied_now.append(step.version)
