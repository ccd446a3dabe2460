"""Tests for chaingraph_gw.services.memory_bus (run with trial --reactor=asyncio)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chaingraph_gw.services.interfaces import (
    ICommandBus,
    IEventBus,
    ISubscription,
    ITaskQueue,
    StoreUnavailable,
    SubscriptionClosed,
    SubscriptionOverflow,
)
from chaingraph_gw.services.memory_bus import (
    DEFAULT_SUBSCRIPTION_MAXSIZE,
    LocalCommandBus,
    LocalTaskQueue,
    MemoryEventBus,
    Subscription,
)
from chaingraph_gw.services.records import StoredEvent
from chaingraph_gw.services.sqlite_store import SQLiteStore

from .helpers import async_test
from .test_services_sqlite import sync_implementations_of_async_methods

T0 = datetime(2025, 9, 15, 12, 0, 0, tzinfo=UTC)


def ev(index: int, execution_id: str = "EX1", type: str = "node:started") -> StoredEvent:
    return StoredEvent(execution_id, index, type, T0, {"i": index})


async def ticks(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class InterfaceTests(unittest.TestCase):
    @async_test
    async def test_verify_object(self) -> None:
        bus = MemoryEventBus()
        sub = await bus.subscribe("EX1")
        for iface, obj in (
            (IEventBus, bus),
            (ISubscription, sub),
            (ITaskQueue, LocalTaskQueue()),
            (ICommandBus, LocalCommandBus()),
        ):
            self.assertTrue(verifyObject(iface, obj))
            self.assertEqual(sync_implementations_of_async_methods(iface, obj), [], iface.__name__)


class EventBusTests(unittest.TestCase):
    timeout = 10

    @async_test
    async def test_fan_out_in_order(self) -> None:
        bus = MemoryEventBus()
        self.assertEqual(await bus.publish("EX1", ev(0)), 0)  # nobody listening: dropped, not buffered
        a = await bus.subscribe("EX1")
        b = await bus.subscribe("EX1")
        other = await bus.subscribe("EX2")
        self.assertEqual(bus.subscriber_count("EX1"), 2)
        self.assertEqual(bus.subscriber_count(), 3)
        for i in range(1, 4):
            self.assertEqual(await bus.publish("EX1", ev(i)), 2)
        self.assertEqual([e.index for e in a.drain()], [1, 2, 3])
        self.assertEqual([(await b.get()).index for _ in range(3)], [1, 2, 3])
        self.assertEqual(other.drain(), [])
        self.assertEqual(a.drain(), [])
        self.assertEqual(len(b), 0)

    @async_test
    async def test_get_waits(self) -> None:
        bus = MemoryEventBus()
        sub = await bus.subscribe("EX1")
        loop = asyncio.get_running_loop()
        getter = loop.create_task(sub.get())
        await ticks()
        self.assertFalse(getter.done())
        bus.publish_nowait("EX1", ev(7))
        self.assertEqual((await getter).index, 7)
        # two concurrent getters both get served; a cancelled getter does not break the others
        g1, g2, g3 = (loop.create_task(sub.get()) for _ in range(3))
        await ticks()
        g2.cancel()
        await bus.publish("EX1", ev(8))
        await bus.publish("EX1", ev(9))
        got = sorted([(await g1).index, (await g3).index])
        self.assertEqual(got, [8, 9])

    @async_test
    async def test_close_wakes_getter_and_ends_iteration(self) -> None:
        bus = MemoryEventBus()
        sub = await bus.subscribe("EX1")
        loop = asyncio.get_running_loop()
        getter = loop.create_task(sub.get())
        await ticks()
        sub.close()
        with self.assertRaises(SubscriptionClosed):
            await getter
        self.assertTrue(sub.closed)
        self.assertEqual(bus.subscriber_count("EX1"), 0)
        self.assertEqual(sub.drain(), [])
        sub.close()  # idempotent
        self.assertFalse(sub.push(ev(1)))

        sub2 = await bus.subscribe("EX1")
        seen: list[int] = []

        async def consume() -> None:
            async for e in sub2:
                seen.append(e.index)

        task = loop.create_task(consume())
        for i in range(3):
            await bus.publish("EX1", ev(i))
        await ticks(5)
        sub2.close()
        await task  # the async for ends cleanly
        self.assertEqual(seen, [0, 1, 2])

    @async_test
    async def test_overflow(self) -> None:
        bus = MemoryEventBus(maxsize=3)
        slow = await bus.subscribe("EX1")
        fast = await bus.subscribe("EX1", maxsize=100)
        for i in range(3):
            await bus.publish("EX1", ev(i))
        self.assertFalse(slow.overflowed)
        self.assertEqual(len(slow), 3)
        self.assertEqual(await bus.publish("EX1", ev(3)), 1)  # the 4th overflows the slow one only
        self.assertTrue(slow.overflowed)
        self.assertEqual(len(slow), 0)  # memory released
        self.assertEqual(bus.subscriber_count("EX1"), 1)  # detached
        self.assertEqual(bus.overflows, 1)
        with self.assertRaises(SubscriptionOverflow) as cm:
            await slow.get()
        self.assertEqual((cm.exception.execution_id, cm.exception.maxsize), ("EX1", 3))
        with self.assertRaises(SubscriptionOverflow):
            slow.drain()
        with self.assertRaises(SubscriptionOverflow):
            async for _ in slow:
                pass
        await bus.publish("EX1", ev(4))
        self.assertEqual([e.index for e in fast.drain()], [0, 1, 2, 3, 4])

    @async_test
    async def test_overflow_wakes_waiting_getter(self) -> None:
        sub = Subscription("EX1", maxsize=1)
        self.assertTrue(sub.push(ev(0)))
        self.assertEqual((await sub.get()).index, 0)
        getter = asyncio.get_running_loop().create_task(sub.get())
        await ticks()
        sub.push(ev(1))  # wakes the getter with the event...
        self.assertEqual((await getter).index, 1)
        sub.push(ev(2))
        self.assertFalse(sub.push(ev(3)))  # ...the bound is hit here
        with self.assertRaises(SubscriptionOverflow):
            await sub.get()

    @async_test
    async def test_default_bound(self) -> None:
        bus = MemoryEventBus()
        sub = await bus.subscribe("EX1")
        self.assertEqual(sub.maxsize, DEFAULT_SUBSCRIPTION_MAXSIZE)
        self.assertEqual(DEFAULT_SUBSCRIPTION_MAXSIZE, 10_000)
        e = ev(0)
        for _ in range(10_000):
            bus.publish_nowait("EX1", e)
        self.assertFalse(sub.overflowed)
        bus.publish_nowait("EX1", e)
        self.assertTrue(sub.overflowed)

    @async_test
    async def test_bus_close(self) -> None:
        bus = MemoryEventBus()
        sub = await bus.subscribe("EX1")
        getter = asyncio.get_running_loop().create_task(sub.get())
        await ticks()
        await bus.close()
        await bus.close()
        with self.assertRaises(SubscriptionClosed):
            await getter
        with self.assertRaises(StoreUnavailable):
            await bus.publish("EX1", ev(0))
        with self.assertRaises(StoreUnavailable):
            await bus.subscribe("EX1")

    def test_bad_sizes(self) -> None:
        self.assertRaises(ValueError, MemoryEventBus, 0)
        self.assertRaises(ValueError, Subscription, "EX1", 0)

    @async_test
    async def test_log_then_live_without_gaps(self) -> None:
        """The pattern the API uses: subscribe, read the log, then go live skipping indexes it
        already has; on overflow subscribe again, then catch up from the log."""
        d = self.mktemp()
        os.makedirs(d)
        store = await SQLiteStore.open(os.path.join(d, "s.db"))
        self.addCleanup(lambda: Deferred.fromFuture(asyncio.ensure_future(store.close())))
        bus = MemoryEventBus(maxsize=5)
        log = store.events
        delivered: list[int] = []
        resubscribed = 0

        async def emit(i: int) -> None:  # the engine: append first, then ring the doorbell
            e = ev(i)
            await log.append(e.execution_id, e.index, e.type, e.timestamp, e.data)
            await bus.publish("EX1", e)

        async def follow(stop: int) -> None:
            nonlocal resubscribed
            next_index = 0
            sub = await bus.subscribe("EX1")
            while next_index < stop:
                for e in await log.read("EX1", next_index):
                    delivered.append(e.index)
                    next_index = e.index + 1
                try:
                    while next_index < stop:
                        for e in [await sub.get(), *sub.drain()]:
                            if e.index >= next_index:  # older ones came from the log
                                self.assertEqual(e.index, next_index)  # a live gap is impossible
                                delivered.append(e.index)
                                next_index += 1
                except SubscriptionOverflow:
                    resubscribed += 1
                    sub = await bus.subscribe("EX1")  # first subscribe, then re-read the log
            sub.close()

        for i in range(3):  # before anyone follows: only in the log
            await emit(i)
        follower = asyncio.get_running_loop().create_task(follow(20))
        while not bus.subscriber_count("EX1"):
            await asyncio.sleep(0.001)
        for i in range(3, 6):
            await emit(i)
        while len(delivered) < 6:
            await asyncio.sleep(0.001)
        # a burst the follower can't keep up with: 10 events > its bound of 5
        burst = [ev(i) for i in range(6, 16)]
        await log.append_many(burst)
        for e in burst:
            bus.publish_nowait("EX1", e)
        for i in range(16, 20):
            await emit(i)
        await asyncio.wait_for(follower, 5)
        self.assertEqual(delivered, list(range(20)))
        self.assertEqual(resubscribed, 1)
        self.assertEqual(bus.overflows, 1)
        self.assertEqual(bus.subscriber_count(), 0)


class TaskQueueTests(unittest.TestCase):
    timeout = 10

    @async_test
    async def test_tasks_before_consume_are_kept_and_concurrency_is_bounded(self) -> None:
        q = LocalTaskQueue(concurrency=3)
        self.addCleanup(lambda: Deferred.fromFuture(asyncio.ensure_future(q.close())))
        for i in range(7):
            await q.submit({"executionId": f"EX{i}"})
        self.assertEqual(q.qsize(), 7)
        running: set[str] = set()
        peak = 0
        done: list[str] = []
        started: list[str] = []
        release = asyncio.Event()

        async def handler(task: dict[str, Any]) -> None:
            nonlocal peak
            started.append(task["executionId"])
            running.add(task["executionId"])
            peak = max(peak, len(running))
            await release.wait()
            running.discard(task["executionId"])
            done.append(task["executionId"])

        await q.consume(handler)
        await ticks(5)
        self.assertEqual(q.in_flight, 3)
        self.assertEqual(q.qsize(), 4)
        release.set()
        await asyncio.wait_for(q.wait_idle(), 5)
        self.assertEqual(peak, 3)
        self.assertEqual(sorted(done), sorted(f"EX{i}" for i in range(7)))
        self.assertEqual(started, [f"EX{i}" for i in range(7)])  # FIFO
        self.assertEqual((q.submitted, q.completed, q.failed), (7, 7, 0))
        await q.close()

    @async_test
    async def test_parent_can_wait_for_child(self) -> None:
        """With concurrency > 1 a task may wait for a task it submitted (parent/child)."""
        q = LocalTaskQueue(concurrency=2)
        child_done = asyncio.Event()

        async def handler(task: dict[str, Any]) -> None:
            if task["executionId"] == "parent":
                await q.submit({"executionId": "child"})
                await child_done.wait()
            else:
                child_done.set()

        await q.consume(handler)
        await q.submit({"executionId": "parent"})
        await asyncio.wait_for(q.wait_idle(), 5)
        self.assertEqual(q.completed, 2)
        await q.close()

    @async_test
    async def test_handler_errors_are_logged_and_consumption_continues(self) -> None:
        q = LocalTaskQueue(concurrency=1)
        seen: list[str] = []

        async def handler(task: dict[str, Any]) -> None:
            seen.append(task["executionId"])
            if task["executionId"] == "bad":
                raise RuntimeError("boom")

        await q.consume(handler)
        for eid in ("a", "bad", "b"):
            await q.submit({"executionId": eid})
        await asyncio.wait_for(q.wait_idle(), 5)
        self.assertEqual(seen, ["a", "bad", "b"])
        self.assertEqual((q.completed, q.failed), (2, 1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        await q.close()

    @async_test
    async def test_cancellation_inside_a_handler_does_not_kill_the_consumer(self) -> None:
        q = LocalTaskQueue(concurrency=1)
        seen: list[str] = []

        async def handler(task: dict[str, Any]) -> None:
            seen.append(task["executionId"])
            if task["executionId"] == "a":
                fut = asyncio.get_running_loop().create_future()
                fut.cancel()
                await fut  # a CancelledError that is not close() cancelling the consumer

        await q.consume(handler)
        await q.submit({"executionId": "a"})
        await q.submit({"executionId": "b"})
        await asyncio.wait_for(q.wait_idle(), 5)
        self.assertEqual(seen, ["a", "b"])
        self.assertEqual((q.completed, q.failed), (1, 1))
        await q.close()

    @async_test
    async def test_close_cancels_cleanly_and_keeps_pending(self) -> None:
        q = LocalTaskQueue(concurrency=2)
        cancelled: list[str] = []
        started = asyncio.Event()

        async def handler(task: dict[str, Any]) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(task["executionId"])
                raise

        for i in range(4):
            await q.submit({"executionId": f"EX{i}"})
        await q.consume(handler)
        await started.wait()
        await ticks()
        await asyncio.wait_for(q.close(), 5)
        self.assertEqual(sorted(cancelled), ["EX0", "EX1"])
        self.assertEqual([t["executionId"] for t in q.pending()], ["EX0", "EX1", "EX2", "EX3"])
        self.assertEqual(q.in_flight, 0)
        await asyncio.wait_for(q.wait_idle(), 1)  # returns once closed
        with self.assertRaises(StoreUnavailable):
            await q.submit({"executionId": "late"})
        with self.assertRaises(StoreUnavailable):
            await q.consume(handler)
        await q.close()  # idempotent

    @async_test
    async def test_single_consumer_and_bad_concurrency(self) -> None:
        self.assertRaises(ValueError, LocalTaskQueue, 0)
        q = LocalTaskQueue()

        async def handler(task: dict[str, Any]) -> None:
            pass

        await q.consume(handler)
        with self.assertRaises(RuntimeError):
            await q.consume(handler)
        await q.close()

    @async_test
    async def test_close_without_consumers(self) -> None:
        q = LocalTaskQueue()
        await q.submit({"executionId": "EX1"})
        await q.close()
        self.assertEqual(q.pending(), [{"executionId": "EX1"}])


class CommandBusTests(unittest.TestCase):
    timeout = 10

    @async_test
    async def test_routing(self) -> None:
        bus = LocalCommandBus()
        self.assertFalse(await bus.send("EX1", {"command": "STOP"}))
        got: list[tuple[str, dict[str, Any]]] = []

        async def engine1(cmd: dict[str, Any]) -> None:
            got.append(("EX1", cmd))

        def engine2(cmd: dict[str, Any]) -> None:  # plain callables work too
            got.append(("EX2", cmd))

        await bus.register("EX1", engine1)
        await bus.register("EX2", engine2)
        self.assertTrue(bus.has_handler("EX1"))
        self.assertTrue(await bus.send("EX1", {"command": "PAUSE"}))
        self.assertTrue(await bus.send("EX2", {"command": "STOP", "payload": {"reason": "r"}}))
        self.assertEqual(
            got, [("EX1", {"command": "PAUSE"}), ("EX2", {"command": "STOP", "payload": {"reason": "r"}})]
        )

    @async_test
    async def test_register_unregister(self) -> None:
        bus = LocalCommandBus()

        async def h1(cmd: dict[str, Any]) -> None:
            pass

        async def h2(cmd: dict[str, Any]) -> None:
            pass

        await bus.register("EX1", h1)
        await bus.register("EX1", h1)  # same handler again: fine
        with self.assertRaises(ValueError):
            await bus.register("EX1", h2)  # a second engine for one execution is a bug
        self.assertFalse(await bus.unregister("EX1", h2))  # a stale engine can't remove the owner
        self.assertTrue(bus.has_handler("EX1"))
        self.assertTrue(await bus.unregister("EX1", h1))
        self.assertFalse(await bus.unregister("EX1"))
        self.assertFalse(await bus.send("EX1", {"command": "STOP"}))
        await bus.register("EX1", h2)
        self.assertTrue(await bus.unregister("EX1"))

    @async_test
    async def test_handler_error_is_logged_not_raised(self) -> None:
        bus = LocalCommandBus()

        async def broken(cmd: dict[str, Any]) -> None:
            raise RuntimeError("engine exploded")

        await bus.register("EX1", broken)
        self.assertTrue(await bus.send("EX1", {"command": "STOP"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @async_test
    async def test_close(self) -> None:
        bus = LocalCommandBus()

        async def h(cmd: dict[str, Any]) -> None:
            pass

        await bus.register("EX1", h)
        await bus.close()
        self.assertFalse(bus.has_handler("EX1"))
        with self.assertRaises(StoreUnavailable):
            await bus.send("EX1", {"command": "STOP"})
        with self.assertRaises(StoreUnavailable):
            await bus.register("EX1", h)
