"""The embedded store: flows, executions and the event log in one SQLite file (WAL mode).

:class:`SQLiteStore` owns one connection; three small facades sharing it provide the
interfaces (their method names clash, e.g. ``create``/``get``, so one object can't):
``store.flows`` (:class:`IFlowStore`), ``store.executions`` (:class:`IExecutionStore`) and
``store.events`` (:class:`IEventLog`).

Threading model
---------------
The connection lives on one dedicated worker thread (a ``ThreadPoolExecutor(max_workers=1)``)
and every operation is a job on it, awaited through ``loop.run_in_executor``: the event loop
never touches the disk, and jobs run one at a time in submission order (so a ``read`` issued
after an ``append`` returned sees that event).  Values are *encoded* on the calling (loop)
thread before the call first suspends, so what is stored is a snapshot; rows are *decoded*
on the worker thread into fresh objects (superjson custom deserializers must therefore be
thread-safe, which pure functions are).  Cancelling an awaiting caller does not undo a job that already ran.

Event appends use group commit: concurrent ``append`` calls that queue up while the worker is
busy are written in one transaction, each call still getting its own result (or its own
:class:`DuplicateEvent`).  ``append_many`` writes a batch all-or-nothing.

Durability is ``journal_mode=WAL`` + ``synchronous=NORMAL``: a committed transaction survives a
process crash; an OS crash/power loss may lose the last transactions, never corrupt the file.

Storage format
--------------
* timestamps: INTEGER epoch milliseconds (UTC); returned as aware UTC datetimes;
* ``chaingraph_flows.data``: the flow document as JSON text (orjson);
* ``options``/``integration``/``external_events`` and event ``data``: the superjson payload
  (``{"json":…,"meta":…}``) as JSON text, so dates, ``undefined``, Maps, errors and registered
  custom types survive the round trip;
* the schema version is in ``chaingraph_schema_version``; tables are created on open.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from zope.interface import implementer

from ..trpc import superjson as _superjson
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
    to_ms,
)
from .store_common import StoreFacade, resolve_futures

__all__ = ["SCHEMA_VERSION", "SQLiteEventLog", "SQLiteExecutionStore", "SQLiteFlowStore", "SQLiteStore"]

SCHEMA_VERSION = 1

_TERMINAL_JSON = orjson.dumps(sorted(TERMINAL)).decode()

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS chaingraph_flows (
            id          TEXT PRIMARY KEY,
            data        TEXT NOT NULL,
            name        TEXT NOT NULL DEFAULT '',
            owner_id    TEXT,
            parent_id   TEXT,
            version     INTEGER NOT NULL DEFAULT 1,
            created_at  INTEGER NOT NULL,
            updated_at  INTEGER NOT NULL
        )""",
        # list(): ORDER BY created_at DESC, id ASC, optionally per owner
        "CREATE INDEX IF NOT EXISTS chaingraph_flows_created_idx ON chaingraph_flows (created_at DESC, id)",
        (
            "CREATE INDEX IF NOT EXISTS chaingraph_flows_owner_created_idx"
            " ON chaingraph_flows (owner_id, created_at DESC, id)"
        ),
        """CREATE TABLE IF NOT EXISTS chaingraph_executions (
            id                    TEXT PRIMARY KEY,
            flow_id               TEXT NOT NULL,
            owner_id              TEXT NOT NULL,
            root_execution_id     TEXT,
            parent_execution_id   TEXT,
            status                TEXT NOT NULL DEFAULT 'created',
            created_at            INTEGER NOT NULL,
            updated_at            INTEGER NOT NULL,
            started_at            INTEGER,
            completed_at          INTEGER,
            error_message         TEXT,
            error_node_id         TEXT,
            execution_depth       INTEGER NOT NULL DEFAULT 0,
            options               TEXT,
            integration           TEXT,
            external_events       TEXT,
            failure_count         INTEGER NOT NULL DEFAULT 0,
            last_failure_reason   TEXT,
            last_failure_at       INTEGER,
            processing_started_at INTEGER,
            processing_worker_id  TEXT,
            lease_expires_at      INTEGER
        )""",
        # roots(): flow_id = ? AND execution_depth = 0 [AND created_at < ?] ORDER BY created_at DESC, id DESC
        (
            "CREATE INDEX IF NOT EXISTS chaingraph_executions_flow_depth_created_idx"
            " ON chaingraph_executions (flow_id, execution_depth, created_at, id)"
        ),
        # tree() and the roots() aggregate (MAX(depth), COUNT(*) per root): covering
        (
            "CREATE INDEX IF NOT EXISTS chaingraph_executions_root_idx"
            " ON chaingraph_executions (root_execution_id, execution_depth, id)"
        ),
        (
            "CREATE INDEX IF NOT EXISTS chaingraph_executions_parent_idx"
            " ON chaingraph_executions (parent_execution_id, created_at, id)"
        ),
        (
            "CREATE INDEX IF NOT EXISTS chaingraph_executions_status_idx"
            " ON chaingraph_executions (status, created_at)"
        ),
        """CREATE TABLE IF NOT EXISTS chaingraph_execution_events (
            execution_id TEXT NOT NULL,
            idx          INTEGER NOT NULL,
            type         TEXT NOT NULL,
            ts           INTEGER NOT NULL,
            data         TEXT NOT NULL,
            PRIMARY KEY (execution_id, idx)
        )""",
    ),
}

