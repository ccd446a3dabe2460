"""Kafka implementations of :class:`ITaskQueue`, :class:`ICommandBus` and :class:`IEventBus`
for the distributed mode (spec §4, and §8 for what went wrong the first time).

Topics (``{prefix}chaingraph.tasks|commands|events``) are created by :meth:`KafkaTransport.start`
(the brokers run with ``auto.create.topics.enable=false``).  Message keys are execution ids;
values are ``orjson.dumps(superjson.serialize(x))`` so datetimes, sets, bigints… survive.

Threads and the event loop
--------------------------
confluent-kafka calls block (``poll``, ``flush``, metadata requests).  Each client is therefore
owned by one dedicated daemon thread, and *every* call on a consumer is made from its own thread
(the Python ``Consumer`` is not safe to call from two threads at once; newer clients serialise
such calls with a busy gate).  Threads hand results to the asyncio loop with
``loop.call_soon_threadsafe`` only; all the bookkeeping that subscribers and handlers see lives
on the loop.  The producer is shared: ``produce()`` is called from the loop (it never blocks;
librdkafka is thread safe) and a background thread polls it for delivery reports.  We do not
use ``confluent_kafka.aio``: it only exists since 2.12 (the project allows >= 2.4), runs every
call through a thread pool anyway, and gives no control over which thread touches a consumer.

What this fixes compared with the original executor (spec §4/§8)
----------------------------------------------------------------
* **Tasks**: one shared consumer group, manual commits of the highest *contiguous* completed
  offset per partition, up to ``concurrency`` handlers in flight per process (partitions are
  paused at capacity, the consumer keeps polling so it stays in the group).  Handlers only
  claim the execution and start it; a long execution never blocks a partition, and
  ``max.poll.interval.ms`` (10 min) is never approached because the thread polls every ≤100 ms.
* **Commands** are not broadcast: each worker owns one partition of the commands topic and
  reads only that one (``assign()``, no group, starting at the current end so stale commands
  are never replayed); the sender produces straight to the owner's partition.
* **Events**: one consumer per process, no consumer group, no history scan.  Partitions are
  assigned on demand (when their first local subscriber appears) at the *explicit* current end
  offset, so :meth:`KafkaEventBus.subscribe` returns only once the position is fixed: every
  event published after it returned is delivered.  History comes from the event log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from twisted.logger import Logger
from zope.interface import implementer

from ..trpc.superjson import deserialize, serialize
from .interfaces import ICommandBus, IEventBus, ITaskQueue, StoreUnavailable
from .memory_bus import DEFAULT_SUBSCRIPTION_MAXSIZE, CommandHandlerTable, Subscription
from .records import StoredEvent

__all__ = [
    "KafkaCommandBus",
    "KafkaEventBus",
    "KafkaSettings",
    "KafkaTaskQueue",
    "KafkaTransport",
    "decode_value",
    "encode_value",
    "murmur2",
    "partition_for_key",
]

_log = Logger(namespace="chaingraph_gw.services.kafka_bus")
# librdkafka's own log lines (served by the polling threads; stdlib logging is thread safe)
_rdkafka_logger = logging.getLogger("chaingraph_gw.services.kafka_bus.librdkafka")

TaskHandler = Callable[[dict[str, Any]], Awaitable[Any]]
CommandHandler = Callable[[dict[str, Any]], Any]

_DAY_MS = 24 * 3600 * 1000
RETENTION_MS = {"tasks": 3 * _DAY_MS, "commands": 1 * _DAY_MS, "events": 7 * _DAY_MS}

# errors after which a metadata / offsets request is simply retried (topic just created…)
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        # Right after a broker restart, leadership metadata is briefly behind.
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.STALE_BROKER_EPOCH,
        KafkaError.NOT_COORDINATOR,
    }
)


# ================================================================================================
# Settings, codec, partitioner
# ================================================================================================


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Where the brokers are and how the three topics look.

    ``replication_factor`` -1 uses the broker's ``default.replication.factor``.  ``config`` is
    merged into every client's configuration (security settings: ``security.protocol``,
    ``sasl.*``…).  ``group_protocol`` "classic" (cooperative-sticky assignment) works with every
    broker; "consumer" selects KIP-848 (Kafka 4.x brokers, librdkafka >= 2.12), in which case the
    session/heartbeat timeouts are broker settings.
    """

    brokers: str
    prefix: str = ""
    task_partitions: int = 12
    command_partitions: int = 32
    event_partitions: int = 12
    group_id: str = "chaingraph-workers"
    client_id: str = "chaingraph-gw"
    replication_factor: int = -1
    group_protocol: str = "classic"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # We poll every <= 100 ms even when at capacity, so this only guards against a wedged thread.
    max_poll_interval_ms: int = 600_000
    message_timeout_ms: int = 10_000
    linger_ms: int = 2
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks_topic(self) -> str:
        return f"{self.prefix}chaingraph.tasks"

    @property
    def commands_topic(self) -> str:
        return f"{self.prefix}chaingraph.commands"

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}chaingraph.events"

    def topics(self) -> dict[str, tuple[int, int]]:
        """topic name -> (partitions, retention ms)."""
        return {
            self.tasks_topic: (self.task_partitions, RETENTION_MS["tasks"]),
            self.commands_topic: (self.command_partitions, RETENTION_MS["commands"]),
            self.events_topic: (self.event_partitions, RETENTION_MS["events"]),
        }


def encode_value(value: Any) -> bytes:
    """superjson + orjson, as every message value is written."""
    return orjson.dumps(serialize(value))


def decode_value(data: bytes) -> Any:
    return deserialize(orjson.loads(data))


def _encode_event(event: StoredEvent) -> bytes:
    return encode_value(
        {
            "executionId": event.execution_id,
            "index": event.index,
            "type": event.type,
            "timestamp": event.timestamp,
            "data": event.data,
        }
    )


def _decode_event(data: bytes) -> StoredEvent:
    d = decode_value(data)
    return StoredEvent(d["executionId"], d["index"], d["type"], d["timestamp"], d["data"])


