"""Tests for chaingraph_gw.services.kafka_bus (trial --reactor=asyncio).

They need a real Kafka broker: ``KAFKA_BROKERS`` (default ``127.0.0.1:9092``, e.g. from
``scripts/services/services.sh up``).  Every test uses its own topic prefix
(``test-<hex>.``) and consumer group, and deletes both afterwards.  When the broker can't be
reached within ~3 s the broker-backed classes are skipped (the reason names the address); the
unreachable-broker checks and the pure helpers always run.

Two :class:`KafkaTransport` objects in one process stand for two gateway/worker processes:
each has its own producer and consumers, exactly as separate processes would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from twisted.internet.defer import Deferred
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from chaingraph_gw.services.interfaces import (
    ICommandBus,
    IEventBus,
    ITaskQueue,
    StoreUnavailable,
    SubscriptionOverflow,
)
from chaingraph_gw.services.kafka_bus import (
    RETENTION_MS,
    KafkaCommandBus,
    KafkaEventBus,
    KafkaSettings,
    KafkaTaskQueue,
    KafkaTransport,
    _PartitionOffsets,
    decode_value,
    encode_value,
    murmur2,
    partition_for_key,
)
from chaingraph_gw.services.records import StoredEvent
from chaingraph_gw.trpc.superjson import JSSet

from .helpers import async_test, event_loop, wait_for

KAFKA_BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
T0 = datetime(2025, 9, 15, 12, 0, 0, 123000, tzinfo=UTC)


def _probe() -> str | None:
    """None if KAFKA_BROKERS answers a metadata request within ~3 s, else the skip reason."""
    try:
        md = AdminClient({"bootstrap.servers": KAFKA_BROKERS, "log_level": 0}).list_topics(timeout=3)
        if not md.brokers:
            raise RuntimeError("no brokers in the metadata")
    except Exception as e:  # noqa: BLE001
        return (
            f"Kafka not reachable at {KAFKA_BROKERS} ({e}); set KAFKA_BROKERS or start one with"
            " scripts/services/services.sh up"
        )
    return None


SKIP = _probe()


def ev(index: int, execution_id: str = "EX1", data: Any = None) -> StoredEvent:
    return StoredEvent(execution_id, index, "node:completed", T0, {"i": index} if data is None else data)


def _deferred(coro: Any) -> Deferred[Any]:
    return Deferred.fromFuture(event_loop().create_task(coro))


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


class _KafkaFixture:
    """A topic prefix and consumer group per test; everything opened through the helpers is
    closed in tearDown, then the topics and groups are deleted."""

    skip = SKIP
    timeout = 30

    def setUp(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"test-{tag}."
        self.group = f"test-{tag}-workers"
        self.closables: list[Any] = []

    def tearDown(self) -> Deferred[Any]:
        async def cleanup() -> None:
            for c in reversed(self.closables):
                try:
                    await c.close()
                except Exception:  # noqa: BLE001
                    pass
            await asyncio.to_thread(self._delete_topics_and_groups)

        return _deferred(cleanup())

    def _delete_topics_and_groups(self) -> None:
        admin = AdminClient({"bootstrap.servers": KAFKA_BROKERS, "log_level": 0})
        try:
            names = [t for t in admin.list_topics(timeout=5).topics if t.startswith(self.prefix)]
        except KafkaException:
            return  # broker gone (restarted by someone else): nothing we can clean up now
        if names:
            for f in admin.delete_topics(names, operation_timeout=10).values():
                try:
                    f.result(15)
                except KafkaException:
                    pass
        for f in admin.delete_consumer_groups([self.group], request_timeout=10).values():
            try:
                f.result(15)
            except KafkaException:
                pass  # never created (no commit in this test)

    def settings(self, **kw: Any) -> KafkaSettings:
        kw.setdefault("task_partitions", 4)
        kw.setdefault("command_partitions", 4)
        kw.setdefault("event_partitions", 6)
        # a second member's rebalance completes within a second or two (production: 3000)
        kw.setdefault("heartbeat_interval_ms", 300)
        kw.setdefault("session_timeout_ms", 6000)
        return KafkaSettings(KAFKA_BROKERS, prefix=self.prefix, group_id=self.group, **kw)

    async def transport(self, **kw: Any) -> KafkaTransport:
        t = KafkaTransport(self.settings(**kw))
        self.closables.append(t)
        await t.start()
        return t

    def keep(self, closable: Any) -> Any:
        self.closables.append(closable)
        return closable


# ================================================================================================
# Pure helpers (no broker)
# ================================================================================================


class HelperTests(unittest.TestCase):
    def test_murmur2_java_vectors(self) -> None:
        # Kafka's org.apache.kafka.common.utils.Utils.murmur2 (signed ints)
        vectors = {
            b"21": -973932308,
            b"foobar": -790332482,
            b"a-little-bit-long-string": -985981536,
            b"a-little-bit-longer-string": -1486304829,
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
            b"abc": 479470107,
        }
        for key, signed in vectors.items():
            self.assertEqual(murmur2(key), signed & 0xFFFFFFFF, key)
        self.assertEqual(partition_for_key("foobar", 12), partition_for_key(b"foobar", 12))

    def test_codec_keeps_dates_sets_bigints(self) -> None:
        value = {"at": T0, "tags": {1, 2}, "big": 2**70, "nested": [{"x": None}]}
        back = decode_value(encode_value(value))
        self.assertEqual(back["at"], T0)
        self.assertIsInstance(back["tags"], JSSet)
        self.assertEqual(back["big"], 2**70)
        self.assertEqual(back["nested"], [{"x": None}])

    def test_commit_point_is_highest_contiguous(self) -> None:
        st = _PartitionOffsets("t", 0)
        for off in (5, 6, 7, 9):
            st.dispatched(off)
        self.assertFalse(st.completed(7))
        self.assertFalse(st.completed(6))
        self.assertIsNone(st.to_commit())
        self.assertTrue(st.completed(5))
        self.assertEqual(st.to_commit().offset, 8)  # 5, 6, 7 done; 9 still running
        st.committed = 8
        self.assertIsNone(st.to_commit())
        self.assertTrue(st.completed(9))
        self.assertEqual(st.to_commit().offset, 10)

    def test_settings_topic_names(self) -> None:
        s = KafkaSettings("b:9092", prefix="prod.")
        self.assertEqual(
            (s.tasks_topic, s.commands_topic, s.events_topic),
            ("prod.chaingraph.tasks", "prod.chaingraph.commands", "prod.chaingraph.events"),
        )
        self.assertEqual((s.task_partitions, s.command_partitions, s.event_partitions), (12, 32, 12))


class UnreachableTests(unittest.TestCase):
    """A dead port: every entry point fails fast with StoreUnavailable."""

    timeout = 15

    @async_test
    async def test_ping_dead_port_is_fast(self) -> None:
        t = KafkaTransport(KafkaSettings("127.0.0.1:1"))
        t0 = time.monotonic()
        with self.assertRaises(StoreUnavailable) as cm:
            await t.ping()
        self.assertLess(time.monotonic() - t0, 3.5)
        self.assertIn("Kafka unreachable", str(cm.exception))

    @async_test
    async def test_start_dead_port_raises(self) -> None:
        t = KafkaTransport(KafkaSettings("127.0.0.1:1"))
        t0 = time.monotonic()
        with self.assertRaises(StoreUnavailable):
            await t.start()
        self.assertLess(time.monotonic() - t0, 6)
        await t.close()

    @async_test
    async def test_not_started(self) -> None:
        t = KafkaTransport(KafkaSettings("127.0.0.1:1"))
        with self.assertRaises(StoreUnavailable):
            await t.produce("x", "k", b"v")
        with self.assertRaises(StoreUnavailable):
            await KafkaTaskQueue(t).submit({"executionId": "E"})
        with self.assertRaises(StoreUnavailable):
            await KafkaEventBus(t).publish("E", ev(0))
        await t.close()
        await t.close()  # idempotent


# ================================================================================================
# Transport
# ================================================================================================


class TransportTests(_KafkaFixture, unittest.TestCase):
    @async_test
    async def test_topic_creation_idempotent(self) -> None:
        # two processes starting at once: both see the topics missing, one gets TOPIC_ALREADY_EXISTS
        a = self.keep(KafkaTransport(self.settings()))
        b = self.keep(KafkaTransport(self.settings()))
        await asyncio.gather(a.start(), b.start())
        c = await self.transport()  # and once more with everything in place
        s = c.settings
        expected = {s.tasks_topic: 4, s.commands_topic: 4, s.events_topic: 6}
        for t in (a, b, c):
            self.assertEqual(t.partitions, expected)
        await a.start()  # start() twice is a no-op

        def retention() -> dict[str, str]:
            admin = AdminClient({"bootstrap.servers": KAFKA_BROKERS, "log_level": 0})
            out = {}
            for res, fut in admin.describe_configs([ConfigResource("TOPIC", n) for n in expected]).items():
                out[res.name] = fut.result(10)["retention.ms"].value
            return out

        self.assertEqual(
            await asyncio.to_thread(retention),
            {
                s.tasks_topic: str(RETENTION_MS["tasks"]),
                s.commands_topic: str(RETENTION_MS["commands"]),
                s.events_topic: str(RETENTION_MS["events"]),
            },
        )
        self.assertEqual(RETENTION_MS, {"tasks": 3 * 86400000, "commands": 86400000, "events": 7 * 86400000})
        await c.ping()

    @async_test
    async def test_keyed_produce_matches_murmur2(self) -> None:
        t = await self.transport()
        n = t.partitions[t.settings.events_topic]
        keys = [f"exec-{i}-{uuid.uuid4().hex[:6]}" for i in range(40)]
        results = await asyncio.gather(*(t.produce(t.settings.events_topic, k, b"{}") for k in keys))
        for k, (partition, offset) in zip(keys, results, strict=True):
            self.assertEqual(partition, partition_for_key(k, n), k)
            self.assertGreaterEqual(offset, 0)

    @async_test
    async def test_produce_to_missing_partition_fails_cleanly(self) -> None:
        t = await self.transport(message_timeout_ms=1500)
        with self.assertRaises(StoreUnavailable) as cm:
            await t.produce(t.settings.commands_topic, "E", b"{}", partition=99)
        self.assertIn("Kafka delivery", str(cm.exception))


# ================================================================================================
# Task queue
# ================================================================================================


class TaskQueueTests(_KafkaFixture, unittest.TestCase):
    timeout = 40

    async def committed(self, t: KafkaTransport, partition: int = 0) -> int:
        def read() -> int:
            c = Consumer({"bootstrap.servers": KAFKA_BROKERS, "group.id": self.group, "log_level": 0})
            try:
                return c.committed([TopicPartition(t.settings.tasks_topic, partition)], timeout=5)[0].offset
            finally:
                c.close()

        return await asyncio.to_thread(read)

    @async_test
    async def test_two_consumers_share_the_load(self) -> None:
        ta, tb = await self.transport(), await self.transport()
        qa, qb = self.keep(KafkaTaskQueue(ta)), self.keep(KafkaTaskQueue(tb))
        verifyObject(ITaskQueue, qa)
        seen: dict[str, list[str]] = {}

        def handler(name: str) -> Any:
            async def handle(task: dict[str, Any]) -> None:
                seen.setdefault(task["executionId"], []).append(name)
                self.assertEqual(task["at"], T0)

            return handle

        await qa.consume(handler("a"), concurrency=4)
        await qb.consume(handler("b"), concurrency=4)
        await wait_for(
            lambda: len(qa.assignment) + len(qb.assignment) == 4 and qa.assignment and qb.assignment,
            timeout=15,
            what="both consumers assigned",
        )
        self.assertFalse(qa.assignment & qb.assignment)
        ids = [f"E{i}-{uuid.uuid4().hex[:4]}" for i in range(40)]
        await asyncio.gather(*(qa.submit({"executionId": e, "flowId": "F", "at": T0}) for e in ids))
        await wait_for(lambda: len(seen) == 40, timeout=10, what="40 tasks handled")
        await asyncio.sleep(0.3)  # no duplicates trickling in
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertTrue(all(len(v) == 1 for v in seen.values()), seen)
        by = [v[0] for v in seen.values()]
        self.assertGreater(by.count("a"), 0)
        self.assertGreater(by.count("b"), 0)
        self.assertEqual(qa.completed + qb.completed, 40)
        with self.assertRaises(RuntimeError):
            await qa.consume(handler("a"))
        with self.assertRaises(ValueError):
            await qa.submit({"flowId": "F"})

    @async_test
    async def test_redelivery_when_handler_did_not_return(self) -> None:
        ta, tb = await self.transport(task_partitions=1), await self.transport(task_partitions=1)
        qa, qb = self.keep(KafkaTaskQueue(ta)), self.keep(KafkaTaskQueue(tb))
        got_a: list[str] = []
        got_b: list[str] = []
        never = asyncio.Event()

        async def handle_a(task: dict[str, Any]) -> None:
            got_a.append(task["executionId"])
            if task["executionId"] == "X":
                await never.wait()  # e.g. the process dies before the handler returns

        async def handle_b(task: dict[str, Any]) -> None:
            got_b.append(task["executionId"])

        await qa.consume(handle_a)
        await qa.submit({"executionId": "Y"})  # handled and committed by A
        await qa.submit({"executionId": "X"})
        await wait_for(lambda: got_a == ["Y", "X"], timeout=15, what="A got both tasks")
        await qb.consume(handle_b)
        await asyncio.sleep(0.5)
        self.assertEqual(got_b, [])  # A still owns the only partition
        await qa.close(timeout=0.2)  # gives up on X: not committed
        self.assertEqual(qa.failed + qa.completed, 1)
        await wait_for(lambda: got_b, timeout=15, what="X redelivered to B")
        await asyncio.sleep(0.3)
        self.assertEqual(got_b, ["X"])  # Y was committed by A, X was not
        await wait_for(lambda: qb.completed == 1, what="B done")
        await qb.close()
        self.assertEqual(await self.committed(ta), 2)

    @async_test
    async def test_commit_only_contiguous_completed_offsets(self) -> None:
        t = await self.transport(task_partitions=1)
        q = self.keep(KafkaTaskQueue(t))
        gates = {n: asyncio.Event() for n in range(3)}
        running: set[int] = set()

        async def handle(task: dict[str, Any]) -> None:
            running.add(task["n"])
            await gates[task["n"]].wait()
            if task["n"] == 1:
                raise RuntimeError("handler failure: logged, offset still committed")

        await q.consume(handle, concurrency=8)
        for n in range(3):
            await q.submit({"executionId": f"E{n}", "n": n})
        await wait_for(lambda: running == {0, 1, 2}, timeout=15, what="three handlers in flight")
        gates[2].set()
        gates[1].set()
        await asyncio.sleep(0.6)
        self.assertLess(await self.committed(t), 0)  # offset 0 still running: nothing committed
        gates[0].set()

        async def committed_3() -> bool:
            return await self.committed(t) == 3

        deadline = time.monotonic() + 5
        while not await committed_3():
            self.assertLess(time.monotonic(), deadline, "offset 3 never committed")
            await asyncio.sleep(0.1)
        self.assertEqual((q.completed, q.failed), (2, 1))
        self.flushLoggedErrors(RuntimeError)

    @async_test
    async def test_close_waits_for_running_handlers(self) -> None:
        t = await self.transport(task_partitions=1)
        q = self.keep(KafkaTaskQueue(t))
        started = asyncio.Event()
        finished: list[str] = []

        async def handle(task: dict[str, Any]) -> None:
            started.set()
            await asyncio.sleep(0.4)
            finished.append(task["executionId"])

        await q.consume(handle)
        await q.submit({"executionId": "E"})
        await asyncio.wait_for(started.wait(), 15)
        t0 = time.monotonic()
        await q.close(timeout=5)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual((finished, q.completed), (["E"], 1))
        self.assertEqual(await self.committed(t), 1)
        with self.assertRaises(StoreUnavailable):
            await q.submit({"executionId": "F"})

    @async_test
    async def test_concurrency_bound_and_nothing_lost_across_pauses(self) -> None:
        t = await self.transport(task_partitions=1)
        q = self.keep(KafkaTaskQueue(t))
        current = 0
        peak = 0
        handled: list[int] = []

        async def handle(task: dict[str, Any]) -> None:
            nonlocal current, peak
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(0.02)
            handled.append(task["n"])
            current -= 1

        for n in range(30):
            await q.submit({"executionId": f"E{n}", "n": n})
        await q.consume(handle, concurrency=3)
        await wait_for(lambda: len(handled) == 30, timeout=15, what="30 tasks handled")
        await asyncio.sleep(0.3)
        self.assertEqual(sorted(handled), list(range(30)))
        self.assertEqual(peak, 3)
        await q.close()
        self.assertEqual(await self.committed(t), 30)


# ================================================================================================
# Command bus
# ================================================================================================


class CommandBusTests(_KafkaFixture, unittest.TestCase):
    @async_test
    async def test_routing_to_the_owner_partition_only(self) -> None:
        api_t, w0_t, w1_t = await self.transport(), await self.transport(), await self.transport()
        owners = {"E-on-0": 0, "E-on-1": 1}

        async def resolve(eid: str) -> int | None:
            return owners.get(eid)

        api = self.keep(KafkaCommandBus(api_t, own_partition=None, resolve_partition=resolve))
        w0 = self.keep(KafkaCommandBus(w0_t, own_partition=0, resolve_partition=resolve))
        w1 = self.keep(KafkaCommandBus(w1_t, own_partition=1, resolve_partition=resolve))
        verifyObject(ICommandBus, api)
        await api.start()
        await w0.start()
        await w1.start()
        got: list[tuple[str, str, Any]] = []
        for name, bus in (("w0", w0), ("w1", w1)):
            for eid in owners:  # both workers claim to run both: only the owner's partition counts
                await bus.register(eid, lambda cmd, name=name, eid=eid: got.append((name, eid, cmd)))
        self.assertTrue(await api.send("E-on-0", {"command": "STOP", "at": T0}))
        self.assertTrue(await api.send("E-on-1", {"command": "PAUSE"}))
        self.assertFalse(await api.send("E-unknown", {"command": "STOP"}))  # nobody owns it
        await wait_for(lambda: len(got) == 2, timeout=5, what="two commands")
        await asyncio.sleep(0.3)
        self.assertEqual(
            sorted(got, key=lambda g: g[0]),
            [("w0", "E-on-0", {"command": "STOP", "at": T0}), ("w1", "E-on-1", {"command": "PAUSE"})],
        )
        # a command for an execution the owner does not know is dropped quietly
        owners["E-gone"] = 0
        self.assertTrue(await api.send("E-gone", {"command": "STOP"}))
        await wait_for(lambda: w0.dropped == 1, what="dropped")
        # register/unregister semantics of ICommandBus
        with self.assertRaises(ValueError):
            await w0.register("E-on-0", lambda cmd: None)
        with self.assertRaises(RuntimeError):
            await api.register("E-on-0", lambda cmd: None)  # send-only bus
        self.assertTrue(await w0.unregister("E-on-0"))
        self.assertFalse(await w0.unregister("E-on-0"))

    @async_test
    async def test_async_handler_and_local_shortcut(self) -> None:
        t = await self.transport()

        async def resolve(eid: str) -> int | None:
            return 2

        bus = self.keep(KafkaCommandBus(t, own_partition=2, resolve_partition=resolve))
        got: list[Any] = []

        async def handler(cmd: Any) -> None:
            got.append(cmd)
            raise RuntimeError("logged, not raised")

        await bus.register("E", handler)
        self.assertTrue(await bus.send("E", {"command": "STEP"}))
        await wait_for(lambda: got, what="handler")
        await asyncio.sleep(0.05)
        self.assertEqual(got, [{"command": "STEP"}])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        with self.assertRaises(ValueError):
            await KafkaCommandBus(t, own_partition=99, resolve_partition=resolve).start()

    @async_test
    async def test_stale_commands_are_not_replayed(self) -> None:
        api_t, w_t = await self.transport(), await self.transport()

        async def resolve(eid: str) -> int | None:
            return 3

        api = self.keep(KafkaCommandBus(api_t, own_partition=None, resolve_partition=resolve))
        for _ in range(3):
            self.assertTrue(await api.send("E", {"command": "STOP", "stale": True}))
        worker = self.keep(KafkaCommandBus(w_t, own_partition=3, resolve_partition=resolve))
        got: list[Any] = []
        await worker.register("E", got.append)  # starts the consumer at the partition's end
        self.assertTrue(await api.send("E", {"command": "RESUME"}))  # right after register returned
        await wait_for(lambda: got, timeout=5, what="fresh command")
        await asyncio.sleep(0.3)
        self.assertEqual(got, [{"command": "RESUME"}])

    @async_test
    async def test_send_to_handler_latency(self) -> None:
        api_t, w_t = await self.transport(), await self.transport()

        async def resolve(eid: str) -> int | None:
            return 1

        api = self.keep(KafkaCommandBus(api_t, own_partition=None, resolve_partition=resolve))
        worker = self.keep(KafkaCommandBus(w_t, own_partition=1, resolve_partition=resolve))
        latencies: list[float] = []
        acks: list[float] = []

        def handler(cmd: dict[str, Any]) -> None:
            latencies.append(time.perf_counter() - cmd["t"])

        for i in range(10):
            await worker.register(f"E{i}", handler)
        for i in range(20):  # warm up connections
            await api.send(f"E{i % 10}", {"command": "STEP", "t": time.perf_counter()})
        await wait_for(lambda: len(latencies) == 20, timeout=5, what="warm-up")
        latencies.clear()
        n = 500
        for i in range(n):
            t0 = time.perf_counter()
            await api.send(f"E{i % 10}", {"command": "STEP", "t": t0})
            acks.append(time.perf_counter() - t0)
        await wait_for(lambda: len(latencies) == n, timeout=10, what=f"{n} commands")
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        a50, a99 = percentile(acks, 50) * 1000, percentile(acks, 99) * 1000
        print(
            f"\n  command send->handler over {n}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms;"
            f" send() ack p50 {a50:.1f} ms, p99 {a99:.1f} ms",
            file=sys.stderr,
        )
        self.assertLess(p99, 500)


# ================================================================================================
# Event bus
# ================================================================================================


class EventBusTests(_KafkaFixture, unittest.TestCase):
    @async_test
    async def test_fan_out_to_two_gateways(self) -> None:
        worker_t, ga_t, gb_t = await self.transport(), await self.transport(), await self.transport()
        worker = self.keep(KafkaEventBus(worker_t))
        ga, gb = self.keep(KafkaEventBus(ga_t)), self.keep(KafkaEventBus(gb_t))
        verifyObject(IEventBus, ga)
        a1, a2 = await ga.subscribe("X"), await ga.subscribe("X")
        b1, b2 = await gb.subscribe("X"), await gb.subscribe("Y")
        self.assertEqual(ga.subscriber_count("X"), 2)
        self.assertEqual(gb.subscriber_count(), 2)
        xs = [ev(i, "X", {"i": i, "at": T0, "tags": {i}}) for i in range(10)]
        for e in xs:
            await worker.publish("X", e)
        await worker.publish_many("Y", [ev(i, "Y") for i in range(5)])
        await worker.publish_many("Z", [ev(i, "Z") for i in range(5)])  # nobody follows Z
        for sub in (a1, a2, b1):
            got = [await asyncio.wait_for(sub.get(), 5) for _ in range(10)]
            self.assertEqual([g.index for g in got], list(range(10)))
            self.assertEqual(
                got[3], StoredEvent("X", 3, "node:completed", T0, {"i": 3, "at": T0, "tags": JSSet([3])})
            )
        got_y = [await asyncio.wait_for(b2.get(), 5) for _ in range(5)]
        self.assertEqual([(g.execution_id, g.index) for g in got_y], [("Y", i) for i in range(5)])
        await asyncio.sleep(0.3)
        for sub in (a1, a2, b1, b2):
            self.assertEqual(sub.drain(), [])
        self.assertEqual((ga.delivered, gb.delivered), (20, 15))  # Z dropped by key, never decoded
        self.assertEqual(worker.assigned_partitions, frozenset())  # a publisher fetches nothing
        # closing a subscription detaches it; the bus keeps the others
        a1.close()
        await worker.publish("X", ev(10, "X"))
        self.assertEqual((await asyncio.wait_for(a2.get(), 5)).index, 10)
        self.assertEqual(a1.drain(), [])

    @async_test
    async def test_subscribe_then_publish_never_loses_an_event(self) -> None:
        worker_t, gw_t = await self.transport(), await self.transport()
        worker = self.keep(KafkaEventBus(worker_t))
        # unassign_delay=0: every subscribe below assigns its partition afresh (the racy path)
        gw = self.keep(KafkaEventBus(gw_t, unassign_delay=0))
        subscribe_times: list[float] = []
        for i in range(50):
            eid = f"race-{i}-{uuid.uuid4().hex[:6]}"
            t0 = time.perf_counter()
            sub = await gw.subscribe(eid)
            subscribe_times.append(time.perf_counter() - t0)
            await worker.publish(eid, ev(0, eid))
            got = await asyncio.wait_for(sub.get(), 5)
            self.assertEqual((got.execution_id, got.index), (eid, 0))
            sub.close()
            await asyncio.sleep(0.002)  # let the unassign timer fire
        self.assertGreaterEqual(gw.assignments, 45)  # (nearly) every subscribe took the racy path
        print(
            f"\n  subscribe() with a fresh partition assignment: p50 {percentile(subscribe_times, 50) * 1000:.1f} ms,"
            f" max {max(subscribe_times) * 1000:.1f} ms",
            file=sys.stderr,
        )

    @async_test
    async def test_overflow_and_close(self) -> None:
        t = await self.transport()
        bus = self.keep(KafkaEventBus(t))
        sub = await bus.subscribe("X", maxsize=2)
        live = await bus.subscribe("X")
        await bus.publish_many("X", [ev(i, "X") for i in range(4)])
        await wait_for(lambda: sub.overflowed, timeout=5, what="overflow")
        with self.assertRaises(SubscriptionOverflow):
            await sub.get()
        self.assertEqual(bus.overflows, 1)
        self.assertEqual([(await asyncio.wait_for(live.get(), 5)).index for _ in range(4)], [0, 1, 2, 3])
        await bus.close()
        self.assertTrue(live.closed)
        with self.assertRaises(StoreUnavailable):
            await bus.subscribe("X")
        with self.assertRaises(StoreUnavailable):
            await bus.publish("X", ev(5, "X"))
