#!/usr/bin/env python
"""Subscription cost vs the size of the events topic, distributed mode (see bench/README.md).

    .venv/bin/python bench/subscribe_latency.py

Requirement checked: subscribe-to-first-event latency with 10^6 old events in the events topic
stays within 2x of an empty topic.

Two stacks run side by side on the same PostgreSQL and Kafka, each 1 api + 1 worker process
(``EXECUTION_MODE=distributed``), with different ``KAFKA_TOPICS_PREFIX`` values:

* ``empty``:  freshly created topics;
* ``filled``: the same topics, but 10^6 old events (keyed by random execution ids, spread over
  the partitions like real ones) were produced into ``{prefix}chaingraph.events`` before the
  stack started.

The bench creates the six topics itself, with the partition counts and configs of the gateway's
own ``KafkaSettings``, so both stacks find them already there. Then it alternates between the
stacks for N rounds. Each round:

1. ``create({flowId})``
2. subscribe to ``executionEvents({executionId})`` and time sending the subscription until the
   first event arrives (index 0, ``execution:created``, read from the stored log after the
   subscription has been attached to the live bus);
3. ``start({executionId})`` and time sending it until the first live event (``flow:started``,
   which comes from the worker through Kafka) and until the terminal event.

It reports p50/p99 per stack and the ratios filled/empty, the processes' RSS and CPU, writes
``bench/results/subscribe_latency.json``, stops the processes it started and deletes the topics
it created.

Knobs (environment): BENCH_SUB_ROUNDS (30 per stack), BENCH_SUB_OLD_EVENTS (1000000),
BENCH_SUB_PROCEDURE (executionEvents | subscribeToExecutionEvents), BENCH_SUB_BUDGET_SECONDS
(150, hard stop), DATABASE_URL, KAFKA_BROKERS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from chaingraph_gw.api.wire_types import register_wire_types
from chaingraph_gw.client import TRPCClient
from chaingraph_gw.services.kafka_bus import KafkaSettings, encode_value, partition_for_key

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "subscribe_latency.json"
ENV = os.environ
ROUNDS = int(ENV.get("BENCH_SUB_ROUNDS", "30"))
OLD_EVENTS = int(ENV.get("BENCH_SUB_OLD_EVENTS", "1000000"))
PROCEDURE = ENV.get("BENCH_SUB_PROCEDURE", "executionEvents")
BUDGET_SECONDS = float(ENV.get("BENCH_SUB_BUDGET_SECONDS", "150"))
DATABASE_URL = ENV.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/chaingraph")
KAFKA_BROKERS = ENV.get("KAFKA_BROKERS", "127.0.0.1:9092")
STEP_TIMEOUT = 10.0  # any single step of a round
TERMINAL = {"flow:completed", "flow:failed", "flow:cancelled"}
TWISTD = [str(REPO / ".venv" / "bin" / "twistd"), "-n", "--pidfile=", "chaingraph-gw"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

HELLO = {
    "name": "bench: hello",
    "description": "bench/subscribe_latency.py",
    "nodes": [
        {"id": "name", "type": "TextNode", "values": {"text": "Ada"}},
        {
            "id": "greet",
            "type": "HandlebarsTemplateNode",
            "values": {"template": "Hello, {{name}}!", "variables": {"name": ""}},
        },
    ],
    "edges": [{"from": "name.text", "to": "greet.variables.name"}],
}

# split by whether the round's execution was the first one subscribed on its events partition in
# that api process (the partition gets assigned to the api's event consumer then; it stays
# assigned for 60 s after its last subscriber leaves, i.e. for the rest of the run)
SPLIT_BY_PARTITION = {
    "subscribe_first_event_ms": "subscribe → first event",
    "flow_started_stamp_to_client_ms": "flow:started's timestamp → client",
}

T0 = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - T0


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


# -- statistics, /proc ----------------------------------------------------------------------------


def stats(xs: list[float]) -> dict[str, Any]:
    """Nearest-rank percentiles, ms rounded to 0.01."""
    if not xs:
        return {"n": 0, "min": None, "p50": None, "p99": None, "max": None, "mean": None}
    s = sorted(xs)

    def pct(p: float) -> float:
        return s[min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))]

    r = lambda v: round(v, 2)  # noqa: E731
    return {
        "n": len(s),
        "min": r(s[0]),
        "p50": r(pct(50)),
        "p99": r(pct(99)),
        "max": r(s[-1]),
        "mean": r(sum(s) / len(s)),
    }


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_mib(pid: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {"rss": None, "hwm": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("VmHWM:"):
                out["hwm"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def other_gateways() -> int:
    """chaingraph-gw processes on this machine that this bench did not start (they share the CPUs)."""
    n = 0
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            if b"chaingraph-gw" in (d / "cmdline").read_bytes():
                n += 1
        except OSError:
            pass
    return n


def git_commit() -> str | None:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True).strip()
    except Exception:  # noqa: BLE001
        return None


class Problems:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: list[dict[str, Any]] = []

    def add(self, kind: str, **detail: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.examples) < 30:
            self.examples.append({"kind": kind, "at": round(elapsed(), 2), **detail})
        log(f"PROBLEM {kind}: {detail}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


PROBLEMS = Problems()

# -- Kafka: topics and the fill -------------------------------------------------------------------


class _QuietLog(logging.Handler):
    """librdkafka's log lines from the bench's own clients: the first few are printed, the rest counted."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count <= 3:
            print(f"  librdkafka: {record.getMessage()}", file=sys.stderr, flush=True)
        elif self.count == 4:
            print("  librdkafka: (further lines suppressed)", file=sys.stderr, flush=True)


