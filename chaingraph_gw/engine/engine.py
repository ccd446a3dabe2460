"""The flow execution engine: dependency scheduling, edge transfers, node runs, debugger controls.

Pure asyncio (no Twisted). One :class:`ExecutionEngine` runs one :class:`~chaingraph_gw.flow.model.Flow`
once and reports everything through ``emit(type, data)``, called synchronously and in order (the caller
numbers and publishes the events). Behaviour follows ChainGraph's ExecutionEngine as documented
(``/work/shared/docs/chaingraph-executor-spec.md`` §3/§6, ``chaingraph-node-catalog.md`` §3), with the
controls that ChainGraph promised but did not deliver actually working:

* ``pause()`` stops starting nodes (running ones finish); ``resume()``; ``step()`` starts exactly one
  ready node while paused; ``options.breakpoints`` pause before a node starts (``debug:breakpoint-hit``);
* ``stop()`` cancels running node tasks at once and ends with ``flow:cancelled``;
* the flow timeout is a timer (it fires while a node is still running).

Scheduling in short: a node becomes ready when every incoming edge's source node and every child node
(``parent_node_id``) is done — completed, failed or skipped. Ready nodes start in flow node order, at most
``max_concurrency`` at a time. Before a node runs, each target port takes the *first* incoming edge (flow
edge order) whose source can transfer; a port without one skips the node, which is how skips and failures
cascade. A failing node never fails the flow: only the flow timeout, ``stop()`` or an internal error end it
other than ``flow:completed``. The terminal event is always the last one and is emitted exactly once.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..flow.model import Edge, Flow, NodeInstance
from ..nodes.sdk import UNSET, NodeError
from ..signals import AbortSignal
from . import events as ev
from .options import ExecutionOptions

log = logging.getLogger(__name__)

EngineState = Literal["created", "running", "paused", "completed", "failed", "cancelled"]
_TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Outcome:
    status: Literal["completed", "failed", "cancelled"]
    error: str | None
    execution_time_ms: int


class ExecutionSignal(AbortSignal):
    """Abort signal handed to nodes as ``ctx.signal`` (``.aborted``, ``.reason``, ``add_callback``);
    a failing callback is logged and the others still run."""

    __slots__ = ()

    def _run_callback(self, cb: Callable[[], None]) -> None:
        try:
            cb()
        except Exception:  # pragma: no cover - a node callback must not break the engine
            log.exception("abort callback failed")


class EngineNodeContext:
    """The engine's :class:`chaingraph_gw.nodes.sdk.NodeContext` implementation (one per node run)."""

    __slots__ = ("_engine", "depth", "event_data", "execution_id", "flow_id", "node", "node_id",
                 "parent_execution_id", "signal", "values")

    def __init__(self, engine: ExecutionEngine, node: NodeInstance) -> None:
        self._engine = engine
        self.node = node
        self.node_id = node.id
        self.values = node.values
        self.execution_id = engine.execution_id
        self.flow_id = engine.flow_id
        self.depth = engine.depth
        self.parent_execution_id = engine.parent_execution_id
        self.event_data = engine.event_data
        self.signal = engine.signal

    def emit_event(self, event_name: str, payload: Any) -> None:
        self._engine._node_emitted_event(self.node_id, event_name, payload)

    def debug_log(self, text: str) -> None:
        self._engine._debug_log(self.node_id, text)

    async def sleep(self, seconds: float) -> None:
        if self.signal.aborted:
            raise asyncio.CancelledError(self.signal.reason)
        await asyncio.sleep(max(0.0, float(seconds)))


class _Plan:
    """A node that passed input resolution: the edges to transfer when it starts."""

    __slots__ = ("edges",)

    def __init__(self, edges: list[Edge]) -> None:
        self.edges = edges


