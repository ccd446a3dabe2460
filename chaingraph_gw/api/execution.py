"""ChainGraph's execution API (nine root procedures, wire-exact) plus ``step`` and ``executionEvents``.

Guards run before input validation and read the raw input, as ChainGraph's middlewares do, so
auth errors win over validation errors. Where the original answered a bad ``executionId``
with a 500, we answer BAD_REQUEST with the same message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..execution.eventlog import TERMINAL_EVENTS
from ..services.records import ExecutionRecord, StoredEvent
from ..trpc.errors import TRPCError
from ..trpc.router import Call, Router, Tracked
from .auth import RequestContext
from .wire_types import event_impl


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExecutionSettingsInput(_Input):
    maxConcurrency: int | None = Field(default=None, ge=1, le=10_000)
    nodeTimeoutMs: int | None = Field(default=None, ge=1)
    flowTimeoutMs: int | None = Field(default=None, ge=1)


class ExecutionOptionsInput(_Input):
    execution: ExecutionSettingsInput | None = None
    debug: bool | None = None
    breakpoints: list[str] | None = None


class ExternalEventInput(_Input):
    eventName: str
    payload: Any = None


class CreateInput(_Input):
    flowId: str
    options: ExecutionOptionsInput | None = None
    integration: dict[str, Any] | None = None
    events: list[ExternalEventInput] | None = None


class ExecutionIdInput(_Input):
    executionId: str


class ReasonInput(ExecutionIdInput):
    reason: str | None = None


class RootExecutionsInput(_Input):
    flowId: str
    limit: int = Field(default=50, ge=1, le=100)
    after: datetime | None = None


class SubscribeInput(ExecutionIdInput):
    fromIndex: int = Field(default=0, ge=0)
    eventTypes: list[str] = Field(default_factory=list)
    batchSize: int = Field(default=100, ge=1, le=1000)
    batchTimeoutMs: int = Field(default=25, ge=0, le=1000)


class EventsInput(ExecutionIdInput):
    fromIndex: int = Field(default=0, ge=0)
    lastEventId: str | None = None


# -- guards -------------------------------------------------------------------------------------------

def authed(call: Call, proceed: Callable[[], Any]) -> Any:
    ctx: RequestContext = call.ctx
    if ctx.user is None:
        raise TRPCError("UNAUTHORIZED")
    return proceed()


async def _execution_guard(call: Call, proceed: Callable[[], Any]) -> Any:
    ctx: RequestContext = call.ctx
    if ctx.user is None:
        raise TRPCError("UNAUTHORIZED")  # ChainGraph's execution guard is built on the authed one
    raw = call.raw_input
    exec_id = raw.get("executionId") if isinstance(raw, dict) else None
    if not isinstance(exec_id, str):
        raise TRPCError("BAD_REQUEST", "Parameter executionId is required for this procedure")
    services = ctx.services
    rec = await services.executions.get(exec_id)
    call.state["execution"] = rec
    if not ctx.user.is_admin:
        if rec is None:
            raise TRPCError("NOT_FOUND", "Execution not found")
        flow = await services.flows.get(rec.flow_id)
        if flow is None or flow.owner_id != ctx.user.id:
            raise TRPCError("FORBIDDEN", "User does not have access to this flow")
    return await _resolve(proceed())


async def _resolve(value: Any) -> Any:
    while asyncio.iscoroutine(value) or asyncio.isfuture(value):
        value = await value
    return value


def execution_guard(call: Call, proceed: Callable[[], Any]) -> Any:
    return _execution_guard(call, proceed)


def _row(call: Call, missing: TRPCError) -> ExecutionRecord:
    rec = call.state.get("execution")
    if rec is None:
        raise missing
    return rec


async def _check_flow_access(ctx: RequestContext, flow_id: str) -> Any:
    flow = await ctx.services.flows.get(flow_id)
    if flow is None:
        raise TRPCError("NOT_FOUND", f"Flow with id {flow_id} not found")
    if not ctx.user.is_admin and flow.owner_id != ctx.user.id:
        raise TRPCError("FORBIDDEN", "User does not own the flow")
    return flow


def _filtered(events: list[StoredEvent], types: set[str]) -> list[StoredEvent]:
    return [e for e in events if e.type in types] if types else events


# -- the router ---------------------------------------------------------------------------------------

# A live follower that hears nothing for this long checks the stored log for events the live
# feed may have missed (until it has seen the terminal event).
LOG_RECHECK_SECONDS = 5.0


def execution_router() -> Router:
    r = Router()
    guarded = (execution_guard,)

    @r.mutation("create", input=CreateInput, middlewares=(authed,))
    async def create(call: Call) -> dict[str, Any]:
        ctx: RequestContext = call.ctx
        inp: CreateInput = call.input
        flow = await _check_flow_access(ctx, inp.flowId)
        rec = await ctx.services.execution.create(
            flow_id=flow.id,
            owner_id=flow.owner_id,
            options=inp.options.model_dump(exclude_none=True) if inp.options else {},
            integration=inp.integration or {},
            external_events=[e.model_dump() for e in inp.events or []],
        )
        return {"executionId": rec.id}

    @r.mutation("start", input=ExecutionIdInput, middlewares=guarded)
    async def start(call: Call) -> dict[str, Any]:
        rec = _row(call, TRPCError("NOT_FOUND", f"Execution with id {call.input.executionId} not found, "
                                                "create it first"))
        await call.ctx.services.execution.start(rec)
        return {"success": True}

    def _missing_bad_request(call: Call) -> TRPCError:
        return TRPCError("BAD_REQUEST", f"Execution with id {call.input.executionId} not found")

    @r.mutation("stop", input=ReasonInput, middlewares=guarded)
    async def stop(call: Call) -> dict[str, Any]:
        rec = _row(call, _missing_bad_request(call))
        await call.ctx.services.execution.stop(rec, call.input.reason)
        return {"success": True}

    @r.mutation("pause", input=ReasonInput, middlewares=guarded)
    async def pause(call: Call) -> dict[str, Any]:
        rec = _row(call, _missing_bad_request(call))
        await call.ctx.services.execution.pause(rec, call.input.reason)
        return {"success": True}

    @r.mutation("resume", input=ExecutionIdInput, middlewares=guarded)
    async def resume(call: Call) -> dict[str, Any]:
        rec = _row(call, _missing_bad_request(call))
        await call.ctx.services.execution.resume(rec)
        return {"success": True}

    @r.mutation("step", input=ExecutionIdInput, middlewares=guarded)
    async def step(call: Call) -> dict[str, Any]:
        """Ours: run exactly one ready node of a paused execution."""
        rec = _row(call, _missing_bad_request(call))
        await call.ctx.services.execution.step(rec)
        return {"success": True}

    @r.query("getExecutionDetails", input=ExecutionIdInput, middlewares=guarded)
    def details(call: Call) -> dict[str, Any]:
        rec = _row(call, TRPCError("NOT_FOUND", f"Execution with id {call.input.executionId} not found"))
        return rec.to_wire()

    @r.query("getExecutionsTree", input=ExecutionIdInput, middlewares=guarded)
    async def tree(call: Call) -> list[dict[str, Any]]:
        exec_id = call.input.executionId
        rec = _row(call, TRPCError("NOT_FOUND", f"Execution tree with root id {exec_id} not found"))
        rows = await call.ctx.services.executions.tree(rec.root_execution_id or rec.id)
        children: dict[str | None, list[ExecutionRecord]] = {}
        for row in rows:
            children.setdefault(row.parent_execution_id, []).append(row)
        out: list[dict[str, Any]] = []
        frontier = [(rec, None, 0)]
        while frontier:
            nxt = []
            for row, parent_id, level in frontier:
                out.append({"id": row.id, "parentId": parent_id, "level": level, "execution": row.to_wire()})
                nxt.extend((c, row.id, level + 1) for c in children.get(row.id, []))
            frontier = nxt
        out.sort(key=lambda n: (n["level"], n["id"]))
        return out

    @r.query("getRootExecutions", input=RootExecutionsInput, middlewares=(authed,))
    async def roots(call: Call) -> list[dict[str, Any]]:
        ctx: RequestContext = call.ctx
        inp: RootExecutionsInput = call.input
        await _check_flow_access(ctx, inp.flowId)
        rows = await ctx.services.executions.roots(inp.flowId, inp.limit, inp.after)
        return [{"execution": rec.to_wire(), "levels": levels, "totalNested": total}
                for rec, levels, total in rows]

    @r.subscription("subscribeToExecutionEvents", input=SubscribeInput, middlewares=guarded)
    async def subscribe(call: Call) -> AsyncIterator[list[Any]]:
        """Arrays of ExecutionEventImpl: the stored log from fromIndex, then live, no gap, no duplicate."""
        inp: SubscribeInput = call.input
        if call.state.get("execution") is None:
            raise TRPCError("NOT_FOUND", f"Execution with id {inp.executionId} not found")
        types = set(inp.eventTypes)
        timeout = inp.batchTimeoutMs / 1000
        async for batch in follow_events(call.ctx.services, inp.executionId, inp.fromIndex,
                                         max_batch=inp.batchSize, batch_timeout=timeout, stop_at_terminal=False):
            out = _filtered(batch, types)
            if out:
                yield [event_impl(e) for e in out]

    @r.subscription("executionEvents", input=EventsInput, middlewares=guarded)
    async def events(call: Call) -> AsyncIterator[Tracked]:
        """Ours: plain superjson events, each tracked by its index; ends after the terminal event."""
        inp: EventsInput = call.input
        if call.state.get("execution") is None:
            raise TRPCError("NOT_FOUND", f"Execution with id {inp.executionId} not found")
        start = inp.fromIndex
        if inp.lastEventId is not None:
            try:
                start = int(inp.lastEventId) + 1
            except ValueError:
                raise TRPCError("BAD_REQUEST",
                                f"lastEventId must be an event index, got {inp.lastEventId!r}") from None
        async for batch in follow_events(call.ctx.services, inp.executionId, start, max_batch=1000,
                                         batch_timeout=0, stop_at_terminal=True):
            for e in batch:
                yield Tracked(str(e.index), {"index": e.index, "type": e.type, "timestamp": e.timestamp,
                                             "data": e.data})

    return r


async def follow_events(
    services: Any,
    execution_id: str,
    from_index: int,
    *,
    max_batch: int,
    batch_timeout: float,
    stop_at_terminal: bool,
) -> AsyncIterator[list[StoredEvent]]:
    """Replay the log from ``from_index`` then follow the live bus, in index order.

    The bus subscription is opened *before* the log is read, and events are published only
    after they are stored, so every event is either in the read or arrives on the bus; indexes
    below the next expected one are dropped (no duplicates). If the live queue overflows (a
    very slow consumer), we go back to the log instead of buffering without bound.
    """
    next_index = from_index
    seen_terminal = False
    if stop_at_terminal and from_index > 0:
        # Resuming after the terminal event: nothing more will ever come.
        previous = await services.events.read(execution_id, from_index - 1, 1)
        if previous and previous[0].type in TERMINAL_EVENTS:
            return
    while True:
        sub = await services.bus.subscribe(execution_id)
        try:
            # Catch up from the log in pages.
            while True:
                page = await services.events.read(execution_id, next_index, max_batch)
                if not page:
                    break
                next_index = page[-1].index + 1
                seen_terminal = seen_terminal or any(e.type in TERMINAL_EVENTS for e in page)
                yield page
                if stop_at_terminal and page[-1].type in TERMINAL_EVENTS:
                    return
                if len(page) < max_batch:
                    break
            # Live tail.
            while True:
                if sub.overflowed:
                    break  # resubscribe and re-read from the log
                try:
                    queued = sub.drain(1)
                    if queued:
                        first = queued[0]  # events are flowing: no timer on the hot path
                    elif seen_terminal:
                        first = await sub.get()
                    else:
                        first = await asyncio.wait_for(sub.get(), LOG_RECHECK_SECONDS)
                except TimeoutError:
                    # Quiet for a while: make sure no stored event was missed by the live feed
                    # (e.g. a broker outage while the worker kept writing to the log).
                    if await services.events.last_index(execution_id) >= next_index:
                        break  # re-read from the log
                    continue
                except Exception:  # SubscriptionOverflow: fall back to the log
                    break
                batch = [first] if first.index >= next_index else []
                deadline = time.monotonic() + batch_timeout
                while len(batch) < max_batch:
                    more = sub.drain(max_batch - len(batch))
                    if more:
                        batch.extend(e for e in more if e.index >= next_index)
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(sub.get(), remaining)
                    except TimeoutError:
                        break
                    if nxt.index >= next_index:
                        batch.append(nxt)
                if not batch:
                    continue
                if batch[0].index > next_index:
                    break  # a gap (should not happen): re-read from the log
                batch = [e for i, e in enumerate(batch) if e.index == next_index + i]
                next_index = batch[-1].index + 1
                seen_terminal = seen_terminal or any(e.type in TERMINAL_EVENTS for e in batch)
                yield batch
                if stop_at_terminal and batch[-1].type in TERMINAL_EVENTS:
                    return
        finally:
            sub.close()