_M32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 as the Java client's default partitioner computes it (seed
    0x9747b28c), as an unsigned int.  librdkafka's ``murmur2``/``murmur2_random`` partitioners
    use the same function."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & _M32
    full = length & ~3
    for i in range(0, full, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & _M32
        k ^= k >> 24
        k = (k * m) & _M32
        h = ((h * m) & _M32) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * m) & _M32
    h ^= h >> 13
    h = (h * m) & _M32
    h ^= h >> 15
    return h


def partition_for_key(key: str | bytes, partitions: int) -> int:
    """The partition the Java default partitioner (and librdkafka's ``murmur2_random``) picks."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _as_key(key: str | bytes | None) -> bytes | None:
    return key.encode("utf-8") if isinstance(key, str) else key


def _err_text(e: BaseException) -> str:
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0].str()
    return str(e) or type(e).__name__


def _err_code(e: BaseException) -> int | None:
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0].code()
    return None


# ================================================================================================
# Thread -> loop helpers
# ================================================================================================


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # loop closed (interpreter shutting down): nobody is waiting any more
        pass


def _settle(fut: asyncio.Future[Any], exc: BaseException | None, result: Any = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class _ThreadLog:
    """Logs from client threads, re-emitted on the loop; repeats of a message within
    ``quiet`` seconds are dropped (a dead broker reports the same error every second)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, what: str, quiet: float = 30.0) -> None:
        self._loop = loop
        self._what = what
        self._quiet = quiet
        self._last: dict[str, float] = {}

    def warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(text, -1e9) < self._quiet:
            return
        if len(self._last) > 256:
            self._last.clear()
        self._last[text] = now
        _call_soon(self._loop, lambda: _log.warn("{what}: {text}", what=self._what, text=text))

    def error_cb(self, err: KafkaError) -> None:  # librdkafka error_cb
        self.warn(f"Kafka client error: {err.str()}")


# ================================================================================================
# Transport: topics, the shared producer, ping
# ================================================================================================


