"""Helpers for the API tests: a real gateway (embedded backend) per test, tRPC clients, flows.

Everything runs on the asyncio reactor's loop (trial ``--reactor=asyncio``); tests are
``async def`` methods decorated with :func:`tests.helpers.async_test`.

``ApiTestCase.backend`` picks the embedded store: ``"sqlite"`` (a file in the data dir) or
``"postgres"`` (a fresh database ``chaingraph_test_<hex>`` on the server in ``DATABASE_URL``, one per
data dir, dropped when the test ends). The PostgreSQL twin of a test class is a subclass setting
``backend = "postgres"`` and ``skip = POSTGRES_SKIP``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from psycopg import sql
from psycopg.conninfo import make_conninfo
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from chaingraph_gw.api.auth import mint_token
from chaingraph_gw.api.wire_types import ExecutionEventImpl, register_wire_types
from chaingraph_gw.client import AutobahnBridge, ConnectionClosed, TRPCClientError, TRPCCore
from chaingraph_gw.config import load_settings
from chaingraph_gw.service import make_gateway_service

from .helpers import aw, deferred_from

SECRET = "test-secret"
TERMINAL = ("flow:completed", "flow:failed", "flow:cancelled")

register_wire_types()

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/chaingraph")


def _probe_postgres() -> str | None:
    """None if DATABASE_URL answers, else the reason to skip the PostgreSQL variants."""
    where = DATABASE_URL.rsplit("@", 1)[-1]
    try:
        with psycopg.connect(DATABASE_URL, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return (f"PostgreSQL not reachable at {where} ({first}); set DATABASE_URL or start one with"
                " scripts/services/services.sh up")
    return None


POSTGRES_SKIP = _probe_postgres()


async def _pg_admin(statement: sql.Composable) -> None:
    conn = await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# -- flow documents (canonical form) ----------------------------------------------------------------

def text_log_flow(text: str = "hello", name: str = "Text to log") -> dict[str, Any]:
    """TextNode → DebugLogNode: finishes at once with one ``node:debug-log-string``."""
    return {
        "name": name,
        "nodes": [
            {"id": "text", "type": "TextNode", "values": {"text": text}},
            {"id": "log", "type": "DebugLogNode"},
        ],
        "edges": [{"from": "text.text", "to": "log.message"}],
    }


def sleep_chain_flow(n: int = 3, ms: int = 100, name: str = "Sleep chain") -> dict[str, Any]:
    """``s1 → s2 → … → sn``, each a SleepNode of ``ms`` milliseconds, chained by __success → __execute."""
    nodes = [{"id": f"s{i}", "type": "SleepNode", "values": {"duration": ms}} for i in range(1, n + 1)]
    edges = [{"from": f"s{i}.__success", "to": f"s{i + 1}.__execute"} for i in range(1, n)]
    return {"name": name, "nodes": nodes, "edges": edges}


def parallel_sleeps_flow(ids: list[str], ms: int = 100, name: str = "Parallel sleeps") -> dict[str, Any]:
    """Independent SleepNodes (all ready at the start)."""
    return {"name": name, "nodes": [{"id": i, "type": "SleepNode", "values": {"duration": ms}} for i in ids],
            "edges": []}


def emitter_flow(event: str = "order", payload: dict[str, Any] | None = None,
                 name: str = "Emitter") -> dict[str, Any]:
    """The root run emits ``event``; a child execution runs the listener branch (listener → log)."""
    return {
        "name": name,
        "nodes": [
            {"id": "emit", "type": "EventEmitterNode",
             "values": {"eventName": event, "payload": payload if payload is not None else {"item": "tea"}}},
            {"id": "listen", "type": "EventListenerNode",
             "values": {"eventName": event, "outputData": {"item": ""}}},
            {"id": "log", "type": "DebugLogNode"},
        ],
        "edges": [{"from": "listen.outputData.item", "to": "log.message"}],
    }


def nested_emitter_flow(name: str = "Nested emitter") -> dict[str, Any]:
    """Root emits ``a`` → child (depth 1) whose listener triggers an emitter of ``b`` → grandchild (depth 2)."""
    return {
        "name": name,
        "nodes": [
            {"id": "emitA", "type": "EventEmitterNode", "values": {"eventName": "a", "payload": {"x": "1"}}},
            {"id": "listenA", "type": "EventListenerNode", "values": {"eventName": "a", "outputData": {"x": ""}}},
            {"id": "emitB", "type": "EventEmitterNode", "values": {"eventName": "b", "payload": {"y": "2"}}},
            {"id": "listenB", "type": "EventListenerNode", "values": {"eventName": "b", "outputData": {"y": ""}}},
            {"id": "logB", "type": "DebugLogNode"},
        ],
        "edges": [
            {"from": "listenA.__success", "to": "emitB.__execute"},
            {"from": "listenB.outputData.y", "to": "logB.message"},
        ],
    }


# -- results --------------------------------------------------------------------------------------

@dataclass
class GatewayHandle:
    root: Any
    gw: Any
    port: int
    data_dir: str
    stopped: bool = False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def services(self) -> Any:
        return self.gw.backend


def token(user_id: str, role: str = "user", ttl_seconds: int = 3600, secret: str = SECRET) -> str:
    return mint_token(secret, user_id=user_id, role=role, ttl_seconds=ttl_seconds)


class ApiTestCase(TestCase):
    """Starts real gateways (embedded backend on a temp data dir) and connects tRPC clients."""

    timeout = 20
    auth_enabled = False
    backend = "sqlite"  # or "postgres" (then also skip = POSTGRES_SKIP)

    async def _postgres_database(self, data_dir: str) -> str:
        """The DSN of this data dir's test database, created on first use (restarts reuse it)."""
        dbs: dict[str, str] = self.__dict__.setdefault("_pg_databases", {})
        if data_dir not in dbs:
            name = f"chaingraph_test_{uuid.uuid4().hex[:12]}"
            await _pg_admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            # registered before the gateway's stop, so (LIFO) it runs after the gateway has stopped
            self.addCleanup(lambda: deferred_from(_pg_admin(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))))
            dbs[data_dir] = make_conninfo(DATABASE_URL, dbname=name)
        return dbs[data_dir]

    async def start_gateway(self, data_dir: str | None = None, **overrides: Any) -> GatewayHandle:
        data_dir = data_dir or self.mktemp()
        base: dict[str, Any] = {"port": 0, "data_dir": data_dir, "auth_enabled": self.auth_enabled,
                                "load_examples": False, "drain_seconds": 0.2, "instance_id": "gw-api-test"}
        if self.auth_enabled:
            base["auth_jwt_secret"] = SECRET
        if self.backend == "postgres":
            base["database_url"] = await self._postgres_database(data_dir)
            base["database_pool_size"] = 5
        elif self.backend != "sqlite":  # pragma: no cover
            raise ValueError(f"unknown backend {self.backend!r}")
        base.update(overrides)
        settings = load_settings(env={}, overrides=base)
        root, gw = make_gateway_service(settings, with_backend=True)
        root.startService()
        listener = root.getServiceNamed("listener")
        handle = GatewayHandle(root, gw, 0, data_dir)
        self.addCleanup(lambda: deferred_from(self.stop_gateway(handle)))
        await asyncio.wait_for(aw(listener.listening), 10)
        handle.port = listener.listening_port
        return handle

    async def stop_gateway(self, handle: GatewayHandle) -> None:
        if handle.stopped:
            return
        handle.stopped = True
        deadline = time.monotonic() + 2
        while handle.gw.trpc.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if handle.root.running:
            await asyncio.wait_for(aw(handle.root.stopService()), 10)

    async def client(self, handle: GatewayHandle, *, token: str | None = None, via: str = "params",
                     connection_params: dict[str, str] | None = None) -> TRPCClient:
        """A connected client; ``via`` is ``params`` (connectionParams.sessionBadAI), ``header`` or ``cookie``."""
        headers: dict[str, str] = {}
        params = connection_params
        if token is not None:
            if via == "params":
                params = {**(params or {}), "sessionBadAI": token}
            elif via == "header":
                headers["Authorization"] = f"Bearer {token}"
            elif via == "cookie":
                headers["Cookie"] = f"session={token}"
            else:  # pragma: no cover
                raise ValueError(via)
        c = TRPCClient(handle.url, connection_params=params, headers=headers)
        await c.connect()
        self.addCleanup(lambda: deferred_from(_close_quietly(c)))
        return c

    def follow(self, c: TRPCClient, exec_id: str, **kw: Any) -> EventFollower:
        f = EventFollower(c, exec_id, **kw).start()
        self.addCleanup(lambda: deferred_from(f.close()))
        return f

    # -- assertions ------------------------------------------------------------------------------
    async def assert_trpc_error(self, awaitable: Awaitable[Any], code: str, message: str | None = None,
                                contains: str | None = None) -> TRPCClientError:
        try:
            result = await asyncio.wait_for(awaitable, 5)
        except TRPCClientError as exc:
            self.assertEqual(exc.code, code, f"expected {code}, got {exc.code}: {exc}")
            if message is not None:
                self.assertEqual(str(exc), message)
            if contains is not None:
                self.assertIn(contains, str(exc))
            return exc
        self.fail(f"expected a {code} error, got result {result!r}")


