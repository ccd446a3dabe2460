"""One tRPC connection, independent of the socket library (protocol doc §1–§7).

The transport (Autobahn in production, a list in unit tests) feeds text frames into
:meth:`TRPCSession.receive` and implements :class:`Transport`. The session owns the
connection context, pending calls, subscriptions and the server keep-alive timer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson
from twisted.logger import Logger
from twisted.python.failure import Failure

from .envelopes import RECONNECT_FRAME, EnvelopeError, Request, merge_last_event_id, parse_request
from .errors import TRPCError, error_shape, to_trpc_error
from .router import (
    AbortSignal,
    Call,
    Procedure,
    Router,
    Tracked,
    as_async_iterator,
    invoke,
    is_awaitable,
    resolve,
)
from .superjson import UNDEFINED
from .transformer import Transformer

log = Logger(namespace="chaingraph_gw.trpc")

PING = b"PING"
PONG = b"PONG"
_ids = itertools.count(1)


class Transport(Protocol):
    """What a session needs from its socket."""

    def send_frame(self, data: bytes) -> None:
        """Send one text frame."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close handshake (code None → no status code)."""

    def terminate(self) -> None:
        """Drop the TCP connection at once (keep-alive timeout, slow reader)."""

    def outbound_buffered(self) -> int:
        """Bytes accepted by send_frame but not yet written to the kernel."""

    def wait_writable(self) -> Awaitable[None] | None:
        """None if the peer keeps up; else an awaitable that resolves when it has drained."""


@dataclass(slots=True)
class ConnectionInfo:
    """The upgrade request, as handed to context creation."""

    path: str = "/"
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    peer: str = ""  # the real client address (X-Forwarded-For honoured when trusted)
    connection_id: int = field(default_factory=lambda: next(_ids))

    @classmethod
    def from_url(cls, url: str, headers: dict[str, str] | None = None, peer: str = "") -> ConnectionInfo:
        path, _, qs = url.partition("?")
        return cls(path or "/", parse_qs(qs, keep_blank_values=True), headers or {}, peer)

    @property
    def wants_connection_params(self) -> bool:
        return self.query.get("connectionParams", [""])[-1] == "1"


ContextFactory = Callable[[ConnectionInfo, "dict[str, str] | None"], Any]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    keepalive_enabled: bool = True
    ping_ms: int = 30000
    pong_wait_ms: int = 10000
    max_batch: int = 100
    max_subscriptions: int = 1000
    max_outbound_bytes: int = 16 * 1024 * 1024
    include_stack: bool = True
    # A subscription driver gives the loop a turn after this many events even if the source never awaits.
    yield_every: int = 32


class TRPCServer:
    """Process-wide state shared by sessions: procedures, transformer, context factory, options."""

    def __init__(
        self,
        router: Router,
        *,
        transformer: Transformer,
        create_context: ContextFactory | None = None,
        options: SessionOptions | None = None,
        metrics: Any = None,
    ) -> None:
        self.procedures: dict[str, Procedure] = router.flatten()
        self.transformer = transformer
        self.create_context: ContextFactory = create_context or (lambda info, params: None)
        self.options = options or SessionOptions()
        self.metrics = metrics
        self.sessions: set[TRPCSession] = set()
        self.draining = False

    def session(self, transport: Transport, info: ConnectionInfo) -> TRPCSession:
        return TRPCSession(self, transport, info)

    def broadcast_reconnect(self) -> int:
        """Ask every client to move to another process (§7.3); existing sockets keep serving."""
        self.draining = True
        n = 0
        for s in list(self.sessions):
            if s.open:
                s.send_raw(RECONNECT_FRAME)
                n += 1
        return n


class _Subscription:
    __slots__ = ("active", "id", "jsonrpc", "path", "signal", "task")

    def __init__(self, rid: int | str, path: str, jsonrpc: str | None = None) -> None:
        self.id = rid
        self.path = path
        self.jsonrpc = jsonrpc
        self.task: asyncio.Task[None] | None = None
        self.signal = AbortSignal()
        self.active = True