class KafkaTransport:
    """The connection to the cluster: creates the topics, owns the one idempotent producer (shared
    by the buses), builds consumer configurations, and closes everything attached to it."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.partitions: dict[str, int] = {}  # actual partition counts, known after start()
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._poll_thread: threading.Thread | None = None
        self._stop_poll = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = asyncio.Lock()
        self._attached: list[Any] = []
        self._tlog: _ThreadLog | None = None
        self._started = False
        self._closed = False

    # -- configuration ------------------------------------------------------------------------

    def client_config(self, suffix: str = "", **extra: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.settings.brokers,
            "client.id": f"{self.settings.client_id}{suffix}",
            "logger": _rdkafka_logger,
            "socket.connection.setup.timeout.ms": 5000,
            "socket.nagle.disable": True,
        }
        cfg.update(self.settings.config)
        cfg.update(extra)
        return cfg

    def consumer_config(self, suffix: str, tlog: _ThreadLog, *, group: bool, **extra: Any) -> dict[str, Any]:
        s = self.settings
        cfg = self.client_config(
            suffix,
            **{
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "error_cb": tlog.error_cb,
            },
        )
        if group:
            cfg.update(
                {
                    "group.id": s.group_id,
                    "auto.offset.reset": "earliest",
                    "max.poll.interval.ms": s.max_poll_interval_ms,
                }
            )
            if s.group_protocol == "consumer":
                cfg["group.protocol"] = "consumer"
            else:
                cfg.update(
                    {
                        "session.timeout.ms": s.session_timeout_ms,
                        "heartbeat.interval.ms": s.heartbeat_interval_ms,
                        "partition.assignment.strategy": "cooperative-sticky",
                    }
                )
        else:
            # librdkafka wants a group.id even for assign()-only consumers; it is never joined
            # and nothing is committed under it.
            cfg.update(
                {
                    "group.id": f"{s.group_id}.assign-only",
                    "auto.offset.reset": "latest",
                    # a newly assigned partition joins the next fetch request quickly
                    "fetch.wait.max.ms": 100,
                }
            )
        cfg.update(extra)
        return cfg

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        """Create the missing topics (idempotent), then start the producer.  Raises
        :class:`StoreUnavailable` if the cluster can't be reached."""
        if self._closed:
            raise StoreUnavailable("Kafka transport is closed")
        async with self._start_lock:
            if self._started:
                return
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._tlog = _ThreadLog(loop, "kafka producer")
            admin = AdminClient(self.client_config("-admin", error_cb=self._tlog.error_cb))
            try:
                self.partitions = await asyncio.to_thread(self._ensure_topics, admin)
            except StoreUnavailable:
                raise
            except Exception as e:
                raise StoreUnavailable(f"Kafka unreachable: {_err_text(e)}") from e
            s = self.settings
            self._producer = Producer(
                self.client_config(
                    "-producer",
                    **{
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": s.linger_ms,
                        "message.timeout.ms": s.message_timeout_ms,
                        "partitioner": "murmur2_random",  # Java-compatible key hashing
                        "error_cb": self._tlog.error_cb,
                    },
                )
            )
            self._stop_poll.clear()
            self._poll_thread = threading.Thread(
                target=self._poll_producer, args=(self._producer,), name="kafka-producer-poll", daemon=True
            )
            self._poll_thread.start()
            self._admin = admin
            self._started = True

    def _ensure_topics(self, admin: AdminClient) -> dict[str, int]:
        """(thread) Create what is missing, tolerate TOPIC_ALREADY_EXISTS (another process won the
        race), wait until every partition has a leader; returns the actual partition counts."""
        want = self.settings.topics()
        md = admin.list_topics(timeout=3)
        missing = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=self.settings.replication_factor,
                config={"retention.ms": str(retention), "cleanup.policy": "delete"},
            )
            for name, (n, retention) in want.items()
            if name not in md.topics or md.topics[name].error is not None
        ]
        if missing:
            futures = admin.create_topics(missing, operation_timeout=10, request_timeout=15)
            for name, fut in futures.items():
                try:
                    fut.result(timeout=20)
                except KafkaException as e:
                    if _err_code(e) != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise StoreUnavailable(f"could not create Kafka topic {name}: {_err_text(e)}") from e
        deadline = time.monotonic() + 15
        while True:
            md = admin.list_topics(timeout=3)
            ready = True
            for name in want:
                t = md.topics.get(name)
                if t is None or t.error is not None or not t.partitions:
                    ready = False
                    break
                if any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
                    ready = False
                    break
            if ready:
                break
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"Kafka topics {sorted(want)} have no leaders after 15 s")
            time.sleep(0.1)
        counts = {name: len(md.topics[name].partitions) for name in want}
        for name, (n, _) in want.items():
            if counts[name] != n:
                tlog = self._tlog
                if tlog is not None:
                    tlog.warn(
                        f"topic {name} has {counts[name]} partitions, configured {n}: using {counts[name]}"
                    )
        return counts

    def _poll_producer(self, producer: Producer) -> None:
        """(thread) Serve delivery reports until close()."""
        while not self._stop_poll.is_set():
            try:
                producer.poll(0.1)
            except Exception as e:  # noqa: BLE001  never let the delivery thread die
                if self._tlog is not None:
                    self._tlog.warn(f"producer poll failed: {e!r}")
                time.sleep(0.1)

    def partition_count(self, topic: str) -> int:
        n = self.partitions.get(topic)
        if n is None or not self.started:
            raise StoreUnavailable(
                "Kafka transport is not started" if not self._closed else "Kafka transport is closed"
            )
        return n

    def attach(self, closable: Any) -> None:
        """Close ``closable`` (a bus) before the producer in :meth:`close`."""
        if closable not in self._attached:
            self._attached.append(closable)

    async def close(self) -> None:
        """Close the attached buses, stop the delivery thread, flush the producer (5 s; what is
        left is purged and its senders get :class:`StoreUnavailable`).  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for closable in reversed(self._attached):
            try:
                await closable.close()
            except Exception:  # noqa: BLE001
                _log.failure("closing {c} failed", c=type(closable).__name__)
        self._attached.clear()
        self._admin = None
        producer, self._producer = self._producer, None
        if producer is None:
            return
        self._stop_poll.set()
        thread = self._poll_thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 5)

        def finish() -> int:
            left = producer.flush(5)
            if left:
                producer.purge()
                left = producer.flush(1)
            return left

        left = await asyncio.to_thread(finish)
        if left:
            _log.warn("Kafka producer closed with {n} undelivered message(s)", n=left)

    # -- operations ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` ("Kafka unreachable: …") unless the cluster answers a
        metadata request within 2 s.  Works before start() too."""

        admin = self._admin

        def probe() -> None:
            client = admin or AdminClient(
                self.client_config("-ping", **{"socket.connection.setup.timeout.ms": 2000})
            )
            md = client.list_topics(timeout=2)
            if not md.brokers:
                raise StoreUnavailable("Kafka unreachable: no brokers in the metadata")

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), 3)
        except StoreUnavailable:
            raise
        except TimeoutError as e:
            raise StoreUnavailable(
                f"Kafka unreachable: no answer from {self.settings.brokers} within 3 s"
            ) from e
        except Exception as e:
            raise StoreUnavailable(f"Kafka unreachable: {_err_text(e)}") from e

    async def end_offset(self, topic: str, partition: int, timeout: float = 5.0) -> int:
        """The partition's current end offset (high watermark), asked from the leader through the
        admin client: its own connection, so the answer does not queue behind a consumer's
        long-poll fetch.  Transient errors (a topic created a moment ago) are retried."""
        admin = self._admin
        if admin is None or not self.started:
            raise StoreUnavailable(
                "Kafka transport is closed" if self._closed else "Kafka transport is not started"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tp = TopicPartition(topic, partition)
        while True:
            try:
                futs = admin.list_offsets({tp: OffsetSpec.latest()}, request_timeout=timeout)
                (fut,) = futs.values()
                info = await asyncio.wrap_future(fut)
                return int(info.offset)
            except KafkaException as e:
                if _err_code(e) not in _TRANSIENT or loop.time() > deadline:
                    raise StoreUnavailable(
                        f"Kafka end offset of {topic}[{partition}] unknown: {_err_text(e)}"
                    ) from e
                await asyncio.sleep(0.05)

    async def produce(
        self, topic: str, key: str | bytes | None, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        """Produce one message and wait for its delivery report; returns ``(partition, offset)``.

        Raises :class:`StoreUnavailable` when the transport is not started/closed, the local
        queue stays full, or delivery fails or times out (``message.timeout.ms``)."""
        producer = self._producer
        if producer is None or not self.started:
            raise StoreUnavailable(
                "Kafka transport is closed" if self._closed else "Kafka transport is not started"
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, int]] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Any) -> None:  # producer poll thread
            if err is not None:
                exc: StoreUnavailable | None = StoreUnavailable(
                    f"Kafka delivery to {topic} failed: {err.str()}"
                )
                result = None
            else:
                exc, result = None, (msg.partition(), msg.offset())
            _call_soon(loop, _settle, fut, exc, result)

        timeout = self.settings.message_timeout_ms / 1000 + 5
        deadline = loop.time() + timeout
        k = _as_key(key)
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=k,
                    partition=-1 if partition is None else partition,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:  # local queue full: the delivery thread is draining it
                if loop.time() > deadline:
                    raise StoreUnavailable(
                        f"Kafka producer queue full for {timeout:.0f} s (topic {topic})"
                    ) from None
                await asyncio.sleep(0.01)
            except KafkaException as e:
                raise StoreUnavailable(f"Kafka produce to {topic} failed: {_err_text(e)}") from e
        try:
            return await asyncio.wait_for(fut, max(deadline - loop.time(), 0.1))
        except TimeoutError:
            raise StoreUnavailable(f"Kafka delivery to {topic} timed out after {timeout:.0f} s") from None


# ================================================================================================
# Consumer threads
# ================================================================================================


