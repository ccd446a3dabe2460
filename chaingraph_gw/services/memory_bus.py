"""In-process messaging: event fan-out, task queue and command routing for one gateway process.

* :class:`MemoryEventBus` (:class:`IEventBus`) — per-execution fan-out to bounded
  :class:`Subscription` queues.
* :class:`LocalTaskQueue` (:class:`ITaskQueue`) — an unbounded FIFO drained by N concurrent
  consumers (so children run while their parent runs; ChainGraph's local queue ran one task at a
  time, which deadlocks a parent that waits for its children).
* :class:`LocalCommandBus` (:class:`ICommandBus`) — routes a command to the in-process engine
  registered for the execution.

Everything here runs on the reactor's asyncio loop and is not thread-safe: call it from the
loop thread only.  :class:`Subscription` is backend-neutral (a bounded buffer with a waiter);
other :class:`IEventBus` implementations reuse it and feed it with :meth:`Subscription.push`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import (
    ICommandBus,
    IEventBus,
    ISubscription,
    ITaskQueue,
    StoreUnavailable,
    SubscriptionClosed,
    SubscriptionOverflow,
)
from .records import StoredEvent

__all__ = [
    "DEFAULT_SUBSCRIPTION_MAXSIZE",
    "CommandHandlerTable",
    "LocalCommandBus",
    "LocalTaskQueue",
    "MemoryEventBus",
    "Subscription",
]

DEFAULT_SUBSCRIPTION_MAXSIZE = 10_000

_log = Logger(namespace="chaingraph_gw.services.memory_bus")

TaskHandler = Callable[[dict[str, Any]], Awaitable[Any]]
CommandHandler = Callable[[dict[str, Any]], Any]


# ================================================================================================
# Event bus
# ================================================================================================


@implementer(ISubscription)
class Subscription:
    """A bounded FIFO of one execution's live events (see :class:`ISubscription`).

    The producer calls :meth:`push`; once ``maxsize`` events are queued, the next push marks the
    subscription ``overflowed`` (queued events are dropped to free memory, waiting ``get()``
    calls wake up and raise :class:`SubscriptionOverflow`) and detaches it from its bus.
    """

    __slots__ = ("_buf", "_on_close", "_waiters", "closed", "execution_id", "maxsize", "overflowed")

    def __init__(
        self,
        execution_id: str,
        maxsize: int = DEFAULT_SUBSCRIPTION_MAXSIZE,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.execution_id = execution_id
        self.maxsize = maxsize
        self.overflowed = False
        self.closed = False
        self._buf: deque[StoredEvent] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._on_close = on_close

    def __len__(self) -> int:
        return len(self._buf)

    def __repr__(self) -> str:
        state = "overflowed" if self.overflowed else "closed" if self.closed else f"{len(self._buf)} queued"
        return f"<Subscription {self.execution_id} {state}>"

    # -- producer side ------------------------------------------------------------------------------

    def push(self, event: StoredEvent) -> bool:
        """Queue ``event``; False if the subscription is (or just became, by overflowing) dead."""
        if self.closed:
            return False
        if len(self._buf) >= self.maxsize:
            self.overflowed = True
            self._shutdown()
            return False
        self._buf.append(event)
        if self._waiters:
            self._wake()
        return True

    # -- consumer side ------------------------------------------------------------------------------

    async def get(self) -> StoredEvent:
        while True:
            if self.overflowed:
                raise SubscriptionOverflow(self.execution_id, self.maxsize)
            if self._buf:
                return self._buf.popleft()
            if self.closed:
                raise SubscriptionClosed(f"subscription to execution {self.execution_id} is closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def drain(self, limit: int | None = None) -> list[StoredEvent]:
        """Everything queued (at most ``limit`` events), without waiting."""
        if self.overflowed:
            raise SubscriptionOverflow(self.execution_id, self.maxsize)
        if limit is None or limit >= len(self._buf):
            out = list(self._buf)
            self._buf.clear()
            return out
        return [self._buf.popleft() for _ in range(max(limit, 0))]

    def close(self) -> None:
        if self.closed:
            return
        self._shutdown()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoredEvent:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    # -- internals ----------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _shutdown(self) -> None:
        self.closed = True
        self._buf.clear()
        self._wake()
        cb, self._on_close = self._on_close, None
        if cb is not None:
            cb(self)


@implementer(IEventBus)
class MemoryEventBus:
    """:class:`IEventBus` for one process: publish is a dict lookup plus one append per
    subscriber, never blocks and never buffers for executions nobody follows."""

    def __init__(self, maxsize: int = DEFAULT_SUBSCRIPTION_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._subs: dict[str, dict[Subscription, None]] = {}  # insertion-ordered sets
        self._closed = False
        self.published = 0
        self.overflows = 0

    def publish_nowait(self, execution_id: str, event: StoredEvent) -> int:
        """Synchronous :meth:`publish`; returns how many subscribers received the event."""
        if self._closed:
            raise StoreUnavailable("event bus is closed")
        self.published += 1
        subs = self._subs.get(execution_id)
        if not subs:
            return 0
        delivered = 0
        for sub in list(subs):  # push() may detach an overflowing subscriber
            if sub.push(event):
                delivered += 1
            elif sub.overflowed:
                self.overflows += 1
        return delivered

    async def publish(self, execution_id: str, event: StoredEvent) -> int:
        """See :meth:`IEventBus.publish`; returns how many subscribers received the event."""
        return self.publish_nowait(execution_id, event)

    async def subscribe(self, execution_id: str, *, maxsize: int | None = None) -> Subscription:
        if self._closed:
            raise StoreUnavailable("event bus is closed")
        sub = Subscription(execution_id, self.maxsize if maxsize is None else maxsize, self._detach)
        self._subs.setdefault(execution_id, {})[sub] = None
        return sub

    def subscriber_count(self, execution_id: str | None = None) -> int:
        """Live subscriptions to ``execution_id`` (or to everything when None)."""
        if execution_id is None:
            return sum(len(s) for s in self._subs.values())
        return len(self._subs.get(execution_id, ()))

    def _detach(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.execution_id)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._subs[sub.execution_id]

    async def close(self) -> None:
        """Close every subscription (waiting ``get()`` calls raise :class:`SubscriptionClosed`)."""
        if self._closed:
            return
        self._closed = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
        self._subs.clear()


# ================================================================================================
# Task queue
# ================================================================================================


@implementer(ITaskQueue)
class LocalTaskQueue:
    """:class:`ITaskQueue` in memory: an unbounded FIFO and ``concurrency`` consumer tasks.

    Tasks submitted before :meth:`consume` wait in the queue.  A handler that raises (including
    a stray ``CancelledError`` from something it awaited) is logged, its task is not retried
    here, and the consumer goes on.  :meth:`close` cancels the consumers (and the handlers they
    are running) and waits for them to finish; the interrupted and never-started tasks stay
    available from :meth:`pending`, so nothing is lost while the process lives.
    """

    def __init__(self, concurrency: int = 16) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self._items: deque[dict[str, Any]] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._interrupted: list[dict[str, Any]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._handler: TaskHandler | None = None
        self._in_flight = 0
        self._closed = False
        self.submitted = 0
        self.completed = 0
        self.failed = 0

    @property
    def in_flight(self) -> int:
        """Tasks whose handler is running right now."""
        return self._in_flight

    def qsize(self) -> int:
        """Tasks waiting for a consumer."""
        return len(self._items)

    async def submit(self, task: dict[str, Any]) -> None:
        if self._closed:
            raise StoreUnavailable("task queue is closed")
        self._items.append(task)
        self.submitted += 1
        while self._getters:  # wake one idle consumer
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                break

    async def consume(self, handler: TaskHandler) -> None:
        if self._closed:
            raise StoreUnavailable("task queue is closed")
        if self._handler is not None:
            raise RuntimeError("this task queue already has a consumer")
        self._handler = handler
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(handler), name=f"task-consumer-{i}") for i in range(self.concurrency)
        ]

    async def _next(self) -> dict[str, Any]:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                # pass a wake-up we may have consumed on to another consumer
                if getter.done() and not getter.cancelled() and self._items:
                    for other in self._getters:
                        if not other.done():
                            other.set_result(None)
                            break
                raise
        return self._items.popleft()

    async def _work(self, handler: TaskHandler) -> None:
        me = asyncio.current_task()
        while True:
            task = await self._next()
            self._in_flight += 1
            try:
                await handler(task)
                self.completed += 1
            except asyncio.CancelledError:
                if me is not None and me.cancelling():  # close(): keep the task, stop consuming
                    self._interrupted.append(task)
                    raise
                self.failed += 1  # cancelled from inside the handler: a failure like any other
                _log.warn("task handler was cancelled for execution {executionId}", executionId=_eid(task))
            except Exception:
                self.failed += 1
                _log.failure("task handler failed for execution {executionId}", executionId=_eid(task))
            finally:
                self._in_flight -= 1
                if not self._items and not self._in_flight:
                    self._wake_idle()

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or in flight (every submitted task was handled), or
        the queue is closed."""
        while (self._items or self._in_flight) and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def pending(self) -> list[dict[str, Any]]:
        """Tasks not (completely) handled: interrupted by :meth:`close` first, then queued ones
        in FIFO order.  Does not remove them."""
        return [*self._interrupted, *self._items]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        workers, self._workers = self._workers, []
        for w in workers:
            w.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        self._wake_idle()


