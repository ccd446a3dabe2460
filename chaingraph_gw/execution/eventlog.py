"""Numbering, storing and publishing one execution's events, in order.

The engine calls :meth:`EventWriter.emit` synchronously. Events get consecutive indexes,
are appended to the event log in batches and only then published on the live bus, so a
subscriber that reads the log and then follows the bus never sees a gap (see
``api/execution.py`` for the reader side).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

from ..services.interfaces import DuplicateEvent
from ..services.records import StoredEvent

log = Logger(namespace="chaingraph_gw.execution")

TERMINAL_EVENTS = frozenset(("flow:completed", "flow:failed", "flow:cancelled"))


class EventWriter:
    def __init__(self, execution_id: str, *, next_index: int, event_log: Any, bus: Any) -> None:
        self.execution_id = execution_id
        self.next_index = next_index
        self.event_log = event_log
        self.bus = bus
        self._pending: list[StoredEvent] = []
        self._flushing: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.failed: BaseException | None = None
        # With hold_terminal, a terminal event waits in `held` until release_terminal(): the
        # runner first makes the row terminal, so a client reacting to the event reads a final row.
        self.hold_terminal = False
        self.held: StoredEvent | None = None
        # Don't wait for the live publish (the events are stored): used where a caller must not
        # block on a broker outage, e.g. `create`.
        self.publish_in_background = False
        self._background: set[asyncio.Future[None]] = set()
        self.superseded = False
        # Work that must finish before further events are stored (e.g. the row turning `paused`
        # before `flow:paused` is visible, so a client reacting to it reads the new status).
        self._barriers: list[asyncio.Future[Any]] = []

    def emit(self, type_: str, data: Any) -> StoredEvent:
        event = StoredEvent(self.execution_id, self.next_index, type_, datetime.now(UTC), data)
        self.next_index += 1
        if self.hold_terminal and type_ in TERMINAL_EVENTS:
            self.held = event
            return event
        self._pending.append(event)
        if self._flushing is None:
            self._idle.clear()
            self._flushing = asyncio.ensure_future(self._flush_loop())
        return event

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                if self._barriers:
                    barriers, self._barriers = self._barriers, []
                    await asyncio.wait(barriers)
                batch, self._pending = self._pending, []
                try:
                    await self.event_log.append_many(batch)
                except DuplicateEvent as exc:
                    # Someone else wrote these indexes (our lease was taken over): never retry, never
                    # overwrite; this writer is done.
                    log.error("event log of {eid} moved on without us ({err}); dropping {n} event(s)",
                              eid=self.execution_id, err=exc, n=len(batch) + len(self._pending))
                    self.failed = exc
                    self.superseded = True
                    self._pending = []
                    break
                except Exception as exc:  # noqa: BLE001 - keep order: retry the same batch
                    log.error("event log append failed for {eid}: {err!r}; retrying", eid=self.execution_id,
                              err=exc)
                    self.failed = exc
                    self._pending = batch + self._pending
                    await asyncio.sleep(0.5)
                    continue
                if self.publish_in_background:
                    task = asyncio.ensure_future(self._publish(batch))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                else:
                    await self._publish(batch)
        finally:
            self._flushing = None
            self._idle.set()

    async def _publish(self, batch: list[StoredEvent]) -> None:
        """Live fan-out of stored events; a failure only delays followers (they re-read the log)."""
        publish_many = getattr(self.bus, "publish_many", None)
        try:
            if publish_many is not None:
                # One round trip for the batch (Kafka: all acks awaited together, order kept).
                await publish_many(self.execution_id, batch)
            else:
                for event in batch:
                    await self.bus.publish(self.execution_id, event)
        except Exception as exc:  # noqa: BLE001 - stored already: readers recover from the log
            log.warn("live publish failed for {eid}: {err!r} (events are stored; readers "
                     "catch up from the log)", eid=self.execution_id, err=exc)

    def add_barrier(self, fut: asyncio.Future[Any]) -> None:
        """Events emitted from now on are stored only after ``fut`` is done."""
        self._barriers.append(fut)

    async def release_terminal(self) -> None:
        if self.held is not None:
            event, self.held = self.held, None
            self._pending.append(event)
            if self._flushing is None:
                self._idle.clear()
                self._flushing = asyncio.ensure_future(self._flush_loop())
        await self.flush()

    async def flush(self) -> None:
        """Wait until every emitted event is stored and published."""
        while self._pending or self._flushing is not None:
            await self._idle.wait()
            if self._pending and self._flushing is None:
                self._idle.clear()
                self._flushing = asyncio.ensure_future(self._flush_loop())
