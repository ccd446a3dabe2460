"""Node types and documents shared by the tests/test_flow_*.py modules (no tests here).

The types mirror the ports of the ChainGraph core nodes they are named after, but live in a private
NodeRegistry so the tests do not depend on (or pollute) the default registry.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from chaingraph_gw.nodes.sdk import (
    NodeRegistry,
    NodeType,
    PortSpec,
    any_port,
    array,
    boolean,
    enum,
    number,
    obj,
    secret,
    string,
)


class _Base(NodeType):
    async def execute(self, ctx: Any) -> None:  # pragma: no cover - never run here
        pass


class TextNode(_Base):
    type_name = "TextNode"
    title = "Text Node"
    category = "basic-values"
    ports = (string("text", direction="passthrough", default="", ui={"isTextArea": True}),)


class NumberNode(_Base):
    type_name = "NumberNode"
    title = "Number Node"
    category = "basic-values"
    ports = (number("num", direction="passthrough", default=0),)


class BooleanNode(_Base):
    type_name = "BooleanNode"
    title = "Boolean Node"
    category = "basic-values"
    ports = (boolean("flag", direction="passthrough", default=False),)


class ObjectNode(_Base):
    type_name = "ObjectNode"
    title = "Object Node"
    category = "basic-values"
    ports = (obj("object", direction="passthrough", default={}, is_schema_mutable=True,
                 ui={"keyDeletable": True}),)


class ArrayNode(_Base):
    type_name = "ArrayNode"
    title = "Array Node"
    category = "basic-values"
    ports = (
        any_port("itemSchema", direction="passthrough"),
        array("array", direction="passthrough", default=[], item=any_port("item"), is_mutable=True,
              is_schema_mutable=True),
    )


MATH_OPS = ("add", "subtract", "multiply", "divide")


class MathNode(_Base):
    type_name = "MathNode"
    title = "Math"
    category = "math"
    ports = (
        number("a", direction="passthrough", default=0),
        number("b", direction="passthrough", default=0),
        enum("operation", MATH_OPS, direction="passthrough"),
        number("result", direction="output", default=0),
    )


class HandlebarsTemplateNode(_Base):
    type_name = "HandlebarsTemplateNode"
    title = "Handlebars Template"
    category = "utilities"
    ports = (
        string("template", default="Hello, {{user.name}}!", ui={"isTextArea": True}),
        obj("variables", default={}, is_schema_mutable=True, ui={"keyDeletable": True}),
        string("renderedText", direction="output", default=""),
    )


class DebugLogNode(_Base):
    type_name = "DebugLogNode"
    title = "Debug Log"
    category = "utilities"
    ports = (string("message", default=""),)


class RegExpNode(_Base):
    type_name = "RegExpNode"
    title = "Regular Expression Processor"
    category = "utilities"
    ports = (
        string("sourceText", default="", required=True),
        string("pattern", default=""),
        obj("flags", schema=(boolean("global", default=True), boolean("caseInsensitive", default=False),
                             boolean("multiline", default=False))),
        enum("mode", ("match", "replace", "test", "extract"), default="match"),
        string("result", direction="output", default=""),
        number("matchCount", direction="output", default=0),
    )


class ArrayElementNode(_Base):
    type_name = "ArrayElementNode"
    title = "Array Element"
    category = "utilities"
    ports = (
        array("array", direction="passthrough", default=[], item=any_port("item"), is_mutable=True),
        number("index", direction="passthrough", default=0, integer=True),
        any_port("element", direction="output", default=None),
    )


class JsonYamlDeserializerNode(_Base):
    type_name = "JsonYamlDeserializerNode"
    title = "JSON/YAML Deserializer"
    category = "utilities"
    ports = (
        string("inputString", direction="passthrough", default=""),
        any_port("deserializedObject", direction="output", default=None),
    )


class BranchNode(_Base):
    type_name = "BranchNode"
    title = "Branch"
    category = "flow"
    ports = (
        any_port("leftValue", default=None),
        enum("operator", ("equals", "notEquals"), default="equals"),
        any_port("rightValue", default=None),
        boolean("result", direction="output", default=False),
    )


class EventListenerNode(_Base):
    type_name = "EventListenerNode"
    title = "Event Listener"
    category = "flow"
    flow_ports: ClassVar[dict[str, Any]] = {"disabledAutoExecution": True}
    ports = (
        string("eventName", default=""),
        obj("outputData", direction="output", default={}, is_schema_mutable=True),
    )


class GroupNode(_Base):
    type_name = "GroupNode"
    title = "Group"
    category = "group"
    ports = ()


class ListNode(_Base):
    """Typed arrays (not in ChainGraph's core set): string list out, number list in/out."""

    type_name = "ListNode"
    title = "List"
    category = "other"
    ports = (
        array("strings", direction="output", item=string("item"), default=[]),
        array("numbers", direction="passthrough", item=number("item"), default=[]),
        array("anyItems", item=any_port("item"), default=[]),
    )


class PersonNode(_Base):
    """Fixed-schema objects for object→object rules."""

    type_name = "PersonNode"
    title = "Person"
    category = "other"
    ports = (
        obj("person", direction="passthrough",
            schema=(string("name", default=""), number("age", default=0),
                    obj("address", schema=(string("city", default=""),)))),
        obj("named", direction="passthrough", schema=(string("name", default=""),)),
        obj("aged", schema=(string("age", default=""),)),
        obj("anything"),  # no schema, not mutable
    )


class OddPortsNode(_Base):
    type_name = "OddPortsNode"
    title = "Odd ports"
    category = "other"
    ports = (
        PortSpec("chan", "stream"),
        secret("token"),
        any_port("typed", underlying=string("typed")),
    )


ALL_TYPES = (TextNode, NumberNode, BooleanNode, ObjectNode, ArrayNode, MathNode, HandlebarsTemplateNode,
             DebugLogNode, RegExpNode, ArrayElementNode, JsonYamlDeserializerNode, BranchNode,
             EventListenerNode, GroupNode, ListNode, PersonNode, OddPortsNode)


def make_registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in ALL_TYPES:
        reg.register(cls)
    return reg


GREETING_DOC: dict[str, Any] = {
    "name": "Greeting",
    "description": "says hello",
    "tags": ["demo"],
    "nodes": [
        {"id": "name", "type": "TextNode", "title": "Name", "values": {"text": "Ada"}},
        {"id": "greet", "type": "HandlebarsTemplateNode",
         "values": {"template": "Hello, {{name}}! You are {{age}}.", "variables": {"name": "", "age": 36}}},
        {"id": "log", "type": "DebugLogNode"},
    ],
    "edges": [
        {"from": "name.text", "to": "greet.variables.name"},
        {"from": "greet.renderedText", "to": "log.message"},
    ],
}

GREETING_YAML = """\
name: Greeting
description: says hello
tags: [demo]
nodes:
  - id: name
    type: TextNode
    title: Name
    values: {text: Ada}
  - id: greet
    type: HandlebarsTemplateNode
    values:
      template: "Hello, {{name}}! You are {{age}}."
      variables: {name: "", age: 36}
  - {id: log, type: DebugLogNode}
edges:
  - {from: name.text, to: greet.variables.name}
  - {from: greet.renderedText, to: log.message}
"""


def greeting_doc() -> dict[str, Any]:
    return copy.deepcopy(GREETING_DOC)


# The example flow of chaingraph-node-catalog.md §2.9 (written by the notes' author, not ChainGraph code).
EXAMPLE_2_9: dict[str, Any] = {
    "id": "V2exampleFlow000000000000001",
    "metadata": {
        "id": "V2exampleFlow000000000000001", "name": "Greeting demo",
        "createdAt": "2025-09-15T12:00:00.000Z", "updatedAt": "2025-09-15T12:00:00.000Z", "tags": [],
    },
    "nodes": [
        {
            "id": "NOtext000000000001", "type": "TextNode",
            "metadata": {"type": "TextNode", "title": "Name", "category": "basic-values", "version": 1,
                         "ui": {"position": {"x": 0, "y": 0}}},
            "status": "initialized",
            "systemPorts": {
                "error": {"id": "error:POtxErr000000000001", "value": False},
                "errorMessage": {"id": "errorMessage:POtxMsg000000000001", "value": ""},
                "execute": {"id": "execute:POtxExe000000000001", "value": True},
                "success": {"id": "success:POtxSuc000000000001", "value": True},
            },
            "ports": [
                {"config": {"id": "text:POtxText00000000001", "key": "text", "type": "string",
                            "direction": "passthrough", "order": 1, "nodeId": "NOtext000000000001",
                            "defaultValue": "", "ui": {"isTextArea": True}},
                 "value": "Ada"},
            ],
            "connections": {"text:POtxText00000000001": [
                {"nodeId": "NOtmpl000000000001", "portId": "variables:POtmVars00000000001.name"}]},
            "schemaVersion": "v2",
        },
        {
            "id": "NOtmpl000000000001", "type": "HandlebarsTemplateNode",
            "metadata": {"type": "HandlebarsTemplateNode", "title": "Greeting", "category": "utilities",
                         "version": 1, "ui": {"position": {"x": 300, "y": 0}}},
            "status": "initialized",
            "systemPorts": {
                "error": {"id": "error:POtmErr000000000001", "value": False},
                "errorMessage": {"id": "errorMessage:POtmMsg000000000001", "value": ""},
                "execute": {"id": "execute:POtmExe000000000001", "value": True},
                "success": {"id": "success:POtmSuc000000000001", "value": True},
            },
            "ports": [
                {"config": {"id": "template:POtmTmpl00000000001", "key": "template", "type": "string",
                            "direction": "input", "order": 1, "nodeId": "NOtmpl000000000001", "defaultValue": ""},
                 "value": "Hello, {{name}}! You are {{age}}."},
                {"config": {"id": "variables:POtmVars00000000001", "key": "variables", "type": "object",
                            "direction": "input", "order": 2, "nodeId": "NOtmpl000000000001",
                            "isSchemaMutable": True, "ui": {"keyDeletable": True},
                            "schema": {"type": "object", "properties": {
                                "name": {"id": "variables:POtmVars00000000001.name",
                                         "parentId": "variables:POtmVars00000000001",
                                         "nodeId": "NOtmpl000000000001",
                                         "key": "name", "type": "string", "direction": "input", "defaultValue": ""},
                                "age": {"id": "variables:POtmVars00000000001.age",
                                        "parentId": "variables:POtmVars00000000001", "nodeId": "NOtmpl000000000001",
                                        "key": "age", "type": "number", "direction": "input", "defaultValue": 36}}},
                            "defaultValue": {"name": "", "age": 36}},
                 "value": {"name": "", "age": 36}},
                {"config": {"id": "renderedText:POtmOut000000000001", "key": "renderedText", "type": "string",
                            "direction": "output", "order": 3, "nodeId": "NOtmpl000000000001", "defaultValue": ""},
                 "value": ""},
            ],
            "connections": {
                "variables:POtmVars00000000001.name": [
                    {"nodeId": "NOtext000000000001", "portId": "text:POtxText00000000001"}],
                "renderedText:POtmOut000000000001": [
                    {"nodeId": "NOdlog000000000001", "portId": "message:POdlMsg000000000001"}],
            },
            "schemaVersion": "v2",
        },
        {
            "id": "NOdlog000000000001", "type": "DebugLogNode",
            "metadata": {"type": "DebugLogNode", "title": "Debug Log", "category": "utilities", "version": 1,
                         "ui": {"position": {"x": 600, "y": 0}}},
            "status": "initialized",
            "systemPorts": {
                "error": {"id": "error:POdlErr000000000001", "value": False},
                "errorMessage": {"id": "errorMessage:POdlEMs000000000001", "value": ""},
                "execute": {"id": "execute:POdlExe000000000001", "value": True},
                "success": {"id": "success:POdlSuc000000000001", "value": True},
            },
            "ports": [
                {"config": {"id": "message:POdlMsg000000000001", "key": "message", "type": "string",
                            "direction": "input", "order": 1, "nodeId": "NOdlog000000000001", "defaultValue": ""},
                 "value": ""},
            ],
            "connections": {"message:POdlMsg000000000001": [
                {"nodeId": "NOtmpl000000000001", "portId": "renderedText:POtmOut000000000001"}]},
            "schemaVersion": "v2",
        },
    ],
    "edges": [
        {"id": "EDedge0000000000000001", "status": "active", "metadata": {},
         "sourceNodeId": "NOtext000000000001", "sourcePortId": "text:POtxText00000000001",
         "targetNodeId": "NOtmpl000000000001", "targetPortId": "variables:POtmVars00000000001.name"},
        {"id": "EDedge0000000000000002", "status": "active", "metadata": {},
         "sourceNodeId": "NOtmpl000000000001", "sourcePortId": "renderedText:POtmOut000000000001",
         "targetNodeId": "NOdlog000000000001", "targetPortId": "message:POdlMsg000000000001"},
    ],
    "createdAt": "2025-09-15T12:00:00.000Z",
    "updatedAt": "2025-09-15T12:00:00.000Z",
}


def example_2_9() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_2_9)


def example_2_9_head() -> dict[str, Any]:
    """The §2.9 example in @HEAD form: port ids are the bare keys, system ports ``__execute`` etc."""
    data = example_2_9()

    def bare(pid: str) -> str:
        head, sep, rest = pid.partition(".")
        key = head.split(":", 1)[0]
        return key + (sep + rest if sep else "")

    for node in data["nodes"]:
        for name, sp in node["systemPorts"].items():
            sp["id"] = "__" + name
        for entry in node["ports"]:
            cfg = entry["config"]
            cfg["id"] = bare(cfg["id"])
            for prop in (cfg.get("schema") or {}).get("properties", {}).values():
                prop["id"] = bare(prop["id"])
                prop["parentId"] = bare(prop["parentId"])
        node["connections"] = {}
    for edge in data["edges"]:
        edge["sourcePortId"] = bare(edge["sourcePortId"])
        edge["targetPortId"] = bare(edge["targetPortId"])
    return data