class _ConsumerThread:
    """One confluent ``Consumer`` and the one thread that makes every call on it.

    Subclasses implement :meth:`_setup` (subscribe/assign), :meth:`_step` (one poll round) and
    optionally :meth:`_teardown`.  Loop code talks to the thread through :meth:`call` (a function
    run in the thread between two poll rounds, result as a future on the loop).
    """

    def __init__(
        self, name: str, loop: asyncio.AbstractEventLoop, config: dict[str, Any], tlog: _ThreadLog
    ) -> None:
        self.name = name
        self.loop = loop
        self.tlog = tlog
        self._config = config
        self._ops: queue.SimpleQueue[tuple[Callable[[Consumer], Any], asyncio.Future[Any] | None]] = (
            queue.SimpleQueue()
        )
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._started: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    async def start(self) -> None:
        self._thread.start()
        await asyncio.shield(self._started)

    def call(self, fn: Callable[[Consumer], Any]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self._done.done():
            fut.set_exception(StoreUnavailable(f"{self.name} consumer is stopped"))
            return fut
        self._ops.put((fn, fut))
        self.wake.set()
        return fut

    async def stop(self, timeout: float = 20.0) -> None:
        """Ask the thread to finish (teardown, ``consumer.close()``) and wait up to ``timeout``."""
        self.stopping.set()
        self.wake.set()
        if not self._thread.ident:  # never started
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            _log.warn(
                "Kafka consumer {name} did not stop within {t} s; left behind (daemon thread)",
                name=self.name,
                t=timeout,
            )

    def _run_ops(self, consumer: Consumer) -> None:
        while True:
            try:
                fn, fut = self._ops.get_nowait()
            except queue.Empty:
                return
            try:
                result = fn(consumer)
            except BaseException as e:  # noqa: BLE001  handed to the caller
                if fut is not None:
                    _call_soon(self.loop, _settle, fut, e)
            else:
                if fut is not None:
                    _call_soon(self.loop, _settle, fut, None, result)

    def _main(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._config)
            self._setup(consumer)
        except BaseException as e:  # noqa: BLE001
            exc = e
            if not isinstance(e, StoreUnavailable):
                exc = StoreUnavailable(f"Kafka consumer {self.name} failed to start: {_err_text(e)}")
                exc.__cause__ = e
            _call_soon(self.loop, _settle, self._started, exc)
            if consumer is not None:
                self._close_consumer(consumer)
            _call_soon(self.loop, _settle, self._done, None)
            return
        _call_soon(self.loop, _settle, self._started, None)
        try:
            while not self.stopping.is_set():
                self._run_ops(consumer)
                try:
                    self._step(consumer)
                except Exception as e:  # noqa: BLE001  keep consuming
                    self.tlog.warn(f"poll round failed: {e!r}")
                    time.sleep(0.1)
            self._run_ops(consumer)
            try:
                self._teardown(consumer)
            except Exception as e:  # noqa: BLE001
                self.tlog.warn(f"teardown failed: {e!r}")
        finally:
            self._close_consumer(consumer)
            # fail what is still queued
            while True:
                try:
                    _fn, fut = self._ops.get_nowait()
                except queue.Empty:
                    break
                if fut is not None:
                    _call_soon(self.loop, _settle, fut, StoreUnavailable(f"{self.name} consumer is stopped"))
            _call_soon(self.loop, _settle, self._done, None)

    def _close_consumer(self, consumer: Consumer) -> None:
        try:
            consumer.close()
        except Exception as e:  # noqa: BLE001
            self.tlog.warn(f"consumer close failed: {e!r}")

    # -- hooks ------------------------------------------------------------------------------

    def _setup(self, consumer: Consumer) -> None:
        raise NotImplementedError

    def _step(self, consumer: Consumer) -> None:
        raise NotImplementedError

    def _teardown(self, consumer: Consumer) -> None:
        pass

    def _usable(self, msg: Any) -> bool:
        """(thread) False for an error event instead of a message (logged unless a partition EOF)."""
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            self.tlog.warn(f"consume error: {err.str()}")
        return False


def _high_watermark(consumer: Consumer, topic: str, partition: int, timeout: float = 10.0) -> int:
    """(consumer thread) The partition's current end offset, asked from the leader (not cached),
    retrying transient errors (a topic created a moment ago has no leader yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=3, cached=False
            )
            return int(high)
        except KafkaException as e:
            if _err_code(e) not in _TRANSIENT or time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"Kafka end offset of {topic}[{partition}] unknown: {_err_text(e)}"
                ) from e
            time.sleep(0.05)


# ================================================================================================
# Task queue
# ================================================================================================


class _PartitionOffsets:
    """Offsets dispatched from one assigned partition, for committing the highest *contiguous*
    completed one.  One instance per assignment: a revoked partition's object is retired and
    late completions for it are ignored (the new owner re-delivers those tasks)."""

    __slots__ = ("committed", "done", "last", "next_commit", "partition", "pending", "revoked", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.pending: deque[int] = deque()  # dispatched, in offset order
        self.done: set[int] = set()  # completed but behind an unfinished one
        self.last = -1  # highest offset dispatched
        self.next_commit: int | None = None  # offset to commit (last contiguous completed + 1)
        self.committed: int | None = None
        self.revoked = False

    def dispatched(self, offset: int) -> None:
        self.pending.append(offset)
        self.last = offset

    def completed(self, offset: int) -> bool:
        """Mark ``offset`` handled; True if the commit point advanced."""
        self.done.add(offset)
        advanced = False
        while self.pending and self.pending[0] in self.done:
            off = self.pending.popleft()
            self.done.discard(off)
            self.next_commit = off + 1
            advanced = True
        return advanced

    def to_commit(self) -> TopicPartition | None:
        if self.next_commit is None or self.next_commit == self.committed:
            return None
        return TopicPartition(self.topic, self.partition, self.next_commit)


class _TaskConsumer(_ConsumerThread):
    def __init__(self, q: KafkaTaskQueue, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        t = q.transport
        tlog = _ThreadLog(loop, "kafka task consumer")
        config = t.consumer_config("-tasks", tlog, group=True, on_commit=self._on_commit)
        super().__init__("kafka-tasks", loop, config, tlog)
        self.q = q
        self.topic = t.settings.tasks_topic
        self.concurrency = concurrency
        self.completions: queue.SimpleQueue[tuple[_PartitionOffsets, int, bool]] = queue.SimpleQueue()
        self.draining = threading.Event()
        self.assignment: frozenset[int] = frozenset()  # read from the loop (tests, metrics)
        self._parts: dict[int, _PartitionOffsets] = {}
        self._held: deque[Any] = deque()  # fetched while at capacity: dispatched later, in order
        self._in_flight = 0
        self._paused = False
        self._repause = False

    # -- rebalance callbacks (run inside poll, in this thread) ----------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._parts[tp.partition] = _PartitionOffsets(tp.topic, tp.partition)
        self.assignment = frozenset(self._parts)
        self._repause = True  # newly assigned partitions must be paused too if we are at capacity

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drain_completions()
        offsets = []
        for tp in partitions:
            st = self._parts.pop(tp.partition, None)
            if st is None:
                continue
            st.revoked = True
            tpo = st.to_commit()
            if tpo is not None:
                offsets.append(tpo)
        self._drop_held({tp.partition for tp in partitions})
        self.assignment = frozenset(self._parts)
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as e:
                self.tlog.warn(f"commit on revoke failed: {_err_text(e)}")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            st = self._parts.pop(tp.partition, None)
            if st is not None:
                st.revoked = True
        self._drop_held({tp.partition for tp in partitions})
        self.assignment = frozenset(self._parts)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            self.tlog.warn(f"offset commit failed: {err.str()}")

    def _drop_held(self, partitions: set[int]) -> None:
        if self._held:
            self._held = deque(m for m in self._held if m.partition() not in partitions)

    # -- the poll loop -----------------------------------------------------------------------------

    def _setup(self, consumer: Consumer) -> None:
        consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _drain_completions(self) -> None:
        while True:
            try:
                st, offset, ok = self.completions.get_nowait()
            except queue.Empty:
                return
            self._in_flight -= 1
            if ok and not st.revoked:
                st.completed(offset)

    def _commit(self, consumer: Consumer, *, sync: bool) -> None:
        offsets = []
        for st in self._parts.values():
            tpo = st.to_commit()
            if tpo is not None:
                offsets.append(tpo)
                st.committed = st.next_commit
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=not sync)
        except KafkaException as e:
            self.tlog.warn(f"offset commit failed: {_err_text(e)}")

    def _set_paused(self, consumer: Consumer, paused: bool) -> None:
        assignment = consumer.assignment()
        if assignment:
            if paused:
                consumer.pause(assignment)
            else:
                consumer.resume(assignment)
        self._paused = paused
        self._repause = False

    def _step(self, consumer: Consumer) -> None:
        self._drain_completions()
        self._commit(consumer, sync=False)
        if self.draining.is_set():
            if not self._paused or self._repause:
                self._set_paused(consumer, True)
            msg = consumer.poll(0)  # keeps the group membership and rebalances going
            if msg is not None and not msg.error():
                pass  # not dispatched and not committed: another consumer gets it
            self.wake.wait(0.05)
            self.wake.clear()
            return
        while self._held and self._in_flight < self.concurrency:
            self._dispatch(self._held.popleft())
        at_capacity = self._in_flight >= self.concurrency or bool(self._held)
        if at_capacity and (not self._paused or self._repause):
            self._set_paused(consumer, True)
        elif not at_capacity and self._paused:
            self._set_paused(consumer, False)
        if self._paused:
            msg = consumer.poll(0)  # serve rebalances/heartbeat errors; paused partitions return nothing
            if msg is not None:
                self._handle(msg)
            self.wake.wait(0.05)
            self.wake.clear()
            return
        msg = consumer.poll(0.1)
        if msg is not None:
            self._handle(msg)

    def _handle(self, msg: Any) -> None:
        if not self._usable(msg):
            return
        if self._in_flight >= self.concurrency or self._held:
            self._held.append(msg)
            return
        self._dispatch(msg)

    def _dispatch(self, msg: Any) -> None:
        st = self._parts.get(msg.partition())
        offset = msg.offset()
        if st is None or st.revoked or offset <= st.last:
            return  # not ours (any more), or already dispatched
        st.dispatched(offset)
        try:
            task = decode_value(msg.value())
            if not isinstance(task, dict):
                raise ValueError(f"task is a {type(task).__name__}, not an object")
        except Exception as e:  # noqa: BLE001  a poison message is skipped, not retried forever
            self.tlog.warn(f"undecodable task at {msg.topic()}[{msg.partition()}]@{offset} skipped: {e!r}")
            st.completed(offset)
            return
        self._in_flight += 1
        _call_soon(self.loop, self.q._start_handler, st, offset, task)

    def _teardown(self, consumer: Consumer) -> None:
        self._drain_completions()
        self._commit(consumer, sync=True)


@implementer(ITaskQueue)
class KafkaTaskQueue:
    """:class:`ITaskQueue` on the tasks topic, consumed by one shared group.

    Delivery is at least once: a task whose handler did not return (the process died, or
    :meth:`close` gave up waiting) is delivered again, to this or another worker; the execution
    store's lease makes the duplicate a no-op.  A handler that raises is logged and its offset
    committed all the same (retries are the executor's job).
    """

    def __init__(self, transport: KafkaTransport, *, close_timeout: float = 10.0) -> None:
        self.transport = transport
        self.close_timeout = close_timeout
        self._handler: TaskHandler | None = None
        self._consumer: _TaskConsumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = False
        self.submitted = 0
        self.completed = 0
        self.failed = 0

    @property
    def in_flight(self) -> int:
        """Handlers running right now."""
        return len(self._tasks)

    @property
    def assignment(self) -> frozenset[int]:
        """Partitions of the tasks topic this process consumes right now."""
        return self._consumer.assignment if self._consumer is not None else frozenset()

    async def submit(self, task: dict[str, Any]) -> None:
        if self._closed:
            raise StoreUnavailable("task queue is closed")
        eid = task.get("executionId")
        if not eid:
            raise ValueError("a task needs an executionId")
        await self.transport.produce(self.transport.settings.tasks_topic, str(eid), encode_value(task))
        self.submitted += 1

    async def consume(self, handler: TaskHandler, *, concurrency: int = 16) -> None:
        """Join the group and run ``await handler(task)`` for every task, at most ``concurrency``
        at a time in this process.  Returns once the consumer thread runs (partitions are
        assigned shortly after)."""
        if self._closed:
            raise StoreUnavailable("task queue is closed")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self._handler is not None:
            raise RuntimeError("this task queue already has a consumer")
        if not self.transport.started:
            raise StoreUnavailable("Kafka transport is not started")
        self._handler = handler
        self._consumer = _TaskConsumer(self, asyncio.get_running_loop(), concurrency)
        self.transport.attach(self)
        try:
            await self._consumer.start()
        except BaseException:
            self._handler = None
            self._consumer = None
            raise

    def _start_handler(self, st: _PartitionOffsets, offset: int, task: dict[str, Any]) -> None:
        """(loop) A task arrived from the consumer thread."""
        consumer = self._consumer
        assert consumer is not None and self._handler is not None
        if self._closing or consumer.draining.is_set():
            consumer.completions.put((st, offset, False))  # not handled: redelivered later
            consumer.wake.set()
            return
        t = asyncio.get_running_loop().create_task(
            self._run(self._handler, task), name=f"kafka-task-{offset}"
        )
        self._tasks.add(t)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            # cancelled by close(): the handler never returned, so its offset is not committed
            consumer.completions.put((st, offset, not t.cancelled()))
            consumer.wake.set()

        t.add_done_callback(done)

    async def _run(self, handler: TaskHandler, task: dict[str, Any]) -> None:
        me = asyncio.current_task()
        try:
            await handler(task)
            self.completed += 1
        except asyncio.CancelledError:
            if self._closing and me is not None and me.cancelling():
                raise
            self.failed += 1
            _log.warn(
                "task handler was cancelled for execution {executionId}", executionId=task.get("executionId")
            )
        except Exception:  # noqa: BLE001  logged; the offset is committed anyway
            self.failed += 1
            _log.failure(
                "task handler failed for execution {executionId}", executionId=task.get("executionId")
            )

    async def close(self, timeout: float | None = None) -> None:
        """Stop fetching, wait up to ``timeout`` (default ``close_timeout``) for running handlers,
        cancel the rest (their tasks are redelivered), commit, leave the group.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        consumer = self._consumer
        if consumer is None:
            return
        consumer.draining.set()
        consumer.wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.close_timeout if timeout is None else timeout)
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(deadline - loop.time(), 0))
        self._closing = True
        pending = list(self._tasks)
        if pending:
            _log.warn("closing the task queue: {n} handler(s) still running are cancelled", n=len(pending))
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await consumer.stop()


