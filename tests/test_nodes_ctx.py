"""A fake NodeContext for node tests, plus registry-level checks of the core node library."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.nodes.library import CORE_TYPES
from chaingraph_gw.nodes.sdk import CATEGORIES, UNSET, NodeType, core_registry


class FakeSignal:
    def __init__(self) -> None:
        self.aborted = False
        self.reason: Any = None


class FakeContext:
    """Values dict, recorded emitted events / debug logs / sleeps, an AbortSignal-like."""

    def __init__(self, values: dict[str, Any] | None = None, *, event_data: dict[str, Any] | None = None,
                 depth: int = 0, parent_execution_id: str | None = None,
                 port_configs: dict[str, Any] | None = None) -> None:
        self.node_id = "NOtestnode"
        self.values: dict[str, Any] = dict(values or {})
        self.execution_id = "EXtest"
        self.flow_id = "V2testflow"
        self.depth = depth
        self.parent_execution_id = parent_execution_id
        self.event_data = event_data
        self.signal = FakeSignal()
        self.events: list[tuple[str, Any]] = []
        self.logs: list[str] = []
        self.sleeps: list[float] = []
        if port_configs is not None:
            self.port_configs = port_configs

    def emit_event(self, event_name: str, payload: Any) -> None:
        self.events.append((event_name, payload))

    def debug_log(self, text: str) -> None:
        self.logs.append(text)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds)


class NoEmitContext(FakeContext):
    emit_event = None  # type: ignore[assignment]


def node_class(type_name: str) -> type[NodeType]:
    cls = core_registry().get(type_name)
    assert cls is not None, type_name
    return cls


def make_ctx(type_name: str, values: dict[str, Any] | None = None, ctx: FakeContext | None = None,
             **kw: Any) -> FakeContext:
    """A context holding the node's initial values overridden by ``values`` (UNSET removes a key)."""
    ctx = ctx or FakeContext(**kw)
    vals = node_class(type_name).initial_values()
    for k, v in (values or {}).items():
        if v is UNSET:
            vals.pop(k, None)
        else:
            vals[k] = v
    ctx.values = vals
    return ctx


async def run_node(type_name: str, values: dict[str, Any] | None = None, ctx: FakeContext | None = None,
                   **kw: Any) -> FakeContext:
    ctx = make_ctx(type_name, values, ctx, **kw)
    await node_class(type_name)().execute(ctx)
    return ctx


async def node_error(type_name: str, values: dict[str, Any] | None = None, ctx: FakeContext | None = None,
                     **kw: Any) -> str:
    """The message the node fails with (what the engine puts into __errorMessage)."""
    try:
        await run_node(type_name, values, ctx, **kw)
    except Exception as exc:  # any exception fails a node
        return str(exc)
    raise AssertionError(f"{type_name} did not fail")


