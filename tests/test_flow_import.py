"""Tests for chaingraph_gw.flow.chaingraph_import (ChainGraph stored flows and export files)."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.flow.chaingraph_import import (
    convert_value,
    import_chaingraph,
    is_chaingraph_document,
    sanitize_ids,
)
from chaingraph_gw.flow.document import FlowValidationError, load_flow, validate_document

from .test_flow_fixtures import example_2_9, example_2_9_head, greeting_doc, make_registry

REG = make_registry()

EXPECTED_2_9 = {
    "name": "Greeting demo",
    "id": "V2exampleFlow000000000000001",
    "nodes": [
        {"id": "NOtext000000000001", "type": "TextNode", "title": "Name", "values": {"text": "Ada"},
         "metadata": {"ui": {"position": {"x": 0, "y": 0}}},
         "portIds": {"__execute": "execute:POtxExe000000000001", "__success": "success:POtxSuc000000000001",
                     "__error": "error:POtxErr000000000001", "__errorMessage": "errorMessage:POtxMsg000000000001",
                     "text": "text:POtxText00000000001"}},
        {"id": "NOtmpl000000000001", "type": "HandlebarsTemplateNode", "title": "Greeting",
         "values": {"template": "Hello, {{name}}! You are {{age}}.", "variables": {"name": "", "age": 36}},
         "metadata": {"ui": {"position": {"x": 300, "y": 0}}},
         "portIds": {"__execute": "execute:POtmExe000000000001", "__success": "success:POtmSuc000000000001",
                     "__error": "error:POtmErr000000000001", "__errorMessage": "errorMessage:POtmMsg000000000001",
                     "template": "template:POtmTmpl00000000001", "variables": "variables:POtmVars00000000001",
                     "renderedText": "renderedText:POtmOut000000000001"}},
        {"id": "NOdlog000000000001", "type": "DebugLogNode",
         "metadata": {"ui": {"position": {"x": 600, "y": 0}}},
         "portIds": {"__execute": "execute:POdlExe000000000001", "__success": "success:POdlSuc000000000001",
                     "__error": "error:POdlErr000000000001", "__errorMessage": "errorMessage:POdlEMs000000000001",
                     "message": "message:POdlMsg000000000001"}},
    ],
    "edges": [
        {"id": "EDedge0000000000000001", "from": "NOtext000000000001.text",
         "to": "NOtmpl000000000001.variables.name"},
        {"id": "EDedge0000000000000002", "from": "NOtmpl000000000001.renderedText",
         "to": "NOdlog000000000001.message"},
    ],
}


def port(key: str, type_: str, value: Any = ..., *, pid: str | None = None, direction: str = "input",
         **cfg: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"config": {"id": pid or f"{key}:PO{key[:4]}0000000000001", "key": key, "type": type_,
                                        "direction": direction, **cfg}}
    if value is not ...:
        entry["value"] = value
    return entry


def snode(nid: str, type_: str, ports: list[dict[str, Any]] | None = None, *, execute: bool = True,
          head: bool = False, **meta: Any) -> dict[str, Any]:
    def sid(name: str) -> str:
        return f"__{name}" if head else f"{name}:PO{nid[-6:]}{name[:3]}0000"

    return {
        "id": nid, "type": type_, "metadata": {"type": type_, **meta}, "status": "initialized",
        "systemPorts": {"error": {"id": sid("error"), "value": False},
                        "errorMessage": {"id": sid("errorMessage"), "value": ""},
                        "execute": {"id": sid("execute"), "value": execute},
                        "success": {"id": sid("success"), "value": True}},
        "ports": ports or [], "connections": {}, "schemaVersion": "v2",
    }


def edge(eid: str, sn: str, sp: str, tn: str, tp: str) -> dict[str, Any]:
    return {"id": eid, "status": "active", "metadata": {}, "sourceNodeId": sn, "sourcePortId": sp,
            "targetNodeId": tn, "targetPortId": tp}


def stored(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    return {"id": "V2test", "metadata": {"id": "V2test", "name": "T", **meta}, "nodes": nodes, "edges": edges or []}


class _Base(SynchronousTestCase):
    def import_errors(self, data: dict[str, Any]) -> list[dict[str, str]]:
        exc = self.assertRaises(FlowValidationError, import_chaingraph, data, REG)
        self.assertIn("cannot import ChainGraph flow", str(exc))
        return exc.errors


class ExampleTests(_Base):
    def test_example_2_9(self):
        doc = import_chaingraph(example_2_9(), REG)
        self.assertEqual(doc, EXPECTED_2_9)
        flow = load_flow(doc, REG)
        self.assertEqual(flow.id, "V2exampleFlow000000000000001")
        self.assertEqual(flow.name, "Greeting demo")
        tmpl = flow.nodes["NOtmpl000000000001"]
        self.assertEqual(tmpl.values["variables"], {"name": "", "age": 36})
        self.assertEqual(tmpl.port_ids["variables"], "variables:POtmVars00000000001")
        self.assertEqual(tmpl.title, "Greeting")
        self.assertEqual([(e.id, e.target_path) for e in flow.edges],
                         [("EDedge0000000000000001", "variables.name"), ("EDedge0000000000000002", "message")])
        json.dumps(doc)

    def test_input_is_not_modified(self):
        data = example_2_9()
        import_chaingraph(data, REG)
        self.assertEqual(data, example_2_9())

    def test_head_bare_ids(self):
        doc = import_chaingraph(example_2_9_head(), REG)
        expected = json.loads(json.dumps(EXPECTED_2_9))
        for n in expected["nodes"]:
            del n["portIds"]
        self.assertEqual(doc, expected)
        load_flow(doc, REG)

    def test_export_file_wrapper(self):
        data = example_2_9()
        export = {"version": "1.0", "timestamp": "2025-09-15T12:00:00.000Z", "exportMode": "all",
                  "flowMetadata": {"id": "V2other", "name": "Exported", "description": "d", "tags": ["x"]},
                  "virtualOrigin": {"x": 10, "y": 20}, "nodes": data["nodes"], "edges": data["edges"],
                  "nodeCount": 3, "edgeCount": 2}
        self.assertTrue(is_chaingraph_document(export))
        doc = import_chaingraph(export, REG)
        self.assertEqual((doc["name"], doc["description"], doc["tags"]), ("Exported", "d", ["x"]))
        self.assertNotIn("id", doc)
        self.assertEqual(doc["nodes"], EXPECTED_2_9["nodes"])
        self.assertEqual(doc["edges"], EXPECTED_2_9["edges"])
        export["virtualOrigin"] = {"x": "0"}
        errs = self.import_errors(export)
        self.assertEqual(errs[0]["path"], "virtualOrigin")

    def test_detection(self):
        self.assertTrue(is_chaingraph_document(example_2_9()))
        self.assertTrue(is_chaingraph_document(example_2_9_head()))
        self.assertTrue(is_chaingraph_document({"metadata": {"name": "x"}, "nodes": [], "edges": []}))
        self.assertFalse(is_chaingraph_document(greeting_doc()))
        self.assertFalse(is_chaingraph_document({"name": "x", "nodes": []}))
        self.assertFalse(is_chaingraph_document([]))

    def test_load_flow_and_validate_accept_chaingraph_json(self):
        flow = load_flow(json.dumps(example_2_9()), REG)
        self.assertEqual(list(flow.nodes), ["NOtext000000000001", "NOtmpl000000000001", "NOdlog000000000001"])
        out = validate_document(example_2_9(), REG)
        self.assertEqual(out["edges"], EXPECTED_2_9["edges"])


class NodeConversionTests(_Base):
    def test_missing_metadata(self):
        errs = self.import_errors({"nodes": [], "edges": [], "schemaVersion": "v2", "id": "x",
                                   "createdAt": "2025"} | {"nodes": [snode("NOa", "TextNode")]})
        self.assertEqual(errs, [{"path": "metadata", "message": "Invalid flow data: missing metadata."}])

    def test_unsupported_types_are_all_listed(self):
        data = stored([snode("NOa", "TextNode", [port("text", "string", "x", direction="passthrough")]),
                       snode("NOb", "LLMCallNode"), snode("NOc", "MCPToolCallNode"), snode("NOd", "LLMCallNode")],
                      [edge("E1", "NOa", "text:POtext0000000000001", "NOb", "prompt:PO1")])
        errs = self.import_errors(data)
        self.assertEqual(errs[0], {"path": "nodes", "message": "unsupported node types: LLMCallNode (nodes NOb, NOd); "
                                                               "MCPToolCallNode (node NOc)"})
        self.assertEqual([e["path"] for e in errs[1:]], ["nodes[1].metadata.type", "nodes[2].metadata.type",
                                                         "nodes[3].metadata.type"])
        self.assertIn("node 'NOc': unsupported node type 'MCPToolCallNode'", errs[2]["message"])

    def test_type_fallback_and_title(self):
        n = snode("NOa", "TextNode", title="Text Node")
        del n["metadata"]["type"]
        doc = import_chaingraph(stored([n]), REG)
        self.assertEqual(doc["nodes"][0]["type"], "TextNode")
        self.assertNotIn("title", doc["nodes"][0])  # same as the type's title
        n = snode("NOa", "", head=True)
        n["type"] = ""
        errs = self.import_errors(stored([n]))
        self.assertEqual(errs[0]["path"], "nodes[0].metadata.type")

    def test_shape_errors(self):
        errs = self.import_errors(stored(["x", {"type": "TextNode"}, snode("NOa", "TextNode"),
                                          snode("NOa", "TextNode")]))
        self.assertEqual([e["path"] for e in errs], ["nodes[0]", "nodes[1].id", "nodes[3].id"])
        errs = self.import_errors({"metadata": {"name": "x"}, "nodes": {}, "edges": 3})
        self.assertEqual([e["path"] for e in errs], ["nodes", "edges"])

    def test_execute_false_and_system_ids(self):
        doc = import_chaingraph(stored([snode("NOa", "TextNode", execute=False, head=True)]), REG)
        self.assertEqual(doc["nodes"][0]["values"], {"__execute": False})
        self.assertNotIn("portIds", doc["nodes"][0])
        flow = load_flow(doc, REG)
        self.assertIs(flow.nodes["NOa"].system["__execute"], False)

    def test_value_conversion(self):
        nodes = [
            snode("NOh", "HandlebarsTemplateNode", [port("template", "string", None)], head=True),
            snode("NOn", "NumberNode", [port("num", "number", " 42 ", direction="passthrough")], head=True),
            snode("NOn2", "NumberNode", [port("num", "number", "2.5", direction="passthrough")], head=True),
            snode("NOn3", "NumberNode", [port("num", "number", None, direction="passthrough")], head=True),
            snode("NOt", "TextNode", [port("text", "string", 1.5, direction="passthrough")], head=True),
            snode("NOt2", "TextNode", [port("text", "string", 1e21, direction="passthrough")], head=True),
            snode("NOt3", "TextNode", [port("text", "string", True, direction="passthrough")], head=True),
            snode("NOb", "BooleanNode", [port("flag", "boolean", None, direction="passthrough")], head=True),
            # no value: defaultValue is used
            snode("NOm", "MathNode", [port("a", "number", defaultValue=7, direction="passthrough"),
                                      port("operation", "enum", direction="passthrough")], head=True),
        ]
        doc = import_chaingraph(stored(nodes), REG)
        values = {n["id"]: n.get("values") for n in doc["nodes"]}
        self.assertEqual(values, {"NOh": {"template": ""}, "NOn": {"num": 42}, "NOn2": {"num": 2.5}, "NOn3": None,
                                  "NOt": {"text": "1.5"}, "NOt2": {"text": "1e+21"}, "NOt3": {"text": "true"},
                                  "NOb": None, "NOm": {"a": 7}})
        load_flow(doc, REG)

    def test_convert_value_helper(self):
        self.assertEqual(convert_value({"type": "string"}, 3.0), "3")
        self.assertEqual(convert_value({"type": "string"}, 1e-7), "1e-7")
        self.assertEqual(convert_value({"type": "number"}, ""), 0)
        self.assertEqual(convert_value({"type": "number"}, "abc"), "abc")  # left for validation to report
        self.assertEqual(convert_value({"type": "array", "itemConfig": {"type": "number"}}, ["1", None]), [1, 0])
        self.assertEqual(convert_value({"type": "any", "underlyingType": {"type": "string"}}, None), None)
        self.assertEqual(convert_value({"type": "any", "underlyingType": {"type": "string"}}, 4), "4")

    def test_mutable_object_schema_becomes_values(self):
        props = {"name": {"key": "name", "type": "string"}, "count": {"key": "count", "type": "number", "defaultValue": 3},
                 "nested": {"key": "nested", "type": "object", "schema": {"properties": {
                     "on": {"key": "on", "type": "boolean"}}}}}
        n = snode("NOev", "EventListenerNode", [
            port("eventName", "string", "go"),
            port("outputData", "object", {"name": None, "extra": [1]}, direction="output", isSchemaMutable=True,
                 schema={"properties": props})], head=True)
        doc = import_chaingraph(stored([n, snode("NOt", "TextNode", head=True), snode("NOn", "NumberNode", head=True)],
                                       [edge("E1", "NOev", "outputData.name", "NOt", "text"),
                                        edge("E2", "NOev", "outputData.count", "NOn", "num")]), REG)
        self.assertEqual(doc["nodes"][0]["values"], {"eventName": "go", "outputData": {
            "name": "", "extra": [1], "count": 3, "nested": {"on": False}}})
        flow = load_flow(doc, REG)  # children are typed from their values: string -> string, number -> number
        self.assertEqual([e.source_path for e in flow.edges], ["outputData.name", "outputData.count"])

    def test_fixed_schema_object_extra_keys_dropped(self):
        n = snode("NOr", "RegExpNode", [port("flags", "object", {"global": False, "sticky": True},
                                             schema={"properties": {"global": {"type": "boolean"}}})], head=True)
        doc = import_chaingraph(stored([n]), REG)
        self.assertEqual(doc["nodes"][0]["values"], {"flags": {"global": False}})
        flow = load_flow(doc, REG)
        self.assertEqual(flow.nodes["NOr"].values["flags"], {"global": False, "caseInsensitive": False,
                                                             "multiline": False})

    def test_unknown_ports_are_ignored_but_edges_to_them_reported(self):
        n = snode("NOt", "TextNode", [port("text", "string", "a", direction="passthrough"),
                                      port("legacy", "string", "zzz", pid="legacy:PO1")])
        log = snode("NOl", "DebugLogNode", [port("message", "string", "", pid="message:PO2")])
        errs = self.import_errors(stored([n, log], [edge("E1", "NOt", "legacy:PO1", "NOl", "message:PO2")]))
        self.assertEqual(errs, [{"path": "edges[0].sourcePortId",
                                 "message": "edge 'E1': source port 'legacy:PO1' not found on node 'NOt' (TextNode)"}])

    def test_any_underlying_type_becomes_types(self):
        el = snode("NOel", "ArrayElementNode", [
            port("element", "any", None, direction="output", underlyingType={"type": "string", "id": "noise"})],
            head=True)
        de = snode("NOde", "JsonYamlDeserializerNode", [
            port("deserializedObject", "any", None, direction="output", underlyingType={
                "type": "object", "schema": {"properties": {"n": {"type": "number"}}}})], head=True)
        doc = import_chaingraph(stored([el, de, snode("NOt", "TextNode", head=True),
                                        snode("NOn", "NumberNode", head=True)],
                                       [edge("E1", "NOel", "element", "NOt", "text"),
                                        edge("E2", "NOde", "deserializedObject.n", "NOn", "num")]), REG)
        self.assertEqual(doc["nodes"][0]["types"], {"element": "string"})
        self.assertEqual(doc["nodes"][1]["types"], {"deserializedObject": {"type": "object",
                                                                           "properties": {"n": "number"}}})
        flow = load_flow(doc, REG)
        self.assertEqual(flow.nodes["NOel"].spec("element").underlying.type, "string")

    def test_legacy_v1_ports_map(self):
        n = {"id": "NOh", "type": "HandlebarsTemplateNode", "metadata": {"type": "HandlebarsTemplateNode"},
             "ports": {
                 "template:PO1": {"config": {"id": "template:PO1", "key": "template", "type": "string"},
                                  "value": "Hi {{x}}"},
                 "variables:PO2": {"config": {"id": "variables:PO2", "key": "variables", "type": "object",
                                              "isSchemaMutable": True}, "value": {"x": "y"}},
                 "variables:PO2.x": {"config": {"id": "variables:PO2.x", "key": "x", "type": "string",
                                                "parentId": "variables:PO2"}, "value": "IGNORED"},
             }}
        t = {"id": "NOt", "type": "TextNode", "metadata": {"type": "TextNode"},
             "ports": {"text:PO3": {"config": {"id": "text:PO3", "key": "text", "type": "string"}, "value": "v"}}}
        doc = import_chaingraph(stored([n, t], [edge("E1", "NOt", "text:PO3", "NOh", "variables:PO2.x")]), REG)
        self.assertEqual(doc["nodes"][0]["values"], {"template": "Hi {{x}}", "variables": {"x": "y"}})
        self.assertEqual(doc["edges"], [{"id": "E1", "from": "NOt.text", "to": "NOh.variables.x"}])

    def test_group_membership(self):
        g = snode("NOg", "GroupNode", ui={"dimensions": {"width": 100, "height": 50}})
        t = snode("NOt", "TextNode", parentNodeId="NOg", ui={"position": {"x": 5, "y": 5}})
        doc = import_chaingraph(stored([g, t]), REG)
        self.assertEqual(doc["nodes"][1]["parent"], "NOg")
        self.assertEqual(doc["nodes"][1]["metadata"], {"ui": {"position": {"x": 5, "y": 5}}})
        self.assertEqual(load_flow(doc, REG).nodes["NOt"].parent_node_id, "NOg")
        t = snode("NOt", "TextNode", parentNodeId="NOgone")
        errs = self.import_errors(stored([t]))
        self.assertEqual(errs, [{"path": "nodes[0].metadata.parentNodeId",
                                 "message": "node 'NOt': parent node 'NOgone' does not exist"}])


class EdgeConversionTests(_Base):
    def nodes(self) -> list[dict[str, Any]]:
        return [
            snode("NOt", "TextNode", [port("text", "string", "hi", pid="text:POt", direction="passthrough")]),
            snode("NOarr", "ArrayNode", [port("array", "array", ["a", "b"], pid="array:POarr",
                                              direction="passthrough")]),
            snode("NOl", "DebugLogNode", [port("message", "string", "", pid="message:POl")]),
            snode("NOb", "BooleanNode", [port("flag", "boolean", True, pid="flag:POb", direction="passthrough")]),
        ]

    def test_id_forms(self):
        edges = [
            edge("E1", "NOarr", "array:POarr[1]", "NOl", "message:POl"),         # array item child id
            edge("E2", "NOt", "?", "NOl", "message:POl"),                        # system port id (below)
            edge("E3", "NOb", "flag:POb", "NOl", "__execute"),                    # bare system key
            edge("E4", "NOt", "text", "NOarr", "array:POarr[2]"),                 # bare top-level key
        ]
        # the system port id of NOt built by snode()
        edges[1]["sourcePortId"] = self.nodes()[0]["systemPorts"]["errorMessage"]["id"]
        doc = import_chaingraph(stored(self.nodes(), edges), REG)
        self.assertEqual([(e["from"], e["to"]) for e in doc["edges"]], [
            ("NOarr.array[1]", "NOl.message"), ("NOt.__errorMessage", "NOl.message"),
            ("NOb.flag", "NOl.__execute"), ("NOt.text", "NOarr.array[2]")])
        flow = load_flow(doc, REG)
        self.assertEqual([e.order for e in flow.edges], [0, 1, 2, 3])

    def test_missing_nodes_and_ports_are_errors(self):
        edges = [
            edge("E1", "NOt", "text:POt", "NOmissing", "x"),
            edge("E2", "NOt", "text:POwrong", "NOl", "message:POl"),
            edge("E3", "NOt", "nope:POt.x", "NOl", "message:POl"),
            edge("E4", "NOt", "text:POt", "NOl", None),
            {"id": "E5"},
            "junk",
        ]
        errs = self.import_errors(stored(self.nodes(), edges))
        self.assertEqual([(e["path"], e["message"]) for e in errs], [
            ("edges[0].targetNodeId", "edge 'E1': target node 'NOmissing' does not exist"),
            ("edges[1].sourcePortId", "edge 'E2': source port 'text:POwrong' not found on node 'NOt' (TextNode)"),
            ("edges[2].sourcePortId", "edge 'E3': source port 'nope:POt.x' not found on node 'NOt' (TextNode)"),
            ("edges[3].targetPortId", "edge 'E4': target port null not found on node 'NOl' (DebugLogNode)"),
            ("edges[4].sourceNodeId", "edge 'E5': source node null does not exist"),
            ("edges[4].targetNodeId", "edge 'E5': target node null does not exist"),
            ("edges[5]", "an edge must be an object, got string 'junk'"),
        ])

    def test_edges_of_unsupported_nodes_do_not_cascade(self):
        nodes = [*self.nodes(), snode("NOx", "Mystery")]
        errs = self.import_errors(stored(nodes, [edge("E1", "NOx", "out:PO", "NOl", "message:POl")]))
        self.assertEqual([e["path"] for e in errs], ["nodes", "nodes[4].metadata.type"])

    def test_duplicate_edge_ids_keep_the_first(self):
        edges = [edge("E1", "NOt", "text:POt", "NOl", "message:POl"),
                 edge("E1", "NOb", "flag:POb", "NOl", "__execute")]
        doc = import_chaingraph(stored(self.nodes(), edges), REG)
        self.assertEqual(doc["edges"][0]["id"], "E1")
        self.assertNotIn("id", doc["edges"][1])


class IdSanitizingTests(_Base):
    def test_api_style_ids(self):
        t = snode("TextNode:NOabc", "TextNode", [port("text", "string", "x", pid="text:PO1",
                                                      direction="passthrough")])
        g = snode("GroupNode:NOg", "GroupNode")
        log = snode("DebugLogNode:NOl", "DebugLogNode", [port("message", "string", "", pid="message:PO2")],
                    parentNodeId="GroupNode:NOg")
        data = stored([t, g, log], [edge("E1", "TextNode:NOabc", "text:PO1", "DebugLogNode:NOl", "message:PO2")])
        doc = import_chaingraph(data, REG)
        self.assertEqual([n["id"] for n in doc["nodes"]], ["TextNode_NOabc", "GroupNode_NOg", "DebugLogNode_NOl"])
        self.assertEqual(doc["nodes"][2]["parent"], "GroupNode_NOg")
        self.assertEqual(doc["edges"][0]["from"], "TextNode_NOabc.text")
        self.assertEqual(import_chaingraph(data, REG), doc)  # deterministic
        load_flow(doc, REG)

    def test_collisions_get_a_hash(self):
        m = sanitize_ids(["a:b", "a_b", "c:d", "c.d", "ok", "x" * 70])
        self.assertEqual(m["a_b"], "a_b")
        self.assertEqual(m["ok"], "ok")
        self.assertRegex(m["a:b"], r"^a_b_[0-9a-f]{8}$")
        self.assertRegex(m["c:d"], r"^c_d_[0-9a-f]{8}$")
        self.assertRegex(m["c.d"], r"^c_d_[0-9a-f]{8}$")
        self.assertNotEqual(m["c:d"], m["c.d"])
        self.assertEqual(m["x" * 70], "x" * 64)
        self.assertEqual(len(set(m.values())), 6)
        self.assertEqual(sanitize_ids(["c.d", "c:d"]), {"c:d": m["c:d"], "c.d": m["c.d"]})