# ================================================================================================
# Command bus
# ================================================================================================


class _CommandConsumer(_ConsumerThread):
    def __init__(self, bus: KafkaCommandBus, loop: asyncio.AbstractEventLoop, partition: int) -> None:
        t = bus.transport
        tlog = _ThreadLog(loop, "kafka command consumer")
        super().__init__("kafka-commands", loop, t.consumer_config("-commands", tlog, group=False), tlog)
        self.bus = bus
        self.topic = t.settings.commands_topic
        self.partition = partition

    def _setup(self, consumer: Consumer) -> None:
        # Start at the current end (an explicit offset, so commands sent after start() returned
        # are never missed, and stale ones are never replayed).
        end = _high_watermark(consumer, self.topic, self.partition)
        consumer.assign([TopicPartition(self.topic, self.partition, end)])

    def _step(self, consumer: Consumer) -> None:
        msg = consumer.poll(0.2)
        if msg is None:
            return
        batch: list[tuple[str, Any]] = []
        for m in [msg, *consumer.consume(256, 0)]:
            if not self._usable(m):
                continue
            key = m.key()
            if not key:
                continue
            try:
                batch.append((key.decode("utf-8"), decode_value(m.value())))
            except Exception as e:  # noqa: BLE001
                self.tlog.warn(f"undecodable command at offset {m.offset()} skipped: {e!r}")
        if batch:
            _call_soon(self.loop, self.bus._deliver, batch)


