"""Convert ChainGraph flow JSON into the canonical flow document (``flow/document.py``).

Accepted inputs (node catalog §2.1):

* the stored flow ``{id, metadata, nodes: [SerializedNode], edges: [...]}`` (SerializedNode v2, and the
  legacy v1 form whose ``ports`` is a map ``portId -> {config, value}``);
* the frontend export file ``{version: "1.0", virtualOrigin, flowMetadata, nodes, edges, ...}``.

Conversion (mirrors the import algorithm of §2.8, but reports what ChainGraph would silently skip):

* node ids are kept; ids outside ``[A-Za-z0-9_-]{1,64}`` (e.g. ``TextNode:NO…``) are mapped
  deterministically (invalid characters → ``_``, plus a short hash when that would collide);
* the type comes from ``metadata.type`` (fallback ``type``); unsupported types are all reported;
* ``metadata.title`` → ``title`` (when it differs from the type's title), ``metadata.ui`` /
  ``metadata.flowPorts`` / ``metadata.metadata`` → ``metadata``, ``metadata.parentNodeId`` → ``parent``;
* top-level port values: ``value``, else ``config.defaultValue``, else the class default; converted the
  way ChainGraph deserializes them (null string → ``''``, numeric strings → numbers, …); values equal to
  the class initial value are left out. Child values live inside their parents. Properties of mutable
  object schemas become keys of the value (their ``defaultValue`` or the type's zero value);
* ``systemPorts.execute.value: false`` → ``values.__execute: false``;
* port ids that differ from the key (@960 ``key:PO…``) → ``portIds``; the ``underlyingType`` of ``any``
  ports → ``types``;
* edges keep their order and ids; their port ids (``key:PO…``, @HEAD bare keys, child ids
  ``<portId>.<k>`` / ``<portId>[i]``, system port ids) are resolved into port paths. Edges whose node or
  port cannot be found are errors.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Any

from ..nodes.sdk import SYSTEM_PORTS, NodeRegistry, NodeType, PortSpec
from .document import (
    NODE_ID_RE,
    FlowValidationError,
    copy_json,
    decl_from_spec,
    describe,
    json_equal,
    json_problem,
)

_SYSTEM_KEYS = {"execute": "__execute", "success": "__success", "error": "__error", "errorMessage": "__errorMessage"}
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_HEAD = re.compile(r"([^.\[]+)(.*)\Z", re.DOTALL)
_INT = re.compile(r"[+-]?\d+\Z")
_KEEP_META = ("ui", "flowPorts", "metadata")


def is_chaingraph_document(data: Any) -> bool:
    """True for ChainGraph stored-flow JSON or a frontend export file (not a canonical document)."""
    if not isinstance(data, dict):
        return False
    if data.get("version") == "1.0" and "virtualOrigin" in data:
        return True
    nodes, edges = data.get("nodes"), data.get("edges")
    if isinstance(edges, list) and any(isinstance(e, dict) and ("sourceNodeId" in e or "sourcePortId" in e)
                                       for e in edges):
        return True
    if isinstance(nodes, list) and any(isinstance(n, dict) and ("systemPorts" in n or "ports" in n
                                                                or "schemaVersion" in n) for n in nodes):
        return True
    return isinstance(data.get("metadata"), dict) and "name" not in data and isinstance(nodes, list)


# -- ids ---------------------------------------------------------------------------------------------

def _plain_id(rid: str) -> str:
    return (_BAD_CHARS.sub("_", rid) or "_")[:64]


def _hashed_id(rid: str) -> str:
    return _plain_id(rid)[:55] + "_" + hashlib.sha1(rid.encode("utf-8")).hexdigest()[:8]


def sanitize_ids(raw_ids: list[str]) -> dict[str, str]:
    """Deterministic map original id → id valid in a canonical document (valid ids map to themselves)."""
    originals = set(raw_ids)
    plain = {rid: _plain_id(rid) for rid in originals}
    claimed = Counter(plain.values())
    out = {}
    for rid in originals:
        s = plain[rid]
        if s == rid:
            out[rid] = rid
        elif claimed[s] > 1 or s in originals:
            out[rid] = _hashed_id(rid)
        else:
            out[rid] = s
    return out


# -- values ------------------------------------------------------------------------------------------

def _js_number_string(n: float) -> str:
    if isinstance(n, int):
        return str(n)
    if math.isnan(n):
        return "NaN"
    if math.isinf(n):
        return "Infinity" if n > 0 else "-Infinity"
    if n.is_integer() and abs(n) < 1e21:
        return str(int(n))
    r = repr(n)
    if "e" in r:
        mant, exp = r.split("e")
        e = int(exp)
        return f"{mant}e{'+' if e > 0 else '-'}{abs(e)}"
    return r


def _props(cfg: dict[str, Any]) -> dict[str, Any]:
    schema = cfg.get("schema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    return props if isinstance(props, dict) else {}


def _underlying(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Follow ``underlyingType`` while the type is ``any``; None when there is no concrete type."""
    seen = 0
    while cfg.get("type") == "any":
        u = cfg.get("underlyingType")
        if not isinstance(u, dict) or seen > 16:
            return None
        cfg = u
        seen += 1
    return cfg