RDKAFKA_LOG = _QuietLog()
RDKAFKA_LOGGER = logging.getLogger("bench.librdkafka")
RDKAFKA_LOGGER.addHandler(RDKAFKA_LOG)
RDKAFKA_LOGGER.propagate = False


def admin() -> AdminClient:
    return AdminClient(
        {"bootstrap.servers": KAFKA_BROKERS, "client.id": "bench-subscribe-latency", "logger": RDKAFKA_LOGGER}
    )


def wait_for_kafka(timeout: float = 30.0) -> None:
    a = admin()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if a.list_topics(timeout=3).brokers:
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka at {KAFKA_BROKERS} unreachable for {timeout:.0f} s")
        time.sleep(1)


def create_topics(a: AdminClient, ks: KafkaSettings) -> dict[str, int]:
    """The gateway's own topic layout (KafkaSettings.topics()), created before the stack starts."""
    new = [
        NewTopic(
            name,
            num_partitions=n,
            replication_factor=ks.replication_factor,
            config={"retention.ms": str(retention), "cleanup.policy": "delete"},
        )
        for name, (n, retention) in ks.topics().items()
    ]
    for _name, fut in a.create_topics(new, operation_timeout=10, request_timeout=15).items():
        fut.result(timeout=20)
    deadline = time.monotonic() + 15
    while True:
        md = a.list_topics(timeout=5)
        ok = all(
            name in md.topics
            and md.topics[name].error is None
            and md.topics[name].partitions
            and all(p.leader >= 0 for p in md.topics[name].partitions.values())
            for name in ks.topics()
        )
        if ok:
            return {name: len(md.topics[name].partitions) for name in ks.topics()}
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {sorted(ks.topics())} have no leaders after 15 s")
        time.sleep(0.1)


def delete_topics(a: AdminClient, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if not names:
        return out
    for name, fut in a.delete_topics(names, operation_timeout=15, request_timeout=20).items():
        try:
            fut.result(timeout=25)
            out[name] = "deleted"
        except KafkaException as e:
            err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                out[name] = "absent"
            else:
                out[name] = f"failed: {e}"
        except Exception as e:  # noqa: BLE001
            out[name] = f"failed: {e!r}"
    return out


def end_offsets(a: AdminClient, topic: str, partitions: int) -> list[int]:
    futs = a.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}, request_timeout=10
    )
    return [int(f.result(timeout=15).offset) for _, f in sorted(futs.items(), key=lambda kv: kv[0].partition)]


