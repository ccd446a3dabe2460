"""The PostgreSQL store: flows, executions and the event log for the distributed mode.

The same interfaces, records and semantics as the embedded :mod:`.sqlite_store` (read its
docstrings; only the differences are described here).  :class:`PostgresStore` owns a
``psycopg_pool.AsyncConnectionPool`` and provides the interfaces through three facades:
``store.flows`` (:class:`IFlowStore`), ``store.executions`` (:class:`IExecutionStore`) and
``store.events`` (:class:`IEventLog`)::

    store = await PostgresStore.open("postgresql://postgres@127.0.0.1:5432/chaingraph")
    # or: store = PostgresStore(dsn); await store.open()
    ...
    await store.close()

Connections and failures
------------------------
The constructor does no I/O.  :meth:`PostgresStore.open` connects once (``connect_timeout``),
applies the schema migrations (:mod:`.migrations`, safe when several processes start at once),
then opens the pool and waits for its first connections.  Any failure — unreachable server,
refused authentication, missing database, pool exhausted for ``timeout`` seconds, connection
lost, server-side ``statement_timeout`` — raises :class:`StoreUnavailable` with the server named
(``host:port/dbname``, never the password) and the psycopg error chained as ``__cause__``.
Calls before ``open()`` or after ``close()`` raise :class:`StoreUnavailable` too.  A call that
failed on a dead connection is not retried (a write may have committed); the pool drops the
broken connection, so the next call gets a fresh one.

Everything runs on the event loop (psycopg's async connections are non-blocking); rows are
decoded on the loop thread.  Atomicity is in SQL, never in this process, so any number of
stores (processes) may share the database: each compare-and-set (``update_status`` with
``expected``, ``claim``, flow ``update`` with ``expected_version``) is a single conditional
``UPDATE``, and the event log's primary key refuses a second ``(execution_id, index)`` from
whichever process.

Time
----
With ``clock=None`` (the default) every timestamp the store writes itself (``updated_at``,
``started_at``, ``completed_at``, ``last_failure_at``, leases) is the *database server's*
``now()`` truncated to the millisecond, so the workers of a cluster judge lease expiry by one
clock.  A ``clock`` callable (epoch seconds, like the SQLite store's) overrides it (tests).
Timestamps inside records passed in (``created_at``…) are the caller's, truncated to the
millisecond (naive = UTC).  Columns are ``timestamptz``; values come back as aware UTC datetimes.

Event appends
-------------
``append`` is group-committed: the calls that queue while a write is in flight go out together
as one ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`` statement (one round
trip, one commit); each call still gets its own result or its own :class:`DuplicateEvent` (the
first append of an index wins, later ones are refused).  One writer per store sends the batches
one after another, so appends commit in call order: a reader never sees event ``n + 1`` of an
append sequence without event ``n`` from the same store.  ``append_many`` is a single
``INSERT … SELECT FROM unnest(…)`` statement: all or nothing.  ``close()`` waits for queued
appends.

Storage format
--------------
``chaingraph_flows.data`` is the flow document as ``jsonb``; options/integration/
external_events and event ``data`` are the superjson payload (``{"json":…,"meta":…}``) as
``jsonb``.  jsonb cannot hold the character U+0000: a value whose JSON text contains it is stored
as a jsonb *string* holding that JSON text and decoded transparently.  jsonb normalises numbers
(``1e20`` comes back as the digits ``100000000000000000000``); integers outside ±(2**53-1) read
back are therefore returned as floats (superjson stores real integers that large as ``bigint``
strings, so such a number was a float), which keeps them JavaScript numbers on the wire.  Key
order of JSON objects is not preserved (jsonb sorts keys); equality is.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import JsonbBinaryLoader, JsonbLoader
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from zope.interface import implementer

from ..trpc import superjson as _superjson
from . import migrations as _migrations
from .interfaces import (
    AlreadyExists,
    DuplicateEvent,
    IEventLog,
    IExecutionStore,
    IFlowStore,
    NotFound,
    StoreUnavailable,
    VersionConflict,
)
from .records import (
    ALL_STATUSES,
    RUNNING,
    TERMINAL,
    ExecutionRecord,
    FlowRecord,
    StoredEvent,
    from_ms,
    to_utc_ms,
)
from .store_common import StoreFacade, resolve_futures

__all__ = ["PostgresEventLog", "PostgresExecutionStore", "PostgresFlowStore", "PostgresStore"]

_INT4_MAX = 2**31 - 1
_MAX_SAFE = _superjson.MAX_SAFE_INTEGER

# ---------------------------------------------------------------------------------------------
# JSON in and out of jsonb
# ---------------------------------------------------------------------------------------------

_LONG_DIGITS_B = re.compile(rb"\d{16}")
_LONG_DIGITS_S = re.compile(r"\d{16}")


def _parse_int(text: str) -> int | float:
    v = int(text)
    return v if -_MAX_SAFE <= v <= _MAX_SAFE else float(text)


def _json_loads(data: bytes | str) -> Any:
    """jsonb text -> Python.  An integer literal beyond ±(2**53-1) (16+ digits) is a float
    normalised by jsonb; anything without such a digit run takes the fast orjson path."""
    pattern = _LONG_DIGITS_B if isinstance(data, bytes) else _LONG_DIGITS_S
    if pattern.search(data) is None:  # type: ignore[arg-type]
        return orjson.loads(data)
    return json.loads(data, parse_int=_parse_int)


def _jsonb_text(text: str) -> str:
    """The JSON text to send to a jsonb parameter (the U+0000 fallback: see module docstring).
    orjson writes U+0000 as ``\\u0000``; the check also matches an escaped backslash followed
    by ``u0000`` (a false positive, stored losslessly by the fallback too)."""
    if "\\u0000" in text:
        return orjson.dumps(text).decode()
    return text


def _from_jsonb(value: Any) -> Any:
    """Undo the U+0000 fallback: a jsonb string holds the JSON text of the real value."""
    return _json_loads(value) if isinstance(value, str) else value


class _JsonbLoader(JsonbLoader):
    _loads = staticmethod(_json_loads)


class _JsonbBinaryLoader(JsonbBinaryLoader):
    _loads = staticmethod(_json_loads)


# Connections of the store load jsonb with _json_loads (copied into each connection's context).
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_loader("jsonb", _JsonbLoader)
_ADAPTERS.register_loader("jsonb", _JsonbBinaryLoader)


def _utc(dt: datetime | None) -> datetime | None:
    """A timestamptz as loaded (aware, in the session time zone) as an aware UTC datetime."""
    if dt is None or dt.tzinfo is UTC:
        return dt
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _opt_ms(dt: datetime | None) -> datetime | None:
    return None if dt is None else to_utc_ms(dt)


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------

# "now" for a write: the caller's clock when the store has one (%(now)s), else the server's.
_NOW = "COALESCE(%(now)s::timestamptz, date_trunc('milliseconds', now()))"

_FLOW_COLS = "id, data, name, owner_id, parent_id, version, created_at, updated_at"
_EXEC_COL_NAMES = (
    "id", "flow_id", "owner_id", "root_execution_id", "parent_execution_id", "status", "created_at",
    "updated_at", "started_at", "completed_at", "error_message", "error_node_id", "execution_depth",
    "options", "integration", "external_events", "failure_count", "last_failure_reason",
    "last_failure_at", "processing_started_at", "processing_worker_id", "lease_expires_at",
)  # fmt: skip
_EXEC_COLS = ", ".join(_EXEC_COL_NAMES)
_EXEC_COLS_E = ", ".join("e." + c for c in _EXEC_COL_NAMES)
_N_EXEC = len(_EXEC_COL_NAMES)
_JSONB_EXEC_COLS = frozenset({"options", "integration", "external_events"})
_TERMINAL_SQL = ", ".join(f"'{s}'" for s in sorted(TERMINAL))

_SQL_INSERT_FLOW = (
    f"INSERT INTO chaingraph_flows ({_FLOW_COLS})"
    f" VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s) RETURNING {_FLOW_COLS}"
)
_SQL_GET_FLOW = f"SELECT {_FLOW_COLS} FROM chaingraph_flows WHERE id = %s"
_SQL_UPDATE_FLOW = (
    f"UPDATE chaingraph_flows SET data = %(data)s::jsonb, name = COALESCE(%(name)s::text, name),"
    f" version = version + 1, updated_at = {_NOW}"
    " WHERE id = %(id)s AND (%(expected)s::integer IS NULL OR version = %(expected)s::integer)"
    f" RETURNING {_FLOW_COLS}"
)
_SQL_INSERT_EXEC = (
    f"INSERT INTO chaingraph_executions ({_EXEC_COLS}) VALUES ("
    + ", ".join("%s::jsonb" if c in _JSONB_EXEC_COLS else "%s" for c in _EXEC_COL_NAMES)
    + f") RETURNING {_EXEC_COLS}"
)
_SQL_GET_EXEC = f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE id = %s"
_SQL_UPDATE_STATUS = (
    f"UPDATE chaingraph_executions SET status = %(status)s, updated_at = {_NOW},"
    f" started_at = CASE WHEN %(running)s::boolean THEN COALESCE(started_at, {_NOW}) ELSE started_at END,"
    f" completed_at = CASE WHEN %(terminal)s::boolean THEN {_NOW} ELSE completed_at END,"
    " error_message = COALESCE(%(error_message)s::text, error_message),"
    " error_node_id = COALESCE(%(error_node_id)s::text, error_node_id)"
    " WHERE id = %(id)s AND (%(expected)s::text[] IS NULL OR status = ANY(%(expected)s::text[]))"
    f" RETURNING {_EXEC_COLS}"
)
_SQL_TREE = (
    f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE root_execution_id = %s"
    " ORDER BY execution_depth, id"
)


def _roots_sql(with_cursor: bool) -> str:
    cursor = " AND created_at < %(after)s" if with_cursor else ""
    return (
        "WITH page AS ("
        f" SELECT {_EXEC_COLS} FROM chaingraph_executions"
        f" WHERE flow_id = %(flow)s AND execution_depth = 0{cursor}"
        " ORDER BY created_at DESC, id DESC LIMIT %(limit)s),"
        " agg AS ("
        " SELECT root_execution_id AS rid, max(execution_depth) AS levels, count(*) AS total"
        " FROM chaingraph_executions WHERE root_execution_id IN (SELECT id FROM page)"
        " GROUP BY root_execution_id)"
        f" SELECT {_EXEC_COLS_E}, COALESCE(agg.levels, 0), COALESCE(agg.total, 1)"
        " FROM page AS e LEFT JOIN agg ON agg.rid = e.id ORDER BY e.created_at DESC, e.id DESC"
    )


_SQL_ROOTS = _roots_sql(False)
_SQL_ROOTS_AFTER = _roots_sql(True)
_SQL_CHILDREN = (
    f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE parent_execution_id = %s ORDER BY created_at, id"
)
_SQL_BY_STATUS = (
    f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE status = ANY(%s::text[])"
    " ORDER BY created_at, id LIMIT %s::bigint"
)
_SQL_RECORD_FAILURE = (
    "UPDATE chaingraph_executions SET failure_count = failure_count + 1,"
    f" last_failure_reason = %(reason)s, last_failure_at = {_NOW}, updated_at = {_NOW}"
    f" WHERE id = %(id)s RETURNING {_EXEC_COLS}"
)
_SQL_CLAIM = (
    "UPDATE chaingraph_executions SET processing_worker_id = %(worker)s,"
    f" processing_started_at = {_NOW},"
    f" lease_expires_at = {_NOW} + %(lease_ms)s::bigint * interval '1 millisecond'"
    f" WHERE id = %(id)s AND status NOT IN ({_TERMINAL_SQL})"
    f" AND (processing_worker_id IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= {_NOW})"
    " RETURNING id"
)
_SQL_RENEW = (
    f"UPDATE chaingraph_executions SET lease_expires_at = {_NOW} + %(lease_ms)s::bigint * interval '1 millisecond'"
    " WHERE id = %(id)s AND processing_worker_id = %(worker)s RETURNING id"
)
_SQL_RELEASE = (
    "UPDATE chaingraph_executions SET processing_worker_id = NULL, processing_started_at = NULL,"
    " lease_expires_at = NULL WHERE id = %s AND processing_worker_id = %s RETURNING id"
)
_EVENTS_UNNEST = (
    "INSERT INTO chaingraph_execution_events (execution_id, idx, type, ts, data)"
    " SELECT * FROM unnest(%s::text[], %s::integer[], %s::text[], %s::timestamptz[], %s::text[]::jsonb[])"
)
# group commit: duplicates are skipped (and reported per call) instead of failing the batch
_SQL_APPEND_BATCH = _EVENTS_UNNEST + " ON CONFLICT DO NOTHING RETURNING execution_id, idx"
_SQL_APPEND_MANY = _EVENTS_UNNEST
_SQL_EXISTING_EVENTS = (
    "SELECT execution_id, idx FROM chaingraph_execution_events"
    " WHERE (execution_id, idx) IN (SELECT * FROM unnest(%s::text[], %s::integer[]))"
)
_SQL_READ_EVENTS = (
    "SELECT idx, type, ts, data FROM chaingraph_execution_events"
    " WHERE execution_id = %s AND idx >= %s::integer ORDER BY idx LIMIT %s::bigint"
)
_SQL_LAST_INDEX = "SELECT max(idx) FROM chaingraph_execution_events WHERE execution_id = %s"

_Row = tuple[Any, ...]
_EventRow = tuple[str, int, str, datetime, str]


def _describe(dsn: str) -> str:
    """``host:port/dbname`` of a conninfo string or URL, without credentials."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _OpenMethod:
    """``open`` works on the class and on an instance:

    * ``await PostgresStore.open(dsn, **kwargs)`` constructs and opens (like
      ``SQLiteStore.open(path, **kwargs)``), closing the store again if opening fails;
    * ``await store.open()`` opens a constructed store (idempotent) and returns it.
    """

    def __get__(
        self, obj: PostgresStore | None, owner: type[PostgresStore]
    ) -> Callable[..., Awaitable[PostgresStore]]:
        if obj is not None:
            return obj._open

        async def open_new(dsn: str, **kwargs: Any) -> PostgresStore:
            store = owner(dsn, **kwargs)
            try:
                await store._open()
            except BaseException:
                await store.close()
                raise
            return store

        return open_new