_FLOW_COLS = "id, data, name, owner_id, parent_id, version, created_at, updated_at"
_EXEC_COLS = (
    "id, flow_id, owner_id, root_execution_id, parent_execution_id, status, created_at, updated_at,"
    " started_at, completed_at, error_message, error_node_id, execution_depth, options, integration,"
    " external_events, failure_count, last_failure_reason, last_failure_at, processing_started_at,"
    " processing_worker_id, lease_expires_at"
)
_EXEC_COLS_E = ", ".join("e." + c.strip() for c in _EXEC_COLS.split(","))

_SQL_INSERT_FLOW = (
    f"INSERT INTO chaingraph_flows ({_FLOW_COLS}) VALUES (?,?,?,?,?,?,?,?) RETURNING {_FLOW_COLS}"
)
_SQL_GET_FLOW = f"SELECT {_FLOW_COLS} FROM chaingraph_flows WHERE id = ?"
_SQL_UPDATE_FLOW = (
    "UPDATE chaingraph_flows SET data = ?, name = COALESCE(?, name), version = version + 1, updated_at = ?"
    f" WHERE id = ? AND (? IS NULL OR version = ?) RETURNING {_FLOW_COLS}"
)
_SQL_INSERT_EXEC = (
    f"INSERT INTO chaingraph_executions ({_EXEC_COLS}) VALUES ({','.join('?' * 22)}) RETURNING {_EXEC_COLS}"
)
_SQL_GET_EXEC = f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE id = ?"
_SQL_UPDATE_STATUS = (
    "UPDATE chaingraph_executions SET status = :status, updated_at = :now,"
    " started_at = CASE WHEN :running THEN COALESCE(started_at, :now) ELSE started_at END,"
    " completed_at = CASE WHEN :terminal THEN :now ELSE completed_at END,"
    " error_message = COALESCE(:error_message, error_message),"
    " error_node_id = COALESCE(:error_node_id, error_node_id)"
    " WHERE id = :id AND (:expected IS NULL OR status IN (SELECT value FROM json_each(:expected)))"
    f" RETURNING {_EXEC_COLS}"
)
_SQL_TREE = (
    f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE root_execution_id = ? ORDER BY execution_depth, id"
)


def _roots_sql(with_cursor: bool) -> str:
    # Two variants so that the cursor is an index range (an "(:after IS NULL OR …)" filter
    # would make SQLite walk every newer root of the flow).
    cursor = " AND created_at < :after" if with_cursor else ""
    return (
        "WITH page AS ("
        f" SELECT {_EXEC_COLS} FROM chaingraph_executions"
        f" WHERE flow_id = :flow AND execution_depth = 0{cursor}"
        " ORDER BY created_at DESC, id DESC LIMIT :limit),"
        " agg AS ("
        " SELECT root_execution_id AS rid, MAX(execution_depth) AS levels, COUNT(*) AS total"
        " FROM chaingraph_executions WHERE root_execution_id IN (SELECT id FROM page)"
        " GROUP BY root_execution_id)"
        f" SELECT {_EXEC_COLS_E}, COALESCE(agg.levels, 0), COALESCE(agg.total, 1)"
        " FROM page AS e LEFT JOIN agg ON agg.rid = e.id ORDER BY e.created_at DESC, e.id DESC"
    )


