"""Execution event types, node statuses and payload helpers (ChainGraph ``ExecutionEventEnum``, spec §3).

The engine calls ``emit(type, data)`` with these type strings and ``data`` dicts; the caller assigns
``index``/``timestamp`` and publishes. Errors inside payloads are :class:`JSError` values, so they
serialise as superjson ``Error`` objects.
"""

from __future__ import annotations

from typing import Any, Final

from ..flow.model import Edge
from ..trpc.superjson import JSError

# -- event types ------------------------------------------------------------------------------------
FLOW_STARTED: Final = "flow:started"
FLOW_COMPLETED: Final = "flow:completed"
FLOW_FAILED: Final = "flow:failed"
FLOW_CANCELLED: Final = "flow:cancelled"
FLOW_PAUSED: Final = "flow:paused"
FLOW_RESUMED: Final = "flow:resumed"
NODE_STARTED: Final = "node:started"
NODE_COMPLETED: Final = "node:completed"
NODE_FAILED: Final = "node:failed"
NODE_SKIPPED: Final = "node:skipped"
NODE_STATUS_CHANGED: Final = "node:status-changed"
NODE_DEBUG_LOG_STRING: Final = "node:debug-log-string"
EDGE_TRANSFER_COMPLETED: Final = "edge:transfer-completed"
EDGE_TRANSFER_FAILED: Final = "edge:transfer-failed"
DEBUG_BREAKPOINT_HIT: Final = "debug:breakpoint-hit"

TERMINAL_EVENTS: Final = frozenset({FLOW_COMPLETED, FLOW_FAILED, FLOW_CANCELLED})

# -- node statuses (NodeStatus strings) -------------------------------------------------------------
IDLE: Final = "idle"
INITIALIZED: Final = "initialized"
READY: Final = "ready"
PENDING: Final = "pending"
EXECUTING: Final = "executing"
COMPLETED: Final = "completed"
SKIPPED: Final = "skipped"
ERROR: Final = "error"

# -- node:skipped reasons (exact strings) -----------------------------------------------------------
SKIP_UNRESOLVED: Final = "there are unresolved input ports"
SKIP_TRANSFER_FAILED: Final = "edge transfer failed"
SKIP_SHOULD_EXECUTE: Final = "node skipped because shouldExecute returned false"

# -- messages --------------------------------------------------------------------------------------
DEFAULT_STOP_REASON: Final = "Execution stopped by user"


def js_error(message: str, name: str = "Error") -> JSError:
    return JSError(name=name, message=message)


def node_timeout_message(ms: int) -> str:
    return f"Node execution timed out after {ms} ms"


def flow_timeout_message(ms: int) -> str:
    return f"Flow execution timed out after {ms} ms"


def no_data_message(source_path: str) -> str:
    return f"Source port {source_path} has no data to transfer"


def serialized_edge(edge: Edge, status: str = "active") -> dict[str, Any]:
    """ChainGraph ``SerializedEdge``; port ids are the bare port paths (as in node snapshots)."""
    return {
        "id": edge.id,
        "metadata": {},
        "status": status,
        "sourceNodeId": edge.source_node,
        "sourcePortId": edge.source_path,
        "targetNodeId": edge.target_node,
        "targetPortId": edge.target_path,
    }


__all__ = [
    "COMPLETED", "DEBUG_BREAKPOINT_HIT", "DEFAULT_STOP_REASON", "EDGE_TRANSFER_COMPLETED", "EDGE_TRANSFER_FAILED",
    "ERROR", "EXECUTING", "FLOW_CANCELLED", "FLOW_COMPLETED", "FLOW_FAILED", "FLOW_PAUSED", "FLOW_RESUMED",
    "FLOW_STARTED", "IDLE", "INITIALIZED", "NODE_COMPLETED", "NODE_DEBUG_LOG_STRING", "NODE_FAILED",
    "NODE_SKIPPED", "NODE_STARTED", "NODE_STATUS_CHANGED", "PENDING", "READY", "SKIPPED", "SKIP_SHOULD_EXECUTE",
    "SKIP_TRANSFER_FAILED", "SKIP_UNRESOLVED", "TERMINAL_EVENTS", "flow_timeout_message", "js_error",
    "no_data_message", "node_timeout_message", "serialized_edge",
]
