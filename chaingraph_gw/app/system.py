"""The built-in ``system`` router: identity, echo and a resumable tick stream (tests, monitoring)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import NAME, __version__
from ..trpc.errors import TRPCError
from ..trpc.router import Call, Router, Tracked


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    role: str
    mode: str
    started_at: datetime
    started_monotonic: float


class TicksInput(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    count: int = Field(ge=1, le=1_000_000)
    intervalMs: int = Field(default=0, ge=0, le=3_600_000)  # wire name
    lastEventId: str | None = None  # merged in by the session on resume


def _resume_start(last_event_id: str | None) -> int:
    if last_event_id is None:
        return 0
    try:
        return int(last_event_id) + 1
    except ValueError:
        raise TRPCError("BAD_REQUEST", f"lastEventId must be a tick index, got {last_event_id!r}") from None


def system_router(info: InstanceInfo) -> Router:
    router = Router()

    @router.query("info")
    def system_info(call: Call) -> dict[str, Any]:
        """Who answered: name, version, instance id, role, mode, start time and uptime."""
        return {
            "name": NAME,
            "version": __version__,
            "instanceId": info.instance_id,
            "role": info.role,
            "mode": info.mode,
            "startedAt": info.started_at,
            "uptimeSeconds": round(time.monotonic() - info.started_monotonic, 3),
        }

    @router.query("echo")
    def echo(call: Call) -> Any:
        """Returns its input unchanged (undefined included)."""
        return call.raw_input

    @router.subscription("ticks", input=TicksInput)
    async def ticks(call: Call) -> AsyncIterator[Tracked]:
        """Tracked events ``{i, at}`` with id ``String(i)``; resumes after ``lastEventId`` (stateless)."""
        params: TicksInput = call.input
        interval = params.intervalMs / 1000
        now = datetime.now
        utc = UTC
        for i in range(_resume_start(params.lastEventId), params.count):
            if interval and i:
                await asyncio.sleep(interval)
            yield Tracked(str(i), {"i": i, "at": now(utc)})

    return router
