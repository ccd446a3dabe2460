"""Execution options for one engine run (ChainGraph ``ExecutionOptions``, @HEAD defaults)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_CONCURRENCY = 50
DEFAULT_NODE_TIMEOUT_MS = 3_600_000
DEFAULT_FLOW_TIMEOUT_MS = 10_800_000


def _positive_int(value: Any, default: int) -> int:
    """A JS number given on the wire → a positive int; anything else (absent, null, NaN, ≤0, bool) → default."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    n = int(value)
    return n if n > 0 else default


def _breakpoints(value: Any) -> frozenset[str]:
    if not value or isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, str) and v)


@dataclass(frozen=True)
class ExecutionOptions:
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    flow_timeout_ms: int = DEFAULT_FLOW_TIMEOUT_MS
    debug: bool = False
    breakpoints: frozenset[str] = frozenset()

    @classmethod
    def from_wire(cls, options: dict[str, Any] | None) -> ExecutionOptions:
        """From ChainGraph's ``{execution?: {maxConcurrency?, nodeTimeoutMs?, flowTimeoutMs?}, debug?,
        breakpoints?}``. Missing or invalid values fall back to the defaults."""
        if not isinstance(options, dict):
            return cls()
        execution = options.get("execution")
        if not isinstance(execution, dict):
            execution = {}
        return cls(
            max_concurrency=_positive_int(execution.get("maxConcurrency"), DEFAULT_MAX_CONCURRENCY),
            node_timeout_ms=_positive_int(execution.get("nodeTimeoutMs"), DEFAULT_NODE_TIMEOUT_MS),
            flow_timeout_ms=_positive_int(execution.get("flowTimeoutMs"), DEFAULT_FLOW_TIMEOUT_MS),
            debug=options.get("debug") is True,
            breakpoints=_breakpoints(options.get("breakpoints")),
        )

    def to_wire(self) -> dict[str, Any]:
        """The ChainGraph shape (for storing with the execution row)."""
        out: dict[str, Any] = {
            "execution": {"maxConcurrency": self.max_concurrency, "nodeTimeoutMs": self.node_timeout_ms,
                          "flowTimeoutMs": self.flow_timeout_ms},
            "debug": self.debug,
        }
        if self.breakpoints:
            out["breakpoints"] = sorted(self.breakpoints)
        return out


__all__ = ["DEFAULT_FLOW_TIMEOUT_MS", "DEFAULT_MAX_CONCURRENCY", "DEFAULT_NODE_TIMEOUT_MS", "ExecutionOptions"]
