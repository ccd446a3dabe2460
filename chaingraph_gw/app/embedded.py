"""The embedded default: one process with a SQLite store, in-memory fan-out and in-process workers.

``make run`` starts this. The stores, bus, queue and command bus sit behind the same
interfaces the distributed backends implement. With ``database_url`` set (local mode), the
state lives in PostgreSQL (:class:`PostgresStore`) instead of SQLite; everything else stays
in-process.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from ..api.auth import Authenticator, RequestContext
from ..api.execution import execution_router
from ..api.flows import flows_router, nodes_router, normalise_document
from ..config import Settings
from ..execution.service import ExecutionRunner, ExecutionService, Services
from ..flow import ids
from ..flow.document import parse_flow_text
from ..nodes.sdk import NodeRegistry, core_registry
from ..services.memory_bus import LocalCommandBus, LocalTaskQueue, MemoryEventBus
from ..services.postgres_store import PostgresStore
from ..services.records import FlowRecord
from ..services.sqlite_store import SQLiteStore
from ..trpc.router import Router
from ..trpc.session import ConnectionInfo
from .backend import BackendService, ReadinessCheck, readiness_probe

log = Logger(namespace="chaingraph_gw.embedded")

EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples" / "flows"
EXAMPLES_OWNER = "dev:admin"


@dataclass
class AppServices(Services):
    execution: ExecutionService | None = None
    runner: ExecutionRunner | None = None
    store: Any = None
    extra: Any = None  # backend-specific parts (distributed: store, Kafka transport, settings)
    resolve_partition: Any = None  # distributed: execution id → the owning worker's command partition


def build_services(settings: Settings, registry: NodeRegistry | None = None) -> AppServices:
    store: SQLiteStore | PostgresStore
    if settings.database_url:
        store = PostgresStore(settings.database_url, max_size=settings.database_pool_size)
    else:
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(str(data_dir / "chaingraph.sqlite3"))
    services = AppServices(
        flows=store.flows, executions=store.executions, events=store.events,
        bus=MemoryEventBus(), tasks=LocalTaskQueue(concurrency=settings.worker_concurrency),
        commands=LocalCommandBus(), registry=registry or core_registry(), store=store,
    )
    services.execution = ExecutionService(services)
    services.runner = ExecutionRunner(services, services.execution,
                                      worker_id=f"worker-{secrets.token_hex(4)}")
    return services


def api_routers() -> tuple[Router, dict[str, Router]]:
    """The root router (ChainGraph's flat execution API) and the namespaced extras."""
    return execution_router(), {"flows": flows_router(), "nodes": nodes_router()}


def make_context_factory(settings: Settings, services: AppServices) -> Any:
    auth = Authenticator(enabled=settings.auth_enabled, secret=settings.auth_jwt_secret)
    if not settings.auth_enabled:
        log.warn("AUTH_ENABLED is false: every caller is dev:admin (development only)")

    def create_context(info: ConnectionInfo, params: dict[str, str] | None) -> RequestContext:
        return RequestContext(user=auth.authenticate(info, params), auth_enabled=auth.enabled, info=info,
                              services=services)

    return create_context


class EmbeddedBackendService(BackendService):
    """Opens the store, recovers interrupted runs, loads example flows, starts the workers."""

    name = "embedded-backend"

    async def _start(self) -> None:
        s = self.services
        if isinstance(s.store, PostgresStore):
            await s.store.open()
        else:
            await s.store.wait_ready()
        recovered = await s.runner.recover_after_restart()
        if recovered:
            log.warn("{n} execution(s) were running when the process stopped; marked failed", n=recovered)
        if self.settings.load_examples:
            await load_examples(s)
        await s.tasks.consume(s.runner.handle_task)
        where = s.store.target if isinstance(s.store, PostgresStore) else self.settings.data_dir
        log.info("embedded backend ready (data in {path})", path=where)

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        store = self.services.store
        kind = "PostgreSQL" if isinstance(store, PostgresStore) else "SQLite"
        return {"store": readiness_probe(lambda: store.executions.get("readiness-probe"), 3,
                                         f"{kind} store unavailable")}

    async def _stop(self) -> None:
        s = self.services
        self.stop_active_runs("Gateway shutting down")
        await s.tasks.close()
        await s.store.close()


async def load_examples(services: AppServices, directory: Path = EXAMPLES_DIR) -> int:
    """Import examples/flows/* on first start (an empty flow table)."""
    if await services.flows.count() > 0 or not directory.is_dir():
        return 0
    n = 0
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".json", ".yaml", ".yml"):
            continue
        try:
            doc = normalise_document(parse_flow_text(path.read_text(), filename=str(path)), services.registry)
        except Exception as exc:  # a broken example must not stop the server
            log.error("example flow {path} is invalid: {err}", path=str(path), err=exc)
            continue
        now = datetime.now(UTC)
        await services.flows.create(FlowRecord(id=ids.flow_id(), name=doc["name"], owner_id=EXAMPLES_OWNER,
                                               version=1, document=doc, created_at=now, updated_at=now))
        n += 1
    log.info("loaded {n} example flow(s) from {dir}", n=n, dir=str(directory))
    return n