async def _close_quietly(c: TRPCClient) -> None:
    try:
        await c.close()
    except Exception:  # cleanup of an already broken connection
        pass


# -- API shortcuts ----------------------------------------------------------------------------------

async def create_flow(c: TRPCClient, doc: dict[str, Any]) -> str:
    out = await c.mutation("flows.create", {"flow": doc})
    return out["id"]


async def create_execution(c: TRPCClient, flow_id: str, **extra: Any) -> str:
    out = await c.mutation("create", {"flowId": flow_id, **extra})
    return out["executionId"]


async def run_flow(c: TRPCClient, doc: dict[str, Any], **extra: Any) -> tuple[str, str]:
    """Create the flow and an execution, start it. Returns (flow id, execution id)."""
    flow_id = await create_flow(c, doc)
    exec_id = await create_execution(c, flow_id, **extra)
    await c.mutation("start", {"executionId": exec_id})
    return flow_id, exec_id


async def details(c: TRPCClient, exec_id: str) -> dict[str, Any]:
    return await c.query("getExecutionDetails", {"executionId": exec_id})


async def wait_status(c: TRPCClient, exec_id: str, statuses: str | tuple[str, ...],
                      timeout: float = 5.0) -> dict[str, Any]:
    if isinstance(statuses, str):
        statuses = (statuses,)
    deadline = time.monotonic() + timeout
    row = await details(c, exec_id)
    while row["status"] not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {exec_id} stayed {row['status']!r}, wanted {statuses}")
        await asyncio.sleep(0.01)
        row = await details(c, exec_id)
    return row