@implementer(ICommandBus)
class KafkaCommandBus(CommandHandlerTable):
    """:class:`ICommandBus` without broadcast.

    Every worker process owns one partition of the commands topic (``own_partition``; the caller
    guarantees uniqueness, e.g. with a PostgreSQL advisory lock) and reads only that partition.
    ``send`` asks ``resolve_partition(execution_id)`` which partition the owner of the execution
    listens on and produces there.  API-only processes pass ``own_partition=None``: they send but
    can't register handlers.

    ``send`` returns True once the command is stored in the owner's partition (or, if the owner
    is this very process, handed to the local handler): a remote handler's result is unknown, and
    a handler unregistered meanwhile drops the command (the executor re-reads the row after
    registering, so a command that found nobody is honoured from the stored status).
    """

    def __init__(
        self,
        transport: KafkaTransport,
        *,
        own_partition: int | None,
        resolve_partition: Callable[[str], Awaitable[int | None]],
    ) -> None:
        if own_partition is not None and own_partition < 0:
            raise ValueError("own_partition must be >= 0")
        self.transport = transport
        self.own_partition = own_partition
        self.resolve_partition = resolve_partition
        self._handlers: dict[str, CommandHandler] = {}
        self._consumer: _CommandConsumer | None = None
        self._start_lock = asyncio.Lock()
        self._running: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.sent = 0
        self.received = 0
        self.dropped = 0

    async def start(self) -> None:
        """Start listening on ``own_partition`` (no-op for a send-only bus).  Commands produced
        after this returned reach the registered handlers.  Idempotent."""
        if self._closed:
            raise StoreUnavailable("command bus is closed")
        if self.own_partition is None:
            return
        async with self._start_lock:
            if self._consumer is not None:
                return
            n = self.transport.partition_count(self.transport.settings.commands_topic)
            if self.own_partition >= n:
                raise ValueError(
                    f"own_partition {self.own_partition} out of range: the commands topic has {n} partitions"
                )
            consumer = _CommandConsumer(self, asyncio.get_running_loop(), self.own_partition)
            await consumer.start()
            self._consumer = consumer
            self.transport.attach(self)

    async def send(self, execution_id: str, command: dict[str, Any]) -> bool:
        if self._closed:
            raise StoreUnavailable("command bus is closed")
        partition = await self.resolve_partition(execution_id)
        if partition is None:
            return False
        topic = self.transport.settings.commands_topic
        n = self.transport.partition_count(topic)
        if not 0 <= partition < n:
            raise ValueError(
                f"execution {execution_id} resolves to partition {partition}, the commands topic has {n}"
            )
        if partition == self.own_partition and execution_id in self._handlers:
            # The owner is this process: no round trip through the broker.
            self._dispatch(execution_id, command)
            self.sent += 1
            return True
        await self.transport.produce(topic, execution_id, encode_value(command), partition)
        self.sent += 1
        return True

    def _deliver(self, batch: list[tuple[str, Any]]) -> None:
        """(loop) Commands from the consumer thread."""
        if self._closed:
            return
        for execution_id, command in batch:
            if execution_id in self._handlers:
                self._dispatch(execution_id, command)
            else:
                self.dropped += 1  # nobody runs it here (finished, or it moved): ignore

    def _dispatch(self, execution_id: str, command: Any) -> None:
        handler = self._handlers[execution_id]
        self.received += 1
        try:
            result = handler(command)
        except Exception:  # noqa: BLE001  logged, not raised (ICommandBus)
            _log.failure("command handler failed for execution {executionId}", executionId=execution_id)
            return
        if inspect.isawaitable(result):
            t = asyncio.ensure_future(result)
            self._running.add(t)

            def done(t: asyncio.Future[Any]) -> None:
                self._running.discard(t)  # type: ignore[arg-type]
                if not t.cancelled() and t.exception() is not None:
                    _log.failure(
                        "command handler failed for execution {executionId}",
                        failure=_failure(t.exception()),
                        executionId=execution_id,
                    )

            t.add_done_callback(done)

    async def register(self, execution_id: str, handler: CommandHandler) -> None:
        """Route commands for ``execution_id`` here.  Starts the consumer if needed, so commands
        sent after this returned are delivered.  A send-only bus raises RuntimeError."""
        if self._closed:
            raise StoreUnavailable("command bus is closed")
        if self.own_partition is None:
            raise RuntimeError("this command bus has no own_partition: it can send but not receive commands")
        self._check_no_other_handler(execution_id, handler)
        if self._consumer is None:
            await self.start()
        self._handlers[execution_id] = handler

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handlers.clear()
        for t in list(self._running):
            t.cancel()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


