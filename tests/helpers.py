"""Shared test helpers: asyncio-flavoured trial tests, a fake session transport, polling."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred


def event_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop the (asyncio) reactor runs on; tests must run with ``--reactor=asyncio``."""
    from twisted.internet import reactor

    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:  # pragma: no cover - wrong reactor
        raise RuntimeError("these tests need the asyncio reactor: run trial with --reactor=asyncio")
    return loop


def async_test(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Deferred[Any]]:
    """Run an ``async def`` test method as an asyncio task (so ``asyncio.sleep`` and
    ``asyncio.current_task`` work) and hand trial a Deferred for it."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
        task = event_loop().create_task(fn(self, *args, **kwargs))
        return Deferred.fromFuture(task)

    return wrapper


async def ticks(n: int = 1) -> None:
    """Give the event loop ``n`` turns."""
    for _ in range(n):
        await asyncio.sleep(0)


async def wait_for(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.005,
                   what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def decode_frame(frame: bytes | str) -> Any:
    """JSON frames decoded; the bare text frames PING/PONG returned as str."""
    if isinstance(frame, bytes):
        frame = frame.decode("utf-8")
    if frame in ("PING", "PONG"):
        return frame
    return json.loads(frame)


class FakeTransport:
    """A :class:`chaingraph_gw.trpc.session.Transport` that records everything.

    * ``frames`` — every frame given to ``send_frame`` (bytes, in order);
    * ``closes`` — ``(code, reason)`` for each ``close()`` call; ``terminated`` counts ``terminate()``;
    * ``buffered`` — what ``outbound_buffered()`` reports; with ``grow_buffer`` every sent frame
      adds its length (a peer that never reads);
    * ``writable`` — None (the peer keeps up) or a callable returning what ``wait_writable()`` returns.
    """

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closes: list[tuple[int | None, str | None]] = []
        self.terminated = 0
        self.buffered = 0
        self.grow_buffer = False
        self.writable: Callable[[], Awaitable[None] | None] | None = None
        self.wait_calls = 0

    # Transport protocol
    def send_frame(self, data: bytes) -> None:
        assert isinstance(data, bytes), f"frames must be bytes, got {type(data).__name__}"
        self.frames.append(data)
        if self.grow_buffer:
            self.buffered += len(data)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closes.append((code, reason))

    def terminate(self) -> None:
        self.terminated += 1

    def outbound_buffered(self) -> int:
        return self.buffered

    def wait_writable(self) -> Awaitable[None] | None:
        self.wait_calls += 1
        return self.writable() if self.writable is not None else None

    # Inspection
    @property
    def messages(self) -> list[Any]:
        return [decode_frame(f) for f in self.frames]

    def for_id(self, rid: Any) -> list[Any]:
        """Decoded JSON messages whose ``id`` equals ``rid``."""
        return [m for m in self.messages if isinstance(m, dict) and m.get("id") == rid]

    def clear(self) -> None:
        self.frames.clear()


def dumps(obj: Any) -> bytes:
    """A client frame as bytes (compact JSON, like JSON.stringify)."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


async def aw(d: Deferred[Any]) -> Any:
    """Await a Twisted Deferred from inside an asyncio task."""
    return await d.asFuture(asyncio.get_running_loop())


def deferred_from(coro: Awaitable[Any]) -> Deferred[Any]:
    """Run a coroutine as an asyncio task and return a Deferred for it (e.g. for addCleanup)."""
    return Deferred.fromFuture(event_loop().create_task(coro))  # type: ignore[arg-type]