class PostgresStore:
    """Flows, executions and the event log in the PostgreSQL database at ``dsn``.

    ``dsn``: a libpq URL or ``key=value`` string.  ``min_size``/``max_size``: pool bounds.
    ``connect_timeout`` (seconds, default 5) bounds establishing a connection (``open()`` and
    the pool's reconnections); ``timeout`` (default 5) bounds waiting for a pooled connection;
    ``statement_timeout`` (default 30, None = the server's setting) is set on every pooled
    connection, so no call can hang on the server indefinitely.  ``codec`` and ``clock`` are as
    for :class:`SQLiteStore` (``clock=None``: the database server's clock, see the module
    docstring).  ``max_batch`` bounds a group-committed append batch.

    The facades :attr:`flows`, :attr:`executions`, :attr:`events` exist from construction;
    ``close()`` on the store or on any facade closes the shared store (idempotent).
    """

    open = _OpenMethod()

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        timeout: float = 5.0,
        statement_timeout: float | None = 30.0,
        codec: _superjson.SuperJSON | None = None,
        clock: Callable[[], float] | None = None,
        max_batch: int = 1000,
    ) -> None:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise ValueError(f"invalid PostgreSQL DSN: {_first_line(e)}") from None
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params:  # libpq takes whole seconds, at least 2
            extra["connect_timeout"] = max(2, round(connect_timeout))
        if "application_name" not in params:
            extra["application_name"] = "chaingraph-gw"
        self.dsn = dsn
        self.target = _describe(dsn)
        self._conninfo = make_conninfo(dsn, **extra)
        self._min_size = int(min_size)
        self._max_size = int(max_size)
        self._connect_timeout = float(connect_timeout)
        self._timeout = float(timeout)
        self._statement_timeout_ms = None if statement_timeout is None else int(statement_timeout * 1000)
        self._codec = codec if codec is not None else _superjson.default
        self._clock = clock
        self._max_batch = max(1, int(max_batch))
        self._pool: AsyncConnectionPool | None = None
        self._open_lock = asyncio.Lock()
        self._closed = False
        # group commit of append(): (row, future) waiting for the writer task
        self._pending: list[tuple[_EventRow, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.flows = PostgresFlowStore(self)
        self.executions = PostgresExecutionStore(self)
        self.events = PostgresEventLog(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._pool is not None else "new"
        return f"<PostgresStore {self.target} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle -------------------------------------------------------------------------------

    async def _open(self) -> PostgresStore:
        if self._closed:
            raise StoreUnavailable(f"store {self.target} is closed")
        async with self._open_lock:
            if self._pool is not None:
                return self
            await self._connect_and_migrate()
            pool = AsyncConnectionPool(
                self._conninfo,
                min_size=self._min_size,
                max_size=self._max_size,
                kwargs={"autocommit": True, "context": _ADAPTERS},
                configure=self._configure,
                timeout=self._timeout,
                name=f"chaingraph-store {self.target}",
                open=False,
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout)
            except BaseException as e:
                await pool.close(timeout=0)
                if isinstance(e, (PoolTimeout, psycopg.Error)):
                    raise StoreUnavailable(
                        f"cannot open a connection pool to PostgreSQL at {self.target}"
                        f" within {self._connect_timeout:g} s: {_first_line(e)}"
                    ) from e
                raise
            if self._closed:  # close() ran while we were connecting
                await pool.close(timeout=0)
                raise StoreUnavailable(f"store {self.target} is closed")
            self._pool = pool
        return self

    async def _connect_and_migrate(self) -> None:
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self._conninfo, autocommit=True),
                self._connect_timeout + 1.0,  # libpq's connect_timeout is the first line of defence
            )
        except (psycopg.Error, OSError, TimeoutError) as e:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self.target}: {_first_line(e)}") from e
        try:
            await _migrations.migrate(conn)
        except StoreUnavailable as e:
            raise StoreUnavailable(f"{self.target}: {e}") from e
        except psycopg.Error as e:
            raise StoreUnavailable(f"{self.target}: migrating the schema failed: {_first_line(e)}") from e
        finally:
            await conn.close()

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._statement_timeout_ms is not None:
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", (str(self._statement_timeout_ms),)
            )

    async def ping(self) -> None:
        """Round-trip to the server; raises :class:`StoreUnavailable` if that fails."""
        async with self._conn() as conn:
            await conn.execute("SELECT 1")

    async def close(self) -> None:
        """Finish the queued appends, then close the pool.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        try:
            if writer is not None and not writer.done():
                await asyncio.wait([writer])
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close(timeout=self._timeout)

    # -- plumbing --------------------------------------------------------------------------------

    def _unavailable(self) -> StoreUnavailable:
        if self._closed:
            return StoreUnavailable(f"store {self.target} is closed")
        return StoreUnavailable(f"store {self.target} is not open (await store.open() first)")

    @asynccontextmanager
    async def _conn(self, *, draining: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled autocommit connection; maps infrastructure failures to StoreUnavailable,
        constraint/data errors not handled by the caller to ValueError."""
        pool = self._pool
        if pool is None or (self._closed and not draining):
            raise self._unavailable()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise StoreUnavailable(
                f"{self.target}: no database connection available within {self._timeout:g} s"
                f" ({_first_line(e)})"
            ) from e
        except PoolClosed as e:
            raise StoreUnavailable(f"store {self.target} is closed") from e
        except (psycopg.IntegrityError, psycopg.DataError) as e:
            raise ValueError(f"{self.target}: {_first_line(e)}") from e
        except pg_errors.QueryCanceled as e:
            raise StoreUnavailable(
                f"{self.target}: statement cancelled or timed out ({_first_line(e)})"
            ) from e
        except psycopg.Error as e:
            raise StoreUnavailable(f"{self.target}: {_first_line(e)}") from e

    def _now(self) -> datetime | None:
        """The ``%(now)s`` parameter: None = the server's clock."""
        return None if self._clock is None else from_ms(int(self._clock() * 1000))

    # -- encoding --------------------------------------------------------------------------------

    def _enc(self, value: Any) -> str:
        """superjson payload as jsonb text (called on the caller's side: a snapshot)."""
        return _jsonb_text(orjson.dumps(self._codec.serialize(value)).decode())

    def _dec(self, value: Any, default: Any) -> Any:
        if value is None:
            return default
        return self._codec.deserialize(_from_jsonb(value))

    @staticmethod
    def _flow_from_row(row: _Row) -> FlowRecord:
        return FlowRecord(
            id=row[0],
            document=_from_jsonb(row[1]),
            name=row[2],
            owner_id=row[3],
            parent_id=row[4],
            version=row[5],
            created_at=_utc(row[6]),  # type: ignore[arg-type]
            updated_at=_utc(row[7]),  # type: ignore[arg-type]
        )

    def _exec_from_row(self, row: _Row) -> ExecutionRecord:
        dec = self._dec
        return ExecutionRecord(
            id=row[0],
            flow_id=row[1],
            owner_id=row[2],
            root_execution_id=row[3],
            parent_execution_id=row[4],
            status=row[5],
            created_at=_utc(row[6]),  # type: ignore[arg-type]
            updated_at=_utc(row[7]),  # type: ignore[arg-type]
            started_at=_utc(row[8]),
            completed_at=_utc(row[9]),
            error_message=row[10],
            error_node_id=row[11],
            execution_depth=row[12],
            options=dec(row[13], {}),
            integration=dec(row[14], {}),
            external_events=dec(row[15], []),
            failure_count=row[16],
            last_failure_reason=row[17],
            last_failure_at=_utc(row[18]),
            processing_started_at=_utc(row[19]),
            processing_worker_id=row[20],
            lease_expires_at=_utc(row[21]),
        )

    # -- event-log group commit --------------------------------------------------------------------

    def _enqueue_append(self, row: _EventRow) -> asyncio.Future[None]:
        if self._closed or self._pool is None:
            raise self._unavailable()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, fut))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_appends(), name=f"pg-append {self.target}")
        return fut

    async def _write_appends(self) -> None:
        """Send the queued appends, one batch (one statement) at a time, in call order."""
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            rows = [row for row, _fut in batch]
            outcomes: list[BaseException | None]
            try:
                async with self._conn(draining=True) as conn:
                    cur = await conn.execute(_SQL_APPEND_BATCH, _event_columns(rows))
                    inserted = {(r[0], r[1]) for r in await cur.fetchall()}
                outcomes = []
                for ex_id, idx, *_ in rows:
                    if (ex_id, idx) in inserted:
                        inserted.discard((ex_id, idx))  # a repeat later in the batch lost
                        outcomes.append(None)
                    else:
                        outcomes.append(DuplicateEvent(ex_id, idx))
            except asyncio.CancelledError:
                err = StoreUnavailable(f"store {self.target}: the append writer was cancelled")
                resolve_futures([(fut, err) for _row, fut in batch + self._pending])
                self._pending.clear()
                raise
            except Exception as e:
                outcomes = [e] * len(batch)
            resolve_futures([(fut, out) for (_row, fut), out in zip(batch, outcomes, strict=True)])