def random_execution_id() -> str:
    # same shape as chaingraph_gw.flow.ids.execution_id(): "EX" + 24 characters
    return "EX" + base64.b32encode(os.urandom(15)).decode("ascii")


def fill_events_topic(topic: str, count: int) -> dict[str, Any]:
    """Produce ``count`` small, well-formed old events keyed by random execution ids."""
    placeholder = "EX" + "Z" * 24
    template = encode_value(
        {
            "executionId": placeholder,
            "index": 3,
            "type": "node:completed",
            "timestamp": datetime(2024, 1, 1, tzinfo=UTC),
            "data": {"nodeId": "old-node", "executionTime": 1},
        }
    )
    head, _, tail = template.partition(placeholder.encode())
    producer = Producer(
        {
            "bootstrap.servers": KAFKA_BROKERS,
            "client.id": "bench-subscribe-latency-fill",
            "logger": RDKAFKA_LOGGER,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "compression.type": "lz4",
            "acks": 1,
            "enable.idempotence": False,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "partitioner": "murmur2_random",  # as the gateway: Java-compatible key hashing
        }
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None and len(errors) < 5:
            errors.append(err.str())

    t = time.perf_counter()
    produce = producer.produce
    for i in range(count):
        key = random_execution_id().encode()
        while True:
            try:
                produce(topic, value=head + key + tail, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    t_queued = time.perf_counter() - t
    left = producer.flush(60)
    took = time.perf_counter() - t
    return {
        "messages": count,
        "value_bytes": len(head) + 26 + len(tail),
        "queued_s": round(t_queued, 2),
        "seconds": round(took, 2),
        "per_s": round(count / took) if took else None,
        "undelivered": left,
        "delivery_errors": errors,
    }


# -- gateway processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    role: str
    prefix: str
    port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    ready_s: float | None = None
    log_file: Any = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, data_dir: str) -> None:
        env = {
            **ENV,
            "PYTHONUNBUFFERED": "1",
            "AUTH_ENABLED": "false",
            "CHAINGRAPH_DATA_DIR": data_dir,
            "EXECUTION_MODE": "distributed",
            "CHAINGRAPH_ROLE": self.role,
            "DATABASE_URL": DATABASE_URL,
            "KAFKA_BROKERS": KAFKA_BROKERS,
            "KAFKA_TOPICS_PREFIX": self.prefix,
        }
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115
        self.popen = subprocess.Popen(
            [*TWISTD, "--port", str(self.port), "--host", "127.0.0.1"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, timeout: float) -> None:
        t = time.monotonic()
        deadline = t + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode} before ready; log "
                    f"{self.log_path}:\n{self.tail()}"
                )
            if await http_status(self.port, "/ready") == 200:
                self.ready_s = round(time.monotonic() - t, 2)
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout} s; log {self.log_path}:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def notable_log_lines(self, limit: int = 20) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        keep = [
            ln
            for ln in lines
            if any(
                w in ln.lower()
                for w in ("warn", "error", "traceback", "failed", "exception", "partitions, configured")
            )
        ]
        return keep[:limit]

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        p = self.popen
        if p is None:
            return {"name": self.name, "stopped": "never started"}
        how = "already exited"
        t = time.monotonic()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            how = "SIGTERM"
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                how = "SIGKILL after SIGTERM timeout"
        took = round(time.monotonic() - t, 2)
        if self.log_file is not None:
            self.log_file.close()
        # twistd re-raises the signal after a clean shutdown, so -15 is normal; the reactor logs
        # "Server Shut Down." when the shutdown completed
        clean = "Server Shut Down" in self.tail(15)
        return {
            "name": self.name,
            "stopped": how,
            "seconds": took,
            "returncode": p.returncode,
            "clean": clean,
        }