def _failure(exc: BaseException | None) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__) if exc is not None else None


# ================================================================================================
# Event bus
# ================================================================================================


class _EventConsumer(_ConsumerThread):
    def __init__(self, bus: KafkaEventBus, loop: asyncio.AbstractEventLoop) -> None:
        t = bus.transport
        tlog = _ThreadLog(loop, "kafka event consumer")
        config = t.consumer_config("-events", tlog, group=False, **{"queued.max.messages.kbytes": 16384})
        super().__init__("kafka-events", loop, config, tlog)
        self.bus = bus
        self.topic = t.settings.events_topic
        self.assigned: set[int] = set()  # thread-owned

    def _setup(self, consumer: Consumer) -> None:
        pass  # partitions are assigned on demand (assign_partition)

    def assign_partition(self, consumer: Consumer, partition: int, offset: int) -> None:
        """(thread) Start fetching ``partition`` at ``offset``."""
        if partition in self.assigned:  # defensive: never happens (the loop unassigns first)
            consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        consumer.incremental_assign([TopicPartition(self.topic, partition, offset)])
        self.assigned.add(partition)

    def unassign_partition(self, consumer: Consumer, partition: int) -> None:
        if partition in self.assigned:
            consumer.incremental_unassign([TopicPartition(self.topic, partition)])
            self.assigned.discard(partition)

    def _step(self, consumer: Consumer) -> None:
        if not self.assigned:
            consumer.poll(0)  # serve errors/logs
            self.wake.wait(0.5)
            self.wake.clear()
            return
        msg = consumer.poll(0.05)
        if msg is None:
            return
        wanted = self.bus._wanted  # mutated on the loop only; membership tests are atomic
        batch: list[tuple[str, StoredEvent]] = []
        for m in [msg, *consumer.consume(500, 0)]:
            if not self._usable(m):
                continue
            key = m.key()
            if key not in wanted:  # nobody here follows it: dropped without decoding
                continue
            try:
                batch.append((key.decode("utf-8"), _decode_event(m.value())))
            except Exception as e:  # noqa: BLE001
                self.tlog.warn(
                    f"undecodable event at {m.topic()}[{m.partition()}]@{m.offset()} skipped: {e!r}"
                )
        if batch:
            _call_soon(self.loop, self.bus._deliver, batch)


