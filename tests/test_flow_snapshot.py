"""Tests for chaingraph_gw.flow.snapshot (SerializedNode v2 snapshots for execution events)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.flow.chaingraph_import import import_chaingraph
from chaingraph_gw.flow.document import load_flow
from chaingraph_gw.flow.snapshot import serialize_node
from chaingraph_gw.nodes.sdk import UNSET, string

from .test_flow_fixtures import example_2_9, make_registry

REG = make_registry()


def flow_of(nodes, edges=None):
    return load_flow({"name": "s", "nodes": nodes, "edges": edges or []}, REG)


def ports_by_key(snap):
    return {p["config"]["key"]: p for p in snap["ports"]}


class ShapeTests(SynchronousTestCase):
    def test_shape(self):
        flow = flow_of([{"id": "m", "type": "MathNode", "title": "Adder", "values": {"a": 1, "operation": "add"}}])
        snap = serialize_node(flow.nodes["m"], status="completed")
        self.assertEqual(list(snap), ["id", "type", "metadata", "status", "systemPorts", "ports", "connections",
                                      "schemaVersion"])
        self.assertEqual((snap["id"], snap["type"], snap["status"], snap["connections"], snap["schemaVersion"]),
                         ("m", "MathNode", "completed", {}, "v2"))
        self.assertEqual(snap["metadata"], {"type": "MathNode", "title": "Adder", "category": "math", "version": 1})
        self.assertEqual(snap["systemPorts"], {
            "error": {"id": "__error", "value": False}, "errorMessage": {"id": "__errorMessage", "value": ""},
            "execute": {"id": "__execute", "value": True}, "success": {"id": "__success", "value": True}})
        self.assertEqual([p["config"]["key"] for p in snap["ports"]], ["a", "b", "operation", "result"])
        a = snap["ports"][0]
        self.assertEqual(a, {"config": {"id": "a", "key": "a", "type": "number", "direction": "passthrough",
                                        "order": 1, "defaultValue": 0, "nodeId": "m"}, "value": 1})
        op = snap["ports"][2]["config"]
        self.assertEqual(op["options"][0], {"id": "add", "type": "string", "defaultValue": "add", "title": "add"})
        self.assertEqual(snap["ports"][2]["value"], "add")
        json.dumps(snap)

    def test_unset_values_are_omitted(self):
        flow = flow_of([{"id": "m", "type": "MathNode"}])
        node = flow.nodes["m"]
        snap = serialize_node(node, status="idle")
        self.assertNotIn("value", ports_by_key(snap)["operation"])
        node.values["a"] = UNSET
        self.assertNotIn("value", ports_by_key(serialize_node(node, status="idle"))["a"])
        node.system.pop("__errorMessage")
        self.assertEqual(serialize_node(node, status="idle")["systemPorts"]["errorMessage"],
                         {"id": "__errorMessage"})

    def test_null_values_are_kept(self):
        flow = flow_of([{"id": "b", "type": "BranchNode"}])
        self.assertIsNone(ports_by_key(serialize_node(flow.nodes["b"], status="idle"))["leftValue"]["value"])

    def test_runtime_values_and_status(self):
        flow = flow_of([{"id": "t", "type": "TextNode"}])
        node = flow.nodes["t"]
        node.set("text", "now")
        node.set("__success", False)
        node.set("__error", True)
        node.set("__errorMessage", "boom")
        snap = serialize_node(node, status="error")
        self.assertEqual(snap["status"], "error")
        self.assertEqual(snap["ports"][0]["value"], "now")
        self.assertEqual(snap["systemPorts"]["errorMessage"], {"id": "__errorMessage", "value": "boom"})
        self.assertIs(snap["systemPorts"]["error"]["value"], True)

    def test_values_are_copies(self):
        flow = flow_of([{"id": "o", "type": "ObjectNode", "values": {"object": {"a": [1, 2]}}}])
        node = flow.nodes["o"]
        snap = serialize_node(node, status="idle")
        snap["ports"][0]["value"]["a"].append(3)
        snap["ports"][0]["config"]["key"] = "changed"
        self.assertEqual(node.values["object"], {"a": [1, 2]})
        again = serialize_node(node, status="idle")
        self.assertEqual(again["ports"][0]["config"]["key"], "object")
        self.assertEqual(again["ports"][0]["value"], {"a": [1, 2]})

    def test_metadata(self):
        flow = flow_of([
            {"id": "g", "type": "GroupNode"},
            {"id": "ev", "type": "EventListenerNode", "parent": "g",
             "metadata": {"ui": {"position": {"x": 1, "y": 2}}, "title": "ignored?"}},
            {"id": "t", "type": "TextNode", "title": "Mine", "metadata": {"title": "from metadata"}},
        ])
        ev = serialize_node(flow.nodes["ev"], status="idle")["metadata"]
        self.assertEqual(ev, {"type": "EventListenerNode", "title": "ignored?", "category": "flow", "version": 1,
                              "flowPorts": {"disabledAutoExecution": True}, "ui": {"position": {"x": 1, "y": 2}},
                              "parentNodeId": "g"})
        t = serialize_node(flow.nodes["t"], status="idle")["metadata"]
        self.assertEqual(t["title"], "Mine")  # the node title wins
        self.assertEqual(serialize_node(flow.nodes["g"], status="idle")["ports"], [])


class ChildPortTests(SynchronousTestCase):
    def test_fixed_schema_children(self):
        flow = flow_of([{"id": "r", "type": "RegExpNode"}])
        cfg = ports_by_key(serialize_node(flow.nodes["r"], status="idle"))["flags"]["config"]
        props = cfg["schema"]["properties"]
        self.assertEqual(list(props), ["global", "caseInsensitive", "multiline"])
        self.assertEqual(props["global"], {"id": "flags.global", "key": "global", "type": "boolean",
                                           "direction": "input", "defaultValue": True, "nodeId": "r",
                                           "parentId": "flags"})

    def test_mutable_object_lists_value_keys(self):
        flow = flow_of([{"id": "h", "type": "HandlebarsTemplateNode",
                         "values": {"variables": {"name": "Ada", "age": 36, "tags": ["x"], "more": {"k": True},
                                                  "nothing": None}}}])
        node = flow.nodes["h"]
        cfg = ports_by_key(serialize_node(node, status="idle"))["variables"]["config"]
        props = cfg["schema"]["properties"]
        self.assertEqual({k: p["type"] for k, p in props.items()},
                         {"name": "string", "age": "number", "tags": "array", "more": "object", "nothing": "any"})
        self.assertEqual(props["name"], {"id": "variables.name", "key": "name", "type": "string", "direction": "input",
                                         "parentId": "variables", "nodeId": "h"})
        self.assertEqual(props["more"]["schema"]["properties"]["k"]["id"], "variables.more.k")
        self.assertTrue(cfg["isSchemaMutable"])
        # keys added at runtime show up; the cached static config is not modified
        node.values["variables"]["late"] = "x"
        props2 = ports_by_key(serialize_node(node, status="idle"))["variables"]["config"]["schema"]["properties"]
        self.assertIn("late", props2)
        node.values["variables"] = {}
        props3 = ports_by_key(serialize_node(node, status="idle"))["variables"]["config"]["schema"]["properties"]
        self.assertEqual(props3, {})

    def test_any_with_underlying_type_is_flattened(self):
        flow = flow_of([{"id": "de", "type": "JsonYamlDeserializerNode",
                         "types": {"deserializedObject": {"type": "object", "properties": {"n": "number"}}}}])
        cfg = ports_by_key(serialize_node(flow.nodes["de"], status="idle"))["deserializedObject"]["config"]
        self.assertEqual(cfg["type"], "any")
        self.assertEqual(cfg["underlyingType"]["type"], "object")
        self.assertEqual(cfg["schema"]["properties"]["n"]["id"], "deserializedObject.n")
        self.assertEqual(cfg["schema"]["properties"]["n"]["direction"], "output")


class ImportedIdsTests(SynchronousTestCase):
    def test_chaingraph_ids_are_used(self):
        flow = load_flow(import_chaingraph(example_2_9(), REG), REG)
        snap = serialize_node(flow.nodes["NOtmpl000000000001"], status="completed")
        self.assertEqual(snap["systemPorts"]["execute"], {"id": "execute:POtmExe000000000001", "value": True})
        by_key = ports_by_key(snap)
        var = by_key["variables"]
        self.assertEqual(var["config"]["id"], "variables:POtmVars00000000001")
        self.assertEqual(var["config"]["schema"]["properties"]["age"]["id"], "variables:POtmVars00000000001.age")
        self.assertEqual(var["value"], {"name": "", "age": 36})
        self.assertEqual(by_key["renderedText"]["config"]["id"], "renderedText:POtmOut000000000001")
        self.assertEqual(snap["metadata"]["title"], "Greeting")
        self.assertEqual(snap["metadata"]["ui"], {"position": {"x": 300, "y": 0}})


class CacheTests(SynchronousTestCase):
    def test_override_changes_are_picked_up(self):
        flow = flow_of([{"id": "el", "type": "ArrayElementNode"}])
        node = flow.nodes["el"]
        first = ports_by_key(serialize_node(node, status="idle"))["element"]["config"]
        self.assertNotIn("underlyingType", first)
        node.port_overrides["element"] = replace(node.spec("element"), underlying=string("element"))
        second = ports_by_key(serialize_node(node, status="idle"))["element"]["config"]
        self.assertEqual(second["underlyingType"]["type"], "string")
        node.port_ids["element"] = "element:POxyz"
        third = ports_by_key(serialize_node(node, status="idle"))["element"]["config"]
        self.assertEqual(third["id"], "element:POxyz")

    def test_clone_gets_equal_snapshots(self):
        flow = load_flow(import_chaingraph(example_2_9(), REG), REG)
        clone = flow.clone()
        for nid in flow.nodes:
            self.assertEqual(serialize_node(flow.nodes[nid], status="idle"),
                             serialize_node(clone.nodes[nid], status="idle"))

    def test_fast_enough(self):
        flow = load_flow(import_chaingraph(example_2_9(), REG), REG)
        node = flow.nodes["NOtmpl000000000001"]
        serialize_node(node, status="idle")
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            serialize_node(node, status="executing")
        per_call = (time.perf_counter() - start) / n
        self.assertLess(per_call, 0.001, f"{per_call * 1e6:.1f} µs per snapshot")
