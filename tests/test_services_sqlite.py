"""Tests for chaingraph_gw.services.sqlite_store (run with trial --reactor=asyncio)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chaingraph_gw.services.interfaces import (
    AlreadyExists,
    DuplicateEvent,
    IEventLog,
    IExecutionStore,
    IFlowStore,
    NotFound,
    StoreUnavailable,
    VersionConflict,
)
from chaingraph_gw.services.records import ExecutionRecord, FlowRecord, StoredEvent, from_ms, to_ms
from chaingraph_gw.services.sqlite_store import SCHEMA_VERSION, SQLiteStore
from chaingraph_gw.trpc.superjson import UNDEFINED, JSError, JSMap, JSSet

from .helpers import async_test


def sync_implementations_of_async_methods(iface: Any, obj: Any) -> list[str]:
    """Interface methods declared ``async def`` (zope keeps no trace of that, so read the
    source) that ``obj`` implements as plain functions."""
    from chaingraph_gw.services import interfaces

    tree = ast.parse(inspect.getsource(interfaces))
    declared_async: set[str] = set()
    wanted = {base.__name__ for base in iface.__iro__}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in wanted:
            declared_async |= {n.name for n in node.body if isinstance(n, ast.AsyncFunctionDef)}
    return sorted(n for n in declared_async if not inspect.iscoroutinefunction(getattr(obj, n)))


class FakeClock:
    """A controllable ``time.time``."""

    def __init__(self, start: float = 1_757_937_600.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


T0 = datetime(2025, 9, 15, 12, 0, 0, tzinfo=UTC)


def flow(fid: str, owner: str = "u1", created: datetime = T0, **kw: Any) -> FlowRecord:
    doc = kw.pop(
        "document",
        {"id": fid, "metadata": {"id": fid, "name": "n", "ownerID": owner}, "nodes": [], "edges": []},
    )
    return FlowRecord(
        id=fid, name=kw.pop("name", f"flow {fid}"), owner_id=owner, version=1, document=doc,
        created_at=created, updated_at=created, **kw,
    )  # fmt: skip


def execution(eid: str, flow_id: str = "V2f", created: datetime = T0, parent: ExecutionRecord | None = None,
              **kw: Any) -> ExecutionRecord:  # fmt: skip
    if parent is None:
        rec = ExecutionRecord.new_root(eid, flow_id, "owner", now=created)
    else:
        rec = ExecutionRecord.new_child(
            parent, eid, external_events=[{"eventName": "ev", "payload": eid}], now=created
        )
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


class _StoreCase(unittest.TestCase):
    timeout = 15

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "store.db")
        self.clock = FakeClock()
        self.stores: list[SQLiteStore] = []

    def tearDown(self) -> Deferred[Any]:
        async def close_all() -> None:
            for s in self.stores:
                await s.close()

        return async_test(lambda self: close_all())(self)

    async def open(self, path: str | None = None, **kw: Any) -> SQLiteStore:
        kw.setdefault("clock", self.clock)
        store = await SQLiteStore.open(path or self.path, **kw)
        self.stores.append(store)
        return store


class InterfaceTests(_StoreCase):
    @async_test
    async def test_verify_object(self) -> None:
        store = await self.open()
        for iface, obj in (
            (IFlowStore, store.flows),
            (IExecutionStore, store.executions),
            (IEventLog, store.events),
        ):
            self.assertTrue(verifyObject(iface, obj))
            self.assertEqual(sync_implementations_of_async_methods(iface, obj), [], iface.__name__)

    @async_test
    async def test_wal_and_schema(self) -> None:
        store = await self.open()
        await store.wait_ready()
        conn = sqlite3.connect(self.path)
        try:
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            self.assertLessEqual(
                {
                    "chaingraph_flows",
                    "chaingraph_executions",
                    "chaingraph_execution_events",
                    "chaingraph_schema_version",
                },
                tables,
            )
            self.assertEqual(
                conn.execute("SELECT MAX(version) FROM chaingraph_schema_version").fetchone()[0], 1
            )
            plan = " ".join(
                r[3]
                for r in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT id FROM chaingraph_executions WHERE flow_id = 'f'"
                    " AND execution_depth = 0 AND created_at < 5 ORDER BY created_at DESC, id DESC LIMIT 3"
                )
            )
            self.assertIn("chaingraph_executions_flow_depth_created_idx", plan)
            self.assertNotIn("TEMP B-TREE", plan)
        finally:
            conn.close()

    @async_test
    async def test_open_failure_is_store_unavailable(self) -> None:
        with self.assertRaises(StoreUnavailable):
            await SQLiteStore.open(self.dir)  # a directory is not a database
        store = SQLiteStore(self.dir)  # the lazy constructor reports it on the first call
        self.stores.append(store)
        with self.assertRaises(StoreUnavailable):
            await store.flows.count()

    @async_test
    async def test_newer_schema_refused(self) -> None:
        store = await self.open()
        await store.close()
        conn = sqlite3.connect(self.path)
        conn.execute("INSERT INTO chaingraph_schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
        conn.commit()
        conn.close()
        with self.assertRaises(StoreUnavailable) as cm:
            await SQLiteStore.open(self.path)
        self.assertIn("newer", str(cm.exception))

    @async_test
    async def test_close(self) -> None:
        store = await self.open()
        await store.flows.create(flow("V2a"))
        await store.executions.close()  # a facade closes the shared store
        self.assertTrue(store.closed)
        await store.close()  # idempotent
        for call in (
            lambda: store.flows.get("V2a"),
            lambda: store.executions.get("EX1"),
            lambda: store.events.append("EX1", 0, "t", T0, {}),
            lambda: store.events.read("EX1"),
        ):
            with self.assertRaises(StoreUnavailable):
                await call()

    @async_test
    async def test_persistence_across_reopen(self) -> None:
        store = await self.open()
        await store.flows.create(flow("V2a"))
        await store.flows.update("V2a", {"id": "V2a", "v": 2})
        root = await store.executions.create(execution("EX1", options={"at": T0}))
        await store.executions.create(execution("EX2", parent=root))
        await store.executions.update_status("EX1", "running")
        self.assertTrue(await store.executions.claim("EX1", "w1", 30))
        await store.events.append("EX1", 0, "flow:started", T0, {"t": T0})
        await store.events.append_many([StoredEvent("EX1", i, "node:started", T0, {"i": i}) for i in (1, 2)])
        await store.close()

        again = await self.open()
        f = await again.flows.get("V2a")
        self.assertEqual((f.version, f.document), (2, {"id": "V2a", "v": 2}))
        ex = await again.executions.get("EX1")
        self.assertEqual(ex.status, "running")
        self.assertEqual(ex.options, {"at": T0})
        self.assertEqual(ex.processing_worker_id, "w1")
        self.assertFalse(await again.executions.claim("EX1", "w2", 30))  # the lease survived too
        self.assertEqual([e.id for e in await again.executions.tree("EX1")], ["EX1", "EX2"])
        self.assertEqual(await again.events.last_index("EX1"), 2)
        self.assertEqual([e.data for e in await again.events.read("EX1")], [{"t": T0}, {"i": 1}, {"i": 2}])

    @async_test
    async def test_memory_database(self) -> None:
        store = await self.open(":memory:")
        await store.flows.create(flow("V2a"))
        self.assertEqual(await store.flows.count(), 1)


class FlowStoreTests(_StoreCase):
    @async_test
    async def test_create_get(self) -> None:
        flows = (await self.open()).flows
        created = datetime(2025, 1, 1, 0, 0, 0, 999999, tzinfo=UTC)
        rec = flow("V2a", created=created, parent_id="V2parent")
        out = await flows.create(rec)
        self.assertEqual(out.created_at, datetime(2025, 1, 1, 0, 0, 0, 999000, tzinfo=UTC))
        got = await flows.get("V2a")
        self.assertEqual(got, out)
        self.assertEqual(got.document, rec.document)
        self.assertEqual(
            (got.parent_id, got.owner_id, got.version, got.name), ("V2parent", "u1", 1, "flow V2a")
        )
        self.assertIsNone(await flows.get("V2missing"))
        with self.assertRaises(AlreadyExists):
            await flows.create(flow("V2a"))

    @async_test
    async def test_update_and_version_conflict(self) -> None:
        flows = (await self.open()).flows
        await flows.create(flow("V2a", name="first"))
        self.clock.advance(5)
        v2 = await flows.update("V2a", {"id": "V2a", "nodes": [1]}, expected_version=1)
        self.assertEqual(v2.version, 2)
        self.assertEqual(v2.name, "first")  # name None keeps it
        self.assertEqual(v2.created_at, T0)
        self.assertEqual(v2.updated_at, from_ms(int(self.clock.now * 1000)))
        self.assertEqual(v2.document, {"id": "V2a", "nodes": [1]})
        with self.assertRaises(VersionConflict) as cm:
            await flows.update("V2a", {"stale": True}, expected_version=1)
        self.assertEqual((cm.exception.flow_id, cm.exception.expected, cm.exception.actual), ("V2a", 1, 2))
        self.assertEqual((await flows.get("V2a")).document, {"id": "V2a", "nodes": [1]})  # untouched
        v3 = await flows.update("V2a", {"x": 3}, name="renamed")  # no expected version: last write wins
        self.assertEqual((v3.version, v3.name), (3, "renamed"))
        with self.assertRaises(NotFound):
            await flows.update("V2missing", {}, expected_version=None)
        with self.assertRaises(KeyError):  # NotFound is a KeyError too
            await flows.update("V2missing", {}, expected_version=1)

    @async_test
    async def test_concurrent_updates_one_wins(self) -> None:
        flows = (await self.open()).flows
        await flows.create(flow("V2a"))
        results = await asyncio.gather(
            *(flows.update("V2a", {"w": i}, expected_version=1) for i in range(5)), return_exceptions=True
        )
        self.assertEqual(sum(isinstance(r, FlowRecord) for r in results), 1)
        self.assertEqual(sum(isinstance(r, VersionConflict) for r in results), 4)

    @async_test
    async def test_delete_count(self) -> None:
        flows = (await self.open()).flows
        await flows.create(flow("V2a", owner="u1"))
        await flows.create(flow("V2b", owner="u2"))
        self.assertEqual(await flows.count(), 2)
        self.assertEqual(await flows.count("u2"), 1)
        self.assertTrue(await flows.delete("V2a"))
        self.assertFalse(await flows.delete("V2a"))
        self.assertEqual(await flows.count(), 1)
        self.assertIsNone(await flows.get("V2a"))

    @async_test
    async def test_list_order_owner_and_cursor(self) -> None:
        flows = (await self.open()).flows
        # two flows share a created_at: the tie is broken by id ascending
        specs = [("V2a", "u1", 0), ("V2b", "u2", 1), ("V2c", "u1", 2), ("V2d", "u1", 2), ("V2e", "u2", 3)]
        for fid, owner, minute in specs:
            await flows.create(flow(fid, owner=owner, created=T0 + timedelta(minutes=minute)))
        ids = [f.id for f in await flows.list(None, 100)]
        self.assertEqual(ids, ["V2e", "V2c", "V2d", "V2b", "V2a"])
        self.assertEqual([f.id for f in await flows.list("u1", 100)], ["V2c", "V2d", "V2a"])
        # page through everything two at a time
        pages, after = [], None
        while True:
            page = await flows.list(None, 2, after)
            if not page:
                break
            pages.append([f.id for f in page])
            after = page[-1].id
        self.assertEqual(pages, [["V2e", "V2c"], ["V2d", "V2b"], ["V2a"]])
        self.assertEqual([f.id for f in await flows.list("u1", 1, "V2c")], ["V2d"])
        self.assertEqual([f.id for f in await flows.list("u1", 5, "V2d")], ["V2a"])
        self.assertEqual(await flows.list(None, 0), [])
        with self.assertRaises(NotFound):
            await flows.list(None, 2, "V2gone")


class ExecutionStoreTests(_StoreCase):
    @async_test
    async def test_create_get_round_trip(self) -> None:
        ex = (await self.open()).executions
        payload = {
            "at": datetime(2025, 9, 15, 1, 2, 3, 456000, tzinfo=UTC),
            "u": UNDEFINED,
            "m": JSMap([("k", 1)]),
            "big": 2**70,
        }
        rec = execution(
            "EX1",
            options={"execution": {"maxConcurrency": 10}, "debug": True, "breakpoints": ["NO1"]},
            integration={"archai": {"chatID": "c", "messageID": 7}, "wallet": {"isConnected": False}},
            external_events=[{"eventName": "x", "payload": payload}],
        )
        out = await ex.create(rec)
        got = await ex.get("EX1")
        self.assertEqual(got, out)
        self.assertEqual(got.options, rec.options)
        self.assertEqual(got.integration, rec.integration)
        p = got.external_events[0]["payload"]
        self.assertEqual(p["at"], payload["at"])
        self.assertIs(p["u"], UNDEFINED)
        self.assertEqual(p["m"], JSMap([("k", 1)]))
        self.assertEqual(p["big"], 2**70)
        self.assertEqual(got.to_wire()["externalEvents"][0]["eventName"], "x")
        self.assertIsNone(await ex.get("EXmissing"))
        with self.assertRaises(AlreadyExists):
            await ex.create(execution("EX1"))
        with self.assertRaises(ValueError):
            await ex.create(execution("EX9", status="bogus"))
        with self.assertRaises(ValueError):  # a NOT NULL violation is not "already exists"
            await ex.create(execution("EX9", owner_id=None))
        self.assertIsNone(await ex.get("EX9"))

    @async_test
    async def test_update_status_side_effects(self) -> None:
        ex = (await self.open()).executions
        await ex.create(execution("EX1"))
        t_start = self.clock.now
        self.clock.advance(1)
        run = await ex.update_status("EX1", "running", expected={"created"})
        self.assertEqual(run.status, "running")
        self.assertEqual(run.started_at, from_ms(int((t_start + 1) * 1000)))
        self.assertEqual(run.updated_at, run.started_at)
        self.assertIsNone(run.completed_at)
        self.clock.advance(1)
        paused = await ex.update_status("EX1", "paused")
        self.clock.advance(1)
        resumed = await ex.update_status("EX1", "running", expected={"paused"})
        self.assertEqual(resumed.started_at, run.started_at)  # only the first time
        self.assertGreater(resumed.updated_at, paused.updated_at)
        self.clock.advance(1)
        failed = await ex.update_status("EX1", "failed", error_message="boom", error_node_id="NO1")
        self.assertEqual(failed.completed_at, failed.updated_at)
        self.assertEqual((failed.error_message, failed.error_node_id), ("boom", "NO1"))
        again = await ex.update_status("EX1", "created")  # unconditional writes are not validated
        self.assertEqual(again.error_message, "boom")  # None leaves errors alone
        self.assertIsNone(await ex.update_status("EXmissing", "running"))
        with self.assertRaises(ValueError):
            await ex.update_status("EX1", "idle")

    @async_test
    async def test_compare_and_set(self) -> None:
        ex = (await self.open()).executions
        await ex.create(execution("EX1"))
        self.assertIsNone(await ex.update_status("EX1", "stopped", expected={"running", "paused"}))
        self.assertEqual((await ex.get("EX1")).status, "created")
        self.assertIsNotNone(await ex.update_status("EX1", "running", expected={"created"}))
        self.assertIsNone(
            await ex.update_status("EX1", "running", expected={"created"})
        )  # second start loses
        # API stop races the worker's completion: exactly one terminal status wins
        results = await asyncio.gather(
            ex.update_status(
                "EX1", "stopped", expected={"running", "paused"}, error_message="User requested stop"
            ),
            ex.update_status("EX1", "completed", expected={"running", "paused"}),
            ex.update_status("EX1", "failed", expected={"running", "paused"}),
        )
        winners = [r for r in results if r is not None]
        self.assertEqual(len(winners), 1)
        self.assertEqual((await ex.get("EX1")).status, winners[0].status)
        with self.assertRaises(TypeError):
            await ex.update_status("EX1", "running", expected="created")

    async def _three_level_tree(self, ex: Any) -> None:
        r1 = await ex.create(execution("EXr1", created=T0))
        c1 = await ex.create(execution("EXc1", created=T0 + timedelta(seconds=2), parent=r1))
        await ex.create(execution("EXc2", created=T0 + timedelta(seconds=1), parent=r1))
        await ex.create(execution("EXg1", created=T0 + timedelta(seconds=3), parent=c1))
        await ex.create(execution("EXr2", created=T0 + timedelta(minutes=1)))
        await ex.create(execution("EXr3", created=T0 + timedelta(minutes=2)))
        await ex.create(execution("EXr4", created=T0 + timedelta(minutes=2)))  # same created_at as r3
        await ex.create(execution("EXother", flow_id="V2other", created=T0 + timedelta(minutes=5)))

    @async_test
    async def test_tree_and_children(self) -> None:
        ex = (await self.open()).executions
        await self._three_level_tree(ex)
        tree = await ex.tree("EXr1")
        self.assertEqual(
            [(e.id, e.execution_depth) for e in tree], [("EXr1", 0), ("EXc1", 1), ("EXc2", 1), ("EXg1", 2)]
        )
        self.assertEqual({e.root_execution_id for e in tree}, {"EXr1"})
        self.assertEqual(tree[3].parent_execution_id, "EXc1")
        self.assertEqual(tree[3].external_events, [{"eventName": "ev", "payload": "EXg1"}])
        self.assertEqual(await ex.tree("EXc1"), [])  # a child id is not a root
        self.assertEqual(await ex.tree("EXmissing"), [])
        self.assertEqual([e.id for e in await ex.tree("EXr2")], ["EXr2"])
        self.assertEqual([e.id for e in await ex.children("EXr1")], ["EXc2", "EXc1"])  # created_at order
        self.assertEqual([e.id for e in await ex.children("EXc1")], ["EXg1"])
        self.assertEqual(await ex.children("EXg1"), [])

    @async_test
    async def test_roots(self) -> None:
        ex = (await self.open()).executions
        await self._three_level_tree(ex)
        roots = await ex.roots("V2f", 50)
        self.assertEqual(
            [(r.id, levels, total) for r, levels, total in roots],
            [("EXr4", 0, 1), ("EXr3", 0, 1), ("EXr2", 0, 1), ("EXr1", 2, 4)],
        )
        self.assertTrue(all(r.execution_depth == 0 for r, _, _ in roots))
        first = await ex.roots("V2f", 1)
        self.assertEqual([r.id for r, _, _ in first], ["EXr4"])
        # the cursor is the last createdAt seen (a superjson Date): strictly older rows only
        page2 = await ex.roots("V2f", 2, after=roots[2][0].created_at)
        self.assertEqual([(r.id, lv, n) for r, lv, n in page2], [("EXr1", 2, 4)])
        page = await ex.roots("V2f", 10, after=T0 + timedelta(minutes=2))
        self.assertEqual([r.id for r, _, _ in page], ["EXr2", "EXr1"])
        self.assertEqual(await ex.roots("V2f", 10, after=T0), [])
        self.assertEqual(await ex.roots("V2nothing", 10), [])
        self.assertEqual(await ex.roots("V2f", 0), [])
        naive_after = (T0 + timedelta(minutes=1, milliseconds=1)).replace(tzinfo=None)
        self.assertEqual([r.id for r, _, _ in await ex.roots("V2f", 10, after=naive_after)], ["EXr2", "EXr1"])

    @async_test
    async def test_find_by_status_and_record_failure(self) -> None:
        ex = (await self.open()).executions
        for i in range(4):
            await ex.create(execution(f"EX{i}", created=T0 + timedelta(seconds=i)))
        await ex.update_status("EX1", "running")
        await ex.update_status("EX3", "running")
        await ex.update_status("EX2", "completed")
        self.assertEqual([e.id for e in await ex.find_by_status({"running"})], ["EX1", "EX3"])
        self.assertEqual(
            [e.id for e in await ex.find_by_status({"running", "created"})], ["EX0", "EX1", "EX3"]
        )
        self.assertEqual(
            [e.id for e in await ex.find_by_status({"running", "created"}, limit=2)], ["EX0", "EX1"]
        )
        self.assertEqual(await ex.find_by_status(set()), [])
        self.clock.advance(3)
        one = await ex.record_failure("EX1", "worker died")
        two = await ex.record_failure("EX1", "timeout")
        self.assertEqual((one.failure_count, two.failure_count), (1, 2))
        self.assertEqual(two.last_failure_reason, "timeout")
        self.assertEqual(two.last_failure_at, from_ms(int(self.clock.now * 1000)))
        self.assertEqual(two.updated_at, two.last_failure_at)
        self.assertEqual(two.to_wire()["failureCount"], 2)
        self.assertIsNone(await ex.record_failure("EXmissing", "x"))

    @async_test
    async def test_leases(self) -> None:
        ex = (await self.open()).executions
        await ex.create(execution("EX1"))
        self.assertTrue(await ex.claim("EX1", "w1", 30))
        rec = await ex.get("EX1")
        self.assertEqual(rec.processing_worker_id, "w1")
        self.assertEqual(rec.processing_started_at, from_ms(int(self.clock.now * 1000)))
        self.assertEqual(rec.lease_expires_at, from_ms(int(self.clock.now * 1000) + 30_000))
        self.assertEqual(rec.updated_at, T0)  # leases are not row updates
        self.assertFalse(await ex.claim("EX1", "w1", 30))  # a redelivered task to the same worker
        self.assertFalse(await ex.claim("EX1", "w2", 30))
        self.clock.advance(20)
        self.assertTrue(await ex.renew("EX1", "w1", 30))  # now expires at +50
        self.assertFalse(await ex.renew("EX1", "w2", 30))
        self.clock.advance(29)
        self.assertFalse(await ex.claim("EX1", "w2", 30))  # still held (renewed)
        self.clock.advance(2)  # past expiry: w1 stopped heartbeating
        self.assertTrue(await ex.claim("EX1", "w2", 30))  # takeover
        self.assertEqual((await ex.get("EX1")).processing_worker_id, "w2")
        self.assertFalse(await ex.renew("EX1", "w1", 30))  # the old owner learns it lost the lease
        self.assertFalse(await ex.release("EX1", "w1"))  # and can't release the new owner's lease
        self.assertTrue(await ex.release("EX1", "w2"))
        rec = await ex.get("EX1")
        self.assertEqual(
            (rec.processing_worker_id, rec.processing_started_at, rec.lease_expires_at), (None, None, None)
        )
        self.assertFalse(await ex.release("EX1", "w2"))
        self.assertTrue(await ex.claim("EX1", "w3", 30))  # released = claimable again (the §5 retry bug)
        self.assertFalse(await ex.claim("EXmissing", "w1", 30))
        self.assertFalse(await ex.renew("EXmissing", "w1", 30))

    @async_test
    async def test_expired_lease_can_be_renewed_until_taken_over(self) -> None:
        ex = (await self.open()).executions
        await ex.create(execution("EX1"))
        self.assertTrue(await ex.claim("EX1", "w1", 1))
        self.clock.advance(5)
        self.assertTrue(await ex.renew("EX1", "w1", 10))
        self.assertFalse(await ex.claim("EX1", "w2", 10))

    @async_test
    async def test_terminal_executions_cannot_be_claimed(self) -> None:
        ex = (await self.open()).executions
        for i, status in enumerate(("completed", "failed", "stopped", "paused")):
            await ex.create(execution(f"EX{i}"))
            await ex.update_status(f"EX{i}", status)
        self.assertEqual([await ex.claim(f"EX{i}", "w", 30) for i in range(4)], [False, False, False, True])

    @async_test
    async def test_concurrent_claims_one_winner(self) -> None:
        ex = (await self.open()).executions
        await ex.create(execution("EX1"))
        results = await asyncio.gather(*(ex.claim("EX1", f"w{i}", 30) for i in range(10)))
        self.assertEqual(results.count(True), 1)

    @async_test
    async def test_two_connections_share_the_file(self) -> None:
        """Atomicity is in SQL, not in the worker thread: two stores on one file still agree."""
        a = (await self.open()).executions
        b = (await self.open()).executions
        await a.create(execution("EX1"))
        results = await asyncio.gather(a.claim("EX1", "wa", 30), b.claim("EX1", "wb", 30))
        self.assertEqual(sorted(results), [False, True])
        r1, r2 = await asyncio.gather(
            a.update_status("EX1", "running", expected={"created"}),
            b.update_status("EX1", "running", expected={"created"}),
        )
        self.assertEqual(sorted([r1 is None, r2 is None]), [False, True])


class EventLogTests(_StoreCase):
    @async_test
    async def test_append_read_last_index(self) -> None:
        events = (await self.open()).events
        self.assertEqual(await events.last_index("EX1"), -1)
        self.assertEqual(await events.read("EX1"), [])
        for i in range(5):
            await events.append("EX1", i, f"t{i}", T0 + timedelta(milliseconds=i), {"i": i})
        await events.append("EX2", 0, "other", T0, None)
        self.assertEqual(await events.last_index("EX1"), 4)
        got = await events.read("EX1")
        self.assertEqual([(e.index, e.type, e.data) for e in got], [(i, f"t{i}", {"i": i}) for i in range(5)])
        self.assertEqual(got[2], StoredEvent("EX1", 2, "t2", T0 + timedelta(milliseconds=2), {"i": 2}))
        self.assertEqual([e.index for e in await events.read("EX1", from_index=3)], [3, 4])
        self.assertEqual([e.index for e in await events.read("EX1", 1, limit=2)], [1, 2])
        self.assertEqual(await events.read("EX1", 1, limit=0), [])
        self.assertEqual(await events.read("EX1", 99), [])
        self.assertEqual([(e.execution_id, e.data) for e in await events.read("EX2")], [("EX2", None)])

    @async_test
    async def test_duplicate_rejected_never_overwritten(self) -> None:
        events = (await self.open()).events
        await events.append("EX1", 0, "flow:started", T0, {"first": True})
        with self.assertRaises(DuplicateEvent) as cm:
            await events.append("EX1", 0, "flow:started", T0, {"first": False})
        self.assertEqual((cm.exception.execution_id, cm.exception.index), ("EX1", 0))
        self.assertIsInstance(cm.exception, AlreadyExists)
        self.assertEqual([e.data for e in await events.read("EX1")], [{"first": True}])
        await events.append("EX2", 0, "flow:started", T0, {})  # same index, other execution: fine
        with self.assertRaises(ValueError):
            await events.append("EX1", -1, "execution:created", T0, {})
        with self.assertRaises(ValueError):
            await events.append("EX1", True, "x", T0, {})

    @async_test
    async def test_group_commit_isolates_duplicates(self) -> None:
        events = (await self.open()).events
        await events.append("EX1", 3, "x", T0, "old")
        results = await asyncio.gather(
            *(events.append("EX1", i, "x", T0, i) for i in range(6)), return_exceptions=True
        )
        self.assertEqual([r is None for r in results], [True, True, True, False, True, True])
        self.assertIsInstance(results[3], DuplicateEvent)
        self.assertEqual([e.data for e in await events.read("EX1")], [0, 1, 2, "old", 4, 5])

    @async_test
    async def test_append_many_is_atomic(self) -> None:
        events = (await self.open()).events
        await events.append_many([StoredEvent("EX1", i, "t", T0, i) for i in range(3)])
        await events.append_many([])
        self.assertEqual(await events.last_index("EX1"), 2)
        with self.assertRaises(DuplicateEvent) as cm:  # clashes with a stored event
            await events.append_many([StoredEvent("EX1", i, "t", T0, "new") for i in (3, 4, 2, 5)])
        self.assertEqual(cm.exception.index, 2)
        with self.assertRaises(DuplicateEvent):  # repeated inside the batch
            await events.append_many([StoredEvent("EX1", 7, "t", T0, 0), StoredEvent("EX1", 7, "t", T0, 1)])
        self.assertEqual(
            [e.data for e in await events.read("EX1")], [0, 1, 2]
        )  # nothing of the failed batches

    @async_test
    async def test_data_round_trip(self) -> None:
        events = (await self.open()).events
        at = datetime(2025, 9, 15, 12, 0, 0, 123000, tzinfo=UTC)
        data = {
            "node": {"id": "NO1", "startedAt": at, "values": [1, 2.5, None, "s"], "missing": UNDEFINED},
            "error": JSError("TypeError", "boom"),
            "tags": JSSet(["a", "b"]),
            "map": JSMap([(1, "one")]),
            "nan": float("nan"),
            "executionTime": 12,
        }
        await events.append("EX1", 0, "node:failed", at, data)
        (ev,) = await events.read("EX1")
        self.assertEqual(ev.timestamp, at)
        self.assertIs(ev.timestamp.tzinfo, UTC)
        self.assertEqual(ev.data["node"]["startedAt"], at)
        self.assertIs(ev.data["node"]["missing"], UNDEFINED)
        self.assertEqual(ev.data["node"]["values"], [1, 2.5, None, "s"])
        self.assertIsInstance(ev.data["error"], JSError)
        self.assertEqual((ev.data["error"].message, ev.data["error"].name), ("boom", "TypeError"))
        self.assertEqual(ev.data["tags"], JSSet(["a", "b"]))
        self.assertEqual(ev.data["map"], JSMap([(1, "one")]))
        self.assertNotEqual(ev.data["nan"], ev.data["nan"])
        await self.assert_stored_with_date(at)

    async def assert_stored_with_date(self, at: datetime) -> None:
        """The one stored row is the superjson payload (the Date annotation is in it), at ``at``."""
        conn = sqlite3.connect(self.path)
        try:
            raw = conn.execute("SELECT data, ts FROM chaingraph_execution_events").fetchone()
        finally:
            conn.close()
        self.assertIn('"Date"', raw[0])
        self.assertEqual(raw[1], to_ms(at))

    @async_test
    async def test_data_is_snapshotted_at_append(self) -> None:
        events = (await self.open()).events
        data = {"values": [1]}
        task = asyncio.get_running_loop().create_task(events.append("EX1", 0, "t", T0, data))
        await asyncio.sleep(0)  # append ran up to its first suspension: the data is encoded
        data["values"].append(2)  # mutated before (or while) the worker thread writes
        await task
        self.assertEqual((await events.read("EX1"))[0].data, {"values": [1]})

    @async_test
    async def test_unencodable_data_fails_fast(self) -> None:
        events = (await self.open()).events
        with self.assertRaises(TypeError):
            await events.append("EX1", 0, "t", T0, {"x": object()})
        self.assertEqual(await events.last_index("EX1"), -1)

    @async_test
    async def test_pending_appends_finish_before_close(self) -> None:
        store = await self.open()
        appends = [asyncio.ensure_future(store.events.append("EX1", i, "t", T0, i)) for i in range(50)]
        await asyncio.sleep(0)
        await store.close()
        await asyncio.gather(*appends)
        again = await self.open()
        self.assertEqual(await again.events.last_index("EX1"), 49)

    @async_test
    async def test_event_loop_stays_free(self) -> None:
        """Jobs run on the store's own thread, not on the loop thread."""
        import threading

        store = await self.open()
        seen: list[str] = []
        await store._call(lambda conn: seen.append(threading.current_thread().name))
        self.assertTrue(seen[0].startswith("sqlite-store"))
        self.assertIsNot(threading.current_thread().name, seen[0])
