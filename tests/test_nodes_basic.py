"""basic-values and group nodes: they keep their value and do nothing in execute."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from .helpers import async_test
from .test_nodes_ctx import node_class, run_node


class BasicValueNodeTests(TestCase):
    @async_test
    async def test_values_pass_through_unchanged(self) -> None:
        cases = {
            "TextNode": {"text": "hello"},
            "NumberNode": {"num": 42},
            "BooleanNode": {"flag": True},
            "ObjectNode": {"object": {"a": 1, "nested": {"b": [1, 2]}}},
            "ArrayNode": {"array": [1, "two", False]},
            "MarkdownTextNode": {"text": "# Title"},
        }
        for type_name, values in cases.items():
            ctx = await run_node(type_name, values)
            for k, v in values.items():
                self.assertEqual(ctx.values[k], v, type_name)

    def test_defaults(self) -> None:
        self.assertEqual(node_class("TextNode").initial_values(), {"text": ""})
        self.assertEqual(node_class("NumberNode").initial_values(), {"num": 0})
        self.assertEqual(node_class("BooleanNode").initial_values(), {"flag": False})
        self.assertEqual(node_class("ObjectNode").initial_values(), {"object": {}})
        self.assertEqual(node_class("ArrayNode").initial_values(), {"array": []})  # itemSchema has no value
        text = node_class("TextNode").port("text")
        self.assertEqual((text.direction, text.ui), ("passthrough", {"isTextArea": True}))
        o = node_class("ObjectNode").port("object")
        self.assertTrue(o.is_schema_mutable)
        self.assertEqual(o.to_config()["schema"], {"properties": {}})
        arr = node_class("ArrayNode").port("array")
        self.assertEqual(arr.item.type, "any")
        self.assertEqual(arr.ui, {"allowedTypes": ["string", "number", "boolean"]})
        self.assertTrue(arr.is_mutable and arr.is_schema_mutable)
        self.assertEqual(node_class("ArrayNode").port("itemSchema").type, "any")

    @async_test
    async def test_group_node_has_no_ports_and_does_nothing(self) -> None:
        cls = node_class("GroupNode")
        self.assertEqual(cls.ports, ())
        self.assertEqual(cls.category, "group")
        ctx = await run_node("GroupNode")
        self.assertEqual(ctx.values, {})

    @async_test
    async def test_gate_v2_is_a_pure_junction(self) -> None:
        ctx = await run_node("GateNodeV2", {"gate": {"gate-input-1": "x"}})
        self.assertEqual(ctx.values["gate"], {"gate-input-1": "x"})
        gate = node_class("GateNodeV2").port("gate")
        self.assertEqual((gate.type, gate.direction), ("object", "passthrough"))
        self.assertEqual(gate.ui, {"collapsed": True, "keyDeletable": True})
