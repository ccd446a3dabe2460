"""A small asyncio tRPC-over-WebSocket client (superjson), used by the CLI and tests.

It speaks the same wire protocol as the official ``@trpc/client`` wsLink: numbered requests,
``connectionParams`` when given, ``PING``/``PONG`` keep-alive, subscriptions with
``started``/``data``/``stopped``.

The protocol logic lives in :class:`TRPCCore`, which does no I/O: a transport adapter hands it
``send(bytes)`` / ``close()`` callables when the socket opens (:meth:`TRPCCore.connection_made`),
feeds it every received frame (:meth:`TRPCCore.data_received`) and reports the close
(:meth:`TRPCCore.connection_lost`). :class:`TRPCClient` is the adapter on ``autobahn.asyncio``;
that module is imported only when a client connects, because importing it selects asyncio in
txaio, which fails in a process that already uses ``autobahn.twisted`` (the tests carry their own
``autobahn.twisted`` adapter on the same core).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from .trpc import superjson as sj


class TRPCClientError(Exception):
    def __init__(self, shape: dict[str, Any]) -> None:
        super().__init__(shape.get("message", "error"))
        self.shape = shape
        self.code: str = (shape.get("data") or {}).get("code", "")
        self.data: dict[str, Any] = shape.get("data") or {}


class ConnectionClosed(Exception):
    pass


class AutobahnBridge:
    """Mixin for an Autobahn ``WebSocketClientProtocol`` (asyncio or Twisted flavour) whose
    ``factory.client`` is a :class:`TRPCCore` (or anything with the same three callbacks)."""

    factory: Any

    def onOpen(self) -> None:
        self.factory.client.connection_made(self.sendMessage, lambda: self.sendClose(1000),  # type: ignore[attr-defined]
                                            lambda: self.dropConnection(abort=True))  # type: ignore[attr-defined]

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client.data_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client.connection_lost(code, reason)


class TRPCCore:
    """Socket-independent tRPC client state: request ids, pending calls, subscription queues,
    superjson decoding, ``PING``→``PONG`` and close handling.

    Subclasses implement :meth:`_connect_transport` (open the WebSocket to ``url``, whose protocol
    then calls :meth:`connection_made`, :meth:`data_received` and :meth:`connection_lost`).
    """

    #: how long :meth:`close` waits for the closing handshake, and whether it then aborts the socket
    close_timeout = 0.5
    abort_on_close_timeout = False

    def __init__(self, url: str, *, connection_params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, codec: sj.SuperJSON | None = None) -> None:
        self.url = url
        self.connection_params = connection_params
        self.headers = headers or {}
        self.codec = codec or sj.default
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subs: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        self._transport_send: Callable[[bytes], Any] | None = None
        self._transport_close: Callable[[], Any] | None = None
        self._transport_abort: Callable[[], Any] | None = None
        self._open: asyncio.Future[None] | None = None
        self._closed_fut: asyncio.Future[None] | None = None
        self.close_code: int | None = None

    # -- connecting ------------------------------------------------------------------------------
    def ws_url(self) -> str:
        """The URL to open (``connectionParams=1`` added when connection params are sent)."""
        url = self.url
        if self.connection_params is not None:
            url += ("&" if "?" in url else "?") + "connectionParams=1"
        return url

    async def _connect_transport(self, url: str, timeout: float) -> None:
        raise NotImplementedError

    async def connect(self, timeout: float = 10.0) -> TRPCCore:
        loop = asyncio.get_running_loop()
        self._open = loop.create_future()
        self._closed_fut = loop.create_future()
        await self._connect_transport(self.ws_url(), timeout)
        await asyncio.wait_for(asyncio.shield(self._open), timeout)
        return self

    @property
    def connected(self) -> bool:
        return self._transport_send is not None

    # -- transport callbacks ---------------------------------------------------------------------
    def connection_made(self, send: Callable[[bytes], Any], close: Callable[[], Any],
                        abort: Callable[[], Any] | None = None) -> None:
        self._transport_send, self._transport_close, self._transport_abort = send, close, abort
        if self.connection_params is not None:
            send(orjson.dumps({"method": "connectionParams", "data": self.connection_params}))
        if self._open is not None and not self._open.done():
            self._open.set_result(None)

    def _frame_received(self, payload: bytes) -> None:
        """Called with every JSON frame before it is decoded (a hook for recording clients)."""

    def data_received(self, payload: bytes) -> None:
        if payload == b"PING":
            if self._transport_send is not None:
                self._transport_send(b"PONG")
            return
        if payload == b"PONG":
            return
        msg = orjson.loads(payload)
        self._frame_received(payload)
        rid = msg.get("id")
        if "error" in msg:
            err = TRPCClientError(self.codec.deserialize(msg["error"]))
            if rid in self._pending:
                fut = self._pending.pop(rid)
                if not fut.done():
                    fut.set_exception(err)
            elif rid in self._subs:
                self._subs[rid].put_nowait(("error", err))
            elif rid is None:
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(err)
                self._pending.clear()
                for q in self._subs.values():
                    q.put_nowait(("error", err))
            return
        result = msg.get("result") or {}
        kind = result.get("type", "data")
        if rid in self._pending:
            fut = self._pending.pop(rid)
            if not fut.done():
                fut.set_result(self.codec.deserialize(result["data"]) if "data" in result else None)
        elif rid in self._subs:
            if kind == "data":
                self._subs[rid].put_nowait(("data", self.codec.deserialize(result["data"])))
            else:
                self._subs[rid].put_nowait((kind, None))

    def connection_lost(self, code: int | None, reason: str | None) -> None:
        self.close_code = code
        exc = ConnectionClosed(f"connection closed ({code}: {reason})")
        if self._open is not None and not self._open.done():
            self._open.set_exception(exc)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        for q in self._subs.values():
            q.put_nowait(("closed", exc))
        self._transport_send = self._transport_close = self._transport_abort = None
        if self._closed_fut is not None and not self._closed_fut.done():
            self._closed_fut.set_result(None)

    # -- calls -----------------------------------------------------------------------------------
    def _send(self, obj: Any) -> None:
        if self._transport_send is None:
            raise ConnectionClosed("not connected")
        self._transport_send(orjson.dumps(obj))

    async def _call(self, method: str, path: str, input: Any) -> Any:
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._send({"id": rid, "method": method, "params": {"path": path, "input": self.codec.serialize(input)}})
        return await fut

    async def query(self, path: str, input: Any = sj.UNDEFINED) -> Any:
        return await self._call("query", path, input)

    async def mutation(self, path: str, input: Any = sj.UNDEFINED) -> Any:
        return await self._call("mutation", path, input)

    async def subscribe(self, path: str, input: Any = sj.UNDEFINED,
                        last_event_id: str | None = None) -> AsyncIterator[Any]:
        """Yields each data item (tracked items as ``{"id", "data"}``) until the server stops the stream."""
        rid = next(self._ids)
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._subs[rid] = q
        params: dict[str, Any] = {"path": path, "input": self.codec.serialize(input)}
        if last_event_id is not None:
            params["lastEventId"] = last_event_id
        self._send({"id": rid, "method": "subscription", "params": params})
        try:
            while True:
                kind, value = await q.get()
                if kind == "data":
                    yield value
                elif kind == "started":
                    continue
                elif kind == "stopped":
                    return
                else:
                    raise value
        finally:
            self._subs.pop(rid, None)
            if self.connected:
                try:
                    self._send({"id": rid, "method": "subscription.stop"})
                except ConnectionClosed:
                    pass

    # -- closing ---------------------------------------------------------------------------------
    async def wait_closed(self, timeout: float = 3.0) -> None:
        assert self._closed_fut is not None
        await asyncio.wait_for(asyncio.shield(self._closed_fut), timeout)

    async def close(self) -> None:
        if self._transport_close is None:
            return
        self._transport_close()
        try:
            await self.wait_closed(self.close_timeout)
        except TimeoutError:
            if self.abort_on_close_timeout and self._transport_abort is not None:
                self._transport_abort()


class TRPCClient(TRPCCore):
    """The core on ``autobahn.asyncio`` (imported lazily, in :meth:`_connect_transport`)."""

    async def connect(self, timeout: float = 10.0) -> TRPCClient:
        await super().connect(timeout)
        return self

    async def _connect_transport(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"expected a ws:// or wss:// URL, got {self.url!r}")
        from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

        class _Protocol(AutobahnBridge, WebSocketClientProtocol):
            pass

        factory = WebSocketClientFactory(url, headers=self.headers)
        factory.protocol = _Protocol
        factory.client = self  # type: ignore[attr-defined]
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        ssl = parts.scheme == "wss" or None
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.create_connection(factory, parts.hostname, port, ssl=ssl), timeout)