def _zero(cfg: dict[str, Any]) -> Any:
    if "defaultValue" in cfg:
        return convert_value(cfg, copy_json(cfg["defaultValue"]))
    t = cfg.get("type")
    if t == "string":
        return ""
    if t == "number":
        return 0
    if t == "boolean":
        return False
    if t == "object":
        return {k: _zero(p) for k, p in _props(cfg).items() if isinstance(p, dict)}
    if t == "array":
        return []
    return None


def convert_value(cfg: dict[str, Any], value: Any) -> Any:
    """A stored port value as ChainGraph's deserializer reads it, given the port's JSON config."""
    t = cfg.get("type")
    if t == "any":
        u = _underlying(cfg)
        return value if u is None or value is None else convert_value(u, value)
    if t == "string":
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return _js_number_string(value)
        return value
    if t == "number":
        if value is None:
            return 0
        if isinstance(value, str):
            s = value.strip()
            if not s:
                return 0
            if _INT.match(s):
                return int(s)
            try:
                f = float(s)
            except ValueError:
                return value
            return f if math.isfinite(f) else value
        return value
    if t == "boolean":
        return False if value is None else value
    if t == "object":
        if not isinstance(value, dict):
            return value
        props = _props(cfg)
        out = {k: convert_value(props[k], v) if isinstance(props.get(k), dict) else copy_json(v)
               for k, v in value.items()}
        if cfg.get("isSchemaMutable"):
            for k, pc in props.items():
                if k not in out and isinstance(pc, dict):
                    out[k] = _zero(pc)
        return out
    if t == "array":
        if not isinstance(value, list):
            return value
        item = cfg.get("itemConfig")
        return [convert_value(item, v) for v in value] if isinstance(item, dict) else copy_json(value)
    return copy_json(value)


def _fit(spec: PortSpec, value: Any) -> Any:
    """Drop keys a fixed-schema object port does not declare (ChainGraph copies them verbatim, but
    they address nothing)."""
    if spec.type == "object" and spec.schema and not spec.is_schema_mutable and isinstance(value, dict):
        out = {}
        for k, v in value.items():
            prop = spec.property(k)
            if prop is not None:
                out[k] = _fit(prop, v)
        return out
    return value


def decl_from_config(cfg: dict[str, Any]) -> Any:
    """A ``types`` declaration from a ChainGraph port config (``any`` when there is no concrete type)."""
    c = _underlying(cfg)
    if c is None:
        return "any"
    t = c.get("type")
    if t in ("string", "number", "boolean", "secret", "stream"):
        return t
    if t == "enum":
        opts = [o.get("id") for o in c.get("options") or [] if isinstance(o, dict) and isinstance(o.get("id"), str)]
        return {"type": "enum", "options": opts} if opts else "enum"
    if t == "object":
        props = {k: decl_from_config(p) for k, p in _props(c).items() if isinstance(p, dict)}
        mutable = bool(c.get("isSchemaMutable"))
        if not props:
            return "object" if mutable else {"type": "object", "mutable": False}
        out: dict[str, Any] = {"type": "object", "properties": props}
        if mutable:
            out["mutable"] = True
        return out
    if t == "array":
        item = c.get("itemConfig")
        mutable = bool(c.get("isMutable") or c.get("isSchemaMutable"))
        idecl = decl_from_config(item) if isinstance(item, dict) else "any"
        if idecl == "any":
            return "array" if mutable or item is None else {"type": "array", "item": "any"}
        out = {"type": "array", "item": idecl}
        if mutable:
            out["mutable"] = True
        return out
    return "any"


# -- the importer ------------------------------------------------------------------------------------

