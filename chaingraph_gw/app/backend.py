"""What the backend services (embedded and distributed) share: a Twisted service whose start and
stop are asyncio coroutines, a ``ready`` Deferred, and the /ready probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from ..api.wire_types import register_wire_types
from ..config import Settings

if TYPE_CHECKING:
    from .embedded import AppServices

ReadinessCheck = Callable[[], Awaitable[str | None]]


class BackendService(Service):
    """Registers the wire types and runs :meth:`_start` as an asyncio task on start (``ready`` fires
    or fails with it); :meth:`stopService` runs :meth:`_stop` and returns its Deferred."""

    def __init__(self, settings: Settings, services: AppServices) -> None:
        self.settings = settings
        self.services = services
        self.ready: Deferred[None] = Deferred()

    def startService(self) -> None:
        super().startService()
        register_wire_types()
        # asyncio tasks (the stores, buses and queues are asyncio-native); they run once the reactor runs.
        d = Deferred.fromFuture(asyncio.ensure_future(self._start()))
        d.addCallbacks(lambda _: self.ready.callback(None), self.ready.errback)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromFuture(asyncio.ensure_future(self._stop()))

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def stop_active_runs(self, reason: str) -> None:
        """Stop every execution this process is running (they end cancelled)."""
        runner = self.services.runner
        if runner is not None:
            for engine in list(runner.active.values()):
                engine.stop(reason)

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {}


def readiness_probe(call: Callable[[], Awaitable[Any]], timeout: float, failure: str) -> ReadinessCheck:
    """A /ready check: ``None`` when ``call()`` finishes within ``timeout``, else ``"<failure>: <error>"``."""

    async def check() -> str | None:
        try:
            await asyncio.wait_for(call(), timeout)
        except TimeoutError:
            return f"{failure}: no answer within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001
            text = str(exc) or type(exc).__name__
            # Backends may already say "X unreachable: …": do not repeat the prefix.
            return text if text.startswith(failure) else f"{failure}: {text}"
        return None

    return check