_SQL_ROOTS = _roots_sql(False)
_SQL_ROOTS_AFTER = _roots_sql(True)
_SQL_CHILDREN = (
    f"SELECT {_EXEC_COLS} FROM chaingraph_executions WHERE parent_execution_id = ? ORDER BY created_at, id"
)
_SQL_BY_STATUS = (
    f"SELECT {_EXEC_COLS} FROM chaingraph_executions"
    " WHERE status IN (SELECT value FROM json_each(?)) ORDER BY created_at, id LIMIT ?"
)
_SQL_RECORD_FAILURE = (
    "UPDATE chaingraph_executions SET failure_count = failure_count + 1, last_failure_reason = ?,"
    f" last_failure_at = ?, updated_at = ? WHERE id = ? RETURNING {_EXEC_COLS}"
)
_SQL_CLAIM = (
    "UPDATE chaingraph_executions SET processing_worker_id = :worker, processing_started_at = :now,"
    " lease_expires_at = :expires"
    " WHERE id = :id"
    f" AND status NOT IN (SELECT value FROM json_each('{_TERMINAL_JSON}'))"
    " AND (processing_worker_id IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= :now)"
    " RETURNING id"
)
_SQL_RENEW = "UPDATE chaingraph_executions SET lease_expires_at = ? WHERE id = ? AND processing_worker_id = ? RETURNING id"
_SQL_RELEASE = (
    "UPDATE chaingraph_executions SET processing_worker_id = NULL, processing_started_at = NULL,"
    " lease_expires_at = NULL WHERE id = ? AND processing_worker_id = ? RETURNING id"
)
_SQL_INSERT_EVENT = (
    "INSERT INTO chaingraph_execution_events (execution_id, idx, type, ts, data) VALUES (?,?,?,?,?)"
)
_SQL_READ_EVENTS = (
    "SELECT idx, type, ts, data FROM chaingraph_execution_events"
    " WHERE execution_id = ? AND idx >= ? ORDER BY idx LIMIT ?"
)
_SQL_LAST_INDEX = "SELECT MAX(idx) FROM chaingraph_execution_events WHERE execution_id = ?"

_Row = tuple[Any, ...]


def _is_unique_violation(e: sqlite3.IntegrityError) -> bool:
    return getattr(e, "sqlite_errorname", "") in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE")


def _opt_ms(dt: datetime | None) -> int | None:
    return None if dt is None else to_ms(dt)


