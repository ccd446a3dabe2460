"""SuperJSON custom types ChainGraph clients register: ``ExecutionEventImpl`` and ``BaseNode``.

An ``ExecutionEventImpl`` goes on the wire in ChainGraph's current client form: ``{index, type,
timestamp: ISO string, data: {json, meta}}`` (``data`` a nested superjson payload object), under
the annotation ``[["custom","ExecutionEventImpl"]]``. Node snapshots inside ``data`` are
annotated ``[["custom","BaseNode"]]`` and carry a SerializedNode v2 object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..trpc import superjson as sj


class NodeSnapshot(dict):  # type: ignore[type-arg]
    """A SerializedNode v2 dict that encodes as the custom type ``BaseNode``."""


@dataclass(frozen=True, slots=True)
class ExecutionEventImpl:
    index: int
    type: str
    timestamp: datetime
    data: Any


def _iso(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _wrap_nodes(data: Any) -> Any:
    if type(data) is dict and type(data.get("node")) is dict:
        return {**data, "node": NodeSnapshot(data["node"])}
    return data


def event_impl(event: Any) -> ExecutionEventImpl:
    """From a stored event (``services.records.StoredEvent``)."""
    return ExecutionEventImpl(event.index, event.type, event.timestamp, _wrap_nodes(event.data))


def _register(codec: sj.SuperJSON) -> None:
    codec.register_custom(
        "BaseNode",
        is_applicable=lambda v: type(v) is NodeSnapshot,
        serialize=lambda v: dict(v),
        deserialize=lambda v: NodeSnapshot(v),
    )
    codec.register_custom(
        "ExecutionEventImpl",
        is_applicable=lambda v: type(v) is ExecutionEventImpl,
        serialize=lambda v: {"index": v.index, "type": v.type, "timestamp": _iso(v.timestamp),
                             "data": codec.serialize(v.data)},
        deserialize=lambda v: ExecutionEventImpl(
            v["index"], v["type"], datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")),
            codec.deserialize(v["data"]),
        ),
    )


_registered: set[int] = set()


def register_wire_types(codec: sj.SuperJSON | None = None) -> None:
    codec = codec or sj.default
    if id(codec) not in _registered:
        _register(codec)
        _registered.add(id(codec))
