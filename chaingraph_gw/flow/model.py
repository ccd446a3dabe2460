"""The runtime flow graph the engine executes: node instances with values, and ordered edges.

Built from a canonical flow document (``flow/document.py``) or a ChainGraph export
(``flow/chaingraph_import.py``). Ports are addressed by *paths* relative to a node:
``text``, ``variables.name``, ``array[0]``, ``cfg.inner[2].leaf``, or a system port
``__execute`` / ``__success`` / ``__error`` / ``__errorMessage``. A child port's value lives
inside its parent's value, so a path is also a way into ``NodeInstance.values``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from ..nodes.sdk import SYSTEM_PORTS, UNSET, NodeType, PortSpec

_SEGMENT = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> list[str | int]:
    """``a.b[2].c`` → ``["a", "b", 2, "c"]``; raises ValueError on malformed paths."""
    if not path:
        raise ValueError("empty port path")
    out: list[str | int] = []
    pos = 0
    for m in _SEGMENT.finditer(path):
        if m.start() != pos or (pos == 0 and path.startswith(".")):
            raise ValueError(f"malformed port path {path!r}")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path) or not out or not isinstance(out[0], str):
        raise ValueError(f"malformed port path {path!r}")
    return out


def get_path(values: dict[str, Any], path: str | list[str | int]) -> Any:
    """The value at ``path`` or UNSET when any step is missing."""
    segs = parse_path(path) if isinstance(path, str) else path
    cur: Any = values
    for seg in segs:
        if isinstance(seg, int):
            if not isinstance(cur, list) or seg >= len(cur):
                return UNSET
            cur = cur[seg]
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return UNSET
            cur = cur[seg]
    return cur


def set_path(values: dict[str, Any], path: str | list[str | int], value: Any) -> None:
    """Write ``value`` at ``path``, creating intermediate dicts (and extending lists) as needed."""
    segs = parse_path(path) if isinstance(path, str) else path
    cur: Any = values
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        nxt_is_index = not last and isinstance(segs[i + 1], int)
        if isinstance(seg, int):
            if not isinstance(cur, list):
                raise ValueError(f"port path step [{seg}] is not inside an array")
            while len(cur) <= seg:
                cur.append(None)
            if last:
                cur[seg] = value
            else:
                if not isinstance(cur[seg], (dict, list)):
                    cur[seg] = [] if nxt_is_index else {}
                cur = cur[seg]
        else:
            if not isinstance(cur, dict):
                raise ValueError(f"port path step {seg!r} is not inside an object")
            if last:
                cur[seg] = value
            else:
                if not isinstance(cur.get(seg), (dict, list)):
                    cur[seg] = [] if nxt_is_index else {}
                cur = cur[seg]


@dataclass
class NodeInstance:
    """One node of a flow with its current port values (top-level keys) and system port values."""

    id: str
    type_cls: type[NodeType]
    title: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] = field(
        default_factory=lambda: {"__execute": True, "__success": True, "__error": False, "__errorMessage": ""}
    )
    parent_node_id: str | None = None  # GroupNode membership
    metadata: dict[str, Any] = field(default_factory=dict)  # ui, description... (kept for snapshots)
    # Per-port configs for ports whose schema differs from the class (mutable object/array ports, imported
    # ChainGraph configs). Keyed by top-level port key.
    port_overrides: dict[str, PortSpec] = field(default_factory=dict)
    # Original ChainGraph port ids (top-level key → id) when imported, for faithful snapshots.
    port_ids: dict[str, str] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        return self.type_cls.type_name

    def spec(self, key: str) -> PortSpec | None:
        return self.port_overrides.get(key) or self.type_cls.port(key)

    def get(self, path: str) -> Any:
        if path in SYSTEM_PORTS:
            return self.system.get(path, UNSET)
        return get_path(self.values, path)

    def set(self, path: str, value: Any) -> None:
        if path in SYSTEM_PORTS:
            self.system[path] = value
        else:
            set_path(self.values, path, value)


@dataclass(frozen=True)
class Edge:
    """A connection ``source_node.source_path`` → ``target_node.target_path``; ``order`` = document order."""

    id: str
    source_node: str
    source_path: str
    target_node: str
    target_path: str
    order: int

    @property
    def from_error_port(self) -> bool:
        return self.source_path in ("__error", "__errorMessage")


@dataclass
class Flow:
    name: str
    nodes: dict[str, NodeInstance]  # insertion-ordered
    edges: list[Edge]
    description: str = ""
    tags: list[str] = field(default_factory=list)
    id: str | None = None

    def clone(self) -> Flow:
        """A fresh copy for one execution (values are mutated while running)."""
        return copy.deepcopy(self)

    def incoming(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.target_node == node_id]

    def outgoing(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.source_node == node_id]

    def metadata(self) -> dict[str, Any]:
        """ChainGraph FlowMetadata subset carried in flow:* events."""
        return {"id": self.id, "name": self.name, "description": self.description, "tags": list(self.tags)}
