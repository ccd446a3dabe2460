"""Tests for chaingraph_gw.services.postgres_store and .migrations (trial --reactor=asyncio).

They need a real PostgreSQL server: ``DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/chaingraph``, e.g. from ``scripts/services/services.sh up``)
with a role allowed to create databases.  Each test gets a fresh database
``chaingraph_test_<random>`` on that server, dropped afterwards.  When the server can't be
reached the server-backed classes are skipped (the reason names the URL); the unreachable-server
checks always run.

The behavioural checks of ``tests/test_services_sqlite.py`` run here against PostgreSQL
unchanged: the ``Pg*Tests`` classes subclass its test classes and swap in a PostgreSQL fixture
(``open()`` returns a :class:`PostgresStore` on the test database, with the same fake clock).
Only the SQLite-specific tests (file, WAL, worker thread, ``:memory:``) are overridden with
their PostgreSQL counterparts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from chaingraph_gw.services import migrations
from chaingraph_gw.services.interfaces import AlreadyExists, DuplicateEvent, StoreUnavailable, VersionConflict
from chaingraph_gw.services.postgres_store import PostgresStore
from chaingraph_gw.services.records import FlowRecord, StoredEvent, to_ms, utcnow
from chaingraph_gw.trpc.superjson import BigInt
from tests import test_services_sqlite as sq

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/chaingraph")

T0 = sq.T0
execution = sq.execution
flow = sq.flow
async_test = sq.async_test


def _probe() -> str | None:
    """None if DATABASE_URL answers, else the skip reason."""
    where = DATABASE_URL.rsplit("@", 1)[-1]
    try:
        with psycopg.connect(DATABASE_URL, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return (
            f"PostgreSQL not reachable at {where} ({first}); set DATABASE_URL or start one with"
            " scripts/services/services.sh up"
        )
    return None


SKIP = _probe()


def _deferred(coro: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    from twisted.internet import reactor

    loop = reactor._asyncioEventloop  # type: ignore[attr-defined]
    return Deferred.fromFuture(loop.create_task(coro))


async def _admin(statement: sql.Composable, params: Any = None) -> list[Any]:
    """Run one statement on DATABASE_URL (autocommit); returns the rows, if any."""
    conn = await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True)
    try:
        cur = await conn.execute(statement, params)
        return await cur.fetchall() if cur.description else []
    finally:
        await conn.close()


class _PgFixture:
    """setUp/tearDown/open of a PostgreSQL test: a fresh database per test.

    Mixed in *before* the SQLite test classes, so their tests run against PostgreSQL."""

    skip = SKIP
    timeout = 20

    clock: sq.FakeClock
    stores: list[PostgresStore]
    dbname: str
    dsn: str

    def setUp(self) -> Deferred[Any]:
        self.clock = sq.FakeClock()
        self.stores = []
        self.dbname = f"chaingraph_test_{uuid.uuid4().hex[:12]}"
        self.dsn = make_conninfo(DATABASE_URL, dbname=self.dbname)
        return _deferred(_admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname))))

    def tearDown(self) -> Deferred[Any]:
        async def cleanup() -> None:
            try:
                for s in self.stores:
                    await s.close()
            finally:
                await _admin(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.dbname))
                )

        return _deferred(cleanup())

    async def open(self, dsn: str | None = None, **kw: Any) -> PostgresStore:
        kw.setdefault("clock", self.clock)
        store = await PostgresStore.open(dsn or self.dsn, **kw)
        self.stores.append(store)
        return store

    async def query(self, statement: str, params: Any = None) -> list[Any]:
        """Rows of one statement run on the test database, outside the store."""
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        try:
            cur = await conn.execute(statement, params)  # type: ignore[arg-type]
            return await cur.fetchall() if cur.description else []
        finally:
            await conn.close()


# =================================================================================================
# The SQLite store's behavioural checks, against PostgreSQL
# =================================================================================================


class PgInterfaceTests(_PgFixture, sq.InterfaceTests):
    @async_test
    async def test_wal_and_schema(self) -> None:
        """(SQLite: WAL + tables.)  Here: tables, columns, indexes, recorded migrations, plan."""
        await self.open()
        tables = {
            r[0] for r in await self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        self.assertEqual(
            tables,
            {
                "chaingraph_flows",
                "chaingraph_executions",
                "chaingraph_execution_events",
                "chaingraph_schema_migrations",
            },
        )
        cols = await self.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        types = {(t, c): ty for t, c, ty in cols}
        exec_cols = [c for t, c in types if t == "chaingraph_executions"]
        self.assertEqual(
            sorted(exec_cols),
            sorted(
                [
                    *("id", "flow_id", "owner_id", "root_execution_id", "parent_execution_id", "status"),
                    *("created_at", "updated_at", "started_at", "completed_at", "error_message"),
                    *("error_node_id", "execution_depth", "options", "integration", "external_events"),
                    *("failure_count", "last_failure_reason", "last_failure_at", "processing_started_at"),
                    *("processing_worker_id", "lease_expires_at"),
                ]
            ),
        )
        for table, col, ty in (
            ("chaingraph_flows", "data", "jsonb"),
            ("chaingraph_flows", "version", "integer"),
            ("chaingraph_flows", "created_at", "timestamp with time zone"),
            ("chaingraph_executions", "options", "jsonb"),
            ("chaingraph_executions", "external_events", "jsonb"),
            ("chaingraph_executions", "updated_at", "timestamp with time zone"),
            ("chaingraph_execution_events", "idx", "integer"),
            ("chaingraph_execution_events", "data", "jsonb"),
            ("chaingraph_execution_events", "ts", "timestamp with time zone"),
            ("chaingraph_schema_migrations", "applied_at", "timestamp with time zone"),
        ):
            self.assertEqual(types[(table, col)], ty, (table, col))
        indexes = {
            r[0]: r[1]
            for r in await self.query(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
        }
        for name, columns in (
            ("chaingraph_executions_flow_depth_created_idx", "(flow_id, execution_depth, created_at, id)"),
            ("chaingraph_executions_root_idx", "(root_execution_id, execution_depth, id)"),
            ("chaingraph_executions_parent_idx", "(parent_execution_id, created_at, id)"),
            ("chaingraph_executions_status_idx", "(status, created_at, id)"),
            ("chaingraph_executions_started_idx", "(started_at)"),
            ("chaingraph_execution_events_pkey", "(execution_id, idx)"),
            ("chaingraph_flows_owner_created_idx", "(owner_id, created_at DESC, id)"),
        ):
            self.assertIn(columns, indexes[name], name)
        self.assertEqual(
            await self.query("SELECT version FROM chaingraph_schema_migrations"),
            [(migrations.latest_version(),)],
        )
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        try:
            await conn.execute("SET enable_seqscan = off")
            cur = await conn.execute(
                "EXPLAIN SELECT id FROM chaingraph_executions WHERE flow_id = 'f' AND execution_depth = 0"
                " AND created_at < now() ORDER BY created_at DESC, id DESC LIMIT 3"
            )
            plan = " ".join(r[0] for r in await cur.fetchall())
        finally:
            await conn.close()
        self.assertIn("chaingraph_executions_flow_depth_created_idx", plan)
        self.assertNotIn("Sort", plan)

    @async_test
    async def test_open_failure_is_store_unavailable(self) -> None:
        missing = make_conninfo(self.dsn, dbname=self.dbname + "_missing")
        with self.assertRaises(StoreUnavailable) as cm:
            await PostgresStore.open(missing)
        self.assertIn("does not exist", str(cm.exception))
        self.assertIn(self.dbname + "_missing", str(cm.exception))
        store = PostgresStore(missing)  # the constructor does no I/O ...
        self.stores.append(store)
        with self.assertRaises(StoreUnavailable):  # ... and calls before open() are refused
            await store.flows.count()
        with self.assertRaises(StoreUnavailable):
            await store.open()

    @async_test
    async def test_newer_schema_refused(self) -> None:
        store = await self.open()
        await store.close()
        await self.query(
            "INSERT INTO chaingraph_schema_migrations (version) VALUES (%s)",
            (migrations.latest_version() + 1,),
        )
        with self.assertRaises(StoreUnavailable) as cm:
            await PostgresStore.open(self.dsn)
        self.assertIn("newer", str(cm.exception))
        self.assertIsInstance(cm.exception.__cause__, migrations.SchemaTooNew)

    @async_test
    async def test_memory_database(self) -> None:
        raise AssertionError("not run")

    test_memory_database.skip = "SQLite only (':memory:' databases)"  # type: ignore[attr-defined]

    @async_test
    async def test_open_forms_and_ping(self) -> None:
        store = PostgresStore(self.dsn, clock=self.clock, min_size=2, max_size=3)
        self.stores.append(store)
        self.assertFalse(store.closed)
        self.assertIs(await store.open(), store)
        self.assertIs(await store.open(), store)  # idempotent
        await store.ping()
        await store.flows.create(flow("V2a"))
        other = await self.open()  # the class form
        self.assertEqual(await other.flows.count(), 1)
        self.assertIn(self.dbname, repr(other))
        await store.close()
        with self.assertRaises(StoreUnavailable):
            await store.ping()
        with self.assertRaises(StoreUnavailable):
            await store.open()
        with self.assertRaises(ValueError):
            PostgresStore("host=127.0.0.1 port")  # a malformed DSN is a programming error


class PgFlowStoreTests(_PgFixture, sq.FlowStoreTests):
    pass


class PgExecutionStoreTests(_PgFixture, sq.ExecutionStoreTests):
    pass


class PgEventLogTests(_PgFixture, sq.EventLogTests):
    async def assert_stored_with_date(self, at: datetime) -> None:
        # stored as the superjson payload, in jsonb: the Date annotation is in the row
        ((kind, text, ts),) = await self.query(
            "SELECT jsonb_typeof(data), data::text, ts FROM chaingraph_execution_events"
        )
        self.assertEqual(kind, "object")
        self.assertIn('"Date"', text)
        self.assertEqual(to_ms(ts), to_ms(at))

    @async_test
    async def test_event_loop_stays_free(self) -> None:
        """(SQLite: jobs run on a worker thread.)  Here: a slow query does not block the loop."""
        store = await self.open()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.get_running_loop().create_task(ticker())
        try:
            async with store._conn() as conn:
                await conn.execute("SELECT pg_sleep(0.3)")
        finally:
            task.cancel()
        self.assertGreater(ticks, 10)

    @async_test
    async def test_jsonb_edge_cases(self) -> None:
        """U+0000 (which jsonb can't hold) and numbers jsonb normalises survive the round trip."""
        store = await self.open()
        data = {
            "nul": "a\x00b",
            "escaped": "\\u0000 is six characters here",
            "big": 1e20,
            "ns": 1.7e18,
            "small": 1.5e-7,
            "safe": 2**53 - 1,
            "huge": 2**60,
            "three": 3.0,
        }
        await store.events.append("EX1", 0, "t", T0, data)
        await store.events.append("EX1", 1, "t", T0, {"plain": 1e20})
        (ev, ev2) = await store.events.read("EX1")
        self.assertEqual(ev.data, data)
        for key in ("big", "ns", "small", "three"):
            self.assertIs(type(ev.data[key]), float, key)
        self.assertIs(type(ev.data["safe"]), int)
        self.assertIsInstance(ev.data["huge"], BigInt)
        self.assertIs(type(ev2.data["plain"]), float)
        doc = {"id": "V2n", "nodes": [{"title": "x\x00y", "w": 1e300}]}
        await store.flows.create(flow("V2n", document=doc))
        got = (await store.flows.get("V2n")).document
        self.assertEqual(got, doc)
        self.assertIs(type(got["nodes"][0]["w"]), float)
        rec = await store.executions.create(execution("EX1", options={"s": "\x00"}))
        self.assertEqual(rec.options, {"s": "\x00"})
        with self.assertRaises(ValueError):  # text columns can't hold NUL either
            await store.events.append("EX\x00", 0, "t", T0, {})
        with self.assertRaises(ValueError):  # the idx column is an integer
            await store.events.append("EX1", 2**31, "t", T0, {})
        self.assertEqual(await store.events.read("EX1", 2**40), [])


# =================================================================================================
# Migrations
# =================================================================================================


class PgMigrationTests(_PgFixture, unittest.TestCase):
    @async_test
    async def test_concurrent_migrate_applies_once(self) -> None:
        versions = [m.version for m in migrations.available()]
        conns = [await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) for _ in range(4)]
        try:
            self.assertEqual(await migrations.applied_versions(conns[0]), [])
            results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
            self.assertEqual(sorted(results), [[], [], [], versions])
            self.assertEqual(await migrations.applied_versions(conns[1]), versions)
            self.assertEqual(await migrations.migrate(conns[2]), [])
        finally:
            for c in conns:
                await c.close()
        rows = await self.query(
            "SELECT version, applied_at FROM chaingraph_schema_migrations ORDER BY version"
        )
        self.assertEqual([r[0] for r in rows], versions)
        self.assertIsNotNone(rows[0][1])

    @async_test
    async def test_migrate_with_pool(self) -> None:
        pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=2, open=False)
        await pool.open(wait=True, timeout=5)
        try:
            self.assertEqual(await migrations.migrate(pool), [m.version for m in migrations.available()])
            self.assertEqual(await migrations.migrate(pool), [])
            self.assertEqual(await migrations.applied_versions(pool), [migrations.latest_version()])
        finally:
            await pool.close()

    @async_test
    async def test_concurrent_store_opens(self) -> None:
        stores = await asyncio.gather(*(self.open() for _ in range(4)))
        await stores[0].flows.create(flow("V2a"))
        self.assertEqual([await s.flows.count() for s in stores], [1, 1, 1, 1])
        self.assertEqual(await self.query("SELECT count(*) FROM chaingraph_schema_migrations"), [(1,)])

    @async_test
    async def test_failed_migration_is_rolled_back(self) -> None:
        """A migration that fails leaves nothing behind, not even its bookkeeping (here: one of
        its tables exists already)."""
        await self.query("CREATE TABLE chaingraph_execution_events (x int)")
        with self.assertRaises(StoreUnavailable) as cm:
            await PostgresStore.open(self.dsn)
        self.assertIn("already exists", str(cm.exception))
        tables = {
            r[0] for r in await self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        self.assertEqual(tables, {"chaingraph_execution_events"})
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        try:
            self.assertEqual(await migrations.applied_versions(conn), [])
        finally:
            await conn.close()


# =================================================================================================
# Several stores (processes) on one database, failures
# =================================================================================================


class PgSharedDatabaseTests(_PgFixture, unittest.TestCase):
    @async_test
    async def test_concurrent_claims_across_stores(self) -> None:
        a, b = (await self.open(max_size=5)).executions, (await self.open(max_size=5)).executions
        await a.create(execution("EX1"))
        results = await asyncio.gather(*((a if i % 2 else b).claim("EX1", f"w{i}", 30) for i in range(10)))
        self.assertEqual(results.count(True), 1)
        winner = f"w{results.index(True)}"
        self.assertEqual((await b.get("EX1")).processing_worker_id, winner)
        self.clock.advance(31)  # the winner stopped heartbeating: a takeover race, one winner again
        results = await asyncio.gather(a.claim("EX1", "wa", 30), b.claim("EX1", "wb", 30))
        self.assertEqual(sorted(results), [False, True])
        self.assertFalse(await a.renew("EX1", winner, 30))
        holder = "wa" if results[0] else "wb"
        self.assertTrue(await (b if holder == "wa" else a).release("EX1", holder))
        self.assertTrue(await a.claim("EX1", "wc", 30))  # released = claimable again

    @async_test
    async def test_update_status_race_across_stores(self) -> None:
        a, b = (await self.open()).executions, (await self.open()).executions
        await a.create(execution("EX1"))
        await b.update_status("EX1", "running", expected={"created"})
        results = await asyncio.gather(
            a.update_status("EX1", "stopped", expected={"running", "paused"}),
            b.update_status("EX1", "completed", expected={"running", "paused"}),
            a.update_status("EX1", "failed", expected={"running", "paused"}),
            b.update_status("EX1", "stopped", expected={"running", "paused"}),
        )
        winners = [r for r in results if r is not None]
        self.assertEqual(len(winners), 1)
        self.assertEqual((await a.get("EX1")).status, winners[0].status)

    @async_test
    async def test_flow_version_conflict_across_stores(self) -> None:
        a, b = (await self.open()).flows, (await self.open()).flows
        await a.create(flow("V2a"))
        with self.assertRaises(AlreadyExists):
            await b.create(flow("V2a"))
        results = await asyncio.gather(
            *((a if i % 2 else b).update("V2a", {"w": i}, expected_version=1) for i in range(6)),
            return_exceptions=True,
        )
        self.assertEqual(sum(isinstance(r, FlowRecord) for r in results), 1)
        self.assertEqual(sum(isinstance(r, VersionConflict) for r in results), 5)

    @async_test
    async def test_duplicate_event_across_stores(self) -> None:
        a, b = (await self.open()).events, (await self.open()).events
        await a.append("EX1", 0, "flow:started", T0, {"by": "a"})
        with self.assertRaises(DuplicateEvent) as cm:
            await b.append("EX1", 0, "flow:started", T0, {"by": "b"})
        self.assertEqual((cm.exception.execution_id, cm.exception.index), ("EX1", 0))
        results = await asyncio.gather(
            a.append("EX1", 1, "t", T0, "a"), b.append("EX1", 1, "t", T0, "b"), return_exceptions=True
        )
        self.assertEqual(sum(r is None for r in results), 1)
        self.assertEqual(sum(isinstance(r, DuplicateEvent) for r in results), 1)
        with self.assertRaises(DuplicateEvent) as cm:
            await b.append_many([StoredEvent("EX1", i, "t", T0, "b") for i in (2, 3, 1)])
        self.assertEqual(cm.exception.index, 1)
        self.assertEqual(await a.last_index("EX1"), 1)
        self.assertEqual((await b.read("EX1"))[0].data, {"by": "a"})  # never overwritten
        # concurrent group-committed batches from both stores: each index stored exactly once
        results = await asyncio.gather(
            *(log.append("EX2", i, "t", T0, tag) for i in range(20) for log, tag in ((a, "a"), (b, "b"))),
            return_exceptions=True,
        )
        self.assertEqual(sum(r is None for r in results), 20)
        self.assertEqual(sum(isinstance(r, DuplicateEvent) for r in results), 20)
        self.assertEqual([e.index for e in await a.read("EX2")], list(range(20)))

    @async_test
    async def test_server_clock(self) -> None:
        """clock=None: the store stamps times with the database server's clock (ms, UTC)."""
        store = await self.open(clock=None)
        ex = store.executions
        await ex.create(execution("EX1"))
        self.assertTrue(await ex.claim("EX1", "w1", 30))
        rec = await ex.get("EX1")
        self.assertEqual(rec.lease_expires_at - rec.processing_started_at, timedelta(seconds=30))
        self.assertLess(abs(rec.processing_started_at - utcnow()), timedelta(minutes=1))
        self.assertFalse(await ex.claim("EX1", "w2", 30))
        self.assertTrue(await ex.renew("EX1", "w1", 0))  # expires now ...
        self.assertTrue(await ex.claim("EX1", "w2", 30))  # ... so it can be taken over
        run = await ex.update_status("EX1", "running")
        for dt in (run.started_at, run.updated_at, rec.processing_started_at):
            self.assertIs(dt.tzinfo, UTC)
            self.assertEqual(dt.microsecond % 1000, 0)
        self.assertEqual(run.started_at, run.updated_at)
        failed = await ex.record_failure("EX1", "x")
        self.assertEqual(failed.last_failure_at, failed.updated_at)
        v2 = await store.flows.update((await store.flows.create(flow("V2a"))).id, {"v": 2})
        self.assertGreater(v2.updated_at, T0)

    @async_test
    async def test_lost_connection_recovers(self) -> None:
        """The server drops every connection: at most one call fails (StoreUnavailable), then the
        pool reconnects."""
        store = await self.open(min_size=1, max_size=1)
        await store.flows.create(flow("V2a"))
        pool_log = logging.getLogger("psycopg.pool")  # it warns about discarding the dead connections
        self.addCleanup(pool_log.setLevel, pool_log.level)
        pool_log.setLevel(logging.ERROR)
        await _admin(
            sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}").format(
                sql.Literal(self.dbname)
            )
        )
        await asyncio.sleep(0.05)
        try:
            await store.flows.count()
        except StoreUnavailable as e:
            self.assertIn(self.dbname, str(e))
        self.assertEqual(await store.flows.count(), 1)
        await _admin(
            sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}").format(
                sql.Literal(self.dbname)
            )
        )
        await asyncio.sleep(0.05)
        try:  # a group-committed append reports it too, it does not hang
            await store.events.append("EX1", 0, "t", T0, {})
        except StoreUnavailable:
            await store.events.append("EX1", 0, "t", T0, {})
        self.assertEqual(await store.events.last_index("EX1"), 0)

    @async_test
    async def test_pool_exhausted_and_statement_timeout(self) -> None:
        store = await self.open(max_size=1, timeout=0.3, statement_timeout=0.2)
        async with store._conn():  # hold the only connection
            t = time.monotonic()
            with self.assertRaises(StoreUnavailable) as cm:
                await store.flows.count()
            self.assertLess(time.monotonic() - t, 2)
            self.assertIn("no database connection available", str(cm.exception))
        with self.assertRaises(StoreUnavailable) as cm:
            async with store._conn() as conn:
                await conn.execute("SELECT pg_sleep(2)")
        self.assertIn("timed out", str(cm.exception))
        await store.ping()  # the connection is usable again