def _eid(task: Any) -> Any:
    return task.get("executionId") if isinstance(task, dict) else None


# ================================================================================================
# Command bus
# ================================================================================================


class CommandHandlerTable:
    """The execution id → handler table of the command buses (this one and Kafka's)."""

    _handlers: dict[str, CommandHandler]

    def has_handler(self, execution_id: str) -> bool:
        return execution_id in self._handlers

    def _check_no_other_handler(self, execution_id: str, handler: CommandHandler) -> None:
        current = self._handlers.get(execution_id)
        if current is not None and current != handler:
            raise ValueError(f"execution {execution_id} already has a command handler")

    async def unregister(self, execution_id: str, handler: CommandHandler | None = None) -> bool:
        current = self._handlers.get(execution_id)
        if current is None or (handler is not None and current != handler):
            return False
        del self._handlers[execution_id]
        return True


@implementer(ICommandBus)
class LocalCommandBus(CommandHandlerTable):
    """:class:`ICommandBus` for engines running in this process: a dict execution id → handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, CommandHandler] = {}
        self._closed = False

    async def send(self, execution_id: str, command: dict[str, Any]) -> bool:
        if self._closed:
            raise StoreUnavailable("command bus is closed")
        handler = self._handlers.get(execution_id)
        if handler is None:
            return False
        try:
            result = handler(command)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.failure(
                "command handler failed for execution {executionId} ({command})",
                executionId=execution_id,
                command=command.get("command"),
            )
        return True

    async def register(self, execution_id: str, handler: CommandHandler) -> None:
        if self._closed:
            raise StoreUnavailable("command bus is closed")
        self._check_no_other_handler(execution_id, handler)
        self._handlers[execution_id] = handler

    async def close(self) -> None:
        self._closed = True
        self._handlers.clear()