async def http_status(port: int, path: str) -> int:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 4)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else 0
    except (OSError, TimeoutError, ValueError):
        return 0
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class Stack:
    name: str
    prefix: str
    api: Proc
    worker: Proc
    client: TRPCClient | None = None
    flow_id: str | None = None
    event_partitions: int = 12
    seen_partitions: set[int] = field(default_factory=set)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def procs(self) -> list[Proc]:
        return [self.api, self.worker]


# -- one round --------------------------------------------------------------------------------------


def _event_of(item: Any) -> list[dict[str, Any]]:
    """executionEvents items are {"id", "data": {index, type, …}}; subscribeToExecutionEvents items
    are lists of ExecutionEventImpl."""
    if isinstance(item, list):
        return [{"index": e.index, "type": e.type, "ts": _epoch_ms(e.timestamp)} for e in item]
    d = item["data"]
    return [{"index": d["index"], "type": d["type"], "ts": _epoch_ms(d.get("timestamp"))}]


def _epoch_ms(ts: Any) -> float | None:
    """An event's server timestamp (superjson Date, whole ms) as ms since the epoch."""
    if isinstance(ts, datetime):
        return ts.timestamp() * 1000
    if isinstance(ts, (int, float)):
        return float(ts)
    return None


async def one_round(stack: Stack, rnd: int, order: int) -> dict[str, Any]:
    c = stack.client
    assert c is not None
    out: dict[str, Any] = {"stack": stack.name, "round": rnd, "order": order, "ok": False}
    t_create = time.perf_counter()
    res = await asyncio.wait_for(c.mutation("create", {"flowId": stack.flow_id}), STEP_TIMEOUT)
    exec_id = res["executionId"]
    out["executionId"] = exec_id
    out["create_ms"] = (time.perf_counter() - t_create) * 1000
    part = partition_for_key(exec_id, stack.event_partitions)
    out["partition"] = part
    out["cold_partition"] = part not in stack.seen_partitions  # first subscription to it in this api
    stack.seen_partitions.add(part)

    inp: dict[str, Any] = {"executionId": exec_id}
    gen = c.subscribe(PROCEDURE, inp)
    events: list[tuple[float, dict[str, Any]]] = []
    t_sub = time.perf_counter()
    try:
        first = await asyncio.wait_for(gen.__anext__(), STEP_TIMEOUT)
        t_first = time.perf_counter()
        for e in _event_of(first):
            events.append((t_first, e))
        out["subscribe_first_event_ms"] = (t_first - t_sub) * 1000
        if events[0][1]["index"] != 0 or events[0][1]["type"] != "execution:created":
            PROBLEMS.add("first event is not index 0 execution:created", stack=stack.name, got=events[0][1])

        got: dict[str, float] = {}
        got_wall: dict[str, float] = {}
        changed = asyncio.Event()

        async def reader() -> None:
            async for item in gen:
                now = time.perf_counter()
                now_wall = time.time() * 1000
                for e in _event_of(item):
                    events.append((now, e))
                    got.setdefault(e["type"], now)
                    if e["type"] == "flow:started" and e["ts"] is not None:
                        got_wall.setdefault("flow:started", now_wall)
                        got_wall.setdefault("flow:started@server", e["ts"])
                    if e["index"] >= 1:
                        got.setdefault("__first_live", now)
                changed.set()
                if any(e[1]["type"] in TERMINAL for e in events):
                    return

        task = asyncio.ensure_future(reader())
        t_start = time.perf_counter()
        t_start_wall = time.time() * 1000
        await asyncio.wait_for(c.mutation("start", {"executionId": exec_id}), STEP_TIMEOUT)
        out["start_ack_ms"] = (time.perf_counter() - t_start) * 1000
        try:
            await asyncio.wait_for(asyncio.shield(task), STEP_TIMEOUT)
        except TimeoutError:
            task.cancel()
            PROBLEMS.add(
                "no terminal event within timeout",
                stack=stack.name,
                executionId=exec_id,
                types=[e["type"] for _, e in events],
            )
            return out
        if "flow:started" in got:
            out["start_flow_started_ms"] = (got["flow:started"] - t_start) * 1000
        else:
            PROBLEMS.add(
                "no flow:started event",
                stack=stack.name,
                executionId=exec_id,
                types=[e["type"] for _, e in events],
            )
        if "flow:started@server" in got_wall:
            # split at the event's server timestamp (ms resolution, truncated; same machine clock):
            # worker pickup + run until the event is stamped / stamped until the client has it
            stamped = got_wall["flow:started@server"]
            out["start_to_flow_started_stamp_ms"] = stamped - t_start_wall
            out["flow_started_stamp_to_client_ms"] = got_wall["flow:started"] - stamped
        if "__first_live" in got:
            out["start_first_live_ms"] = (got["__first_live"] - t_start) * 1000
            out["first_live_type"] = next(e["type"] for _, e in events if e["index"] >= 1)
        term = next((e for _, e in events if e["type"] in TERMINAL), None)
        if term is not None:
            out["start_terminal_ms"] = (got[term["type"]] - t_start) * 1000
            if term["ts"] is not None:
                out["start_to_terminal_stamp_ms"] = term["ts"] - t_start_wall
            out["terminal"] = term["type"]
            if term["type"] != "flow:completed":
                PROBLEMS.add(
                    "terminal event is not flow:completed",
                    stack=stack.name,
                    executionId=exec_id,
                    terminal=term["type"],
                )
        idx = [e["index"] for _, e in events]
        out["events"] = len(idx)
        if idx != list(range(len(idx))):
            PROBLEMS.add(
                "event indexes have a gap or are out of order",
                stack=stack.name,
                executionId=exec_id,
                indexes=idx,
            )
        else:
            out["ok"] = term is not None and term["type"] == "flow:completed"
    finally:
        with contextlib.suppress(Exception):
            await gen.aclose()
    return out


