"""An abort signal shared by the tRPC layer (``Call.signal``) and the engine (``ctx.signal``).

Neutral on purpose: it imports nothing from the gateway, so the engine need not import the tRPC
package and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable


class AbortSignal:
    """Fires once: ``.aborted``, ``.reason``, ``add_callback`` (run at once when already aborted)."""

    __slots__ = ("_callbacks", "aborted", "reason")

    def __init__(self) -> None:
        self.aborted = False
        self.reason: str | None = None
        self._callbacks: list[Callable[[], None]] = []

    def add_callback(self, cb: Callable[[], None]) -> None:
        if self.aborted:
            cb()
        else:
            self._callbacks.append(cb)

    def abort(self, reason: str = "aborted") -> None:
        if self.aborted:
            return
        self.aborted = True
        self.reason = reason
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            self._run_callback(cb)

    def _run_callback(self, cb: Callable[[], None]) -> None:
        cb()


__all__ = ["AbortSignal"]