class RegistryTests(SynchronousTestCase):
    def test_core_types_all_registered(self) -> None:
        reg = core_registry()
        for name in CORE_TYPES:
            cls = reg.get(name)
            self.assertIsNotNone(cls, name)
            self.assertEqual(cls.type_name, name)
        self.assertEqual(len(set(CORE_TYPES)), len(CORE_TYPES))

    def test_required_types_present(self) -> None:
        required = {
            "TextNode", "NumberNode", "BooleanNode", "ObjectNode", "ArrayNode", "MathNode", "AndNode", "OrNode",
            "NotNode", "RandomNode", "BranchNode", "SwitchNode", "GateNodeV2", "EventEmitterNode",
            "EventListenerNode", "DebugLogNode", "HandlebarsTemplateNode", "RegExpNode", "JSONSerializerNode",
            "YAMLSerializerNode", "JsonYamlDeserializerNode", "ArrayElementNode", "ArrayLengthNode",
            "NumberToStringNode", "TextSearchNode", "ServerTimeNode", "HttpRequestNode", "SleepNode",
            "StringLengthNode", "ObjectKeysNode", "ObjectValuesNode", "ArrayFirstNode", "ArrayLastNode",
            "ArraySliceNode", "ArrayConcatNode", "ArrayReverseNode", "GroupNode",
        }
        self.assertEqual(required - set(CORE_TYPES), set())

    def test_titles_and_categories(self) -> None:
        expected = {
            "TextNode": ("Text Node", "basic-values"), "NumberNode": ("Number Node", "basic-values"),
            "BooleanNode": ("Boolean Node", "basic-values"), "ObjectNode": ("Object Node", "basic-values"),
            "ArrayNode": ("Array Node", "basic-values"), "MathNode": ("Math", "math"), "AndNode": ("And", "math"),
            "OrNode": ("Or", "math"), "NotNode": ("Not", "math"), "RandomNode": ("Random Number", "math"),
            "BranchNode": ("Branch", "flow"), "SwitchNode": ("Switch", "flow"), "GateNode": ("Gate", "flow"),
            "GateNodeV2": ("Gate", "flow"), "EventEmitterNode": ("Event Emitter", "flow"),
            "EventListenerNode": ("Event Listener", "flow"), "DebugLogNode": ("Debug Log", "utilities"),
            "HandlebarsTemplateNode": ("Handlebars Template", "utilities"),
            "RegExpNode": ("Regular Expression Processor", "utilities"),
            "JSONSerializerNode": ("JSON Serializer", "utilities"),
            "YAMLSerializerNode": ("YAML Serializer", "utilities"),
            "JsonYamlDeserializerNode": ("JSON/YAML Deserializer", "utilities"),
            "ArrayElementNode": ("Array Element", "utilities"), "ServerTimeNode": ("Server Time", "utilities"),
            "HttpRequestNode": ("HTTP Request", "utilities"),
            "LangchainTemplateNode": ("Langchain Template", "utilities"),
            "ArrayLengthNode": ("Array Length", "data"), "NumberToStringNode": ("Number to String", "data"),
            "TextSearchNode": ("Text Search", "data"), "GroupNode": ("Group", "group"),
        }
        for name, (title, cat) in expected.items():
            cls = node_class(name)
            self.assertEqual((cls.title, cls.category), (title, cat), name)
        for name in CORE_TYPES:
            self.assertIn(node_class(name).category, CATEGORIES, name)

    def test_flow_ports_only_on_event_listener(self) -> None:
        for name in CORE_TYPES:
            fp = node_class(name).flow_ports
            if name == "EventListenerNode":
                self.assertEqual(fp, {"disabledAutoExecution": True})
            else:
                self.assertFalse(fp.get("disabledAutoExecution"), name)
        self.assertEqual(node_class("EventListenerNode").metadata()["flowPorts"], {"disabledAutoExecution": True})
        self.assertEqual(node_class("GateNode").metadata()["ui"], {"state": {"isHidden": True}})

    def test_port_declarations(self) -> None:
        def ports(name: str) -> list[tuple[str, str, str, Any]]:
            return [(p.key, p.type, p.direction, p.default) for p in node_class(name).ports]

        self.assertEqual(ports("MathNode"), [("a", "number", "passthrough", 0), ("b", "number", "passthrough", 0),
                                             ("operation", "enum", "passthrough", UNSET),
                                             ("result", "number", "output", 0)])
        self.assertEqual(ports("NotNode")[1], ("result", "boolean", "output", True))
        self.assertEqual(ports("BranchNode")[0], ("leftValue", "any", "input", None))
        self.assertEqual(node_class("BranchNode").port("operator").options,
                         ("equals", "notEquals", "greaterThan", "lessThan", "greaterThanOrEquals",
                          "lessThanOrEquals", "contains", "notContains", "startsWith", "endsWith"))
        self.assertEqual(node_class("MathNode").port("operation").options,
                         ("add", "subtract", "multiply", "divide", "modulo", "power", "min", "max", "average",
                          "absolute_difference", "percentage", "log_base"))
        self.assertEqual(ports("YAMLSerializerNode")[3], ("yaml", "string", "output", UNSET))
        self.assertEqual(ports("GroupNode"), [])
        self.assertEqual([p.key for p in node_class("HttpRequestNode").ports],
                         ["baseUri", "path", "method", "headers", "body", "responseType", "timeout", "retries",
                          "statusCode", "response"])
        http = node_class("HttpRequestNode")
        self.assertEqual(http.port("responseType").default, "text")
        self.assertEqual(http.port("responseType").options, ("json", "text", "blob", "html-to-markdown"))
        self.assertEqual(http.port("timeout").default, 30000)
        rx = node_class("RegExpNode").port("flags")
        self.assertEqual([p.key for p in rx.schema], ["global", "caseInsensitive", "multiline", "dotAll", "unicode"])
        self.assertEqual(node_class("RegExpNode").initial_values()["flags"]["global"], True)
        self.assertEqual([p.order for p in node_class("HttpRequestNode").ports], list(range(1, 11)))
        st = node_class("ServerTimeNode").port("timezone")
        self.assertEqual(st.default, "UTC")
        self.assertEqual(len(st.options), 11)
        sleep = node_class("SleepNode").port("duration")
        self.assertEqual((sleep.default, sleep.min), (1000, 0))

    def test_metadata_serializes(self) -> None:
        import json

        for cat in core_registry().categorized():
            json.dumps(cat)  # every default is JSON-friendly