def _opt_dt(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


class SQLiteStore:
    """Flows, executions and the event log in the SQLite database at ``path``.

    The store owns the connection and its worker thread; the three interfaces are provided by
    three small facades sharing it (the interfaces have clashing method names such as
    ``create``/``get``, so one object can't provide all three):

    * :attr:`flows` — :class:`SQLiteFlowStore` (:class:`IFlowStore`),
    * :attr:`executions` — :class:`SQLiteExecutionStore` (:class:`IExecutionStore`),
    * :attr:`events` — :class:`SQLiteEventLog` (:class:`IEventLog`).

    ``close()`` on the store or on any facade closes the shared store (idempotent).

    The constructor does no I/O: opening the file and creating/migrating the schema is the
    first job on the worker thread, and a failure there surfaces as :class:`StoreUnavailable`
    from every call.  ``await SQLiteStore.open(path)`` (or ``await store.wait_ready()``)
    surfaces it at once.  ``path`` may be ``":memory:"`` (tests; no WAL then).

    ``codec`` is the superjson instance used for JSON columns and event data (default: the
    process-wide :data:`chaingraph_gw.trpc.superjson.default`, with whatever custom types are
    registered on it).  ``clock`` returns epoch seconds (default ``time.time``) and stamps every
    timestamp the store writes itself (``updated_at``, ``started_at``, leases…).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        codec: _superjson.SuperJSON | None = None,
        clock: Callable[[], float] | None = None,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = str(path)
        self._codec = codec if codec is not None else _superjson.default
        self._clock = clock if clock is not None else time.time
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._conn: sqlite3.Connection | None = None
        self._open_error: BaseException | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        # group commit of append(): (row, loop, future) waiting for the next flush job
        self._pending_lock = threading.Lock()
        self._pending: list[tuple[tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._executor.submit(self._open_sync)
        self.flows = SQLiteFlowStore(self)
        self.executions = SQLiteExecutionStore(self)
        self.events = SQLiteEventLog(self)

    @classmethod
    async def open(cls, path: str | Path, **kwargs: Any) -> SQLiteStore:
        """Construct and wait until the database is open (raises :class:`StoreUnavailable`)."""
        store = cls(path, **kwargs)
        try:
            await store.wait_ready()
        except BaseException:
            await store.close()
            raise
        return store

    async def wait_ready(self) -> None:
        """Wait for the open/migration job; raises :class:`StoreUnavailable` if it failed."""
        await self._call(lambda conn: None)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Finish the queued jobs (pending appends included), then close the connection."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=False)

    # -- worker-thread plumbing ------------------------------------------------------------------

    def _open_sync(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
            try:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA temp_store = MEMORY")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        except Exception as e:
            self._open_error = e

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS chaingraph_schema_version"
            " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        current = conn.execute("SELECT MAX(version) FROM chaingraph_schema_version").fetchone()[0] or 0
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"{self.path}: schema version {current} is newer than this code ({SCHEMA_VERSION})"
            )
        for version in sorted(v for v in _MIGRATIONS if v > current):
            with self._tx(conn):
                for stmt in _MIGRATIONS[version]:
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO chaingraph_schema_version (version, applied_at) VALUES (?, ?)",
                    (version, self._now_ms()),
                )

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute("PRAGMA optimize")
            finally:
                conn.close()

    @staticmethod
    @contextmanager
    def _tx(conn: sqlite3.Connection):  # type: ignore[no-untyped-def]
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            if self._open_error is not None:
                raise StoreUnavailable(f"cannot open {self.path}: {self._open_error}") from self._open_error
            raise StoreUnavailable(f"store {self.path} is closed")
        return conn

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        conn = self._connection()
        try:
            return fn(conn, *args)
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as e:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise StoreUnavailable(f"{self.path}: {e}") from e

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, fn, args)
        except RuntimeError as e:  # executor shut down underneath us
            if self._closed:
                raise StoreUnavailable(f"store {self.path} is closed") from e
            raise

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- encoding ---------------------------------------------------------------------------------

    def _enc(self, value: Any) -> str:
        """superjson payload as JSON text (called on the caller's thread: a snapshot)."""
        return orjson.dumps(self._codec.serialize(value)).decode()

    def _dec(self, text: str | None, default: Any) -> Any:
        if text is None:
            return default
        return self._codec.deserialize(orjson.loads(text))

    @staticmethod
    def _flow_from_row(row: _Row) -> FlowRecord:
        return FlowRecord(
            id=row[0],
            document=orjson.loads(row[1]),
            name=row[2],
            owner_id=row[3],
            parent_id=row[4],
            version=row[5],
            created_at=from_ms(row[6]),
            updated_at=from_ms(row[7]),
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
            created_at=from_ms(row[6]),
            updated_at=from_ms(row[7]),
            started_at=_opt_dt(row[8]),
            completed_at=_opt_dt(row[9]),
            error_message=row[10],
            error_node_id=row[11],
            execution_depth=row[12],
            options=dec(row[13], {}),
            integration=dec(row[14], {}),
            external_events=dec(row[15], []),
            failure_count=row[16],
            last_failure_reason=row[17],
            last_failure_at=_opt_dt(row[18]),
            processing_started_at=_opt_dt(row[19]),
            processing_worker_id=row[20],
            lease_expires_at=_opt_dt(row[21]),
        )

    # -- event-log group commit (state lives here because it belongs to the worker thread) ------

    def _enqueue_append(self, row: tuple[Any, ...]) -> asyncio.Future[None]:
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._pending_lock:
            self._pending.append((row, loop, fut))
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
        if schedule:
            self._executor.submit(self._flush_appends)
        return fut

    def _flush_appends(self) -> None:
        """Worker thread: write every queued append in one transaction (group commit)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._flush_scheduled = False
        if not batch:
            return
        outcomes: list[BaseException | None] = []
        try:
            conn = self._connection()
            with self._tx(conn):
                for row, _loop, _fut in batch:
                    try:
                        conn.execute(_SQL_INSERT_EVENT, row)
                        outcomes.append(None)
                    except sqlite3.IntegrityError as e:  # only this statement is undone
                        outcomes.append(
                            DuplicateEvent(row[0], row[1]) if _is_unique_violation(e) else ValueError(str(e))
                        )
        except StoreUnavailable as e:
            outcomes = [e] * len(batch)
        except sqlite3.Error as e:
            err = StoreUnavailable(f"{self.path}: {e}")
            err.__cause__ = e
            outcomes = [err] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
        for (_row, loop, fut), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((fut, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(resolve_futures, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass




# ================================================================================================
# IFlowStore
# ================================================================================================


@implementer(IFlowStore)
class SQLiteFlowStore(StoreFacade):
    """:class:`IFlowStore` over a :class:`SQLiteStore` (use ``store.flows``)."""

    __slots__ = ()

    async def create(self, record: FlowRecord) -> FlowRecord:
        s = self.store
        row = (
            record.id,
            orjson.dumps(record.document).decode(),
            record.name,
            record.owner_id,
            record.parent_id,
            int(record.version),
            to_ms(record.created_at),
            to_ms(record.updated_at),
        )

        def job(conn: sqlite3.Connection) -> FlowRecord:
            try:
                out = conn.execute(_SQL_INSERT_FLOW, row).fetchone()
            except sqlite3.IntegrityError as e:
                if _is_unique_violation(e):
                    raise AlreadyExists(f"flow {record.id} already exists") from e
                raise ValueError(f"invalid flow record {record.id}: {e}") from e
            return s._flow_from_row(out)

        return await s._call(job)

    async def get(self, flow_id: str) -> FlowRecord | None:
        s = self.store

        def job(conn: sqlite3.Connection) -> FlowRecord | None:
            row = conn.execute(_SQL_GET_FLOW, (flow_id,)).fetchone()
            return None if row is None else s._flow_from_row(row)

        return await s._call(job)

    async def list(
        self, owner_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[FlowRecord]:
        """See :meth:`IFlowStore.list`; an unknown ``after`` cursor raises :class:`NotFound`."""
        s = self.store
        if limit <= 0:
            return []

        def job(conn: sqlite3.Connection) -> list[FlowRecord]:
            where: list[str] = []
            params: list[Any] = []
            if owner_id is not None:
                where.append("owner_id = ?")
                params.append(owner_id)
            if after is not None:
                cur = conn.execute(
                    "SELECT created_at, id FROM chaingraph_flows WHERE id = ?", (after,)
                ).fetchone()
                if cur is None:
                    raise NotFound(f"flow cursor {after} does not exist")
                where.append("(created_at < ? OR (created_at = ? AND id > ?))")
                params += [cur[0], cur[0], cur[1]]
            sql = f"SELECT {_FLOW_COLS} FROM chaingraph_flows"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY created_at DESC, id ASC LIMIT ?"
            params.append(int(limit))
            return [s._flow_from_row(r) for r in conn.execute(sql, params).fetchall()]

        return await s._call(job)

    async def update(
        self,
        flow_id: str,
        document: dict[str, Any],
        name: str | None = None,
        expected_version: int | None = None,
    ) -> FlowRecord:
        s = self.store
        data = orjson.dumps(document).decode()

        def job(conn: sqlite3.Connection) -> FlowRecord:
            now = s._now_ms()
            row = conn.execute(
                _SQL_UPDATE_FLOW, (data, name, now, flow_id, expected_version, expected_version)
            ).fetchone()
            if row is not None:
                return s._flow_from_row(row)
            cur = conn.execute("SELECT version FROM chaingraph_flows WHERE id = ?", (flow_id,)).fetchone()
            if cur is None:
                raise NotFound(f"flow {flow_id} not found")
            raise VersionConflict(flow_id, expected_version, cur[0])  # type: ignore[arg-type]

        return await s._call(job)

    async def delete(self, flow_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM chaingraph_flows WHERE id = ?", (flow_id,)).rowcount > 0

        return await self.store._call(job)

    async def count(self, owner_id: str | None = None) -> int:
        def job(conn: sqlite3.Connection) -> int:
            if owner_id is None:
                return conn.execute("SELECT COUNT(*) FROM chaingraph_flows").fetchone()[0]
            return conn.execute(
                "SELECT COUNT(*) FROM chaingraph_flows WHERE owner_id = ?", (owner_id,)
            ).fetchone()[0]

        return await self.store._call(job)


# ================================================================================================
# IExecutionStore
# ================================================================================================


@implementer(IExecutionStore)
class SQLiteExecutionStore(StoreFacade):
    """:class:`IExecutionStore` over a :class:`SQLiteStore` (use ``store.executions``).

    Lease times come from the store's clock, read on the worker thread right before the write.
    """

    __slots__ = ()

    async def create(self, record: ExecutionRecord) -> ExecutionRecord:
        s = self.store
        r = record
        if r.status not in ALL_STATUSES:
            raise ValueError(f"unknown execution status {r.status!r}")
        row = (
            r.id, r.flow_id, r.owner_id, r.root_execution_id, r.parent_execution_id, r.status,
            to_ms(r.created_at), to_ms(r.updated_at), _opt_ms(r.started_at), _opt_ms(r.completed_at),
            r.error_message, r.error_node_id, int(r.execution_depth),
            s._enc(r.options), s._enc(r.integration), s._enc(r.external_events),
            int(r.failure_count), r.last_failure_reason, _opt_ms(r.last_failure_at),
            _opt_ms(r.processing_started_at), r.processing_worker_id, _opt_ms(r.lease_expires_at),
        )  # fmt: skip

        def job(conn: sqlite3.Connection) -> ExecutionRecord:
            try:
                out = conn.execute(_SQL_INSERT_EXEC, row).fetchone()
            except sqlite3.IntegrityError as e:
                if _is_unique_violation(e):
                    raise AlreadyExists(f"execution {r.id} already exists") from e
                raise ValueError(f"invalid execution record {r.id}: {e}") from e
            return s._exec_from_row(out)

        return await s._call(job)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        s = self.store

        def job(conn: sqlite3.Connection) -> ExecutionRecord | None:
            row = conn.execute(_SQL_GET_EXEC, (execution_id,)).fetchone()
            return None if row is None else s._exec_from_row(row)

        return await s._call(job)

    async def update_status(
        self,
        execution_id: str,
        status: str,
        *,
        expected: Iterable[str] | None = None,
        error_message: str | None = None,
        error_node_id: str | None = None,
    ) -> ExecutionRecord | None:
        s = self.store
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
            "expected": None if expected is None else orjson.dumps(sorted(expected)).decode(),
        }

        def job(conn: sqlite3.Connection) -> ExecutionRecord | None:
            params["now"] = s._now_ms()
            row = conn.execute(_SQL_UPDATE_STATUS, params).fetchone()
            return None if row is None else s._exec_from_row(row)

        return await s._call(job)

    async def tree(self, root_id: str) -> list[ExecutionRecord]:
        s = self.store

        def job(conn: sqlite3.Connection) -> list[ExecutionRecord]:
            return [s._exec_from_row(r) for r in conn.execute(_SQL_TREE, (root_id,)).fetchall()]

        return await s._call(job)

    async def roots(
        self, flow_id: str, limit: int = 50, after: datetime | None = None
    ) -> list[tuple[ExecutionRecord, int, int]]:
        s = self.store
        if limit <= 0:
            return []
        params = {"flow": flow_id, "after": _opt_ms(after), "limit": int(limit)}
        sql = _SQL_ROOTS if after is None else _SQL_ROOTS_AFTER

        def job(conn: sqlite3.Connection) -> list[tuple[ExecutionRecord, int, int]]:
            rows = conn.execute(sql, params).fetchall()
            return [(s._exec_from_row(r[:22]), r[22], r[23]) for r in rows]

        return await s._call(job)

    async def children(self, parent_id: str) -> list[ExecutionRecord]:
        s = self.store

        def job(conn: sqlite3.Connection) -> list[ExecutionRecord]:
            return [s._exec_from_row(r) for r in conn.execute(_SQL_CHILDREN, (parent_id,)).fetchall()]

        return await s._call(job)

    async def find_by_status(
        self, statuses: Iterable[str], limit: int | None = None
    ) -> list[ExecutionRecord]:
        s = self.store
        if isinstance(statuses, str):
            raise TypeError("statuses must be a set of statuses, not a str")
        wanted = orjson.dumps(sorted(set(statuses))).decode()
        lim = -1 if limit is None else int(limit)

        def job(conn: sqlite3.Connection) -> list[ExecutionRecord]:
            return [s._exec_from_row(r) for r in conn.execute(_SQL_BY_STATUS, (wanted, lim)).fetchall()]

        return await s._call(job)

    async def record_failure(self, execution_id: str, reason: str) -> ExecutionRecord | None:
        s = self.store

        def job(conn: sqlite3.Connection) -> ExecutionRecord | None:
            now = s._now_ms()
            row = conn.execute(_SQL_RECORD_FAILURE, (reason, now, now, execution_id)).fetchone()
            return None if row is None else s._exec_from_row(row)

        return await s._call(job)

    async def claim(self, execution_id: str, worker_id: str, lease_seconds: float) -> bool:
        s = self.store

        def job(conn: sqlite3.Connection) -> bool:
            now = s._now_ms()
            params = {
                "worker": worker_id,
                "now": now,
                "expires": now + int(lease_seconds * 1000),
                "id": execution_id,
            }
            return conn.execute(_SQL_CLAIM, params).fetchone() is not None

        return await s._call(job)

    async def renew(self, execution_id: str, worker_id: str, lease_seconds: float) -> bool:
        s = self.store

        def job(conn: sqlite3.Connection) -> bool:
            expires = s._now_ms() + int(lease_seconds * 1000)
            return conn.execute(_SQL_RENEW, (expires, execution_id, worker_id)).fetchone() is not None

        return await s._call(job)

    async def release(self, execution_id: str, worker_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            return conn.execute(_SQL_RELEASE, (execution_id, worker_id)).fetchone() is not None

        return await self.store._call(job)


# ================================================================================================
# IEventLog
# ================================================================================================


@implementer(IEventLog)
class SQLiteEventLog(StoreFacade):
    """:class:`IEventLog` over a :class:`SQLiteStore` (use ``store.events``).

    ``append`` is group-committed (see the module docstring); ``append_many`` is one
    all-or-nothing transaction.
    """

    __slots__ = ()

    def _row(
        self, execution_id: str, index: int, type: str, timestamp: datetime, data: Any
    ) -> tuple[Any, ...]:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"event index must be an int >= 0, got {index!r}")
        if not isinstance(execution_id, str) or not isinstance(type, str):
            raise TypeError("event execution_id and type must be str")
        return (execution_id, index, type, to_ms(timestamp), self.store._enc(data))

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

        def job(conn: sqlite3.Connection) -> None:
            try:
                with SQLiteStore._tx(conn):
                    conn.executemany(_SQL_INSERT_EVENT, rows)
            except sqlite3.IntegrityError as e:
                for ex_id, idx, *_ in rows:  # name the first offender
                    if conn.execute(
                        "SELECT 1 FROM chaingraph_execution_events WHERE execution_id = ? AND idx = ?",
                        (ex_id, idx),
                    ).fetchone():
                        raise DuplicateEvent(ex_id, idx) from e
                raise ValueError(f"invalid event: {e}") from e

        await self.store._call(job)

    async def read(
        self, execution_id: str, from_index: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        s = self.store
        lim = -1 if limit is None else int(limit)
        if lim == 0:
            return []

        def job(conn: sqlite3.Connection) -> list[StoredEvent]:
            dec = s._codec.deserialize
            loads = orjson.loads
            return [
                StoredEvent(execution_id, idx, typ, from_ms(ts), dec(loads(data)))
                for idx, typ, ts, data in conn.execute(_SQL_READ_EVENTS, (execution_id, int(from_index), lim))
            ]

        return await s._call(job)

    async def last_index(self, execution_id: str) -> int:
        def job(conn: sqlite3.Connection) -> int:
            v = conn.execute(_SQL_LAST_INDEX, (execution_id,)).fetchone()[0]
            return -1 if v is None else v

        return await self.store._call(job)
