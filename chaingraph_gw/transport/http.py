"""Plain HTTP endpoints served on the WebSocket port: /health, /healthz, /ready, /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from twisted.logger import Logger

log = Logger(namespace="chaingraph_gw.http")

# A readiness check returns None when healthy or raises / returns a reason string.
ReadinessCheck = Callable[[], Awaitable[str | None]]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, **headers: str) -> HttpResponse:
        return cls(status, orjson.dumps(obj), "application/json", dict(headers))

    def encode(self, head_only: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unknown')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        lines.extend(f"{k}: {v}" for k, v in self.headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def _iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class HttpEndpoints:
    """Routes for health checking and scraping; everything else is a JSON 404."""

    def __init__(
        self,
        *,
        render_metrics: Callable[[], bytes],
        metrics_content_type: str,
        readiness: dict[str, ReadinessCheck] | None = None,
        started_monotonic: float | None = None,
    ) -> None:
        self.render_metrics = render_metrics
        self.metrics_content_type = metrics_content_type
        self.readiness: dict[str, ReadinessCheck] = dict(readiness or {})
        self.started = started_monotonic if started_monotonic is not None else time.monotonic()
        # Set while draining: /ready answers 503 so balancers stop sending new clients here.
        self.draining = False
        # Extra identity fields for /health (e.g. role, workerId), filled in by the backend.
        self.identity: dict[str, Any] = {}

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        self.readiness[name] = check

    async def handle(self, method: str, target: str, headers: dict[str, str], peer: Any) -> HttpResponse:
        path = urlsplit(target).path or "/"
        if path.rstrip("/") in ("/health", "/healthz", "/ready", "/metrics") and method not in ("GET", "HEAD"):
            return HttpResponse.json(405, {"error": "Method Not Allowed"}, Allow="GET, HEAD")
        route = path.rstrip("/") or "/"
        if route in ("/health", "/healthz"):
            return HttpResponse.json(200, {
                "status": "healthy",
                "timestamp": _iso_now(),
                "uptime": int(time.monotonic() - self.started),
                **self.identity,
            })
        if route == "/ready":
            return await self._ready()
        if route == "/metrics":
            return HttpResponse(200, self.render_metrics(), self.metrics_content_type)
        return HttpResponse.json(404, {"error": "Not Found", "path": path})

    async def _ready(self) -> HttpResponse:
        checks: dict[str, str] = {}
        failing: list[str] = []
        if self.draining:
            failing.append("draining")
            checks["draining"] = "server is shutting down"
        for name, check in self.readiness.items():
            try:
                reason = await check()
            except Exception as exc:  # a failing dependency is a 503, not a 500
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                failing.append(name)
                checks[name] = reason
            else:
                checks[name] = "ok"
        body = {"status": "ready" if not failing else "unavailable", "timestamp": _iso_now(), "checks": checks}
        if failing:
            body["failing"] = failing
            return HttpResponse.json(503, body)
        return HttpResponse.json(200, body)