# -- the run ----------------------------------------------------------------------------------------


def proc_snapshot(stacks: list[Stack]) -> dict[str, dict[str, Any]]:
    return {p.name: {"cpu_s": cpu_seconds(p.pid), **mem_mib(p.pid)} for s in stacks for p in s.procs}


async def run(state: dict[str, Any]) -> None:
    tag = secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-sub-"))
    state["tmp"] = str(tmp)
    stacks = []
    for name in ("empty", "filled"):
        prefix = f"bench-sub-{tag}-{name}."
        mk = lambda role, name=name, prefix=prefix: Proc(  # noqa: E731
            f"{name}-{role}", role, prefix, free_port(), tmp / f"{name}-{role}.log"
        )
        stacks.append(Stack(name, prefix, mk("api"), mk("worker")))
    state["stacks"] = stacks
    empty, filled = stacks
    await asyncio.to_thread(wait_for_kafka)
    a = admin()
    state["result"]["loadavg_start"] = os.getloadavg()
    state["result"]["other_gateways_running"] = other_gateways()

    # 1. topics, with the gateway's own partition counts and configs
    for s in stacks:
        ks = KafkaSettings(brokers=KAFKA_BROKERS, prefix=s.prefix)
        state["topics"].extend(ks.topics())
        counts = await asyncio.to_thread(create_topics, a, ks)
        s.event_partitions = counts[ks.events_topic]
        log(f"created topics {s.prefix}chaingraph.{{tasks,commands,events}}: {counts}")
    state["result"]["topics"] = {s.name: s.prefix for s in stacks}

    # 2. 10^6 old events in the filled stack's events topic
    events_topic = KafkaSettings(brokers=KAFKA_BROKERS, prefix=filled.prefix).events_topic
    log(f"producing {OLD_EVENTS:,} old events into {events_topic} …")
    fill = await asyncio.to_thread(fill_events_topic, events_topic, OLD_EVENTS)
    offs = await asyncio.to_thread(end_offsets, a, events_topic, filled.event_partitions)
    fill["end_offsets"] = offs
    fill["end_offsets_total"] = sum(offs)
    state["result"]["fill"] = fill
    log(
        f"filled in {fill['seconds']} s ({fill['per_s']:,}/s, value {fill['value_bytes']} B, lz4); "
        f"end offsets total {sum(offs):,}, per partition {min(offs):,}..{max(offs):,}"
    )
    if fill["undelivered"] or fill["delivery_errors"] or sum(offs) != OLD_EVENTS:
        PROBLEMS.add(
            "fill incomplete",
            undelivered=fill["undelivered"],
            errors=fill["delivery_errors"],
            total=sum(offs),
        )

    # 3. both stacks: worker + api each, all four at once
    for s in stacks:
        for p in s.procs:
            d = tmp / f"data-{p.name}"
            d.mkdir()
            p.start(str(d))
    log("started 4 gateway processes (2 api + 2 workers); waiting for /ready …")
    await asyncio.gather(*(p.wait_ready(40) for s in stacks for p in s.procs))
    state["result"]["ready_s"] = {p.name: p.ready_s for s in stacks for p in s.procs}
    state["result"]["pids"] = {p.name: p.pid for s in stacks for p in s.procs}
    log(f"ready: {state['result']['ready_s']}")
    register_wire_types()
    for s in stacks:
        s.client = await TRPCClient(f"ws://127.0.0.1:{s.api.port}/").connect()
        state["clients"].append(s.client)
        s.flow_id = (
            await asyncio.wait_for(s.client.mutation("flows.create", {"flow": HELLO}), STEP_TIMEOUT)
        )["id"]

    # 4. one uncounted warm-up round per stack (first calls, connections, code paths)
    for s in stacks:
        w = await one_round(s, -1, 0)
        state["result"].setdefault("warmup", []).append(w)
    snap_before = proc_snapshot(stacks)
    bench_cpu0 = time.process_time()
    t_rounds = time.monotonic()

    # 5. alternate: empty, filled / filled, empty / …
    done = 0
    for r in range(ROUNDS):
        if elapsed() > BUDGET_SECONDS - 25:
            log(f"time budget: stopping after {r} rounds")
            state["result"]["stopped_early_after_rounds"] = r
            break
        pair = (empty, filled) if r % 2 == 0 else (filled, empty)
        for order, s in enumerate(pair):
            try:
                s.rounds.append(await one_round(s, r, order))
            except Exception as e:  # noqa: BLE001
                PROBLEMS.add("round failed", stack=s.name, round=r, error=repr(e))
        done = r + 1
    rounds_wall = time.monotonic() - t_rounds
    state["result"]["loadavg_end"] = os.getloadavg()
    snap_after = proc_snapshot(stacks)
    state["result"]["rounds_done"] = done
    state["result"]["rounds_wall_s"] = round(rounds_wall, 2)
    state["result"]["bench_cpu_s"] = round(time.process_time() - bench_cpu0, 2)

    # 6. summarise
    metrics = {
        "subscribe_first_event_ms": "subscribe → first event (index 0, from the log)",
        "start_first_live_ms": "start → first live event (via Kafka)",
        "start_flow_started_ms": "start → flow:started (via Kafka)",
        "start_to_flow_started_stamp_ms": "  … start → flow:started's server timestamp",
        "flow_started_stamp_to_client_ms": "  … flow:started's timestamp → client",
        "start_terminal_ms": "start → terminal event",
        "start_to_terminal_stamp_ms": "  … start → terminal event's server timestamp",
        "create_ms": "create (mutation round trip)",
        "start_ack_ms": "start (mutation round trip)",
    }
    summary: dict[str, Any] = {}
    for s in stacks:
        rs = s.rounds
        summary[s.name] = {m: stats([x[m] for x in rs if m in x]) for m in metrics}
        for m in SPLIT_BY_PARTITION:
            for label, cold in (("cold_partition", True), ("warm_partition", False)):
                summary[s.name][f"{m}_{label}"] = stats(
                    [x[m] for x in rs if m in x and bool(x.get("cold_partition")) == cold]
                )
        summary[s.name]["ok_rounds"] = sum(1 for x in rs if x.get("ok"))
        summary[s.name]["processes"] = {}
        for p in s.procs:
            b, e = snap_before[p.name], snap_after[p.name]
            cpu = (e["cpu_s"] - b["cpu_s"]) if e["cpu_s"] is not None and b["cpu_s"] is not None else None
            summary[s.name]["processes"][p.role] = {
                "pid": p.pid,
                "ready_s": p.ready_s,
                "cpu_s_total": e["cpu_s"],
                "cpu_s_rounds": round(cpu, 2) if cpu is not None else None,
                "cpu_ms_per_round": round(cpu * 1000 / len(rs), 1) if cpu is not None and rs else None,
                "cpu_fraction_rounds": round(cpu / rounds_wall, 3)
                if cpu is not None and rounds_wall
                else None,
                "rss_mib_before": b["rss"],
                "rss_mib_after": e["rss"],
                "hwm_mib": e["hwm"],
            }
    ratios: dict[str, Any] = {}
    split = [f"{m}_{k}" for m in SPLIT_BY_PARTITION for k in ("cold_partition", "warm_partition")]
    for m in [*metrics, *split]:
        ratios[m] = {}
        for q in ("p50", "p99"):
            ev, fv = summary["empty"][m][q], summary["filled"][m][q]
            ratios[m][q] = round(fv / ev, 2) if ev and fv is not None else None
    state["result"]["summary"] = summary
    state["result"]["ratios_filled_over_empty"] = ratios
    state["result"]["rounds"] = {s.name: s.rounds for s in stacks}
    checks = {}
    for m in ("subscribe_first_event_ms", "start_first_live_ms"):
        rr = ratios[m]
        checks[m] = {
            "p50": rr["p50"],
            "p99": rr["p99"],
            "within_2x": rr["p50"] is not None
            and rr["p99"] is not None
            and rr["p50"] <= 2
            and rr["p99"] <= 2,
        }
    state["result"]["requirement"] = {
        "text": "subscribe-to-first-event latency with 10^6 old events stays within 2x of an empty topic",
        "checks": checks,
        "pass": all(c["within_2x"] for c in checks.values()),
    }
    print_table(state["result"], stacks, metrics)


