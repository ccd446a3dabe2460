"""Node SDK: declare a node type with typed ports and an async ``execute(ctx)``.

A node type is a subclass of :class:`NodeType` registered under its ChainGraph type name::

    @register
    class TextSearchNode(NodeType):
        type_name = "TextSearchNode"
        title = "Text Search"
        category = "data"
        ports = (
            string("sourceText", default=""),
            string("searchText", default=""),
            boolean("result", direction="output", default=False),
        )

        async def execute(self, ctx: NodeContext) -> None:
            ctx.values["result"] = ctx.values["searchText"].lower() in ctx.values["sourceText"].lower()

Port values are plain JSON-like Python values kept per node in ``ctx.values`` (top-level port
key → value; child ports live inside their parent's dict/list). ``execute`` raises to fail
the node: the message becomes ``__errorMessage`` and the flow goes on. Third-party packages
add types through the ``chaingraph_gw.nodes`` entry-point group (each entry point names a
module that registers its classes on import, or a callable taking the registry).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

PortKind = Literal["string", "number", "boolean", "object", "array", "enum", "any", "secret", "stream"]
Direction = Literal["input", "output", "passthrough"]
PORT_KINDS: tuple[str, ...] = ("string", "number", "boolean", "object", "array", "enum", "any", "secret", "stream")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()  # "no default": the port has no value until set (JS undefined)

SYSTEM_PORTS: tuple[str, ...] = ("__execute", "__success", "__error", "__errorMessage")


@dataclass(frozen=True)
class PortSpec:
    """A port declaration (ChainGraph's port config, without ids)."""

    key: str
    type: PortKind
    direction: Direction = "input"
    default: Any = UNSET
    title: str | None = None
    description: str | None = None
    required: bool = False
    options: tuple[str, ...] | None = None  # enum option ids
    schema: tuple[PortSpec, ...] | None = None  # object properties (child ports)
    item: PortSpec | None = None  # array item config
    underlying: PortSpec | None = None  # any: the underlying type, if any
    is_schema_mutable: bool = False
    is_mutable: bool = False
    integer: bool = False
    min: float | None = None
    max: float | None = None
    ui: dict[str, Any] | None = None
    system: bool = False
    order: int = 0  # filled by NodeType.__init_subclass__ (1-based declaration order)

    def __deepcopy__(self, memo: dict[int, Any]) -> PortSpec:
        return self  # immutable: Flow.clone() shares specs

    def initial_value(self) -> Any:
        """The value a fresh node has: the declared default (deep-copied), else the type's zero value."""
        if self.default is not UNSET:
            return copy.deepcopy(self.default)
        if self.type == "object" and self.schema:
            return {p.key: p.initial_value() for p in self.schema}
        return UNSET

    def property(self, key: str) -> PortSpec | None:
        for p in self.schema or ():
            if p.key == key:
                return p
        return None

    def effective(self) -> PortSpec:
        """Follow ``any`` → underlying type (for connect-time rules)."""
        spec = self
        while spec.type == "any" and spec.underlying is not None:
            spec = spec.underlying
        return spec

    def to_config(self) -> dict[str, Any]:
        """ChainGraph-style port config (no ids): used by ``nodes.list`` and SerializedNode snapshots."""
        cfg: dict[str, Any] = {"key": self.key, "type": self.type, "direction": self.direction, "order": self.order}
        if self.title:
            cfg["title"] = self.title
        if self.description:
            cfg["description"] = self.description
        if self.default is not UNSET:
            cfg["defaultValue"] = copy.deepcopy(self.default)
        if self.required:
            cfg["required"] = True
        if self.options is not None:
            cfg["options"] = [{"id": o, "type": "string", "defaultValue": o, "title": o} for o in self.options]
        if self.schema is not None or self.type == "object":
            cfg["schema"] = {"properties": {p.key: p.to_config() for p in (self.schema or ())}}
        if self.item is not None:
            cfg["itemConfig"] = self.item.to_config()
        if self.underlying is not None:
            cfg["underlyingType"] = self.underlying.to_config()
        if self.is_schema_mutable:
            cfg["isSchemaMutable"] = True
        if self.is_mutable:
            cfg["isMutable"] = True
        if self.integer:
            cfg["integer"] = True
        if self.min is not None:
            cfg["min"] = self.min
        if self.max is not None:
            cfg["max"] = self.max
        if self.ui:
            cfg["ui"] = dict(self.ui)
        if self.system:
            cfg["metadata"] = {"isSystemPort": True,
                               "portCategory": "error" if self.key in ("__error", "__errorMessage") else "flow"}
        return cfg


# -- declaration helpers ---------------------------------------------------------------------------

def _port(kind: PortKind, key: str, **kw: Any) -> PortSpec:
    for name in ("schema", "options"):
        if kw.get(name) is not None:
            kw[name] = tuple(kw[name])
    return PortSpec(key=key, type=kind, **kw)


def string(key: str, **kw: Any) -> PortSpec:
    return _port("string", key, **kw)


def number(key: str, **kw: Any) -> PortSpec:
    return _port("number", key, **kw)


def boolean(key: str, **kw: Any) -> PortSpec:
    return _port("boolean", key, **kw)


def obj(key: str, **kw: Any) -> PortSpec:
    return _port("object", key, **kw)


def array(key: str, **kw: Any) -> PortSpec:
    return _port("array", key, **kw)


def enum(key: str, options: Iterable[str], **kw: Any) -> PortSpec:
    return _port("enum", key, options=tuple(options), **kw)


def any_port(key: str, **kw: Any) -> PortSpec:
    return _port("any", key, **kw)


def secret(key: str, **kw: Any) -> PortSpec:
    return _port("secret", key, **kw)


SYSTEM_PORT_SPECS: tuple[PortSpec, ...] = (
    PortSpec("__execute", "boolean", "input", True, title="Execute", system=True, order=1),
    PortSpec("__success", "boolean", "output", True, title="Success", system=True, order=2),
    PortSpec("__error", "boolean", "output", False, title="Error", system=True, order=3),
    PortSpec("__errorMessage", "string", "output", "", title="Error Message", system=True, order=4),
)


# -- runtime context --------------------------------------------------------------------------------

class NodeContext(Protocol):
    """What ``execute`` can use. The engine provides the implementation."""

    node_id: str
    values: dict[str, Any]  # this node's top-level port values (read inputs, write outputs)
    execution_id: str
    flow_id: str
    depth: int  # 0 for root executions
    parent_execution_id: str | None
    event_data: dict[str, Any] | None  # {"eventName": str, "payload": Any} in a child execution, else None
    signal: Any  # chaingraph_gw.signals.AbortSignal-like: .aborted, .reason

    def emit_event(self, event_name: str, payload: Any) -> None:
        """EventEmitterNode: ask for a child execution of the same flow."""

    def debug_log(self, text: str) -> None:
        """Send ``node:debug-log-string`` ``{nodeId, log}``."""

    async def sleep(self, seconds: float) -> None:
        """Cancellable sleep: raises asyncio.CancelledError when the execution is stopped."""


class NodeType:
    """Base class for node types. Subclasses set the ClassVars and implement ``execute``."""

    type_name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    category: ClassVar[str] = "other"
    description: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[int] = 1
    ports: ClassVar[tuple[PortSpec, ...]] = ()
    # ChainGraph's metadata.flowPorts, e.g. {"disabledAutoExecution": True} for EventListenerNode.
    flow_ports: ClassVar[dict[str, Any]] = {}
    ui: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.ports = tuple(replace(p, order=i) for i, p in enumerate(cls.ports, start=1))

    @classmethod
    def port(cls, key: str) -> PortSpec | None:
        for p in cls.ports:
            if p.key == key:
                return p
        for p in SYSTEM_PORT_SPECS:
            if p.key == key:
                return p
        return None

    @classmethod
    def initial_values(cls) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in cls.ports:
            v = p.initial_value()
            if v is not UNSET:
                out[p.key] = v
        return out

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        """Registry entry for ``nodes.list``: metadata plus port configs in declaration order."""
        meta: dict[str, Any] = {
            "type": cls.type_name, "title": cls.title, "description": cls.description,
            "category": cls.category, "tags": list(cls.tags), "version": cls.version,
            "ports": [p.to_config() for p in cls.ports],
        }
        if cls.flow_ports:
            meta["flowPorts"] = dict(cls.flow_ports)
        if cls.ui:
            meta["ui"] = dict(cls.ui)
        return meta

    async def execute(self, ctx: NodeContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# -- registry ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Category:
    id: str
    label: str
    order: float
    icon: str = "Package"
    description: str = ""
    hidden: bool = False


CATEGORIES: dict[str, Category] = {c.id: c for c in (
    Category("math", "Math", 2, "Calculator", "Mathematical and logical operations"),
    Category("data", "Data", 3, "Database", "Data inspection and conversion"),
    Category("transforms", "Transforms", 3.2, "Shuffle", "Array and object transforms"),
    Category("flow", "Flow Control", 4, "GitBranch", "Branching, gates, events, timing"),
    Category("utilities", "Utilities", 5, "Wrench", "Templates, serializers, HTTP, logging"),
    Category("basic-values", "Basic Values", 6, "Type", "Constant values"),
    Category("other", "Other", 7, "Package", "Everything else"),
    Category("group", "Group", 8, "Grid", "Visual groups of nodes"),
)}


@dataclass
class NodeRegistry:
    types: dict[str, type[NodeType]] = field(default_factory=dict)
    categories: dict[str, Category] = field(default_factory=lambda: dict(CATEGORIES))

    def register(self, cls: type[NodeType]) -> type[NodeType]:
        if not cls.type_name:
            raise ValueError(f"{cls.__name__} has no type_name")
        if cls.type_name in self.types and self.types[cls.type_name] is not cls:
            raise ValueError(f"node type {cls.type_name!r} is already registered")
        self.types[cls.type_name] = cls
        if cls.category not in self.categories:
            self.categories[cls.category] = Category(cls.category, cls.category.title(), 1000)
        return cls

    def get(self, type_name: str) -> type[NodeType] | None:
        return self.types.get(type_name)

    def categorized(self) -> list[dict[str, Any]]:
        """Every category (even empty), sorted by order; nodes sorted by title."""
        out = []
        for cat in sorted(self.categories.values(), key=lambda c: (c.order, c.id)):
            nodes = sorted((t for t in self.types.values() if t.category == cat.id), key=lambda t: t.title)
            out.append({
                "category": cat.id,
                "metadata": {"id": cat.id, "label": cat.label, "description": cat.description,
                             "icon": cat.icon, "order": cat.order, "hidden": cat.hidden},
                "nodes": [t.metadata() for t in nodes],
            })
        return out

    def load_entry_points(self, group: str = "chaingraph_gw.nodes") -> list[str]:
        """Import third-party node packages; returns the names loaded."""
        from importlib.metadata import entry_points

        loaded = []
        for ep in entry_points(group=group):
            target = ep.load()
            if callable(target) and not isinstance(target, type):
                target(self)
            elif isinstance(target, type) and issubclass(target, NodeType):
                self.register(target)
            loaded.append(ep.name)
        return loaded


default_registry = NodeRegistry()


def register(cls: type[NodeType]) -> type[NodeType]:
    """Class decorator: register on the default registry."""
    return default_registry.register(cls)


_entry_points_loaded = False


def core_registry() -> NodeRegistry:
    """The default registry with the core library and third-party entry-point packages loaded."""
    global _entry_points_loaded
    from . import library  # noqa: F401 - registers the core node types on import

    if not _entry_points_loaded:
        _entry_points_loaded = True
        default_registry.load_entry_points()
    return default_registry


class NodeError(Exception):
    """A node failure with an exact, user-facing message (becomes ``__errorMessage``)."""


async def cancellable_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


__all__ = [
    "CATEGORIES",
    "SYSTEM_PORTS",
    "SYSTEM_PORT_SPECS",
    "UNSET",
    "Category",
    "NodeContext",
    "NodeError",
    "NodeRegistry",
    "NodeType",
    "PortSpec",
    "any_port",
    "array",
    "boolean",
    "core_registry",
    "default_registry",
    "enum",
    "number",
    "obj",
    "register",
    "secret",
    "string",
]


