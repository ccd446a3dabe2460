"""SerializedNode v2 snapshots of runtime nodes, as carried by execution events (``node:*``).

Shape::

    {id, type, metadata: {type, title, category, version, [description], [flowPorts], ...node.metadata,
                          [parentNodeId]},
     status,
     systemPorts: {error: {id, value}, errorMessage: {id, value}, execute: {id, value}, success: {id, value}},
     ports: [{config: {id, key, type, direction, order, nodeId, ...}, value?}],   # top-level, declaration order
     connections: {}, schemaVersion: "v2"}

Port ids are ``node.port_ids[key]`` when the flow was imported with ChainGraph ids, else the bare key
(the @HEAD convention); system ports ``__execute`` etc. Child ports of object schemas get ids
``<parentId>.<key>``. Mutable object ports list the keys of their current value as schema properties.

This runs for every node event, so the static part of a node (port configs with ids, metadata base) is
built once per (node type, node id, port ids, port overrides) and cached. The returned top-level dicts
(node, metadata, each port entry and its ``config``) are fresh and values are deep-copied; nested config
structures (``schema``, ``options``, ``itemConfig``, ``ui``…) are shared with the cache: treat them as
read-only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..nodes.sdk import UNSET, NodeType, PortSpec
from .document import copy_json
from .model import NodeInstance

_SYSTEM = (("error", "__error"), ("errorMessage", "__errorMessage"), ("execute", "__execute"),
           ("success", "__success"))
_FLATTEN = ("schema", "itemConfig", "options", "isSchemaMutable", "isMutable", "defaultValue")
_CACHE_MAX = 4096


class _Skeleton:
    __slots__ = ("meta", "ports", "refs", "system_ids")

    def __init__(self, meta: dict[str, Any], ports: list[tuple[str, dict[str, Any], bool]],
                 refs: dict[str, PortSpec], system_ids: tuple[tuple[str, str, str], ...]) -> None:
        self.meta = meta
        self.ports = ports  # (key, static config, dynamic schema?)
        self.refs = refs  # the override specs this skeleton was built from (identity-checked on hits)
        self.system_ids = system_ids  # (name, key, id)


_cache: dict[tuple[Any, ...], _Skeleton] = {}


def clear_cache() -> None:
    _cache.clear()


def _port_config(spec: PortSpec, pid: str, node_id: str, parent_id: str | None = None) -> dict[str, Any]:
    base = spec.to_config()
    cfg: dict[str, Any] = {"id": pid}
    cfg.update(base)
    cfg["nodeId"] = node_id
    if parent_id is not None:
        cfg["parentId"] = parent_id
        if not cfg.get("order"):
            cfg.pop("order", None)
    eff = spec.effective()
    if spec.type == "any" and eff is not spec:
        under = cfg.get("underlyingType") or {}
        for k in _FLATTEN:
            if k in under and k not in cfg:
                cfg[k] = under[k]
    if eff.type == "object" and eff.schema:
        cfg["schema"] = dict(cfg.get("schema") or {})
        cfg["schema"]["properties"] = {
            child.key: _port_config(replace(child, direction=spec.direction), f"{pid}.{child.key}", node_id, pid)
            for child in eff.schema
        }
    return cfg


def _skeleton(node: NodeInstance) -> _Skeleton:
    cls: type[NodeType] = node.type_cls
    ov = node.port_overrides
    pids = node.port_ids
    key = (cls, node.id, tuple(pids.items()) if pids else (),
           tuple((k, id(v)) for k, v in ov.items()) if ov else ())
    sk = _cache.get(key)
    if sk is not None and all(sk.refs.get(k) is v for k, v in ov.items()):
        return sk
    meta: dict[str, Any] = {"type": cls.type_name, "title": cls.title, "category": cls.category,
                            "version": cls.version}
    if cls.description:
        meta["description"] = cls.description
    if cls.flow_ports:
        meta["flowPorts"] = dict(cls.flow_ports)
    ports = []
    for p in cls.ports:
        spec = ov.get(p.key) or p
        pid = pids.get(p.key) or p.key
        eff = spec.effective()
        dynamic = eff.type == "object" and eff.is_schema_mutable
        cfg = _port_config(spec, pid, node.id)
        if dynamic and "schema" not in cfg:
            cfg["schema"] = {"properties": {}}
        ports.append((p.key, cfg, dynamic))
    system_ids = tuple((name, k, pids.get(k) or k) for name, k in _SYSTEM)
    sk = _Skeleton(meta, ports, dict(ov), system_ids)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = sk
    return sk


def _inferred_config(key: str, value: Any, pid: str, parent_id: str, node_id: str, direction: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {"id": pid, "key": key}
    if isinstance(value, bool):
        cfg["type"] = "boolean"
    elif isinstance(value, (int, float)):
        cfg["type"] = "number"
    elif isinstance(value, str):
        cfg["type"] = "string"
    elif isinstance(value, dict):
        cfg["type"] = "object"
        cfg["isSchemaMutable"] = True
        cfg["schema"] = {"properties": {
            k: _inferred_config(k, v, f"{pid}.{k}", pid, node_id, direction) for k, v in value.items()}}
    elif isinstance(value, list):
        cfg["type"] = "array"
        cfg["itemConfig"] = {"type": "any"}
        cfg["isMutable"] = True
    else:
        cfg["type"] = "any"
    cfg["direction"] = direction
    cfg["parentId"] = parent_id
    cfg["nodeId"] = node_id
    return cfg


def _dynamic_schema(cfg: dict[str, Any], value: dict[str, Any], node_id: str) -> dict[str, Any]:
    schema = cfg["schema"]
    declared = schema.get("properties") or {}
    if all(k in declared for k in value):
        return schema
    pid = cfg["id"]
    direction = cfg.get("direction", "input")
    props = dict(declared)
    for k, v in value.items():
        if k not in props:
            props[k] = _inferred_config(k, v, f"{pid}.{k}", pid, node_id, direction)
    out = dict(schema)
    out["properties"] = props
    return out


def serialize_node(node: NodeInstance, *, status: str) -> dict[str, Any]:
    """The SerializedNode v2 dict of ``node`` with the given NodeStatus (``idle``, ``executing``,
    ``completed``, ``skipped``, ``error``, ...). Values are deep copies; UNSET values are omitted."""
    sk = _skeleton(node)
    values = node.values
    ports = []
    for key, cfg, dynamic in sk.ports:
        c = dict(cfg)
        v = values.get(key, UNSET)
        if dynamic and isinstance(v, dict) and v:
            c["schema"] = _dynamic_schema(cfg, v, node.id)
        if v is UNSET:
            ports.append({"config": c})
        else:
            ports.append({"config": c, "value": copy_json(v)})
    system = node.system
    system_ports = {}
    for name, key, sid in sk.system_ids:
        v = system.get(key, UNSET)
        system_ports[name] = {"id": sid} if v is UNSET else {"id": sid, "value": v}
    meta = dict(sk.meta)
    if node.metadata:
        meta.update(node.metadata)
    meta["type"] = sk.meta["type"]
    if node.title:
        meta["title"] = node.title
    if node.parent_node_id:
        meta["parentNodeId"] = node.parent_node_id
    return {
        "id": node.id,
        "type": sk.meta["type"],
        "metadata": meta,
        "status": status,
        "systemPorts": system_ports,
        "ports": ports,
        "connections": {},
        "schemaVersion": "v2",
    }


__all__ = ["clear_cache", "serialize_node"]