async def collect_events(c: TRPCClient, exec_id: str, *, timeout: float = 5.0,
                         **extra: Any) -> list[dict[str, Any]]:
    """All ``executionEvents`` items (``{"id", "data"}``) until the server ends the stream."""
    out: list[dict[str, Any]] = []

    async def run() -> None:
        async for item in c.subscribe("executionEvents", {"executionId": exec_id, **extra}):
            out.append(item)

    await asyncio.wait_for(run(), timeout)
    return out


async def wait_events(c: TRPCClient, exec_id: str, pred: Any, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Follow ``executionEvents`` until ``pred(event_data)`` is true; returns the events' data so far."""
    seen: list[dict[str, Any]] = []

    async def run() -> None:
        gen = c.subscribe("executionEvents", {"executionId": exec_id})
        try:
            async for item in gen:
                seen.append(item["data"])
                if pred(item["data"]):
                    return
        finally:
            await gen.aclose()
        raise AssertionError(f"stream ended without the awaited event; got {[e['type'] for e in seen]}")

    await asyncio.wait_for(run(), timeout)
    return seen


async def wait_for_change(changed: asyncio.Event, deadline: float, timeout_message: Callable[[], str]) -> None:
    """Wait until ``changed`` is set again or the ``time.monotonic()`` deadline passes (then return too);
    raises ``AssertionError(timeout_message())`` when the deadline had already passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise AssertionError(timeout_message())
    changed.clear()
    try:
        await asyncio.wait_for(changed.wait(), remaining)
    except TimeoutError:
        pass


class EventFollower:
    """Follows an execution's events in a background task (``executionEvents`` or
    ``subscribeToExecutionEvents``); ``events`` holds plain dicts ``{index, type, timestamp, data}``."""

    def __init__(self, c: TRPCClient, exec_id: str, *, path: str = "executionEvents", **extra: Any) -> None:
        self.c = c
        self.path = path
        self.input = {"executionId": exec_id, **extra}
        self.events: list[dict[str, Any]] = []
        self.batches: list[list[Any]] = []
        self.items: list[Any] = []
        self.ended = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> EventFollower:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        try:
            async for item in self.c.subscribe(self.path, self.input):
                self.items.append(item)
                if isinstance(item, list):
                    self.batches.append(item)
                    for e in item:
                        self.events.append({"index": e.index, "type": e.type, "timestamp": e.timestamp,
                                            "data": e.data})
                else:
                    self.events.append(item["data"])
                self._changed.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended = True
            self._changed.set()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def find(self, pred: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if pred(e)]

    async def until(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The first event matching ``pred``, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    return e
            if self.ended:
                raise AssertionError(f"stream ended ({self.error!r}) without the awaited event; got {self.types()}")
            await wait_for_change(self._changed, deadline,
                                  lambda: f"timed out waiting for an event; got {self.types()}")

    async def until_type(self, type_: str, timeout: float = 5.0, **data_match: Any) -> dict[str, Any]:
        return await self.until(lambda e: e["type"] == type_ and _matches(e, data_match), timeout)

    async def until_ended(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ended:
            await wait_for_change(self._changed, deadline, lambda: f"stream did not end; got {self.types()}")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def node_of(event: dict[str, Any]) -> str | None:
    """The node id an event is about (``nodeId`` or ``node.id``)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    if "nodeId" in data:
        return data["nodeId"]
    node = data.get("node")
    return node.get("id") if isinstance(node, dict) else None