def print_table(res: dict[str, Any], stacks: list[Stack], metrics: dict[str, str]) -> None:
    summ, ratios = res["summary"], res["ratios_filled_over_empty"]
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print()
    print(
        f"events topic: empty vs {OLD_EVENTS:,} old events; {res['rounds_done']} rounds per stack, "
        f"procedure {PROCEDURE}; ms"
    )
    hdr = f"{'':62} {'empty p50':>10} {'p99':>8} {'filled p50':>11} {'p99':>8} {'ratio p50':>10} {'p99':>6}"
    print(hdr)
    print("-" * len(hdr))
    rows = [*metrics.items()]
    for m, label in SPLIT_BY_PARTITION.items():
        rows.append((f"{m}_cold_partition", f"{label}, first subscriber of its partition"))
        rows.append((f"{m}_warm_partition", f"{label}, partition already assigned"))
    for m, label in rows:
        e, fl, r = summ["empty"][m], summ["filled"][m], ratios[m]
        label = f"{label} (n={e['n']}/{fl['n']})"
        print(
            f"{label:62} {f(e['p50']):>10} {f(e['p99']):>8} {f(fl['p50']):>11} {f(fl['p99']):>8} "
            f"{f(r['p50']):>10} {f(r['p99']):>6}"
        )
    print()
    print(
        f"{'process':16} {'ready s':>8} {'CPU s (rounds)':>15} {'CPU ms/round':>13} {'RSS MiB before':>15} "
        f"{'after':>7} {'peak':>7}"
    )
    for s in stacks:
        for role, p in summ[s.name]["processes"].items():
            print(
                f"{s.name + ' ' + role:16} {f(p['ready_s']):>8} {f(p['cpu_s_rounds']):>15} "
                f"{f(p['cpu_ms_per_round']):>13} {f(p['rss_mib_before']):>15} {f(p['rss_mib_after']):>7} "
                f"{f(p['hwm_mib']):>7}"
            )
    print(
        f"\nload average start {tuple(round(x, 2) for x in res.get('loadavg_start', ()))}, "
        f"end {tuple(round(x, 2) for x in res.get('loadavg_end', ()))}; other chaingraph-gw processes "
        f"on the machine at start: {res.get('other_gateways_running')}"
    )
    req = res["requirement"]
    print()
    for m, c in req["checks"].items():
        print(
            f"{m}: filled/empty p50 {f(c['p50'])}, p99 {f(c['p99'])} → {'within 2x' if c['within_2x'] else 'NOT within 2x'}"
        )
    print(f"requirement: {'PASS' if req['pass'] else 'FAIL'}")


