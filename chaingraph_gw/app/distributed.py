"""Distributed mode: PostgreSQL (state, event log, leases) + Kafka (tasks, commands, live events).

Roles:
* ``api``: serves the WebSocket API; produces tasks and commands; one Kafka consumer fans live
  events out to this process's subscribers.
* ``worker``: takes tasks from the shared consumer group, runs executions under a lease in
  PostgreSQL, listens for commands on the one command partition it owns; serves only
  ``/health``, ``/ready``, ``/metrics`` (and ``system.*``).
* ``all``: both.

How a command reaches the worker that owns an execution: every worker holds one slot (a session
advisory lock in PostgreSQL) and consumes only the command partition with that number; its
worker id starts with ``w<slot>-``. The owner's id is on the execution row while it holds the
lease, so the API produces each command straight to the right partition.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from twisted.logger import Logger

from ..config import Settings
from ..execution.service import ExecutionRunner, ExecutionService
from ..nodes.sdk import NodeRegistry, core_registry
from ..services.interfaces import StoreUnavailable
from ..services.kafka_bus import KafkaCommandBus, KafkaEventBus, KafkaSettings, KafkaTaskQueue, KafkaTransport
from ..services.postgres_store import PostgresStore
from .backend import BackendService, ReadinessCheck, readiness_probe
from .embedded import AppServices

log = Logger(namespace="chaingraph_gw.distributed")

SLOT_LOCK_BASE = 0x63670000  # "cg" << 16: advisory lock ids of worker slots
_WORKER_SLOT = re.compile(r"^w(\d+)-")


@dataclass
class DistributedParts:
    store: PostgresStore
    transport: KafkaTransport
    kafka: KafkaSettings


def kafka_settings(settings: Settings) -> KafkaSettings:
    prefix = settings.kafka_topics_prefix
    # The consumer group is per deployment (prefix), so deployments sharing a cluster never rebalance each other.
    return KafkaSettings(brokers=settings.kafka_brokers or "127.0.0.1:9092", prefix=prefix,
                         group_id=f"{prefix}chaingraph-workers")


def build_distributed_services(settings: Settings, registry: NodeRegistry | None = None) -> AppServices:
    if not settings.database_url:
        raise ValueError("distributed mode needs DATABASE_URL")
    if not settings.kafka_brokers:
        raise ValueError("distributed mode needs KAFKA_BROKERS")
    store = PostgresStore(settings.database_url, max_size=settings.database_pool_size)
    ks = kafka_settings(settings)
    transport = KafkaTransport(ks)

    async def resolve_partition(execution_id: str) -> int | None:
        rec = await store.executions.get(execution_id)
        if rec is None or not rec.processing_worker_id:
            return None
        m = _WORKER_SLOT.match(rec.processing_worker_id)
        return int(m.group(1)) if m else None

    services = AppServices(
        flows=store.flows, executions=store.executions, events=store.events,
        bus=KafkaEventBus(transport), tasks=KafkaTaskQueue(transport),
        commands=None, registry=registry or core_registry(), store=store,
    )
    services.extra = DistributedParts(store, transport, ks)
    services.resolve_partition = resolve_partition
    services.execution = ExecutionService(services)
    return services


class DistributedBackendService(BackendService):
    """Connects to PostgreSQL (migrating under an advisory lock) and Kafka, then runs the role."""

    name = "distributed-backend"

    def __init__(self, settings: Settings, services: AppServices) -> None:
        super().__init__(settings, services)
        self._slot_conn: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._worker_sem: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.identity: dict[str, Any] = {"role": settings.role}  # shown by /health

    @property
    def is_worker(self) -> bool:
        return self.settings.role in ("worker", "all")

    async def _start(self) -> None:
        s = self.services
        parts: DistributedParts = s.extra
        await _retrying("PostgreSQL", parts.store.open)
        await _retrying("Kafka", parts.transport.start)
        own_partition = None
        if self.is_worker:
            own_partition = await self._claim_slot(parts)
            worker_id = f"w{own_partition}-{secrets.token_hex(4)}"
        else:
            worker_id = f"api-{secrets.token_hex(4)}"
        self.identity["workerId"] = worker_id
        s.commands = KafkaCommandBus(parts.transport, own_partition=own_partition,
                                     resolve_partition=s.resolve_partition)
        if hasattr(s.commands, "start"):
            await s.commands.start()
        if hasattr(s.bus, "start"):
            await s.bus.start()
        if self.is_worker:
            s.runner = ExecutionRunner(s, s.execution, worker_id=worker_id,
                                       lease_seconds=self.settings.lease_seconds)
            self._worker_sem = asyncio.Semaphore(self.settings.worker_concurrency)
            await s.tasks.consume(self._on_task, concurrency=self.settings.worker_concurrency)
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        log.info("distributed backend ready: role={role} worker={wid} postgres={pg} kafka={kafka}",
                 role=self.settings.role, wid=worker_id, pg=parts.store.target, kafka=parts.kafka.brokers)

    async def _claim_slot(self, parts: DistributedParts) -> int:
        """Hold a session advisory lock naming this worker's command partition, for the process's life."""
        conn = await psycopg.AsyncConnection.connect(self.settings.database_url, autocommit=True,
                                                     connect_timeout=5)
        # The real partition count of the commands topic (it may predate our settings).
        slots = parts.transport.partition_count(parts.kafka.commands_topic)
        for slot in range(slots):
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (SLOT_LOCK_BASE + slot,))
            row = await cur.fetchone()
            if row and row[0]:
                self._slot_conn = conn
                return slot
        await conn.close()
        raise StoreUnavailable(f"all {slots} worker slots are taken; "
                               "raise the number of command partitions")

    async def _on_task(self, task: dict[str, Any]) -> None:
        # Return once a run slot is free (back-pressure on the consumer); the run goes on in the background.
        assert self._worker_sem is not None
        await self._worker_sem.acquire()
        runner = self.services.runner

        async def run() -> None:
            try:
                await runner.handle_task(task)
            finally:
                self._worker_sem.release()

        t = asyncio.ensure_future(run())
        self._running.add(t)
        t.add_done_callback(self._running.discard)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.recovery_sweep_seconds)
            try:
                await self.sweep()
            except Exception as exc:
                log.warn("recovery sweep failed: {err}", err=exc)

    async def sweep(self) -> int:
        """Re-queue runs whose worker died (lease expired) or whose task never got taken."""
        s = self.services
        n = 0
        wall = datetime.now(UTC)
        for rec in await s.executions.find_by_status({"running", "paused"}, limit=500):
            lease = getattr(rec, "lease_expires_at", None)
            orphan = rec.processing_worker_id is None and rec.updated_at < wall - timedelta(seconds=30)
            # A grace period of one more lease: after a database outage the owner renews within
            # lease/3 of its return; only a lease left expired that long means the worker is gone.
            grace = timedelta(seconds=self.settings.lease_seconds)
            expired = rec.processing_worker_id is not None and lease is not None and lease + grace <= wall
            if orphan or expired:
                await s.tasks.submit({"executionId": rec.id, "flowId": rec.flow_id, "recovery": True})
                n += 1
        if n:
            log.info("recovery sweep re-queued {n} execution(s)", n=n)
        return n

    async def _stop(self) -> None:
        s = self.services
        parts: DistributedParts = s.extra
        if self._sweeper is not None:
            self._sweeper.cancel()
        # Leases are released by the runs themselves; another worker resumes nothing
        # (the run ends cancelled), so drain executions by letting supervisors stop us gently.
        self.stop_active_runs("Worker shutting down")
        for t in list(self._running):
            try:
                await asyncio.wait_for(asyncio.shield(t), 5)
            except Exception:
                pass
        for closable in (s.tasks, s.commands, s.bus):
            if closable is not None:
                try:
                    await closable.close()
                except Exception:
                    log.failure("closing {c} failed", c=type(closable).__name__)
        await parts.transport.close()
        await parts.store.close()
        if self._slot_conn is not None:
            await self._slot_conn.close()

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        parts: DistributedParts = self.services.extra
        return {"postgres": readiness_probe(parts.store.ping, 3, "PostgreSQL unreachable"),
                "kafka": readiness_probe(parts.transport.ping, 4, "Kafka unreachable")}


async def _retrying(name: str, start: Any, attempts: int = 30, delay: float = 1.0) -> None:
    """Dependencies may come up after us (containers, supervisors): retry for a while, then fail."""
    for i in range(attempts):
        try:
            await start()
            return
        except Exception as exc:
            if i == attempts - 1:
                raise
            log.warn("{name} not ready ({err}); retrying in {d}s", name=name, err=exc, d=delay)
            await asyncio.sleep(delay)