@implementer(IEventBus)
class KafkaEventBus:
    """:class:`IEventBus`: live fan-out of events through the events topic.

    ``publish`` produces to the execution's partition (murmur2 of the execution id, computed here
    and passed explicitly so publisher and subscribers agree regardless of the producer's
    partitioner).  One consumer per process (no group) fetches only the partitions that have
    local subscribers: the first subscriber of a partition asks the leader for the partition's
    end offset (through the admin client, so the answer does not wait behind the consumer's
    long-poll fetch) and the consumer thread assigns the partition at exactly that offset.
    ``subscribe`` returns once that offset is known, i.e. once the consumer's position is fixed:
    every event published after ``subscribe`` returned has a higher offset and reaches the
    subscription (a few older events may arrive too; readers skip indexes they already have).  A partition without subscribers is unassigned after
    ``unassign_delay`` seconds (kept a while to spare churn).  Subscriptions are the in-process
    :class:`Subscription` (bounded; overflow marks them dead, the reader re-subscribes).
    """

    def __init__(
        self,
        transport: KafkaTransport,
        *,
        maxsize: int = DEFAULT_SUBSCRIPTION_MAXSIZE,
        unassign_delay: float = 60.0,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.transport = transport
        self.maxsize = maxsize
        self.unassign_delay = unassign_delay
        self._subs: dict[str, dict[Subscription, None]] = {}
        self._wanted: set[bytes] = set()  # keys with subscribers (read by the consumer thread)
        self._refs: dict[int, int] = {}  # partition -> executions subscribed
        self._assigned: dict[int, asyncio.Future[int]] = {}  # partition -> assignment (pending/done)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._consumer: _EventConsumer | None = None
        self._start_lock = asyncio.Lock()
        self._closed = False
        self.published = 0
        self.delivered = 0
        self.overflows = 0
        self.assignments = 0  # partitions assigned so far (a subscriber was the first of its partition)

    def partition_of(self, execution_id: str) -> int:
        return partition_for_key(
            execution_id, self.transport.partition_count(self.transport.settings.events_topic)
        )

    async def start(self) -> None:
        """Start the consumer thread (no partitions yet).  Idempotent; subscribe() does it too."""
        if self._closed:
            raise StoreUnavailable("event bus is closed")
        async with self._start_lock:
            if self._consumer is not None:
                return
            if not self.transport.started:
                raise StoreUnavailable("Kafka transport is not started")
            consumer = _EventConsumer(self, asyncio.get_running_loop())
            await consumer.start()
            self._consumer = consumer
            self.transport.attach(self)

    async def publish(self, execution_id: str, event: StoredEvent) -> None:
        """Produce ``event`` (already stored in the event log) and wait for the broker's ack."""
        if self._closed:
            raise StoreUnavailable("event bus is closed")
        partition = self.partition_of(execution_id)
        await self.transport.produce(
            self.transport.settings.events_topic, execution_id, _encode_event(event), partition
        )
        self.published += 1

    async def publish_many(self, execution_id: str, events: Iterable[StoredEvent]) -> None:
        """Publish several events of one execution, in order, waiting for all acks at once
        (one round trip instead of one per event)."""
        if self._closed:
            raise StoreUnavailable("event bus is closed")
        partition = self.partition_of(execution_id)
        topic = self.transport.settings.events_topic
        futs = [
            asyncio.ensure_future(self.transport.produce(topic, execution_id, _encode_event(e), partition))
            for e in events
        ]
        if futs:
            await asyncio.gather(*futs)
            self.published += len(futs)

    async def subscribe(self, execution_id: str, *, maxsize: int | None = None) -> Subscription:
        if self._closed:
            raise StoreUnavailable("event bus is closed")
        if self._consumer is None:
            await self.start()
        partition = self.partition_of(execution_id)
        sub = Subscription(execution_id, self.maxsize if maxsize is None else maxsize, self._detach)
        subs = self._subs.get(execution_id)
        if subs is None:
            subs = self._subs[execution_id] = {}
            self._wanted.add(execution_id.encode("utf-8"))
            self._refs[partition] = self._refs.get(partition, 0) + 1
            timer = self._timers.pop(partition, None)
            if timer is not None:
                timer.cancel()
        subs[sub] = None
        try:
            await self._ensure_assigned(partition)
        except BaseException:
            sub.close()
            raise
        if sub.closed and not sub.overflowed:  # bus closed meanwhile
            raise StoreUnavailable("event bus is closed")
        return sub

    async def _ensure_assigned(self, partition: int) -> None:
        """Make sure ``partition`` is (being) assigned at a known offset.

        The position is fixed as soon as the end offset is known: the consumer thread assigns the
        partition at exactly that offset (a moment later, in order with any earlier unassign),
        so everything produced from now on is fetched.  We don't wait for the thread: it sits in
        poll() for up to 50 ms and can't be woken."""
        fut = self._assigned.get(partition)
        if fut is None:
            fut = asyncio.ensure_future(self._assign(partition))
            self._assigned[partition] = fut

            def failed(f: asyncio.Future[int]) -> None:
                if (f.cancelled() or f.exception() is not None) and self._assigned.get(partition) is f:
                    del self._assigned[partition]  # the next subscriber tries again

            fut.add_done_callback(failed)
        await asyncio.shield(fut)

    async def _assign(self, partition: int) -> int:
        me = asyncio.current_task()
        topic = self.transport.settings.events_topic
        offset = await self.transport.end_offset(topic, partition)
        self.assignments += 1
        consumer = self._consumer
        if consumer is None:
            raise StoreUnavailable("event bus is closed")

        def assigned(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is None:
                return
            _log.error(
                "assigning {topic}[{partition}] failed: {err}; its subscribers get no events",
                topic=topic,
                partition=partition,
                err=f.exception(),
            )
            if self._assigned.get(partition) is me:
                del self._assigned[partition]

        consumer.call(lambda c: consumer.assign_partition(c, partition, offset)).add_done_callback(assigned)
        return offset

    def subscriber_count(self, execution_id: str | None = None) -> int:
        if execution_id is None:
            return sum(len(s) for s in self._subs.values())
        return len(self._subs.get(execution_id, ()))

    @property
    def assigned_partitions(self) -> frozenset[int]:
        return frozenset(
            p for p, f in self._assigned.items() if f.done() and not f.cancelled() and f.exception() is None
        )

    def _deliver(self, batch: list[tuple[str, StoredEvent]]) -> None:
        """(loop) Events from the consumer thread."""
        for execution_id, event in batch:
            subs = self._subs.get(execution_id)
            if not subs:
                continue
            for sub in list(subs):  # push() may detach an overflowing subscriber
                if sub.push(event):
                    self.delivered += 1
                elif sub.overflowed:
                    self.overflows += 1

    def _detach(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.execution_id)
        if subs is None:
            return
        subs.pop(sub, None)
        if subs:
            return
        del self._subs[sub.execution_id]
        self._wanted.discard(sub.execution_id.encode("utf-8"))
        if self._closed:
            return
        try:
            partition = self.partition_of(sub.execution_id)
        except StoreUnavailable:
            return
        left = self._refs.get(partition, 1) - 1
        if left > 0:
            self._refs[partition] = left
            return
        self._refs.pop(partition, None)
        self._schedule_unassign(partition)

    def _schedule_unassign(self, partition: int) -> None:
        old = self._timers.pop(partition, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop() if self._consumer is None else self._consumer.loop
        self._timers[partition] = loop.call_later(self.unassign_delay, self._unassign, partition)

    def _unassign(self, partition: int) -> None:
        self._timers.pop(partition, None)
        if self._closed or self._refs.get(partition) or self._consumer is None:
            return
        fut = self._assigned.get(partition)
        if fut is None:
            return
        if not fut.done():  # still being assigned: look again later
            self._schedule_unassign(partition)
            return
        del self._assigned[partition]
        consumer = self._consumer
        done = consumer.call(lambda c: consumer.unassign_partition(c, partition))
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # errors: nothing to do

    async def close(self) -> None:
        """Close every subscription (waiting get() calls raise SubscriptionClosed) and stop the
        consumer.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
        self._subs.clear()
        self._wanted.clear()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