async def cleanup(state: dict[str, Any]) -> None:
    for c in state["clients"]:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.close(), 2)
    stopped = []
    for s in state.get("stacks", []):
        for p in s.procs:
            notable = p.notable_log_lines()
            if notable:
                state["result"].setdefault("gateway_log_notable", {})[p.name] = notable
    # stop api processes first, then workers
    for role in ("api", "worker"):
        procs = [p for s in state.get("stacks", []) for p in s.procs if p.role == role]
        stopped += await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
    state["result"]["stopped"] = stopped
    if state["topics"]:
        res = await asyncio.to_thread(delete_topics, admin(), state["topics"])
        left = [name for name, v in res.items() if v.startswith("failed")]
        if left:  # e.g. the broker was restarting: wait for it, then try once more
            log(f"deleting {len(left)} topic(s) failed; retrying once Kafka answers …")
            with contextlib.suppress(Exception):
                await asyncio.to_thread(wait_for_kafka, 30.0)
            res.update(await asyncio.to_thread(delete_topics, admin(), left))
            still = [name for name, v in res.items() if v.startswith("failed")]
            if still:
                PROBLEMS.add("topics left behind (delete them by hand)", topics=still)
        state["result"]["topics_deleted"] = res
        log(
            f"deleted topics: {sum(1 for v in res.values() if v == 'deleted')}/{len(res)} "
            f"({', '.join(f'{k}: {v}' for k, v in res.items() if v != 'deleted') or 'all ok'})"
        )
    with contextlib.suppress(Exception):
        import shutil

        if "tmp" in state and not state["result"].get("keep_logs"):
            shutil.rmtree(state["tmp"])


