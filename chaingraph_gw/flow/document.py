"""The canonical flow document: parse, validate, build the runtime :class:`~.model.Flow`, and back.

A flow document is JSON or YAML (or an already-parsed dict)::

    name: Greeting demo              # required, non-empty
    description: optional text
    tags: [demo]
    id: V2...                        # optional flow id (kept on Flow.id)
    nodes:
      - id: name                     # 1-64 chars of [A-Za-z0-9_-], unique
        type: TextNode               # a registered node type
        title: Name                  # optional display title
        values: {text: Ada}          # optional: top-level port key -> JSON value (also __execute etc.)
        parent: group1               # optional: id of the GroupNode this node belongs to
        metadata: {ui: {...}}        # optional free-form JSON kept for snapshots (ui position, ...)
        types: {element: string}     # optional: underlying type of `any` ports (see below)
        portIds: {text: "text:PO…"}  # optional: ChainGraph port ids (top-level/system key -> id)
      - {id: greet, type: HandlebarsTemplateNode, values: {template: "Hello, {{name}}!"}}
    edges:                           # optional; order matters (first completed source wins)
      - {from: name.text, to: greet.variables.name}
      - {from: greet.__error, to: handler.__execute, id: ED...}   # id optional (generated)

Port paths: ``port``, ``port.child``, ``port[0]``, ``port.a[2].b`` and the system ports ``__execute``,
``__success``, ``__error``, ``__errorMessage``.

``types`` declares what ChainGraph calls the ``underlyingType`` of an ``any`` port (set in the editor,
e.g. ``ArrayElementNode.element`` becomes a string). A declaration is a kind name (``string``,
``number``, ``boolean``, ``enum``, ``object`` = mutable object, ``array`` = array of any, ``secret``,
``stream``, ``any``) or a dict ``{type: object, properties: {k: decl}, mutable?: bool}``,
``{type: array, item: decl, mutable?: bool}``, ``{type: enum, options: [ids]}``.

Children of mutable object/array ports (and of ``any`` ports) have no declared type: as edge *targets*
they accept anything; as edge *sources* their type is taken from the node's value at that path
(``values: {outputData: {name: ""}}`` makes ``outputData.name`` a string), else they are ``any``.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import orjson
import yaml

from ..nodes.sdk import SYSTEM_PORT_SPECS, SYSTEM_PORTS, UNSET, NodeRegistry, NodeType, PortSpec
from . import ids
from .model import Edge, Flow, NodeInstance, get_path, parse_path
from .rules import can_connect

NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
TOP_FIELDS = ("name", "description", "tags", "id", "nodes", "edges")
NODE_FIELDS = ("id", "type", "title", "values", "parent", "metadata", "types", "portIds")
EDGE_FIELDS = ("from", "to", "id")
KINDS = ("string", "number", "boolean", "object", "array", "enum", "any", "secret", "stream")
_SYSTEM_DEFAULTS = {p.key: p.default for p in SYSTEM_PORT_SPECS}


# -- errors -----------------------------------------------------------------------------------------

class FlowValidationError(ValueError):
    """A flow document is invalid. ``errors`` = ``[{"path": "nodes[2].type", "message": ...}, ...]``."""

    def __init__(self, errors: Iterable[dict[str, str]], *, title: str = "invalid flow document") -> None:
        self.errors: list[dict[str, str]] = [{"path": e.get("path", ""), "message": e["message"]} for e in errors]
        self.title = title
        super().__init__(self._format())

    def _format(self) -> str:
        n = len(self.errors)
        lines = [f"{self.title} ({n} error{'s' if n != 1 else ''}):"]
        for e in self.errors:
            lines.append(f"- {e['path']}: {e['message']}" if e["path"] else f"- {e['message']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._format()


# -- small JSON helpers (shared with snapshot.py / chaingraph_import.py) ----------------------------

def copy_json(value: Any) -> Any:
    """Deep copy of a JSON-like value (much faster than ``copy.deepcopy`` for plain dicts/lists)."""
    t = type(value)
    if t is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if t is list:
        return [copy_json(v) for v in value]
    if t is str or t is int or t is float or t is bool or value is None:
        return value
    return copy.deepcopy(value)


def json_equal(a: Any, b: Any) -> bool:
    """Structural equality that does not confuse booleans with numbers (``True != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def json_problem(value: Any) -> str | None:
    """Why ``value`` is not plain JSON (dicts with string keys, lists, str, finite numbers, bools, null)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if v is None or isinstance(v, (str, bool, int)):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                return f"{v!r} is not a finite number"
            continue
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return f"object key {k!r} is not a string"
                stack.append(item)
            continue
        if isinstance(v, list):
            stack.extend(v)
            continue
        return f"a {type(v).__name__} is not a JSON value"
    return None


def describe(value: Any) -> str:
    """Short human description of a value, for messages: ``number 5``, ``string 'x'``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        s = value if len(value) <= 40 else value[:37] + "..."
        return f"string {s!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def format_path(segs: Iterable[str | int]) -> str:
    """``["a", "b", 2, "c"]`` → ``a.b[2].c`` (inverse of :func:`model.parse_path`)."""
    out = []
    for i, s in enumerate(segs):
        if isinstance(s, int):
            out.append(f"[{s}]")
        else:
            out.append(s if i == 0 else "." + s)
    return "".join(out)


def _suggest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    out = [lower[word.lower()]] if word.lower() in lower and lower[word.lower()] != word else []
    for c in difflib.get_close_matches(word, choices, n=n, cutoff=0.6):
        if c not in out:
            out.append(c)
    return out[:n]


# -- parsing ----------------------------------------------------------------------------------------

class _YamlLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 core-schema scalars (as ChainGraph's ``yaml`` package and JSON read them):
    only ``true``/``false`` are booleans (``yes``, ``no``, ``on`` stay strings), no sexagesimal numbers
    (``12:30`` is a string), ``012`` is 12, ``1e3`` is a float, and no timestamps (``2025-01-01`` stays a
    string)."""


_YAML_REPLACED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                  "tag:yaml.org,2002:timestamp")
_YamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in _YAML_REPLACED]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))
_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+)$"),
                                  list("-+0123456789"))
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
               r"|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _yaml_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() in ("true", "yes", "on", "y")


def _yaml_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    return int(text, 16) if text.lower().startswith("0x") else int(text, 10)


def _yaml_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


_YamlLoader.add_constructor("tag:yaml.org,2002:bool", _yaml_bool)
_YamlLoader.add_constructor("tag:yaml.org,2002:int", _yaml_int)
_YamlLoader.add_constructor("tag:yaml.org,2002:float", _yaml_float)


def parse_flow_text(text: str | bytes, *, filename: str | None = None) -> dict[str, Any]:
    """Parse a JSON or YAML flow document (JSON is tried first). Syntax errors raise
    :class:`FlowValidationError` naming the file, line and column."""
    where = filename or "flow document"
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FlowValidationError([{"path": "", "message": f"{where}: not UTF-8 text ({exc.reason} at byte "
                                                                  f"{exc.start})"}]) from None
    elif text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise FlowValidationError([{"path": "", "message": f"{where}: the document is empty"}])
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            data = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass
        except yaml.YAMLError as yexc:
            if text.lstrip()[:1] in ("{", "["):
                try:
                    json.loads(text)
                except json.JSONDecodeError as jexc:
                    msg = f"{where}: invalid JSON at line {jexc.lineno}, column {jexc.colno}: {jexc.msg}"
                    raise FlowValidationError([{"path": "", "message": msg}]) from None
            mark = getattr(yexc, "problem_mark", None) or getattr(yexc, "context_mark", None)
            problem = getattr(yexc, "problem", None) or str(yexc).splitlines()[0]
            loc = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise FlowValidationError([{"path": "", "message": f"{where}: invalid YAML{loc}: {problem}"}]) from None
    if not isinstance(data, dict):
        raise FlowValidationError([{"path": "", "message": f"{where}: the flow document must be an object "
                                                            f"(mapping), got {describe(data)}"}])
    return data


# -- type declarations (`types`) ---------------------------------------------------------------------

def spec_from_decl(key: str, decl: Any, direction: str, path: str, errors: list[dict[str, str]]) -> PortSpec | None:
    """Build a PortSpec from a ``types`` declaration; problems are appended to ``errors``."""
    def bad(msg: str) -> None:
        errors.append({"path": path, "message": msg})

    if isinstance(decl, str):
        decl = {"type": decl}
    if not isinstance(decl, dict):
        bad(f"a type declaration must be a kind name or an object, got {describe(decl)}")
        return None
    kind = decl.get("type")
    if kind not in KINDS:
        bad(f"unknown port type {kind!r} (known: {', '.join(KINDS)})")
        return None
    allowed = {"type"} | {"object": {"properties", "mutable"}, "array": {"item", "mutable"},
                          "enum": {"options"}}.get(kind, set())
    extra = sorted(set(decl) - allowed)
    if extra:
        bad(f"unknown field(s) {', '.join(map(repr, extra))} in a {kind} type declaration")
        return None
    mutable = decl.get("mutable")
    if mutable is not None and not isinstance(mutable, bool):
        bad(f"'mutable' must be a boolean, got {describe(mutable)}")
        return None
    if kind == "object":
        props = decl.get("properties")
        if props is None:
            return PortSpec(key, "object", direction, is_schema_mutable=mutable is not False)
        if not isinstance(props, dict):
            bad(f"'properties' must be an object, got {describe(props)}")
            return None
        children = []
        for k, sub in props.items():
            child = spec_from_decl(k, sub, direction, f"{path}.properties.{k}", errors)
            if child is None:
                return None
            children.append(child)
        return PortSpec(key, "object", direction, schema=tuple(children), is_schema_mutable=bool(mutable))
    if kind == "array":
        item_decl = decl.get("item")
        if item_decl is None:
            return PortSpec(key, "array", direction, is_mutable=mutable is not False)
        item = spec_from_decl("item", item_decl, direction, f"{path}.item", errors)
        if item is None:
            return None
        return PortSpec(key, "array", direction, item=item, is_mutable=bool(mutable))
    if kind == "enum":
        opts = decl.get("options")
        if opts is None:
            return PortSpec(key, "enum", direction)
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            bad("'options' must be a list of option ids (strings)")
            return None
        return PortSpec(key, "enum", direction, options=tuple(opts))
    return PortSpec(key, kind, direction)  # type: ignore[arg-type]


def decl_from_spec(spec: PortSpec) -> Any:
    """Inverse of :func:`spec_from_decl` (compact form)."""
    if spec.type == "object":
        if not spec.schema:
            return "object" if spec.is_schema_mutable else {"type": "object", "mutable": False}
        out: dict[str, Any] = {"type": "object", "properties": {p.key: decl_from_spec(p) for p in spec.schema}}
        if spec.is_schema_mutable:
            out["mutable"] = True
        return out
    if spec.type == "array":
        if spec.item is None:
            return "array" if (spec.is_mutable or spec.is_schema_mutable) else {"type": "array", "mutable": False}
        out = {"type": "array", "item": decl_from_spec(spec.item)}
        if spec.is_mutable:
            out["mutable"] = True
        return out
    if spec.type == "enum" and spec.options:
        return {"type": "enum", "options": list(spec.options)}
    if spec.type == "any" and spec.underlying is not None:
        return decl_from_spec(spec.underlying)
    return spec.type


# -- value checks ------------------------------------------------------------------------------------

def _is_open_object(spec: PortSpec) -> bool:
    return spec.is_schema_mutable or not spec.schema


def check_value(spec: PortSpec, value: Any, sub: str = "") -> list[tuple[str, str]]:
    """Type-check a document value against a port; returns ``[(subpath, message)]``."""
    t = spec.type
    if t == "any":
        eff = spec.effective()
        if eff.type != "any" and value is not None:
            return check_value(eff, value, sub)
        p = json_problem(value)
        return [(sub, f"is not JSON: {p}")] if p else []
    if t == "string":
        return [] if isinstance(value, str) else [(sub, f"expected a string, got {describe(value)}")]
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [(sub, f"expected a number, got {describe(value)}")]
        if isinstance(value, float) and not math.isfinite(value):
            return [(sub, f"expected a finite number, got {value!r}")]
        return []
    if t == "boolean":
        return [] if isinstance(value, bool) else [(sub, f"expected a boolean, got {describe(value)}")]
    if t == "enum":
        if not isinstance(value, str):
            return [(sub, f"expected an enum option id (string), got {describe(value)}")]
        if spec.options and value not in spec.options:
            return [(sub, f"{value!r} is not an option of this enum (options: {', '.join(spec.options)})")]
        return []
    if t == "object":
        if not isinstance(value, dict):
            return [(sub, f"expected an object, got {describe(value)}")]
        if _is_open_object(spec):
            p = json_problem(value)
            return [(sub, f"is not JSON: {p}")] if p else []
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            prop = spec.property(k) if isinstance(k, str) else None
            if prop is None:
                names = ", ".join(p.key for p in spec.schema or ())
                out.append((f"{sub}.{k}", f"unknown property {k!r} (properties: {names})"))
            else:
                out.extend(check_value(prop, v, f"{sub}.{k}"))
        return out
    if t == "array":
        if not isinstance(value, list):
            return [(sub, f"expected an array, got {describe(value)}")]
        item = spec.item
        if spec.is_mutable or spec.is_schema_mutable or item is None or item.effective().type == "any":
            p = json_problem(value)
            return [(sub, f"is not JSON: {p}")] if p else []
        out = []
        for i, v in enumerate(value):
            out.extend(check_value(item, v, f"{sub}[{i}]"))
        return out
    if t == "secret":
        if isinstance(value, (str, dict)) and json_problem(value) is None:
            return []
        return [(sub, f"expected a secret (string or object), got {describe(value)}")]
    return [(sub, f"{t} ports cannot be given a value")]


def _overlay(spec: PortSpec, base: Any, value: Any) -> Any:
    """Document value over the class initial value: fixed-schema objects merge per property,
    everything else is replaced."""
    if spec.type == "object" and not _is_open_object(spec) and isinstance(base, dict) and isinstance(value, dict):
        out = dict(base)
        for k, v in value.items():
            prop = spec.property(k)
            out[k] = _overlay(prop, base.get(k, UNSET), v) if prop is not None else copy_json(v)
        return out
    return copy_json(value)


# -- port path resolution ----------------------------------------------------------------------------

def _infer_spec(key: str, value: Any) -> PortSpec:
    if isinstance(value, bool):
        return PortSpec(key, "boolean")
    if isinstance(value, (int, float)):
        return PortSpec(key, "number")
    if isinstance(value, str):
        return PortSpec(key, "string")
    if isinstance(value, dict):
        return PortSpec(key, "object", is_schema_mutable=True)
    if isinstance(value, list):
        return PortSpec(key, "array", is_mutable=True)
    return PortSpec(key, "any")


def resolve_port(node: NodeInstance, segs: list[str | int], role: str) -> tuple[PortSpec | None, str | None]:
    """The PortSpec a path addresses on ``node`` (children inherit the top-level port's direction).

    ``role`` is ``"source"`` or ``"target"``: untyped children (of mutable object/array ports or of
    ``any`` ports) are ``any`` as targets and typed from the node's current value as sources.
    Returns ``(spec, None)`` or ``(None, message)``.
    """
    top = segs[0]
    assert isinstance(top, str)
    spec = node.spec(top)
    where = f"node '{node.id}' ({node.type_name})"
    if spec is None:
        keys = [p.key for p in node.type_cls.ports] + list(SYSTEM_PORTS)
        hint = _suggest(top, keys)
        msg = f"{where} has no port '{top}'"
        msg += f" (did you mean: {', '.join(hint)}?)" if hint else f" (ports: {', '.join(keys)})"
        return None, msg
    if len(segs) == 1:
        return spec, None
    if spec.system:
        return None, f"system port '{top}' of {where} has no child ports"
    direction = spec.direction
    cur = spec
    for i in range(1, len(segs)):
        seg = segs[i]
        eff = cur.effective()
        here = format_path(segs[:i])
        dynamic = False
        if isinstance(seg, str):
            if eff.type == "object":
                prop = eff.property(seg)
                if prop is not None:
                    cur = prop
                elif _is_open_object(eff):
                    dynamic = True
                else:
                    names = ", ".join(p.key for p in eff.schema or ())
                    return None, f"object port '{here}' of {where} has no property '{seg}' (properties: {names})"
            elif eff.type == "any":
                dynamic = True
            elif eff.type == "array":
                return None, f"'{here}' of {where} is an array port: address its items as '{here}[<index>]'"
            else:
                return None, (f"'{here}' of {where} is a {eff.type} port; child paths must be inside an "
                              f"object, array or any port")
        else:
            if eff.type == "array":
                item = eff.item
                if item is None or eff.is_schema_mutable or (item.type == "any" and item.underlying is None):
                    dynamic = True
                else:
                    cur = item
            elif eff.type == "any":
                dynamic = True
            elif eff.type == "object":
                return None, f"'{here}' of {where} is an object port: address its properties as '{here}.<key>'"
            else:
                return None, (f"'{here}' of {where} is a {eff.type} port; child paths must be inside an "
                              f"object, array or any port")
        if dynamic:
            key = str(seg)
            if role == "source":
                cur = _infer_spec(key, get_path(node.values, segs[: i + 1]))
            else:
                cur = PortSpec(key, "any")
    if cur.direction != direction:
        cur = replace(cur, direction=direction)
    return cur, None


# -- the builder -------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self.errors: list[dict[str, str]] = []
        self.nodes: dict[str, NodeInstance] = {}
        self.node_index: dict[str, int] = {}
        self.parents: dict[str, tuple[str, int]] = {}  # child id -> (parent id, node index)

    def err(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    # top level
    def build(self, doc: Any) -> Flow | None:
        if not isinstance(doc, dict):
            self.err("", f"the flow document must be an object (mapping), got {describe(doc)}")
            return None
        for k in doc:
            if k not in TOP_FIELDS:
                self.err(str(k), f"unknown field {k!r} (allowed: {', '.join(TOP_FIELDS)})")
        name = doc.get("name")
        if not isinstance(name, str) or not name.strip():
            self.err("name", "required: a non-empty string" if name is None
                     else f"expected a non-empty string, got {describe(name)}")
            name = ""
        description = doc.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            self.err("description", f"expected a string, got {describe(description)}")
            description = ""
        tags = doc.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            self.err("tags", "expected a list of strings")
            tags = []
        fid = doc.get("id")
        if fid is not None and (not isinstance(fid, str) or not NODE_ID_RE.match(fid)):
            self.err("id", f"a flow id must be 1-64 characters of [A-Za-z0-9_-], got {describe(fid)}")
            fid = None
        nodes = doc.get("nodes")
        if nodes is None:
            self.err("nodes", "required: a list of nodes")
            nodes = []
        elif not isinstance(nodes, list):
            self.err("nodes", f"expected a list, got {describe(nodes)}")
            nodes = []
        edges = doc.get("edges")
        if edges is None:
            edges = []
        elif not isinstance(edges, list):
            self.err("edges", f"expected a list, got {describe(edges)}")
            edges = []

        for i, raw in enumerate(nodes):
            self._node(i, raw)
        self._check_parents()
        built_edges = self._edges(edges)
        self._check_cycles(built_edges)
        if self.errors:
            return None
        return Flow(name=name, nodes=self.nodes, edges=built_edges, description=description,
                    tags=list(tags), id=fid)

    # nodes
    def _node(self, i: int, raw: Any) -> None:
        p = f"nodes[{i}]"
        if not isinstance(raw, dict):
            self.err(p, f"a node must be an object, got {describe(raw)}")
            return
        for k in raw:
            if k not in NODE_FIELDS:
                self.err(f"{p}.{k}", f"unknown node field {k!r} (allowed: {', '.join(NODE_FIELDS)})")
        nid = raw.get("id")
        ok_id = True
        if not isinstance(nid, str) or not NODE_ID_RE.match(nid):
            self.err(f"{p}.id", "required: a node id" if nid is None else
                     f"a node id must be 1-64 characters of [A-Za-z0-9_-], got {describe(nid)}")
            ok_id = False
        elif nid in self.node_index:
            self.err(f"{p}.id", f"duplicate node id '{nid}' (first used by nodes[{self.node_index[nid]}])")
            ok_id = False
        else:
            self.node_index[nid] = i
        label = f"node '{nid}'" if isinstance(nid, str) else p

        tname = raw.get("type")
        cls: type[NodeType] | None = None
        if not isinstance(tname, str) or not tname:
            self.err(f"{p}.type", f"{label}: required: a node type name" if tname is None
                     else f"{label}: the node type must be a string, got {describe(tname)}")
        else:
            cls = self.registry.get(tname)
            if cls is None:
                close = _suggest(tname, self.registry.types)
                if close:
                    hint = f"did you mean: {', '.join(close)}?"
                elif len(self.registry.types) <= 40:
                    hint = f"known types: {', '.join(sorted(self.registry.types)) or 'none'}"
                else:
                    hint = "no similar known type"
                self.err(f"{p}.type", f"{label}: unknown node type '{tname}' ({hint})")
        where = f"node '{nid}' ({tname})" if cls is not None else label

        title = raw.get("title")
        if title is not None and not isinstance(title, str):
            self.err(f"{p}.title", f"{where}: the title must be a string, got {describe(title)}")
            title = None
        parent = raw.get("parent")
        if parent is not None:
            if not isinstance(parent, str) or not parent:
                self.err(f"{p}.parent", f"{where}: parent must be a node id, got {describe(parent)}")
            elif ok_id:
                self.parents[nid] = (parent, i)
        metadata = raw.get("metadata")
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, dict):
            self.err(f"{p}.metadata", f"{where}: metadata must be an object, got {describe(metadata)}")
            metadata = {}
        elif (prob := json_problem(metadata)) is not None:
            self.err(f"{p}.metadata", f"{where}: metadata is not JSON: {prob}")
            metadata = {}

        if cls is None:  # edges to this node are not checked further (see _endpoint)
            return

        # types: underlying types of `any` ports
        overrides: dict[str, PortSpec] = {}
        types = raw.get("types")
        if types is not None:
            if not isinstance(types, dict):
                self.err(f"{p}.types", f"{where}: types must be an object (port key -> type), got {describe(types)}")
            else:
                for key, decl in types.items():
                    tp = f"{p}.types.{key}"
                    base = cls.port(key)
                    if base is None or base.system:
                        self.err(tp, f"{where} has no port '{key}'" if base is None
                                 else f"{where}: system port '{key}' cannot be given a type")
                        continue
                    if base.type != "any":
                        self.err(tp, f"{where}: port '{key}' is a {base.type} port; only 'any' ports take a "
                                     f"declared type")
                        continue
                    errs: list[dict[str, str]] = []
                    under = spec_from_decl(key, decl, base.direction, tp, errs)
                    for e in errs:
                        self.err(e["path"], f"{where}: port '{key}': {e['message']}")
                    if under is not None and under.type != "any":
                        overrides[key] = replace(base, underlying=under)

        port_ids: dict[str, str] = {}
        raw_ids = raw.get("portIds")
        if raw_ids is not None:
            if not isinstance(raw_ids, dict):
                self.err(f"{p}.portIds", f"{where}: portIds must be an object (port key -> id)")
            else:
                for key, pid in raw_ids.items():
                    if cls.port(key) is None:
                        self.err(f"{p}.portIds.{key}", f"{where} has no port '{key}'")
                    elif not isinstance(pid, str) or not pid:
                        self.err(f"{p}.portIds.{key}", f"{where}: a port id must be a non-empty string, "
                                                       f"got {describe(pid)}")
                    else:
                        port_ids[key] = pid

        node = NodeInstance(id=nid if ok_id else f"#{i}", type_cls=cls, title=title,
                            values=cls.initial_values(), parent_node_id=parent if isinstance(parent, str) else None,
                            metadata=copy_json(metadata), port_overrides=overrides, port_ids=port_ids)
        values = raw.get("values")
        if values is not None and not isinstance(values, dict):
            self.err(f"{p}.values", f"{where}: values must be an object (port key -> value), got {describe(values)}")
            values = None
        for key, value in (values or {}).items():
            vp = f"{p}.values.{key}"
            spec = node.spec(key) if isinstance(key, str) else None
            if spec is None:
                keys = [q.key for q in cls.ports] + list(SYSTEM_PORTS)
                hint = _suggest(str(key), keys)
                self.err(vp, f"{where} has no port '{key}'" +
                         (f" (did you mean: {', '.join(hint)}?)" if hint else f" (ports: {', '.join(keys)})"))
                continue
            problems = check_value(spec, value)
            for sub, msg in problems:
                self.err(vp + sub, f"{where}: port '{key}{sub}' {msg}" if msg.startswith("is ")
                         else f"{where}: port '{key}{sub}': {msg}")
            if problems:
                continue
            if key in SYSTEM_PORTS:
                node.system[key] = value
            else:
                node.values[key] = _overlay(spec, node.values.get(key, UNSET), value)
        if ok_id:
            self.nodes[nid] = node

    def _check_parents(self) -> None:
        for child, (parent, i) in self.parents.items():
            p = f"nodes[{i}].parent"
            if parent == child:
                self.err(p, f"node '{child}' cannot be its own parent")
            elif parent not in self.node_index:
                hint = _suggest(parent, self.node_index)
                self.err(p, f"node '{child}': parent node '{parent}' does not exist"
                         + (f" (did you mean: {', '.join(hint)}?)" if hint else ""))
            elif parent in self.nodes and self.nodes[parent].type_cls.category != "group":
                self.err(p, f"node '{child}': parent node '{parent}' is a {self.nodes[parent].type_name}, "
                            f"not a group node")

    # edges
    def _endpoint(self, raw: Any, path: str, role: str) -> tuple[str, str, PortSpec] | None:
        if not isinstance(raw, str):
            self.err(path, "required: 'nodeId.portPath'" if raw is None
                     else f"expected a 'nodeId.portPath' string, got {describe(raw)}")
            return None
        nid, dot, port_path = raw.partition(".")
        if not dot or not nid or not port_path:
            self.err(path, f"expected 'nodeId.portPath', got {raw!r}")
            return None
        if nid not in self.node_index:
            hint = _suggest(nid, self.node_index)
            self.err(path, f"node '{nid}' does not exist" + (f" (did you mean: {', '.join(hint)}?)" if hint else ""))
            return None
        node = self.nodes.get(nid)
        if node is None:  # exists but broken: already reported
            return None
        try:
            segs = parse_path(port_path)
        except ValueError:
            self.err(path, f"malformed port path {port_path!r} in {raw!r} (use port, port.child or port[0])")
            return None
        spec, msg = resolve_port(node, segs, role)
        if spec is None:
            self.err(path, str(msg))
            return None
        return nid, format_path(segs), spec

    def _edges(self, edges: list[Any]) -> list[Edge]:
        out: list[Edge] = []
        seen: dict[tuple[str, str, str, str], int] = {}
        seen_ids: dict[str, int] = {}
        for j, raw in enumerate(edges):
            p = f"edges[{j}]"
            if not isinstance(raw, dict):
                self.err(p, f"an edge must be an object {{from, to}}, got {describe(raw)}")
                continue
            for k in raw:
                if k not in EDGE_FIELDS:
                    self.err(f"{p}.{k}", f"unknown edge field {k!r} (allowed: {', '.join(EDGE_FIELDS)})")
            eid = raw.get("id")
            if eid is not None:
                if not isinstance(eid, str) or not eid:
                    self.err(f"{p}.id", f"an edge id must be a non-empty string, got {describe(eid)}")
                    eid = None
                elif eid in seen_ids:
                    self.err(f"{p}.id", f"duplicate edge id '{eid}' (first used by edges[{seen_ids[eid]}])")
                    eid = None
                else:
                    seen_ids[eid] = j
            src = self._endpoint(raw.get("from"), f"{p}.from", "source")
            tgt = self._endpoint(raw.get("to"), f"{p}.to", "target")
            if src is None or tgt is None:
                continue
            (sn, sp, sspec), (tn, tp, tspec) = src, tgt
            label = f"edge {sn}.{sp} -> {tn}.{tp}"
            if sn == tn:
                self.err(p, f"{label}: an edge cannot connect node '{sn}' to itself")
                continue
            key = (sn, sp, tn, tp)
            if key in seen:
                self.err(p, f"{label}: duplicate of edges[{seen[key]}]")
                continue
            seen[key] = j
            if sspec.direction not in ("output", "passthrough"):
                self.err(f"{p}.from", f"{label}: Source port {sn}.{sp} is not an output or passthrough port.")
                continue
            if tspec.direction not in ("input", "passthrough"):
                self.err(f"{p}.to", f"{label}: Target port {tn}.{tp} is not an input or passthrough port.")
                continue
            reason = can_connect(sspec, tspec, source_label=f"{sn}.{sp}", target_label=f"{tn}.{tp}")
            if reason is not None:
                if sspec.type == "any" and sspec.underlying is None and len(parse_path(sp)) > 1:
                    reason += (f" (the type of '{sp}' is not known: give it a value in node '{sn}' values "
                               f"or declare the port's type)")
                elif sspec.type == "any" and sspec.underlying is None:
                    reason += f" (declare the type of '{sp}' in node '{sn}' types)"
                self.err(p, f"{label}: {reason}")
                continue
            out.append(Edge(id=eid or ids.edge_id(), source_node=sn, source_path=sp, target_node=tn,
                            target_path=tp, order=j))
        return out

    # cycles (edges plus group membership: a group runs after its members)
    def _check_cycles(self, edges: list[Edge]) -> None:
        adj: dict[str, list[str]] = {nid: [] for nid in self.nodes}
        edge_of: dict[tuple[str, str], int] = {}
        for e in edges:
            pair = (e.source_node, e.target_node)
            if pair not in edge_of:
                edge_of[pair] = e.order
                adj[e.source_node].append(e.target_node)
        member_of: set[tuple[str, str]] = set()
        for child, (parent, _i) in self.parents.items():
            if child in adj and parent in adj and parent != child and (child, parent) not in edge_of:
                member_of.add((child, parent))
                adj[child].append(parent)
        order = {nid: k for k, nid in enumerate(self.nodes)}
        cyclic = [scc for scc in _sccs(list(self.nodes), adj) if len(scc) > 1]
        starts = sorted(((min(scc, key=order.__getitem__), scc) for scc in cyclic), key=lambda t: order[t[0]])
        for start, scc in starts:
            cycle = _cycle_through(start, set(scc), adj)
            pairs = list(itertools.pairwise(cycle))
            edge_idx = [edge_of[pr] for pr in pairs if pr in edge_of]
            msg = "the flow has a cycle: " + " -> ".join(cycle)
            if any(pr in member_of for pr in pairs):
                msg += " (a group node runs after its member nodes)"
            if edge_idx:
                self.err(f"edges[{min(edge_idx)}]", msg)
            else:
                self.err(f"nodes[{self.parents[cycle[0]][1]}].parent", msg)


def _sccs(nodes: list[str], adj: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, pos = work.pop()
            if pos == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succ = adj.get(v, [])
            if pos < len(succ):
                work.append((v, pos + 1))
                w = succ[pos]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def _cycle_through(start: str, members: set[str], adj: dict[str, list[str]]) -> list[str]:
    """Shortest cycle start -> ... -> start inside a strongly connected component (BFS)."""
    prev: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt = []
        for u in frontier:
            for w in adj.get(u, []):
                if w == start:
                    path = [u]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if w in members and w not in seen:
                    seen.add(w)
                    prev[w] = u
                    nxt.append(w)
        frontier = nxt
    return [start, start]  # pragma: no cover - members form an SCC, so a cycle exists


# -- public API ----------------------------------------------------------------------------------------

def _coerce_doc(doc: Any, registry: NodeRegistry) -> Any:
    if isinstance(doc, (str, bytes, bytearray, memoryview)):
        doc = parse_flow_text(doc)
    if isinstance(doc, dict):
        from .chaingraph_import import import_chaingraph, is_chaingraph_document

        if is_chaingraph_document(doc):
            doc = import_chaingraph(doc, registry)
    return doc


def load_flow(doc: dict[str, Any] | str | bytes, registry: NodeRegistry) -> Flow:
    """Validate a flow document (dict, or JSON/YAML text; ChainGraph stored-flow / export JSON is
    converted first) and build the runtime :class:`Flow`. Raises :class:`FlowValidationError`
    listing every problem found."""
    builder = _Builder(registry)
    flow = builder.build(_coerce_doc(doc, registry))
    if flow is None:
        raise FlowValidationError(builder.errors)
    return flow


def validate_document(doc: dict[str, Any] | str | bytes, registry: NodeRegistry) -> dict[str, Any]:
    """Validate and normalise a document (for ``flows.create``): the canonical dict of the loaded flow
    (edge ids assigned, values that equal the class defaults dropped). Raises
    :class:`FlowValidationError` with all errors."""
    return flow_to_document(load_flow(doc, registry))


def flow_to_document(flow: Flow) -> dict[str, Any]:
    """The canonical document of ``flow``; ``load_flow(flow_to_document(f))`` rebuilds an equal flow."""
    doc: dict[str, Any] = {"name": flow.name}
    if flow.id:
        doc["id"] = flow.id
    if flow.description:
        doc["description"] = flow.description
    if flow.tags:
        doc["tags"] = list(flow.tags)
    nodes = []
    for node in flow.nodes.values():
        cls = node.type_cls
        n: dict[str, Any] = {"id": node.id, "type": cls.type_name}
        if node.title is not None:
            n["title"] = node.title
        initial = cls.initial_values()
        values: dict[str, Any] = {}
        for key, value in node.values.items():
            if value is UNSET:
                continue
            if key not in initial or not json_equal(initial[key], value):
                values[key] = copy_json(value)
        for key in SYSTEM_PORTS:
            v = node.system.get(key, UNSET)
            if v is not UNSET and not json_equal(v, _SYSTEM_DEFAULTS[key]):
                values[key] = copy_json(v)
        if values:
            n["values"] = values
        if node.parent_node_id:
            n["parent"] = node.parent_node_id
        if node.metadata:
            n["metadata"] = copy_json(node.metadata)
        types = {}
        for key, spec in node.port_overrides.items():
            base = cls.port(key)
            if base is not None and spec.type == "any" and spec.underlying is not None \
                    and spec.underlying != base.underlying:
                types[key] = decl_from_spec(spec.underlying)
        if types:
            n["types"] = types
        if node.port_ids:
            n["portIds"] = dict(node.port_ids)
        nodes.append(n)
    doc["nodes"] = nodes
    doc["edges"] = [{"id": e.id, "from": f"{e.source_node}.{e.source_path}", "to": f"{e.target_node}.{e.target_path}"}
                    for e in sorted(flow.edges, key=lambda e: e.order)]
    return doc


__all__ = [
    "FlowValidationError", "copy_json", "decl_from_spec", "describe", "flow_to_document", "format_path",
    "json_equal", "json_problem", "load_flow", "parse_flow_text", "resolve_port", "spec_from_decl",
    "validate_document",
]