class ExecutionEngine:
    def __init__(
        self,
        flow: Flow,
        *,
        execution_id: str,
        flow_id: str,
        options: ExecutionOptions,
        emit: Callable[[str, dict[str, Any]], None],
        depth: int = 0,
        parent_execution_id: str | None = None,
        event_data: dict[str, Any] | None = None,
        on_emitted_event: Callable[[str, Any], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        start_paused: str | None = None,
    ) -> None:
        self.flow = flow
        self.execution_id = execution_id
        self.flow_id = flow_id
        self.options = options
        self.depth = depth
        self.parent_execution_id = parent_execution_id
        self.event_data = event_data
        self.signal = ExecutionSignal()
        self.state: EngineState = "created"
        self.outcome: Outcome | None = None
        self._emit_cb = emit
        self._on_emitted_event = on_emitted_event
        self._clock = clock
        # A run paused before a worker picked it up starts paused (reason given), running nothing.
        self._start_paused = start_paused
        self._flow_metadata = flow.metadata()
        self._max_concurrency = max(1, int(options.max_concurrency))

        # -- static graph bookkeeping (O(nodes + edges)) --
        nodes = flow.nodes
        self._order: dict[str, int] = {nid: i for i, nid in enumerate(nodes)}
        self._ids: list[str] = list(nodes)
        # target node → {target path → edges in flow edge order}
        self._in_ports: dict[str, dict[str, list[Edge]]] = {nid: {} for nid in nodes}
        self._dependents: dict[str, list[str]] = {nid: [] for nid in nodes}
        self._remaining: dict[str, int] = dict.fromkeys(nodes, 0)
        indexed = sorted(enumerate(flow.edges), key=lambda p: (p[1].order, p[0]))
        for _, edge in indexed:
            if edge.source_node not in nodes or edge.target_node not in nodes:
                continue
            self._in_ports[edge.target_node].setdefault(edge.target_path, []).append(edge)
            self._dependents[edge.source_node].append(edge.target_node)
            self._remaining[edge.target_node] += 1
        for nid, node in nodes.items():
            parent = node.parent_node_id
            if parent and parent in nodes and parent != nid:
                self._dependents[nid].append(parent)
                self._remaining[parent] += 1

        # -- runtime state --
        self._status: dict[str, str] = dict.fromkeys(nodes, ev.IDLE)
        self._ready: list[tuple[int, str]] = []  # heap of (flow order, node id)
        self._plans: dict[str, _Plan] = {}  # resolved nodes held back by a breakpoint
        self._bp_passed: set[str] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._step_credit = 0
        self._pumping = False
        self._repump = False
        self._terminal = False  # no more work once set
        self._closed = False  # no more events once set (after the terminal event)
        self._started_at = 0.0
        self._done: asyncio.Future[Outcome] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._cancelled_tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------------------------------------
    # public API

    async def run(self) -> Outcome:
        """Execute the flow; resolves with the outcome once the terminal event has been emitted."""
        if self.outcome is not None and self.state in _TERMINAL_STATES and self._done is None:
            return self.outcome  # stopped before it ran
        if self.state != "created":
            raise RuntimeError("ExecutionEngine.run() can be called only once")
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._started_at = self._clock()
        self.state = "running"
        try:
            self._emit(ev.FLOW_STARTED, {"flowMetadata": dict(self._flow_metadata)})
            if not self._terminal:
                self._timer = loop.call_later(self.options.flow_timeout_ms / 1000.0, self._on_flow_timeout)
                for nid in self._initial_nodes():
                    self._set_status(nid, ev.INITIALIZED)
                    heapq.heappush(self._ready, (self._order[nid], nid))
                if self._start_paused is not None:
                    self._enter_pause(self._start_paused)
                self._advance()
        except Exception as exc:  # an internal error ends the flow as failed
            self._internal_error(exc)
        try:
            outcome = await asyncio.shield(self._done)
        except asyncio.CancelledError:
            # The task running us was cancelled (e.g. executor shutdown): end the execution properly.
            self._finish("cancelled", ev.DEFAULT_STOP_REASON if not self.signal.reason else self.signal.reason)
            await self._reap()
            raise
        await self._reap()
        return outcome

    def start_paused(self, reason: str) -> None:
        """Before ``run()``: begin paused (``flow:started`` then ``flow:paused``), starting nothing."""
        if self.state == "created":
            self._start_paused = reason

    def pause(self, reason: str | None = None) -> bool:
        """Stop starting nodes (running ones finish); emits ``flow:paused`` at once."""
        if self.state != "running" or self._terminal:
            return False
        try:
            self._enter_pause(reason)
        except Exception as exc:  # an internal error ends the flow as failed
            self._internal_error(exc)
        return True

    def resume(self) -> bool:
        """Leave the paused state (``flow:resumed``) and go on starting nodes."""
        if self.state != "paused" or self._terminal:
            return False
        self.state = "running"
        self._step_credit = 0
        try:
            self._emit(ev.FLOW_RESUMED, {"flowMetadata": dict(self._flow_metadata)})
            self._advance()
        except Exception as exc:  # an internal error ends the flow as failed
            self._internal_error(exc)
        return True

    def step(self) -> bool:
        """While paused, start exactly one ready node (the next in flow order) and stay paused."""
        if self.state != "paused" or self._terminal:
            return False
        if len(self._ready) <= self._step_credit:
            return False  # nothing (more) is ready
        self._step_credit += 1
        self._safe_advance()
        return True

    def stop(self, reason: str = ev.DEFAULT_STOP_REASON) -> None:
        """Cancel running nodes now and end with ``flow:cancelled {reason}``."""
        if self._terminal:
            return
        if self.state == "created":
            self._terminal = True
            self._closed = True
            self.signal.abort(reason)
            self.state = "cancelled"
            self.outcome = Outcome("cancelled", reason, 0)
            self._emit_cb(ev.FLOW_CANCELLED, {"flowMetadata": dict(self._flow_metadata), "reason": reason,
                                              "executionTime": 0})
            return
        self._finish("cancelled", reason)

    def node_status(self, node_id: str) -> str:
        return self._status[node_id]

    @property
    def running_node_ids(self) -> list[str]:
        return list(self._running)

    # ------------------------------------------------------------------------------------------------
    # events

    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        if not self._closed:
            self._emit_cb(type_, data)

    def _snapshot(self, node: NodeInstance, status: str) -> Any:
        from ..flow.snapshot import serialize_node

        return serialize_node(node, status=status)

    def _set_status(self, nid: str, new: str) -> None:
        old = self._status[nid]
        if old == new:
            return
        self._status[nid] = new
        self._emit(ev.NODE_STATUS_CHANGED, {"nodeId": nid, "oldStatus": old, "newStatus": new})

    def _elapsed_ms(self, since: float) -> int:
        return max(0, round((self._clock() - since) * 1000))

    def _debug_log(self, nid: str, text: str) -> None:
        self._emit(ev.NODE_DEBUG_LOG_STRING, {"nodeId": nid, "log": str(text)})

    def _node_emitted_event(self, nid: str, name: str, payload: Any) -> None:
        if self._on_emitted_event is None:
            raise NodeError("Event emission is not supported in this context")
        if self._terminal:
            return
        if not isinstance(payload, _SCALARS):
            payload = copy.deepcopy(payload)
        self._on_emitted_event(name, payload)

    # ------------------------------------------------------------------------------------------------
    # scheduling

    def _is_listener(self, node: NodeInstance) -> bool:
        return bool(node.type_cls.flow_ports.get("disabledAutoExecution")) or node.type_name == "EventListenerNode"

    def _initial_nodes(self) -> list[str]:
        roots = [nid for nid in self._ids if self._remaining[nid] == 0]
        nodes = self.flow.nodes
        if self.event_data is None:
            return [nid for nid in roots if not nodes[nid].type_cls.flow_ports.get("disabledAutoExecution")]
        name = self.event_data.get("eventName")
        return [nid for nid in roots
                if self._is_listener(nodes[nid]) and nodes[nid].values.get("eventName") == name]

    def _mark_done(self, nid: str) -> None:
        """``nid`` finished (completed, failed or skipped): count it off its dependents."""
        work = [nid]
        while work:
            done = work.pop()
            for dep in self._dependents[done]:
                self._remaining[dep] -= 1
                if self._remaining[dep] != 0:
                    continue
                node = self.flow.nodes[dep]
                if self.event_data is None and node.type_cls.flow_ports.get("disabledAutoExecution"):
                    # Root context: an auto-execution-disabled node (listener) reached by edges is marked
                    # completed without running, so its dependents proceed.
                    self._set_status(dep, ev.COMPLETED)
                    work.append(dep)
                else:
                    heapq.heappush(self._ready, (self._order[dep], dep))

    def _safe_advance(self) -> None:
        try:
            self._advance()
        except Exception as exc:  # an internal error ends the flow as failed
            self._internal_error(exc)

    def _advance(self) -> None:
        """Start whatever may start now; finish the flow when nothing is left."""
        if self._pumping:
            self._repump = True  # re-entered from an emit callback (e.g. resume()): the outer call loops again
            return
        self._pumping = True
        try:
            while True:
                self._repump = False
                self._pump()
                if not self._repump or self._terminal:
                    break
        finally:
            self._pumping = False
        if not self._terminal and not self._running and not self._ready:
            self._finish("completed", None)

    def _pump(self) -> None:
        while self._ready and not self._terminal:
            stepping = False
            if self.state == "paused":
                if self._step_credit <= 0:
                    break
                stepping = True
            if len(self._running) >= self._max_concurrency:
                break
            _, nid = heapq.heappop(self._ready)
            node = self.flow.nodes[nid]
            plan = self._plans.pop(nid, None)
            if plan is None:
                plan = self._resolve(node)
                if plan is None:  # skipped
                    if stepping:
                        self._step_credit -= 1
                    self._mark_done(nid)
                    continue
            if nid in self.options.breakpoints and nid not in self._bp_passed:
                self._bp_passed.add(nid)
                if not stepping:
                    self._plans[nid] = plan
                    heapq.heappush(self._ready, (self._order[nid], nid))
                    self._emit(ev.DEBUG_BREAKPOINT_HIT, {"node": self._snapshot(node, self._status[nid])})
                    if self.state == "running" and not self._terminal:
                        self._enter_pause(f"Breakpoint hit at node {nid}")
                    break
            if stepping:
                self._step_credit -= 1
            self._start(node, plan)
        self._step_credit = min(self._step_credit, len(self._ready))

    def _enter_pause(self, reason: str | None) -> None:
        self.state = "paused"
        self._step_credit = 0
        self._emit(ev.FLOW_PAUSED, {"flowMetadata": dict(self._flow_metadata), "reason": reason})

    # ------------------------------------------------------------------------------------------------
    # per node

    def _can_transfer(self, edge: Edge) -> bool:
        status = self._status[edge.source_node]
        if edge.from_error_port:
            return status in (ev.COMPLETED, ev.ERROR)
        if status != ev.COMPLETED:
            return False
        system = self.flow.nodes[edge.source_node].system
        return system.get("__success") is True and system.get("__error") is not True

    def _choose_edges(self, nid: str) -> tuple[list[Edge], bool]:
        """Per target port the first transferable edge; and whether some port has none."""
        chosen: list[Edge] = []
        unresolved = False
        for edges in self._in_ports[nid].values():
            for edge in edges:
                if self._can_transfer(edge):
                    chosen.append(edge)
                    break
            else:
                unresolved = True
        return chosen, unresolved

    @staticmethod
    def _should_execute(node: NodeInstance) -> bool:
        value = node.system.get("__execute", True)
        return True if value is UNSET else bool(value)

    def _resolve(self, node: NodeInstance) -> _Plan | None:
        """Decide whether ``node`` can run; skips it (and returns None) if not."""
        nid = node.id
        chosen, unresolved = self._choose_edges(nid)
        if not self._should_execute(node):
            # Already false before transfer: transfer everything, then look again.
            if not self._transfer_all(node, chosen):
                self._skip(nid, ev.SKIP_TRANSFER_FAILED)
            elif not self._should_execute(node):
                self._skip(nid, ev.SKIP_SHOULD_EXECUTE)
            elif unresolved:
                self._skip(nid, ev.SKIP_UNRESOLVED)
            else:
                return _Plan([])
            return None
        if unresolved:
            self._skip(nid, ev.SKIP_UNRESOLVED)
            return None
        return _Plan(chosen)

    def _skip(self, nid: str, reason: str) -> None:
        self._set_status(nid, ev.SKIPPED)
        self._emit(ev.NODE_SKIPPED, {"nodeId": nid, "reason": reason})

    def _transfer_all(self, node: NodeInstance, edges: list[Edge]) -> bool:
        ok = True
        for edge in edges:
            if not self._transfer(node, edge):
                ok = False
            if self._terminal:
                return False
        return ok

    def _transfer(self, target: NodeInstance, edge: Edge) -> bool:
        t0 = self._clock()
        source = self.flow.nodes[edge.source_node]
        value = source.get(edge.source_path)
        error: str | None = None
        if value is None or value is UNSET:
            error = ev.no_data_message(edge.source_path)
        else:
            try:
                target.set(edge.target_path, value if isinstance(value, _SCALARS) else copy.deepcopy(value))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                error = str(exc) or type(exc).__name__
        if error is not None:
            self._emit(ev.EDGE_TRANSFER_FAILED, {"serializedEdge": ev.serialized_edge(edge, "error"),
                                                 "error": ev.js_error(error)})
            return False
        self._emit(ev.EDGE_TRANSFER_COMPLETED, {"serializedEdge": ev.serialized_edge(edge, "active"),
                                                "transferTime": self._elapsed_ms(t0)})
        return True

    def _start(self, node: NodeInstance, plan: _Plan) -> None:
        nid = node.id
        t0 = self._clock()
        self._set_status(nid, ev.EXECUTING)
        self._emit(ev.NODE_STARTED, {"node": self._snapshot(node, ev.EXECUTING)})
        if not self._transfer_all(node, plan.edges):
            if not self._terminal:
                self._skip(nid, ev.SKIP_TRANSFER_FAILED)
                self._mark_done(nid)
            return
        if self._terminal:
            return
        if not self._should_execute(node):
            self._skip(nid, ev.SKIP_SHOULD_EXECUTE)
            self._mark_done(nid)
            return
        parent = self.flow.nodes.get(node.parent_node_id) if node.parent_node_id else None
        if parent is not None and parent.type_cls.category != "group":
            # A node inside a non-group parent (e.g. a tool) is run by its parent, not by the engine.
            self._complete(node, None, t0)
            return
        ctx = EngineNodeContext(self, node)
        task = asyncio.get_running_loop().create_task(self._run_node(node, ctx, t0), name=f"node:{nid}")
        self._running[nid] = task
        task.add_done_callback(_retrieve)

    async def _run_node(self, node: NodeInstance, ctx: EngineNodeContext, t0: float) -> None:
        error: str | None = None
        timeout_ms = self.options.node_timeout_ms
        try:
            async with asyncio.timeout(timeout_ms / 1000.0) as cm:
                await node.type_cls().execute(ctx)
        except TimeoutError as exc:
            error = ev.node_timeout_message(timeout_ms) if cm.expired() else (str(exc) or "TimeoutError")
        except Exception as exc:  # a node exception fails the node only
            error = str(exc) or type(exc).__name__
        # asyncio.CancelledError (stop, flow timeout) propagates: the flow is already ending.
        if self._terminal:
            return
        self._running.pop(node.id, None)
        try:
            self._complete(node, error, t0)
            self._advance()
        except Exception as exc:  # an internal error ends the flow as failed
            self._internal_error(exc)

    def _complete(self, node: NodeInstance, error: str | None, t0: float) -> None:
        nid = node.id
        elapsed = self._elapsed_ms(t0)
        system = node.system
        if error is None:
            system["__success"] = True
            system["__error"] = False
            self._set_status(nid, ev.COMPLETED)
            self._emit(ev.NODE_COMPLETED, {"node": self._snapshot(node, ev.COMPLETED), "executionTime": elapsed})
        else:
            system["__success"] = False
            system["__error"] = True
            system["__errorMessage"] = error
            self._set_status(nid, ev.ERROR)
            self._emit(ev.NODE_FAILED, {"node": self._snapshot(node, ev.ERROR), "error": ev.js_error(error),
                                        "executionTime": elapsed})
        self._mark_done(nid)

    # ------------------------------------------------------------------------------------------------
    # ending

    def _on_flow_timeout(self) -> None:
        self._timer = None
        self._finish("failed", ev.flow_timeout_message(self.options.flow_timeout_ms))

    def _internal_error(self, exc: BaseException) -> None:
        log.error("execution %s: internal engine error", self.execution_id, exc_info=exc)
        self._finish("failed", str(exc) or type(exc).__name__)

    def _finish(self, status: Literal["completed", "failed", "cancelled"], message: str | None) -> None:
        """End the execution once: cancel running nodes, emit the terminal event, resolve ``run()``."""
        if self._terminal:
            return
        self._terminal = True
        self.state = status
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if status != "completed":
            self.signal.abort(message or status)
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no running loop
            current = None
        for task in self._running.values():
            if task is not current and not task.done():
                task.cancel()
                self._cancelled_tasks.append(task)
        self._running.clear()
        self._ready.clear()
        elapsed = self._elapsed_ms(self._started_at)
        self.outcome = Outcome(status, message, elapsed)
        data: dict[str, Any] = {"flowMetadata": dict(self._flow_metadata)}
        if status == "completed":
            type_ = ev.FLOW_COMPLETED
        elif status == "failed":
            type_ = ev.FLOW_FAILED
            data["error"] = ev.js_error(message or "Execution failed")
        else:
            type_ = ev.FLOW_CANCELLED
            data["reason"] = message
        data["executionTime"] = elapsed
        try:
            self._emit(type_, data)
        except Exception:  # the sink failed: still end the execution
            log.exception("execution %s: emitting %s failed", self.execution_id, type_)
        finally:
            self._closed = True
            if self._done is not None and not self._done.done():
                self._done.set_result(self.outcome)

    async def _reap(self) -> None:
        """Let cancelled node tasks unwind (bounded: a node that swallows cancellation is abandoned)."""
        tasks = [t for t in self._cancelled_tasks if not t.done()]
        self._cancelled_tasks.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=0.5)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # pragma: no cover - guarded in _run_node
        log.error("node task failed", exc_info=task.exception())


__all__ = ["EngineNodeContext", "EngineState", "ExecutionEngine", "ExecutionSignal", "Outcome"]