async def main() -> int:
    state: dict[str, Any] = {
        "topics": [],
        "clients": [],
        "result": {
            "bench": "subscribe_latency",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "procedure": PROCEDURE,
            "rounds_per_stack": ROUNDS,
            "old_events": OLD_EVENTS,
            "kafka": KAFKA_BROKERS,
            "database": DATABASE_URL.rsplit("@", 1)[-1],
        },
    }
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)  # type: ignore[union-attr]
    code = 0
    try:
        await asyncio.wait_for(run(state), BUDGET_SECONDS)
    except TimeoutError:
        PROBLEMS.add("hard stop: time budget exhausted", budget_s=BUDGET_SECONDS)
    except asyncio.CancelledError:
        PROBLEMS.add("interrupted")
    except Exception as e:  # noqa: BLE001
        PROBLEMS.add("bench failed", error=repr(e))
        state["result"]["keep_logs"] = True
        log(f"logs kept in {state.get('tmp')}")
    finally:
        try:
            await asyncio.wait_for(cleanup(state), 60)
        except Exception as e:  # noqa: BLE001
            PROBLEMS.add("cleanup failed", error=repr(e))
        state["result"]["problems"] = {"counts": PROBLEMS.counts, "examples": PROBLEMS.examples}
        state["result"]["total_s"] = round(elapsed(), 1)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(state["result"], indent=2, default=str))
        log(f"wrote {RESULTS.relative_to(REPO)} (total {elapsed():.1f} s)")
    if PROBLEMS.total:
        code = 1
    elif not state["result"].get("requirement", {}).get("pass", False):
        code = 2
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
