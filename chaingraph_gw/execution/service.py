"""Execution lifecycle: create, start, controls, and running executions on a worker.

``ExecutionService`` is what the API calls; ``ExecutionRunner`` is the worker side that takes
tasks from the task queue, runs the engine and finalises rows. In the embedded default both
live in one process; the stores, bus, queue and command bus are the seams behind which the
distributed backends plug in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

from ..engine.engine import ExecutionEngine
from ..engine.options import ExecutionOptions
from ..flow import ids
from ..flow.document import load_flow
from ..nodes.sdk import NodeRegistry
from ..services.records import TERMINAL, ExecutionRecord
from ..trpc.errors import TRPCError
from ..trpc.superjson import JSError
from .eventlog import TERMINAL_EVENTS, EventWriter

log = Logger(namespace="chaingraph_gw.execution")

MAX_EXECUTION_DEPTH = 100
# A worker holds a lease on the row while it runs an execution and renews it every
# LEASE_SECONDS / 3; another worker may take over only after it expired.
LEASE_SECONDS = 15.0
# Runs that crash (or lose their worker) are retried, with backoff, this many times in all.
MAX_ATTEMPTS = 3


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    flows: Any  # IFlowStore
    executions: Any  # IExecutionStore
    events: Any  # IEventLog
    bus: Any  # IEventBus
    tasks: Any  # ITaskQueue
    commands: Any  # ICommandBus
    registry: NodeRegistry


class ExecutionService:
    def __init__(self, services: Services) -> None:
        self.s = services

    # -- creation ----------------------------------------------------------------------------------
    async def create(
        self,
        *,
        flow_id: str,
        owner_id: str,
        options: dict[str, Any] | None = None,
        integration: dict[str, Any] | None = None,
        external_events: list[dict[str, Any]] | None = None,
        parent: ExecutionRecord | None = None,
        status: str = "created",
    ) -> ExecutionRecord:
        now = _now()
        exec_id = ids.execution_id()
        rec = ExecutionRecord(
            id=exec_id,
            flow_id=flow_id,
            owner_id=owner_id,
            root_execution_id=parent.root_execution_id if parent else exec_id,
            parent_execution_id=parent.id if parent else None,
            status=status,
            created_at=now,
            updated_at=now,
            started_at=now if status == "running" else None,
            completed_at=None,
            error_message=None,
            error_node_id=None,
            execution_depth=(parent.execution_depth + 1) if parent else 0,
            options=options or {},
            integration=integration or {},
            external_events=external_events or [],
        )
        await self.s.executions.create(rec)
        # Index 0 of every stream: a subscriber that attaches right after `create` sees it at once.
        writer = EventWriter(exec_id, next_index=0, event_log=self.s.events, bus=self.s.bus)
        writer.publish_in_background = True  # stored before we answer; the live copy may lag (e.g. broker down)
        writer.emit("execution:created", {
            "executionId": exec_id,
            "flowId": flow_id,
            "ownerId": owner_id,
            "rootExecutionId": rec.root_execution_id,
            "parentExecutionId": rec.parent_execution_id,
            "executionDepth": rec.execution_depth,
        })
        await writer.flush()
        return rec

    # -- controls ------------------------------------------------------------------------------------
    async def start(self, rec: ExecutionRecord) -> None:
        if rec.status != "created":
            raise TRPCError(
                "BAD_REQUEST",
                f"Cannot start execution in status {rec.status}. Execution must be in 'created' status.",
            )
        updated = await self.s.executions.update_status(rec.id, "running", expected={"created"})
        if updated is None:
            current = await self.s.executions.get(rec.id)
            raise TRPCError(
                "BAD_REQUEST",
                f"Cannot start execution in status {current.status if current else 'unknown'}. "
                "Execution must be in 'created' status.",
            )
        try:
            await self.s.tasks.submit({"executionId": rec.id, "flowId": rec.flow_id})
        except Exception:
            # No task was queued: put the row back so it never stays `running` without one.
            await self.s.executions.update_status(rec.id, "created", expected={"running"})
            raise

    async def stop(self, rec: ExecutionRecord, reason: str | None) -> None:
        if rec.status in TERMINAL:
            raise TRPCError("BAD_REQUEST", f"Cannot stop execution in status {rec.status}")
        reason = reason or "User requested stop"
        if await self.s.commands.send(rec.id, {"command": "STOP", "reason": reason}):
            return  # the owning worker cancels the engine; it writes the terminal event and status
        # No worker answered. Whoever holds the lease writes the terminal event: try to take it.
        holder = f"api-stop-{rec.id}"
        if await self.s.executions.claim(rec.id, holder, LEASE_SECONDS):
            try:
                updated = await self.s.executions.update_status(
                    rec.id, "stopped", expected={"created", "running", "paused"}, error_message=reason
                )
                if updated is not None:
                    await self._append_terminal(rec.id, "flow:cancelled", {
                        "flowMetadata": await self._flow_metadata(rec.flow_id),
                        "reason": reason, "executionTime": 0,
                    })
            finally:
                await self.s.executions.release(rec.id, holder)
            return
        # A worker holds the lease but its command channel missed us (it is starting, or moving):
        # the row says stopped, and the worker checks the row on every heartbeat.
        await self.s.executions.update_status(
            rec.id, "stopped", expected={"created", "running", "paused"}, error_message=reason
        )

    async def _append_terminal(self, exec_id: str, type_: str, data: dict[str, Any]) -> None:
        last = await self.s.events.read(exec_id, max(await self.s.events.last_index(exec_id), 0), 1)
        if last and last[-1].type in TERMINAL_EVENTS:
            return  # already ended
        writer = EventWriter(exec_id, next_index=(last[-1].index + 1) if last else 0, event_log=self.s.events,
                             bus=self.s.bus)
        writer.emit(type_, data)
        await writer.flush()

    async def pause(self, rec: ExecutionRecord, reason: str | None) -> None:
        if rec.status in ("created", "paused", "completed", "failed", "stopped"):
            raise TRPCError("BAD_REQUEST", f"Cannot pause execution in status {rec.status}")
        updated = await self.s.executions.update_status(rec.id, "paused", expected={"running"})
        if updated is None:
            current = await self.s.executions.get(rec.id)
            raise TRPCError("BAD_REQUEST", f"Cannot pause execution in status {current.status if current else '?'}")
        await self.s.commands.send(rec.id, {"command": "PAUSE", "reason": reason or "User requested pause"})

    async def resume(self, rec: ExecutionRecord) -> None:
        if rec.status != "paused":
            raise TRPCError("BAD_REQUEST", f"Cannot resume execution in status {rec.status}")
        updated = await self.s.executions.update_status(rec.id, "running", expected={"paused"})
        if updated is None:
            current = await self.s.executions.get(rec.id)
            raise TRPCError("BAD_REQUEST", f"Cannot resume execution in status {current.status if current else '?'}")
        await self.s.commands.send(rec.id, {"command": "RESUME"})

    async def step(self, rec: ExecutionRecord) -> bool:
        if rec.status != "paused":
            raise TRPCError("BAD_REQUEST", f"Cannot step execution in status {rec.status}. Pause it first.")
        delivered = await self.s.commands.send(rec.id, {"command": "STEP"})
        if not delivered:
            raise TRPCError("PRECONDITION_FAILED", "Execution is not running on any worker yet; try again")
        return True

    async def _flow_metadata(self, flow_id: str) -> dict[str, Any]:
        flow = await self.s.flows.get(flow_id)
        if flow is None:
            return {"id": flow_id}
        doc = flow.document
        return {"id": flow.id, "name": flow.name, "description": doc.get("description", ""),
                "tags": list(doc.get("tags", [])), "ownerID": flow.owner_id, "version": flow.version}


class ExecutionRunner:
    """Worker side: runs one execution per task, owning its engine until it ends."""

    def __init__(self, services: Services, api: ExecutionService, *, worker_id: str,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.s = services
        self.api = api
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.active: dict[str, ExecutionEngine] = {}
        # Ids this worker is handling, from the claim until the lease is released (wider than `active`,
        # which ends with the engine): a re-delivered task must not start a second copy meanwhile.
        self.handling: set[str] = set()
        self.lost: set[str] = set()  # executions whose lease another worker took: write nothing more
        self._spawning: set[asyncio.Future[None]] = set()  # child creations in flight

    async def handle_task(self, task: dict[str, Any]) -> None:
        exec_id = task.get("executionId")
        if not isinstance(exec_id, str):
            log.warn("dropping malformed task {task!r}", task=task)
            return
        if exec_id in self.handling:
            return  # duplicate delivery: already handled here
        rec = await self.s.executions.get(exec_id)
        if rec is None or rec.status not in ("running", "paused"):
            return  # stopped before it got here, or a duplicate of a finished run
        previous_worker = rec.processing_worker_id
        if exec_id in self.handling:
            return
        if not await self.s.executions.claim(exec_id, self.worker_id, self.lease_seconds):
            return  # another worker runs it (at most one at a time)
        self.handling.add(exec_id)
        heartbeat = asyncio.ensure_future(self._heartbeat(exec_id))
        try:
            if previous_worker is not None and previous_worker != self.worker_id:
                # Taking over from a worker whose lease expired: count the lost attempt.
                failed = await self.s.executions.record_failure(exec_id, f"worker {previous_worker} was lost")
                if failed is not None and failed.failure_count >= MAX_ATTEMPTS:
                    await self._finish_crashed(rec, f"Execution failed after {failed.failure_count} attempts: "
                                                    f"worker {previous_worker} was lost")
                    return
            await self._run(rec, previous_worker=previous_worker)
        except Exception as exc:  # a broken run must still end terminal
            log.failure("execution {eid} crashed", eid=exec_id)
            await self._finish_crashed(rec, f"Internal error: {exc}")
        finally:
            heartbeat.cancel()
            self.handling.discard(exec_id)
            try:
                await self.s.executions.release(exec_id, self.worker_id)
            except Exception:  # the lease expires by itself
                log.failure("could not release lease on {eid}", eid=exec_id)

    async def _heartbeat(self, exec_id: str) -> None:
        """Renew the lease; stop the engine when the row says stopped or the lease is lost."""
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            engine = self.active.get(exec_id)
            try:
                renewed = await self.s.executions.renew(exec_id, self.worker_id, self.lease_seconds)
                row = await self.s.executions.get(exec_id)
            except Exception as exc:  # store hiccup: keep running, try again
                log.warn("lease renewal for {eid} failed: {err}", eid=exec_id, err=exc)
                continue
            if engine is None:
                continue
            if not renewed:
                log.error("lost the lease on {eid}; stopping it here", eid=exec_id)
                self.lost.add(exec_id)
                engine.stop("Lease lost")
            elif row is not None and row.status == "stopped":
                engine.stop(row.error_message or "User requested stop")

    async def _run(self, rec: ExecutionRecord, previous_worker: str | None = None) -> None:
        last = await self.s.events.last_index(rec.id)
        writer = EventWriter(rec.id, next_index=last + 1, event_log=self.s.events, bus=self.s.bus)
        writer.hold_terminal = True
        if previous_worker is not None and previous_worker != self.worker_id:
            # Clients see the takeover explicitly; the run starts again from the beginning.
            writer.emit("execution:restarted", {"executionId": rec.id, "reason": "worker lost",
                                                "previousWorkerId": previous_worker, "workerId": self.worker_id})
        flow_rec = await self.s.flows.get(rec.flow_id)
        if flow_rec is None:
            reason = f"Flow {rec.flow_id} not found"
            writer.emit("flow:failed", {"flowMetadata": {"id": rec.flow_id},
                                        "error": JSError(name="Error", message=reason), "executionTime": 0})
            await self._finalise(rec, writer, "failed", reason)
            return
        flow = load_flow(flow_rec.document, self.s.registry)
        flow.id = flow_rec.id
        event_data = None
        if rec.external_events:
            first = rec.external_events[0]
            event_data = {"eventName": first.get("eventName"), "payload": first.get("payload")}

        def on_emitted(name: str, payload: Any) -> None:
            if rec.execution_depth + 1 > MAX_EXECUTION_DEPTH:
                raise RuntimeError("Maximum execution depth exceeded")
            task = asyncio.ensure_future(self._spawn_child(rec, name, payload))
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)

        status_updates = _StatusFollower(self.s.executions, rec.id)

        def emit(type_: str, data: Any) -> None:
            # The engine pauses itself on breakpoints: keep the row in step so `resume` is accepted,
            # and store the event only once the row says so.
            if type_ == "flow:paused":
                writer.add_barrier(status_updates.set("paused", {"running"}))
            elif type_ == "flow:resumed":
                writer.add_barrier(status_updates.set("running", {"paused"}))
            writer.emit(type_, data)

        engine = ExecutionEngine(
            flow,
            execution_id=rec.id,
            flow_id=rec.flow_id,
            options=ExecutionOptions.from_wire(rec.options),
            emit=emit,
            depth=rec.execution_depth,
            parent_execution_id=rec.parent_execution_id,
            event_data=event_data,
            on_emitted_event=on_emitted,
        )
        self.active[rec.id] = engine
        await self.s.commands.register(rec.id, lambda cmd: self._on_command(engine, cmd))
        try:
            # Re-read after registering for commands: a pause or stop that landed before this point
            # changed the row (its command found nobody to deliver to), so honour the row.
            fresh = await self.s.executions.get(rec.id)
            if fresh is None or fresh.status in ("completed", "failed"):
                return
            if fresh.status == "stopped":
                engine.stop(fresh.error_message or "User requested stop")  # ends at once, cancelled
            elif fresh.status == "paused":
                engine.start_paused("Paused before start")
            outcome = await engine.run()
        finally:
            await self.s.commands.unregister(rec.id)
            self.active.pop(rec.id, None)
        await status_updates.wait()
        if rec.id in self.lost or writer.superseded:
            self.lost.discard(rec.id)
            return  # another worker owns it now; it writes the rest of the stream
        status = {"completed": "completed", "failed": "failed", "cancelled": "stopped"}[outcome.status]
        await self._finalise(rec, writer, status, outcome.error)

    async def _finalise(self, rec: ExecutionRecord, writer: EventWriter, status: str, error: str | None) -> None:
        # Everything but the terminal event is stored first; the row turns terminal before the
        # terminal event is published, so a client reacting to it reads a final row.
        await writer.flush()
        await self.s.executions.update_status(rec.id, status, expected={"running", "paused", "stopped"},
                                              error_message=error)
        await writer.release_terminal()

    async def _finish_crashed(self, rec: ExecutionRecord, reason: str) -> None:
        updated = await self.s.executions.update_status(rec.id, "failed", expected={"running", "paused"},
                                                        error_message=reason)
        if updated is None:
            return
        await self.api._append_terminal(rec.id, "flow:failed", {
            "flowMetadata": {"id": rec.flow_id}, "error": JSError(name="Error", message=reason), "executionTime": 0,
        })

    def _on_command(self, engine: ExecutionEngine, cmd: dict[str, Any]) -> None:
        kind = cmd.get("command")
        if kind == "STOP":
            engine.stop(cmd.get("reason") or "User requested stop")
        elif kind == "PAUSE":
            engine.pause(cmd.get("reason"))
        elif kind == "RESUME":
            engine.resume()
        elif kind == "STEP":
            engine.step()

    async def _spawn_child(self, parent: ExecutionRecord, name: str, payload: Any) -> None:
        try:
            child = await self.api.create(
                flow_id=parent.flow_id,
                owner_id=parent.owner_id,
                options=parent.options,
                integration=_child_integration(parent.integration),
                external_events=[{"eventName": name, "payload": payload}],
                parent=parent,
                status="running",
            )
            await self.s.tasks.submit({"executionId": child.id, "flowId": child.flow_id})
        except Exception:
            log.failure("could not spawn child execution of {eid}", eid=parent.id)

    async def recover_after_restart(self) -> int:
        """Embedded mode: runs that were live when the process died end failed with a clear reason."""
        n = 0
        for rec in await self.s.executions.find_by_status({"running", "paused"}):
            await self._finish_crashed(rec, "The gateway restarted while this execution was running")
            n += 1
        return n


class _StatusFollower:
    """Applies status changes the engine makes by itself, in order, without blocking the engine."""

    def __init__(self, executions: Any, execution_id: str) -> None:
        self.executions = executions
        self.execution_id = execution_id
        self._chain: asyncio.Future[Any] | None = None

    def set(self, status: str, expected: set[str]) -> asyncio.Future[Any]:
        previous = self._chain

        async def apply() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await self.executions.update_status(self.execution_id, status, expected=expected)
            except Exception:  # best effort; the final status is written at the end
                log.failure("status update for {eid} failed", eid=self.execution_id)

        self._chain = asyncio.ensure_future(apply())
        return self._chain

    async def wait(self) -> None:
        if self._chain is not None:
            await asyncio.wait([self._chain])


def _child_integration(integration: dict[str, Any]) -> dict[str, Any]:
    out = dict(integration or {})
    archai = out.get("archai")
    if isinstance(archai, dict):
        archai = dict(archai)
        archai.pop("chatID", None)
        archai.pop("messageID", None)
        out["archai"] = archai
    return out