def _matches(event: dict[str, Any], match: dict[str, Any]) -> bool:
    return not ("node" in match and node_of(event) != match["node"])


def started_nodes(events: list[dict[str, Any]]) -> list[str]:
    return [node_of(e) for e in events if e["type"] == "node:started"]  # type: ignore[misc]


async def stored_events(handle: GatewayHandle, exec_id: str) -> list[Any]:
    return await handle.services.events.read(exec_id, 0, None)


async def next_batch(gen: Any, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(gen.__anext__(), timeout)


def types_of(events: list[Any]) -> list[str]:
    return [e.type if isinstance(e, ExecutionEventImpl) else e["type"] for e in events]


def check_event_sequence(tc: TestCase, events: list[dict[str, Any]], start: int = 0) -> None:
    """Indexes start..n strictly +1, index 0 (if included) is execution:created, one terminal event, last."""
    indexes = [e["index"] for e in events]
    tc.assertEqual(indexes, list(range(start, start + len(events))), f"indexes not contiguous: {indexes}")
    if start == 0 and events:
        tc.assertEqual(events[0]["type"], "execution:created")
    terminals = [i for i, e in enumerate(events) if e["type"] in TERMINAL]
    tc.assertEqual(len(terminals), 1, f"expected exactly one terminal event, got {types_of(events)}")
    tc.assertEqual(terminals[0], len(events) - 1, f"terminal event is not last: {types_of(events)}")


# -- clients ----------------------------------------------------------------------------------------
#
# chaingraph_gw.client.TRPCClient connects with autobahn.asyncio, which calls txaio.use_asyncio() at
# import time; the gateway (autobahn.twisted) already selected Twisted in this process, so that
# adapter cannot be used here. TRPCClient below is the same protocol core on autobahn.twisted.


class _Protocol(AutobahnBridge, WebSocketClientProtocol):
    pass


async def _ws_connect(client: Any, url: str, headers: dict[str, str]) -> None:
    factory = WebSocketClientFactory(url, headers=headers)
    factory.protocol = _Protocol
    factory.client = client  # type: ignore[attr-defined]
    factory.setProtocolOptions(openHandshakeTimeout=5, closeHandshakeTimeout=1, autoPingInterval=0)
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    endpoint = TCP4ClientEndpoint(reactor, host, int(port), timeout=5)
    await asyncio.wait_for(aw(endpoint.connect(factory)), 5)


class TRPCClient(TRPCCore):
    """query / mutation / subscribe over tRPC WS with superjson (chaingraph_gw.client's core on
    autobahn.twisted); also records every JSON frame received in :attr:`frames`."""

    close_timeout = 2.0
    abort_on_close_timeout = True

    def __init__(self, url: str, *, connection_params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(url, connection_params=connection_params, headers=headers)
        self.frames: list[Any] = []  # every JSON frame received (decoded, not superjson-decoded)

    async def connect(self, timeout: float = 5.0) -> TRPCClient:
        await super().connect(timeout)
        return self

    async def _connect_transport(self, url: str, timeout: float) -> None:
        await _ws_connect(self, url, self.headers)

    def _frame_received(self, payload: bytes) -> None:
        self.frames.append(orjson.loads(payload))  # untouched (the superjson decoder works in place)

    def send_raw(self, obj: Any) -> None:
        self._send(obj)


class RawClient:
    """Sends frames as given (optionally right in the handshake's tick) and records every frame received."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.frames: list[Any] = []
        self._transport: tuple[Any, Any, Any] | None = None  # send, close, abort
        self.close_code: int | None = None
        self.closed: asyncio.Future[int | None] | None = None
        self._open: asyncio.Future[None] | None = None
        self._initial: list[Any] = []
        self._changed = asyncio.Event()

    async def connect(self, *initial_frames: Any) -> RawClient:
        loop = asyncio.get_running_loop()
        self._initial = list(initial_frames)
        self._open = loop.create_future()
        self.closed = loop.create_future()
        await _ws_connect(self, self.url, self.headers)
        await asyncio.wait_for(asyncio.shield(self._open), 5)
        return self

    def connection_made(self, send: Any, close: Any, abort: Any) -> None:
        self._transport = (send, close, abort)
        for frame in self._initial:
            self.send(frame)
        if self._open is not None and not self._open.done():
            self._open.set_result(None)

    def data_received(self, payload: bytes) -> None:
        text = payload.decode("utf-8")
        self.frames.append(text if text in ("PING", "PONG") else json.loads(text))
        self._changed.set()

    def connection_lost(self, code: int | None, reason: str | None) -> None:
        self._transport = None
        self.close_code = code
        if self._open is not None and not self._open.done():
            self._open.set_exception(ConnectionClosed(f"closed during handshake ({code})"))
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(code)
        self._changed.set()

    def send(self, frame: Any) -> None:
        assert self._transport is not None, "not connected"
        data = frame if isinstance(frame, (bytes, str)) else json.dumps(frame, separators=(",", ":"))
        self._transport[0](data.encode("utf-8") if isinstance(data, str) else data)

    def for_id(self, rid: Any) -> list[dict[str, Any]]:
        return [f for f in self.frames if isinstance(f, dict) and f.get("id") == rid]

    async def wait_for(self, pred: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            await wait_for_change(self._changed, deadline, lambda: f"timed out; frames so far: {self.frames}")

    async def close(self) -> None:
        if self._transport is not None:
            self._transport[1]()
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 2)  # type: ignore[arg-type]
            except TimeoutError:
                if self._transport is not None:
                    self._transport[2]()


def sj_input(value: Any) -> dict[str, Any]:
    """A superjson-encoded input for raw frames (plain JSON values only)."""
    return {"json": value}
