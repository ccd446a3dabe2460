"""Assembling a gateway process: a MultiService of small services (listener, and later stores, workers).

Start order is the order children are added; Twisted stops them in reverse, so the listener
(added last) drains its clients before the backends it relies on go away.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .app.system import InstanceInfo, system_router
from .config import Settings
from .metrics import GatewayMetrics
from .transport.http import HttpEndpoints
from .transport.websocket import TRPCWebSocketFactory
from .trpc.router import Router
from .trpc.session import ContextFactory, SessionOptions, TRPCServer
from .trpc.transformer import make_transformer

log = Logger(namespace="chaingraph_gw.service")


@dataclass(slots=True)
class Gateway:
    """Everything one process serves; handy for tests that want to poke at internals."""

    settings: Settings
    info: InstanceInfo
    metrics: GatewayMetrics
    router: Router
    trpc: TRPCServer
    http: HttpEndpoints
    factory: TRPCWebSocketFactory
    backend: Any = None


def build_gateway(
    settings: Settings,
    *,
    extra_routers: dict[str, Router] | None = None,
    root_router: Router | None = None,
    create_context: ContextFactory | None = None,
) -> Gateway:
    info = InstanceInfo(
        instance_id=settings.instance_id or f"gw-{secrets.token_hex(4)}",
        role=settings.role,
        mode=settings.mode,
        started_at=datetime.now(UTC),
        started_monotonic=time.monotonic(),
    )
    metrics = GatewayMetrics()
    router = Router()
    if root_router is not None:
        router.merge(root_router)
    router.include("system", system_router(info))
    for prefix, sub in (extra_routers or {}).items():
        router.include(prefix, sub)
    options = SessionOptions(
        keepalive_enabled=settings.keepalive.enabled,
        ping_ms=settings.keepalive.ping_ms,
        pong_wait_ms=settings.keepalive.pong_wait_ms,
        max_batch=settings.limits.max_batch,
        max_subscriptions=settings.limits.max_subscriptions,
        max_outbound_bytes=settings.limits.max_outbound_bytes,
        include_stack=settings.environment != "production",
    )
    trpc = TRPCServer(
        router,
        transformer=make_transformer(settings.transformer),
        create_context=create_context,
        options=options,
        metrics=metrics,
    )
    http = HttpEndpoints(
        render_metrics=metrics.render,
        metrics_content_type=metrics.content_type,
        started_monotonic=info.started_monotonic,
    )
    factory = TRPCWebSocketFactory(
        trpc,
        http,
        max_frame_bytes=settings.limits.max_frame_bytes,
        max_connections=settings.limits.max_connections,
        trust_forwarded=settings.trust_forwarded,
    )
    return Gateway(settings, info, metrics, router, trpc, http, factory)


class ListenerService(Service):
    """Listens for WebSocket + HTTP; on stop, asks clients to reconnect elsewhere and drains."""

    name = "listener"

    def __init__(self, gateway: Gateway, reactor: Any = None, ready: Deferred[None] | None = None) -> None:
        self.gateway = gateway
        self._reactor = reactor
        self.port: Any = None
        # Listen only once the backends are ready (fires with None); an error stops the process.
        self.ready = ready
        self.listening: Deferred[None] = Deferred()

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def startService(self) -> None:
        super().startService()
        if self.ready is None:
            self._listen()
            return

        def failed(failure: Any) -> None:
            log.failure("backend failed to start; stopping", failure)
            self.listening.errback(failure)
            if self.reactor.running:
                self.reactor.stop()

        self.ready.addCallbacks(lambda _: self._listen(), failed)

    def _listen(self) -> None:
        if not self.running:
            return
        s = self.gateway.settings
        self.port = self.reactor.listenTCP(s.port, self.gateway.factory, backlog=1024, interface=s.host)
        addr = self.port.getHost()
        log.info(
            "chaingraph-gw {instance} listening on ws://{host}:{port} (role={role}, mode={mode}, "
            "transformer={transformer})",
            instance=self.gateway.info.instance_id, host=addr.host, port=addr.port,
            role=s.role, mode=s.mode, transformer=s.transformer,
        )
        self.listening.callback(None)

    @property
    def listening_port(self) -> int:
        return int(self.port.getHost().port)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        # An asyncio task (not ensureDeferred): the drain awaits asyncio sleeps.
        return Deferred.fromFuture(asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        gw = self.gateway
        drain = gw.settings.drain_seconds
        if self.port is not None:
            stopped = self.port.stopListening()
            self.port = None
            if isinstance(stopped, Deferred):
                await stopped.asFuture(asyncio.get_running_loop())
        gw.http.draining = True
        notified = gw.trpc.broadcast_reconnect()
        log.info("draining: sent reconnect notice to {n} client(s); waiting up to {s}s", n=notified, s=drain)
        deadline = time.monotonic() + drain
        while gw.trpc.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        remaining = list(gw.trpc.sessions)
        if remaining:
            log.info("drain time over: closing {n} remaining connection(s)", n=len(remaining))
            for session in remaining:
                session.transport.close(1012, "Service restart")
            close_deadline = time.monotonic() + 1.0
            while gw.trpc.sessions and time.monotonic() < close_deadline:
                await asyncio.sleep(0.02)
            for session in list(gw.trpc.sessions):
                session.transport.terminate()
                session.closed()


def make_gateway_service(
    settings: Settings, reactor: Any = None, *, with_backend: bool = False, **kw: Any
) -> tuple[MultiService, Gateway]:
    """The process's service tree: the backend first, the listener last (so it drains first on stop)."""
    root = MultiService()
    ready = None
    services = None
    readiness: dict[str, Any] = {}
    if with_backend:
        from .app.embedded import api_routers, make_context_factory

        if settings.mode == "distributed":
            from .app.distributed import DistributedBackendService, build_distributed_services

            services = build_distributed_services(settings)
            backend: Any = DistributedBackendService(settings, services)
            readiness = backend.readiness_checks()
        else:
            from .app.embedded import EmbeddedBackendService, build_services

            services = build_services(settings)
            backend = EmbeddedBackendService(settings, services)
            readiness = backend.readiness_checks()
        backend.setServiceParent(root)
        ready = backend.ready
        if settings.role in ("api", "all"):
            root_router, extras = api_routers()
            kw.setdefault("root_router", root_router)
            kw.setdefault("extra_routers", extras)
        kw.setdefault("create_context", make_context_factory(settings, services))
    gateway = build_gateway(settings, **kw)
    gateway.backend = services
    for name, check in readiness.items():
        gateway.http.add_readiness_check(name, check)
    if services is not None and hasattr(backend, "identity"):
        gateway.http.identity = backend.identity  # shared dict: filled in once the backend is up
    ListenerService(gateway, reactor, ready).setServiceParent(root)
    return root, gateway