def _event_columns(rows: list[_EventRow]) -> tuple[list[Any], ...]:
    return tuple(list(col) for col in zip(*rows, strict=True))




# ================================================================================================
# IFlowStore
# ================================================================================================


@implementer(IFlowStore)
class PostgresFlowStore(StoreFacade):
    """:class:`IFlowStore` over a :class:`PostgresStore` (use ``store.flows``)."""

    __slots__ = ()

    async def create(self, record: FlowRecord) -> FlowRecord:
        s = self.store
        row = (
            record.id,
            _jsonb_text(orjson.dumps(record.document).decode()),
            record.name,
            record.owner_id,
            record.parent_id,
            int(record.version),
            to_utc_ms(record.created_at),
            to_utc_ms(record.updated_at),
        )
        async with s._conn() as conn:
            try:
                cur = await conn.execute(_SQL_INSERT_FLOW, row)
            except pg_errors.UniqueViolation as e:
                raise AlreadyExists(f"flow {record.id} already exists") from e
            except (psycopg.IntegrityError, psycopg.DataError) as e:
                raise ValueError(f"invalid flow record {record.id}: {_first_line(e)}") from e
            out = await cur.fetchone()
        return s._flow_from_row(out)  # type: ignore[arg-type]

    async def get(self, flow_id: str) -> FlowRecord | None:
        s = self.store
        async with s._conn() as conn:
            cur = await conn.execute(_SQL_GET_FLOW, (flow_id,))
            row = await cur.fetchone()
        return None if row is None else s._flow_from_row(row)

    async def list(
        self, owner_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[FlowRecord]:
        """See :meth:`IFlowStore.list`; an unknown ``after`` cursor raises :class:`NotFound`."""
        s = self.store
        if limit <= 0:
            return []
        where: list[str] = []
        params: list[Any] = []
        if owner_id is not None:
            where.append("owner_id = %s")
            params.append(owner_id)
        async with s._conn() as conn:
            if after is not None:
                cur = await conn.execute(
                    "SELECT created_at, id FROM chaingraph_flows WHERE id = %s", (after,)
                )
                pos = await cur.fetchone()
                if pos is None:
                    raise NotFound(f"flow cursor {after} does not exist")
                where.append("(created_at < %s OR (created_at = %s AND id > %s))")
                params += [pos[0], pos[0], pos[1]]
            sql = f"SELECT {_FLOW_COLS} FROM chaingraph_flows"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY created_at DESC, id ASC LIMIT %s"
            params.append(int(limit))
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            rows = await cur.fetchall()
        return [s._flow_from_row(r) for r in rows]

    async def update(
        self,
        flow_id: str,
        document: dict[str, Any],
        name: str | None = None,
        expected_version: int | None = None,
    ) -> FlowRecord:
        s = self.store
        params = {
            "data": _jsonb_text(orjson.dumps(document).decode()),
            "name": name,
            "now": s._now(),
            "id": flow_id,
            "expected": expected_version,
        }
        async with s._conn() as conn:
            cur = await conn.execute(_SQL_UPDATE_FLOW, params)
            row = await cur.fetchone()
            if row is not None:
                return s._flow_from_row(row)
            cur = await conn.execute("SELECT version FROM chaingraph_flows WHERE id = %s", (flow_id,))
            current = await cur.fetchone()
        if current is None:
            raise NotFound(f"flow {flow_id} not found")
        raise VersionConflict(flow_id, expected_version, current[0])  # type: ignore[arg-type]

    async def delete(self, flow_id: str) -> bool:
        async with self.store._conn() as conn:
            cur = await conn.execute("DELETE FROM chaingraph_flows WHERE id = %s", (flow_id,))
            return cur.rowcount > 0

    async def count(self, owner_id: str | None = None) -> int:
        async with self.store._conn() as conn:
            if owner_id is None:
                cur = await conn.execute("SELECT count(*) FROM chaingraph_flows")
            else:
                cur = await conn.execute(
                    "SELECT count(*) FROM chaingraph_flows WHERE owner_id = %s", (owner_id,)
                )
            row = await cur.fetchone()
        return row[0]  # type: ignore[index]


# ================================================================================================
# IExecutionStore
# ================================================================================================


@implementer(IExecutionStore)
class PostgresExecutionStore(StoreFacade):
    """:class:`IExecutionStore` over a :class:`PostgresStore` (use ``store.executions``).

    Lease times come from the store's clock (default: the database server's).
    """

    __slots__ = ()

    async def _one(self, sql: str, params: Any) -> ExecutionRecord | None:
        s = self.store
        async with s._conn() as conn:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
        return None if row is None else s._exec_from_row(row)

    async def _many(self, sql: str, params: Any) -> list[ExecutionRecord]:
        s = self.store
        async with s._conn() as conn:
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
        return [s._exec_from_row(r) for r in rows]

    async def _hit(self, sql: str, params: Any) -> bool:
        async with self.store._conn() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone() is not None

    async def create(self, record: ExecutionRecord) -> ExecutionRecord:
        s = self.store
        r = record
        if r.status not in ALL_STATUSES:
            raise ValueError(f"unknown execution status {r.status!r}")
        row = (
            r.id, r.flow_id, r.owner_id, r.root_execution_id, r.parent_execution_id, r.status,
            to_utc_ms(r.created_at), to_utc_ms(r.updated_at), _opt_ms(r.started_at), _opt_ms(r.completed_at),
            r.error_message, r.error_node_id, int(r.execution_depth),
            s._enc(r.options), s._enc(r.integration), s._enc(r.external_events),
            int(r.failure_count), r.last_failure_reason, _opt_ms(r.last_failure_at),
            _opt_ms(r.processing_started_at), r.processing_worker_id, _opt_ms(r.lease_expires_at),
        )  # fmt: skip
        async with s._conn() as conn:
            try:
                cur = await conn.execute(_SQL_INSERT_EXEC, row)
            except pg_errors.UniqueViolation as e:
                raise AlreadyExists(f"execution {r.id} already exists") from e
            except (psycopg.IntegrityError, psycopg.DataError) as e:
                raise ValueError(f"invalid execution record {r.id}: {_first_line(e)}") from e
            out = await cur.fetchone()
        return s._exec_from_row(out)  # type: ignore[arg-type]

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        return await self._one(_SQL_GET_EXEC, (execution_id,))

    async def update_status(
        self,
        execution_id: str,
        status: str,
        *,
        expected: Iterable[str] | None = None,
        error_message: str | None = None,
        error_node_id: str | None = None,
    ) -> ExecutionRecord | None:
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown execution status {status!r}")
        if isinstance(expected, str):
            raise TypeError("expected must be a set of statuses, not a str")
        params = {
            "status": status,
            "running": status == RUNNING,
            "terminal": status in TERMINAL,
            "error_message": error_message,
            "error_node_id": error_node_id,
            "id": execution_id,
            "expected": None if expected is None else sorted(expected),
            "now": self.store._now(),
        }
        return await self._one(_SQL_UPDATE_STATUS, params)

    async def tree(self, root_id: str) -> list[ExecutionRecord]:
        return await self._many(_SQL_TREE, (root_id,))

    async def roots(
        self, flow_id: str, limit: int = 50, after: datetime | None = None
    ) -> list[tuple[ExecutionRecord, int, int]]:
        s = self.store
        if limit <= 0:
            return []
        params = {"flow": flow_id, "after": _opt_ms(after), "limit": int(limit)}
        sql = _SQL_ROOTS if after is None else _SQL_ROOTS_AFTER
        async with s._conn() as conn:
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
        return [(s._exec_from_row(r[:_N_EXEC]), r[_N_EXEC], r[_N_EXEC + 1]) for r in rows]

    async def children(self, parent_id: str) -> list[ExecutionRecord]:
        return await self._many(_SQL_CHILDREN, (parent_id,))

    async def find_by_status(
        self, statuses: Iterable[str], limit: int | None = None
    ) -> list[ExecutionRecord]:
        if isinstance(statuses, str):
            raise TypeError("statuses must be a set of statuses, not a str")
        wanted = sorted(set(statuses))
        lim = None if limit is None or limit < 0 else int(limit)  # SQLite: a negative LIMIT = all
        if not wanted or lim == 0:
            return []
        return await self._many(_SQL_BY_STATUS, (wanted, lim))

    async def record_failure(self, execution_id: str, reason: str) -> ExecutionRecord | None:
        return await self._one(
            _SQL_RECORD_FAILURE, {"reason": reason, "id": execution_id, "now": self.store._now()}
        )

    async def claim(self, execution_id: str, worker_id: str, lease_seconds: float) -> bool:
        params = {
            "worker": worker_id,
            "id": execution_id,
            "lease_ms": int(lease_seconds * 1000),
            "now": self.store._now(),
        }
        return await self._hit(_SQL_CLAIM, params)

    async def renew(self, execution_id: str, worker_id: str, lease_seconds: float) -> bool:
        params = {
            "worker": worker_id,
            "id": execution_id,
            "lease_ms": int(lease_seconds * 1000),
            "now": self.store._now(),
        }
        return await self._hit(_SQL_RENEW, params)

    async def release(self, execution_id: str, worker_id: str) -> bool:
        return await self._hit(_SQL_RELEASE, (execution_id, worker_id))


# ================================================================================================
# IEventLog
# ================================================================================================


@implementer(IEventLog)
class PostgresEventLog(StoreFacade):
    """:class:`IEventLog` over a :class:`PostgresStore` (use ``store.events``).

    ``append`` is group-committed (see the module docstring); ``append_many`` is one
    all-or-nothing statement.
    """

    __slots__ = ()

    def _row(self, execution_id: str, index: int, type: str, timestamp: datetime, data: Any) -> _EventRow:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"event index must be an int >= 0, got {index!r}")
        if index > _INT4_MAX:
            raise ValueError(f"event index {index} is out of range (max {_INT4_MAX})")
        if not isinstance(execution_id, str) or not isinstance(type, str):
            raise TypeError("event execution_id and type must be str")
        if "\x00" in execution_id or "\x00" in type:
            raise ValueError("event execution_id and type must not contain NUL characters")
        return (execution_id, index, type, to_utc_ms(timestamp), self.store._enc(data))

    async def append(self, execution_id: str, index: int, type: str, timestamp: datetime, data: Any) -> None:
        row = self._row(execution_id, index, type, timestamp, data)
        await self.store._enqueue_append(row)

    async def append_many(self, events: list[StoredEvent]) -> None:
        rows = [self._row(e.execution_id, e.index, e.type, e.timestamp, e.data) for e in events]
        if not rows:
            return
        seen: set[tuple[str, int]] = set()
        for row in rows:
            key = (row[0], row[1])
            if key in seen:
                raise DuplicateEvent(*key)
            seen.add(key)
        cols = _event_columns(rows)
        async with self.store._conn() as conn:
            try:
                await conn.execute(_SQL_APPEND_MANY, cols)
            except pg_errors.UniqueViolation as e:
                cur = await conn.execute(_SQL_EXISTING_EVENTS, (cols[0], cols[1]))
                existing = {(r[0], r[1]) for r in await cur.fetchall()}
                for ex_id, idx, *_ in rows:  # name the first offender, in batch order
                    if (ex_id, idx) in existing:
                        raise DuplicateEvent(ex_id, idx) from e
                # unreachable in practice: the conflicting row was committed, events are never deleted
                raise DuplicateEvent(rows[0][0], rows[0][1]) from e

    async def read(
        self, execution_id: str, from_index: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        s = self.store
        lim = None if limit is None or limit < 0 else int(limit)  # SQLite: a negative LIMIT = all
        start = max(int(from_index), 0)
        if lim == 0 or start > _INT4_MAX:
            return []
        async with s._conn() as conn:
            cur = await conn.execute(_SQL_READ_EVENTS, (execution_id, start, lim))
            rows = await cur.fetchall()
        dec = s._codec.deserialize
        return [
            StoredEvent(execution_id, idx, typ, _utc(ts), dec(_from_jsonb(data)))
            for idx, typ, ts, data in rows
        ]  # type: ignore[arg-type]

    async def last_index(self, execution_id: str) -> int:
        async with self.store._conn() as conn:
            cur = await conn.execute(_SQL_LAST_INDEX, (execution_id,))
            row = await cur.fetchone()
        v = row[0] if row else None
        return -1 if v is None else v