class _Importer:
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self.errors: list[dict[str, str]] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def run(self, data: dict[str, Any]) -> dict[str, Any]:
        export = data.get("version") == "1.0" and "virtualOrigin" in data
        if export:
            meta = data.get("flowMetadata") if isinstance(data.get("flowMetadata"), dict) else {}
            vo = data.get("virtualOrigin")
            if not (isinstance(vo, dict) and all(isinstance(vo.get(k), (int, float)) and not isinstance(vo.get(k), bool)
                                                 for k in ("x", "y"))):
                self.err("virtualOrigin", "the export file's virtualOrigin must be {x: number, y: number}")
        else:
            meta = data.get("metadata")
            if not isinstance(meta, dict):
                self.err("metadata", "Invalid flow data: missing metadata.")
                meta = {}
        doc: dict[str, Any] = {}
        name = meta.get("name")
        doc["name"] = name if isinstance(name, str) and name.strip() else "Imported flow"
        if not export:
            fid = data.get("id") if isinstance(data.get("id"), str) else meta.get("id")
            if isinstance(fid, str) and NODE_ID_RE.match(fid):
                doc["id"] = fid
        if isinstance(meta.get("description"), str) and meta["description"]:
            doc["description"] = meta["description"]
        tags = meta.get("tags")
        if isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags):
            doc["tags"] = list(tags)

        nodes = data.get("nodes")
        if not isinstance(nodes, list):
            self.err("nodes", f"expected a list of nodes, got {describe(nodes)}")
            nodes = []
        edges = data.get("edges", [])
        if edges is None:
            edges = []
        if not isinstance(edges, list):
            self.err("edges", f"expected a list of edges, got {describe(edges)}")
            edges = []

        # pass 1: ids, types
        entries: list[tuple[int, dict[str, Any], str, type[NodeType] | None, str]] = []
        seen: dict[str, int] = {}
        unsupported: dict[str, list[str]] = {}
        for i, raw in enumerate(nodes):
            p = f"nodes[{i}]"
            if not isinstance(raw, dict):
                self.err(p, f"a SerializedNode must be an object, got {describe(raw)}")
                continue
            rid = raw.get("id")
            if not isinstance(rid, str) or not rid:
                self.err(f"{p}.id", f"a node id must be a non-empty string, got {describe(rid)}")
                continue
            if rid in seen:
                self.err(f"{p}.id", f"duplicate node id '{rid}' (first used by nodes[{seen[rid]}])")
                continue
            seen[rid] = i
            nmeta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
            tname = nmeta.get("type") if isinstance(nmeta.get("type"), str) and nmeta.get("type") else raw.get("type")
            if not isinstance(tname, str) or not tname:
                self.err(f"{p}.metadata.type", f"node '{rid}' has no type (metadata.type or type)")
                entries.append((i, raw, rid, None, ""))
                continue
            cls = self.registry.get(tname)
            if cls is None:
                unsupported.setdefault(tname, []).append(rid)
            entries.append((i, raw, rid, cls, tname))
        if unsupported:
            listing = "; ".join(f"{t} (node{'s' if len(n) > 1 else ''} {', '.join(n)})"
                                for t, n in sorted(unsupported.items()))
            self.err("nodes", f"unsupported node types: {listing}")
            for i, _raw, rid, cls, tname in entries:
                if cls is None and tname:
                    self.err(f"nodes[{i}].metadata.type", f"node '{rid}': unsupported node type '{tname}'")

        id_map = sanitize_ids([e[2] for e in entries])
        # pass 2: nodes
        out_nodes = []
        port_maps: dict[str, tuple[type[NodeType], dict[str, str]]] = {}
        for i, raw, rid, cls, _tname in entries:
            if cls is None:
                continue
            node, idmap = self._node(i, raw, rid, cls, id_map)
            port_maps[rid] = (cls, idmap)
            out_nodes.append(node)
        doc["nodes"] = out_nodes

        # pass 3: edges
        out_edges = []
        edge_ids: set[str] = set()
        for j, raw in enumerate(edges):
            p = f"edges[{j}]"
            if not isinstance(raw, dict):
                self.err(p, f"an edge must be an object, got {describe(raw)}")
                continue
            eid = raw.get("id")
            label = f"edge '{eid}'" if isinstance(eid, str) and eid else f"edge #{j}"
            ends = []
            for side in ("source", "target"):
                nid, pid = raw.get(f"{side}NodeId"), raw.get(f"{side}PortId")
                if not isinstance(nid, str) or nid not in seen:
                    self.err(f"{p}.{side}NodeId", f"{label}: {side} node {describe(nid) if not isinstance(nid, str) else repr(nid)} "
                                                  f"does not exist")
                    ends.append(None)
                    continue
                if nid not in port_maps:  # unsupported / typeless node: already reported
                    ends.append(None)
                    continue
                cls, idmap = port_maps[nid]
                path = self._resolve(idmap, pid)
                if path is None:
                    self.err(f"{p}.{side}PortId", f"{label}: {side} port {describe(pid) if not isinstance(pid, str) else repr(pid)} "
                                                  f"not found on node '{nid}' ({cls.type_name})")
                    ends.append(None)
                    continue
                ends.append(f"{id_map[nid]}.{path}")
            if None in ends:
                continue
            edge: dict[str, Any] = {"from": ends[0], "to": ends[1]}
            if isinstance(eid, str) and eid and eid not in edge_ids:
                edge_ids.add(eid)
                edge = {"id": eid, **edge}
            out_edges.append(edge)
        doc["edges"] = out_edges
        if self.errors:
            raise FlowValidationError(self.errors, title="cannot import ChainGraph flow")
        return doc

    @staticmethod
    def _resolve(idmap: dict[str, str], pid: Any) -> str | None:
        if not isinstance(pid, str) or not pid:
            return None
        if pid in idmap:
            return idmap[pid]
        m = _HEAD.match(pid)
        if m is None:
            return None
        head, rest = m.group(1), m.group(2)
        if head in idmap:
            return idmap[head] + rest
        return None

    def _node(self, i: int, raw: dict[str, Any], rid: str, cls: type[NodeType],
              id_map: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        p = f"nodes[{i}]"
        nmeta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        node: dict[str, Any] = {"id": id_map[rid], "type": cls.type_name}
        title = nmeta.get("title")
        if isinstance(title, str) and title and title != cls.title:
            node["title"] = title
        values: dict[str, Any] = {}
        port_ids: dict[str, str] = {}
        types: dict[str, Any] = {}
        # port id -> key; bare keys (@HEAD ids) resolve too
        idmap: dict[str, str] = {k: k for k in SYSTEM_PORTS}
        for spec in cls.ports:
            idmap[spec.key] = spec.key

        sysports = raw.get("systemPorts")
        if isinstance(sysports, dict):
            for name, key in _SYSTEM_KEYS.items():
                sp = sysports.get(name)
                if not isinstance(sp, dict):
                    continue
                sid = sp.get("id")
                if isinstance(sid, str) and sid:
                    idmap[sid] = key
                    if sid != key:
                        port_ids[key] = sid
                if key == "__execute" and sp.get("value") is False:
                    values["__execute"] = False

        ports = raw.get("ports")
        entries = list(ports.values()) if isinstance(ports, dict) else ports if isinstance(ports, list) else []
        initial = cls.initial_values()
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                continue
            cfg = entry["config"]
            if cfg.get("parentId"):
                continue
            pid = cfg.get("id")
            key = cfg.get("key")
            if not isinstance(key, str) or not key:
                key = pid.split(":", 1)[0] if isinstance(pid, str) and ":" in pid else None
            if not isinstance(key, str) or not key:
                continue
            if isinstance(pid, str) and pid and (m := _HEAD.match(pid)) and m.group(2):
                continue  # a v1 child port (its value lives in the parent)
            if key in SYSTEM_PORTS:  # v1 keeps system ports in the ports map
                if isinstance(pid, str) and pid:
                    idmap[pid] = key
                    if pid != key:
                        port_ids[key] = pid
                if key == "__execute" and entry.get("value") is False:
                    values["__execute"] = False
                continue
            spec = cls.port(key)
            if spec is None:
                continue  # a port this implementation does not have: edges to it are reported
            if isinstance(pid, str) and pid:
                idmap[pid] = key
                if pid != key:
                    port_ids[key] = pid
            conv_cfg = cfg if cfg.get("type") == spec.type else spec.to_config()
            if spec.type == "any":
                decl = decl_from_config(cfg)
                base = decl_from_spec(spec.underlying) if spec.underlying is not None else "any"
                if decl != "any" and decl != base:
                    types[key] = decl
            if "value" in entry:
                value = entry["value"]
            elif "defaultValue" in cfg:
                value = cfg["defaultValue"]
            else:
                continue
            value = _fit(spec, convert_value(conv_cfg, value))
            if value is None and spec.type != "any":
                continue
            if json_problem(value) is not None:
                continue
            if key not in initial or not json_equal(initial[key], value):
                values[key] = value
        if values:
            node["values"] = values
        parent = nmeta.get("parentNodeId")
        if isinstance(parent, str) and parent:
            if parent in id_map:
                node["parent"] = id_map[parent]
            else:
                self.err(f"{p}.metadata.parentNodeId", f"node '{rid}': parent node '{parent}' does not exist")
        keep = {k: copy_json(nmeta[k]) for k in _KEEP_META if k in nmeta and json_problem(nmeta[k]) is None
                and nmeta[k] not in (None, {}, [])}
        if keep:
            node["metadata"] = keep
        if types:
            node["types"] = types
        if port_ids:
            node["portIds"] = port_ids
        return node, idmap


def import_chaingraph(data: dict[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """Convert ChainGraph stored-flow JSON or an export file into a canonical flow document.

    Raises :class:`FlowValidationError` listing every unsupported node type and every edge whose node
    or port cannot be resolved (ChainGraph would skip those silently)."""
    if not isinstance(data, dict):
        raise FlowValidationError([{"path": "", "message": f"expected a ChainGraph flow object, got {describe(data)}"}],
                                  title="cannot import ChainGraph flow")
    return _Importer(registry).run(data)


__all__ = ["convert_value", "decl_from_config", "import_chaingraph", "is_chaingraph_document", "sanitize_ids"]