class TRPCSession:
    def __init__(self, server: TRPCServer, transport: Transport, info: ConnectionInfo) -> None:
        self.server = server
        self.transport = transport
        self.info = info
        self.options = server.options
        self.metrics = server.metrics
        self.transformer = server.transformer
        self.open = False
        self.ctx: Any = None
        self._ctx_ready = False
        self._ctx_error: TRPCError | None = None
        self._awaiting_params = False
        self._queued: list[Request] = []
        self._subs: dict[int | str, _Subscription] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._last_in = time.monotonic()
        self._ping_sent_at: float | None = None
        self._ka_timer: asyncio.TimerHandle | None = None
        self._closed_by_us = False

    # -- lifecycle ---------------------------------------------------------------------------
    def opened(self) -> None:
        self.open = True
        self.server.sessions.add(self)
        if self.metrics is not None:
            self.metrics.connections.inc()
            self.metrics.connections_total.inc()
        self._last_in = time.monotonic()
        if self.options.keepalive_enabled:
            self._schedule_keepalive(self.options.ping_ms / 1000)
        if self.info.wants_connection_params:
            self._awaiting_params = True
        else:
            self._build_context(None)

    def closed(self) -> None:
        if not self.open:
            return
        self.open = False
        self.server.sessions.discard(self)
        if self.metrics is not None:
            self.metrics.connections.dec()
        if self._ka_timer is not None:
            self._ka_timer.cancel()
            self._ka_timer = None
        for sub in list(self._subs.values()):
            self._end_subscription(sub, "connection closed")
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._queued.clear()

    # -- inbound -----------------------------------------------------------------------------
    def receive(self, payload: bytes) -> None:
        if not self.open:
            return
        self._last_in = time.monotonic()
        self._ping_sent_at = None
        if self.metrics is not None:
            self.metrics.pending_in += 1
        if len(payload) == 4:
            if payload == PING:
                self.send_raw(PONG)
                return
            if payload == PONG:
                return
        if self._awaiting_params:
            self._awaiting_params = False
            self._receive_connection_params(payload)
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._send_error(None, None, TRPCError("PARSE_ERROR", f"Invalid JSON: {exc}"), None)
            return
        if type(message) is list:
            self._receive_batch(message)
        else:
            self._receive_one(message)

    def receive_binary(self) -> None:
        """The official client speaks text frames only; answer instead of guessing an encoding."""
        if not self.open:
            return
        self._last_in = time.monotonic()
        self._ping_sent_at = None
        self._send_error(None, None, TRPCError("PARSE_ERROR", "Binary frames are not supported; send JSON text"),
                         None)

    def _receive_batch(self, items: list[Any]) -> None:
        if not items:
            self._send_error(None, None, TRPCError("PARSE_ERROR", "Empty batch"), None)
            return
        if len(items) > self.options.max_batch:
            err = TRPCError(
                "BAD_REQUEST",
                f"Batch call exceeds maximum size ({len(items)} > {self.options.max_batch})",
            )
            answered = False
            for item in items:
                rid = item.get("id") if type(item) is dict else None
                if type(rid) in (int, str):
                    self._send_error(rid, None, err, item.get("jsonrpc"))
                    answered = True
            if not answered:
                self._send_error(None, None, err, None)
            return
        for item in items:
            self._receive_one(item)

    def _receive_one(self, obj: Any) -> None:
        try:
            req = parse_request(obj)
        except EnvelopeError as exc:
            self._send_error(exc.id, None, exc.error, exc.jsonrpc)
            return
        if req.method == "subscription.stop":
            # A stop must reach a subscription even while the context is still being built.
            self._stop_subscription(req.id)
            return
        if self._ctx_error is not None:
            self._send_error(req.id, None, self._ctx_error, req.jsonrpc)
            return
        if not self._ctx_ready:
            self._queued.append(req)
            return
        self._dispatch(req)

    # -- connection context --------------------------------------------------------------------
    def _receive_connection_params(self, payload: bytes) -> None:
        params: dict[str, str] | None
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            message = None
        data = message.get("data", UNDEFINED) if type(message) is dict else UNDEFINED
        if data is None:
            params = None
        elif type(data) is dict and all(type(v) is str for v in data.values()):
            params = data
        else:
            self._context_failed(TRPCError("PARSE_ERROR", "Invalid connection params shape"))
            return
        self._build_context(params)

    def _build_context(self, params: dict[str, str] | None) -> None:
        try:
            result = self.server.create_context(self.info, params)
        except Exception as exc:  # any failure rejects the connection
            self._context_failed(to_trpc_error(exc))
            return
        if is_awaitable(result):
            self._spawn(self._await_context(result))
        else:
            self._context_ready(result)

    async def _await_context(self, pending: Any) -> None:
        try:
            ctx = await resolve(pending)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error frame
            self._context_failed(to_trpc_error(exc))
            return
        self._context_ready(ctx)

    def _context_ready(self, ctx: Any) -> None:
        self.ctx = ctx
        self._ctx_ready = True
        queued, self._queued = self._queued, []
        for req in queued:
            if not self.open:
                return
            self._dispatch(req)

    def _context_failed(self, err: TRPCError) -> None:
        self._ctx_error = err
        self._send_error(None, None, err, None)
        queued, self._queued = self._queued, []
        for req in queued:
            self._send_error(req.id, None, err, req.jsonrpc)
        self._closed_by_us = True
        loop = asyncio.get_event_loop()
        # Close on the next tick, after the error frames are queued (reference behaviour).
        loop.call_soon(self._close_now)

    def _close_now(self) -> None:
        if self.open:
            self.transport.close()

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> None:
        proc = self.server.procedures.get(req.path)
        if proc is None or proc.kind != req.method:
            self._send_error(
                req.id, req.path,
                TRPCError("NOT_FOUND", f'No "{req.method}"-procedure on path "{req.path}"'),
                req.jsonrpc,
            )
            return
        if req.method == "subscription":
            self._start_subscription(req, proc)
            return
        started = time.perf_counter()
        try:
            raw = self.transformer.decode_input(req.raw_input)
            call = Call(self.ctx, req.path, proc.kind, raw, AbortSignal())
            result = invoke(proc, call)
        except Exception as exc:  # unencodable output
            self._fail_call(req, exc, started)
            return
        if is_awaitable(result):
            self._spawn(self._finish_call(req, call, result, started))
        else:
            self._complete_call(req, result, started)

    async def _finish_call(self, req: Request, call: Call, pending: Any, started: float) -> None:
        try:
            result = await resolve(pending)
        except asyncio.CancelledError:
            call.signal.abort("connection closed")
            raise
        except Exception as exc:
            self._fail_call(req, exc, started)
            return
        self._complete_call(req, result, started)

    def _complete_call(self, req: Request, result: Any, started: float) -> None:
        if hasattr(result, "__aiter__"):
            err = TRPCError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"Cannot return an async iterable or observable from a {req.method} procedure with WebSockets",
            )
            self._fail_call(req, err, started)
            return
        try:
            self._send_result(req.id, result, req.jsonrpc)
        except Exception as exc:
            log.failure("could not encode result of {path}", path=req.path)
            self._fail_call(req, TRPCError("INTERNAL_SERVER_ERROR", f"Output could not be encoded: {exc}"),
                            started)
            return
        if self.metrics is not None:
            self.metrics.observe(req.method, req.path, time.perf_counter() - started)

    def _fail_call(self, req: Request, exc: BaseException, started: float) -> None:
        err = to_trpc_error(exc)
        if not isinstance(exc, TRPCError):
            if err.code == "INTERNAL_SERVER_ERROR":
                log.failure("procedure {path} raised", Failure(exc, type(exc), exc.__traceback__), path=req.path)
            else:  # an expected condition with its own code (e.g. a backend outage)
                log.warn("procedure {path}: {code}: {message}", path=req.path, code=err.code, message=err.message)
        self._send_error(req.id, req.path, err, req.jsonrpc)
        if self.metrics is not None:
            self.metrics.observe(req.method, req.path, time.perf_counter() - started)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal task failed: {error!r}", error=task.exception())

    # -- subscriptions ---------------------------------------------------------------------------
    def _start_subscription(self, req: Request, proc: Procedure) -> None:
        if req.id in self._subs:
            self._send_error(req.id, req.path, TRPCError("BAD_REQUEST", f"Duplicate id {req.id}"), req.jsonrpc)
            return
        if len(self._subs) >= self.options.max_subscriptions:
            self._send_error(
                req.id, req.path,
                TRPCError("TOO_MANY_REQUESTS",
                          f"Too many open subscriptions on this connection (max {self.options.max_subscriptions})"),
                req.jsonrpc,
            )
            return
        sub = _Subscription(req.id, req.path, req.jsonrpc)
        self._subs[req.id] = sub
        if self.metrics is not None:
            self.metrics.subscriptions.inc()
        sub.task = asyncio.ensure_future(self._run_subscription(sub, req, proc))

    async def _run_subscription(self, sub: _Subscription, req: Request, proc: Procedure) -> None:
        started = time.perf_counter()
        iterator: AsyncIterator[Any] | None = None
        try:
            try:
                raw = merge_last_event_id(self.transformer.decode_input(req.raw_input), req.last_event_id)
                call = Call(self.ctx, req.path, "subscription", raw, sub.signal)
                result = invoke(proc, call)
                if is_awaitable(result):
                    result = await resolve(result)
                iterator = as_async_iterator(result, req.path)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # setup failures: error only (no started/stopped)
                if sub.active:
                    self._send_error(req.id, req.path, to_trpc_error(exc), req.jsonrpc)
                    self._end_subscription(sub, "setup failed", notify=False)
                return
            if not sub.active:
                return
            self._send_raw_obj(req.id, {"type": "started"}, req.jsonrpc)
            if self.metrics is not None:
                self.metrics.observe("subscription", req.path, time.perf_counter() - started)
            await self._pump(sub, req, iterator)
        except asyncio.CancelledError:
            pass
        finally:
            if iterator is not None:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # cleanup errors must not escape
                        log.failure("closing subscription {path} failed", path=req.path)
            if sub.active:
                self._end_subscription(sub, "ended", notify=False)

    async def _pump(self, sub: _Subscription, req: Request, iterator: AsyncIterator[Any]) -> None:
        yield_every = self.options.yield_every
        n = 0
        anext = iterator.__anext__
        while True:
            try:
                item = await anext()
            except StopAsyncIteration:
                if sub.active:
                    self._send_raw_obj(req.id, {"type": "stopped"}, req.jsonrpc)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # error mid-stream: error then stopped
                if sub.active:
                    self._send_error(req.id, req.path, to_trpc_error(exc), req.jsonrpc)
                    self._send_raw_obj(req.id, {"type": "stopped"}, req.jsonrpc)
                return
            if not sub.active:
                return
            try:
                self._send_event(req, item)
            except Exception as exc:  # an unencodable event ends the stream visibly
                log.failure("could not encode an event of {path}", Failure(exc, type(exc), exc.__traceback__),
                            path=req.path)
                if sub.active:
                    self._send_error(req.id, req.path,
                                     TRPCError("INTERNAL_SERVER_ERROR", f"Event could not be encoded: {exc}"),
                                     req.jsonrpc)
                    self._send_raw_obj(req.id, {"type": "stopped"}, req.jsonrpc)
                return
            n += 1
            waiter = self.transport.wait_writable()
            if waiter is not None:
                await waiter  # natural backpressure: a slow reader slows its own stream
            elif n % yield_every == 0:
                await asyncio.sleep(0)
            if not sub.active:
                return

    def _send_event(self, req: Request, item: Any) -> None:
        enc = self.transformer.encode
        if type(item) is Tracked:
            result: dict[str, Any] = {"type": "data", "data": enc({"id": item.id, "data": item.data}),
                                      "id": item.id}
        elif item is UNDEFINED and self.transformer.name == "none":
            result = {"type": "data"}
        else:
            result = {"type": "data", "data": enc(item)}
        self._send_raw_obj(req.id, result, req.jsonrpc)

    def _stop_subscription(self, rid: int | str) -> None:
        sub = self._subs.get(rid)
        if sub is None:
            for i, queued in enumerate(self._queued):
                if queued.id == rid and queued.method == "subscription":
                    # Still waiting for the connection context: drop it, as if cancelled in setup.
                    del self._queued[i]
                    self._send_raw_obj(rid, {"type": "stopped"}, queued.jsonrpc)
                    return
            return  # unknown or finished: ignore silently (the 11.25 client sends stops after `stopped`)
        self._end_subscription(sub, "stopped by client", notify=True)

    def _end_subscription(self, sub: _Subscription, reason: str, notify: bool = False) -> None:
        if not sub.active:
            return
        sub.active = False
        if self._subs.get(sub.id) is sub:
            del self._subs[sub.id]
        if self.metrics is not None:
            self.metrics.subscriptions.dec()
        sub.signal.abort(reason)
        task = sub.task
        if task is not None and not task.done() and asyncio.current_task() is not task:
            task.cancel()
            if notify:
                # Answer `stopped` once the generator has been closed (§6.5: after cleanup).
                task.add_done_callback(lambda _t: self._send_stopped(sub))
                return
        if notify:
            self._send_stopped(sub)

    def _send_stopped(self, sub: _Subscription) -> None:
        if self.open:
            self._send_raw_obj(sub.id, {"type": "stopped"}, sub.jsonrpc)

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    # -- outbound ----------------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        if not self.open:
            return
        self.transport.send_frame(data)
        if self.metrics is not None:
            self.metrics.pending_out += 1
        if self.transport.outbound_buffered() > self.options.max_outbound_bytes:
            log.warn(
                "closing connection {cid} from {peer}: outbound buffer over {limit} bytes (slow reader)",
                cid=self.info.connection_id, peer=self.info.peer, limit=self.options.max_outbound_bytes,
            )
            if self.metrics is not None:
                self.metrics.closed_slow.inc()
            self.transport.terminate()
            self.closed()

    def _send_raw_obj(self, rid: Any, result: dict[str, Any], jsonrpc: str | None) -> None:
        msg: dict[str, Any] = {"id": rid, "result": result}
        if jsonrpc is not None:
            msg["jsonrpc"] = jsonrpc
        self.send_raw(orjson.dumps(msg))

    def _send_result(self, rid: Any, value: Any, jsonrpc: str | None) -> None:
        if value is UNDEFINED and self.transformer.name == "none":
            result: dict[str, Any] = {"type": "data"}
        else:
            result = {"type": "data", "data": self.transformer.encode(value)}
        self._send_raw_obj(rid, result, jsonrpc)

    def _send_error(self, rid: Any, path: str | None, err: TRPCError, jsonrpc: str | None) -> None:
        if self.metrics is not None:
            self.metrics.error(err.code)
        shape = error_shape(err, path=path, include_stack=self.options.include_stack)
        msg: dict[str, Any] = {"id": rid, "error": self.transformer.encode(shape)}
        if jsonrpc is not None:
            msg["jsonrpc"] = jsonrpc
        self.send_raw(orjson.dumps(msg))

    # -- keep-alive (server side, §1.4) -----------------------------------------------------------
    def _schedule_keepalive(self, delay: float) -> None:
        loop = asyncio.get_event_loop()
        self._ka_timer = loop.call_later(max(delay, 0.01), self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._ka_timer = None
        if not self.open:
            return
        now = time.monotonic()
        ping_s = self.options.ping_ms / 1000
        if self._ping_sent_at is not None:
            # A PING is outstanding and nothing at all arrived since: the peer is gone.
            log.info("keep-alive timeout on connection {cid} from {peer}", cid=self.info.connection_id,
                     peer=self.info.peer)
            self.transport.terminate()
            self.closed()
            return
        idle = now - self._last_in
        if idle >= ping_s:
            self.send_raw(PING)
            self._ping_sent_at = now
            self._schedule_keepalive(self.options.pong_wait_ms / 1000)
        else:
            self._schedule_keepalive(ping_s - idle)
