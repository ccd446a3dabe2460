"""A small asyncio tRPC-over-WebSocket client (superjson), used by the CLI and tests.

It speaks the same wire protocol as the official ``@trpc/client`` wsLink: numbered requests,
``connectionParams`` when given, ``PING``/``PONG`` keep-alive, subscriptions with
``started``/``data``/``stopped``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

from .trpc import superjson as sj


class TRPCClientError(Exception):
    def __init__(self, shape: dict[str, Any]) -> None:
        super().__init__(shape.get("message", "error"))
        self.shape = shape
        self.code: str = (shape.get("data") or {}).get("code", "")
        self.data: dict[str, Any] = shape.get("data") or {}


class ConnectionClosed(Exception):
    pass


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._message(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(code, reason)


class TRPCClient:
    def __init__(self, url: str, *, connection_params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, codec: sj.SuperJSON | None = None) -> None:
        self.url = url
        self.connection_params = connection_params
        self.headers = headers or {}
        self.codec = codec or sj.default
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subs: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        self._proto: _Protocol | None = None
        self._open: asyncio.Future[None] | None = None
        self.close_code: int | None = None

    async def connect(self, timeout: float = 10.0) -> TRPCClient:
        loop = asyncio.get_running_loop()
        url = self.url
        if self.connection_params is not None:
            url += ("&" if "?" in url else "?") + "connectionParams=1"
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"expected a ws:// or wss:// URL, got {self.url!r}")
        factory = WebSocketClientFactory(url, headers=self.headers)
        factory.protocol = _Protocol
        factory.client = self  # type: ignore[attr-defined]
        self._open = loop.create_future()
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        ssl = parts.scheme == "wss" or None
        await asyncio.wait_for(loop.create_connection(factory, parts.hostname, port, ssl=ssl), timeout)
        await asyncio.wait_for(self._open, timeout)
        return self

    def _opened(self, proto: _Protocol) -> None:
        self._proto = proto
        if self.connection_params is not None:
            proto.sendMessage(orjson.dumps({"method": "connectionParams", "data": self.connection_params}))
        if self._open is not None and not self._open.done():
            self._open.set_result(None)

    def _message(self, payload: bytes) -> None:
        if payload == b"PING":
            if self._proto is not None:
                self._proto.sendMessage(b"PONG")
            return
        if payload == b"PONG":
            return
        msg = orjson.loads(payload)
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

    def _closed(self, code: int | None, reason: str | None) -> None:
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
        self._proto = None

    def _send(self, obj: dict[str, Any]) -> None:
        if self._proto is None:
            raise ConnectionClosed("not connected")
        self._proto.sendMessage(orjson.dumps(obj))

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

    async def subscribe(self, path: str, input: Any = sj.UNDEFINED) -> AsyncIterator[Any]:
        """Yields each data item (tracked items as ``{"id", "data"}``) until the server stops the stream."""
        rid = next(self._ids)
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._subs[rid] = q
        self._send({"id": rid, "method": "subscription",
                    "params": {"path": path, "input": self.codec.serialize(input)}})
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
            if self._proto is not None:
                try:
                    self._send({"id": rid, "method": "subscription.stop"})
                except ConnectionClosed:
                    pass

    async def close(self) -> None:
        if self._proto is not None:
            self._proto.sendClose(1000)
            for _ in range(50):
                if self._proto is None:
                    break
                await asyncio.sleep(0.01)
