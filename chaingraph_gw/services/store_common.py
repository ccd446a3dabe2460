"""Pieces both SQL store backends share (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any


def resolve_futures(items: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    """Settle group-commit waiters; one cancelled by its caller is skipped (the write happened or not anyway)."""
    for fut, outcome in items:
        if fut.done():
            continue
        if outcome is None:
            fut.set_result(None)
        else:
            fut.set_exception(outcome)


class StoreFacade:
    """One of a store's interface views (``.flows``, ``.executions``, ``.events``) over the shared store."""

    __slots__ = ("store",)

    def __init__(self, store: Any) -> None:
        self.store = store

    async def close(self) -> None:
        """Close the shared store."""
        await self.store.close()