# =================================================================================================
# No server needed
# =================================================================================================


class PgNoServerTests(unittest.TestCase):
    timeout = 15

    def test_migration_files(self) -> None:
        found = migrations.available()
        self.assertEqual([m.version for m in found], list(range(1, len(found) + 1)))
        self.assertEqual(found[0].name, "0001_init.sql")
        self.assertIn("CREATE TABLE chaingraph_execution_events", found[0].sql)

    @async_test
    async def test_unreachable_dsn_fails_fast(self) -> None:
        t = time.monotonic()
        with self.assertRaises(StoreUnavailable) as cm:
            await PostgresStore.open("postgresql://cg:s3cret@127.0.0.1:1/chaingraph")
        self.assertLess(time.monotonic() - t, 6)
        msg = str(cm.exception)
        self.assertIn("127.0.0.1:1/chaingraph", msg)
        self.assertNotIn("s3cret", msg)
        self.assertIsInstance(cm.exception.__cause__, psycopg.OperationalError)

    @async_test
    async def test_silent_host_times_out(self) -> None:
        """A host that never answers (or an unreachable network): bounded by connect_timeout."""
        t = time.monotonic()
        with self.assertRaises(StoreUnavailable):
            await PostgresStore.open("postgresql://postgres@10.255.255.1:5432/chaingraph", connect_timeout=2)
        self.assertLess(time.monotonic() - t, 6)

    @async_test
    async def test_calls_before_open_and_after_close(self) -> None:
        store = PostgresStore("postgresql://postgres@127.0.0.1:1/chaingraph")
        for call in (
            lambda: store.flows.get("V2a"),
            lambda: store.executions.claim("EX1", "w", 30),
            lambda: store.events.append("EX1", 0, "t", T0, {}),
            lambda: store.events.read("EX1"),
            store.ping,
        ):
            with self.assertRaises(StoreUnavailable) as cm:
                await call()
            self.assertIn("not open", str(cm.exception))
        await store.events.close()  # a facade closes the store; idempotent
        await store.close()
        self.assertTrue(store.closed)
        with self.assertRaises(StoreUnavailable) as cm:
            await store.flows.count()
        self.assertIn("closed", str(cm.exception))
