"""Tests for chaingraph_gw.flow.document: parsing, validation (every error path), building, round trips."""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.flow import ids
from chaingraph_gw.flow.document import (
    FlowValidationError,
    copy_json,
    flow_to_document,
    format_path,
    json_equal,
    load_flow,
    parse_flow_text,
    validate_document,
)
from chaingraph_gw.flow.model import Flow
from chaingraph_gw.nodes.sdk import UNSET

from .test_flow_fixtures import GREETING_YAML, greeting_doc, make_registry

REG = make_registry()


def doc_with(nodes: list[dict[str, Any]], edges: list[Any] | None = None, **top: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": "t", "nodes": nodes}
    if edges is not None:
        d["edges"] = edges
    d.update(top)
    return d


class _Base(SynchronousTestCase):
    def errors(self, doc: Any) -> list[dict[str, str]]:
        exc = self.assertRaises(FlowValidationError, validate_document, doc, REG)
        self.assertTrue(exc.errors)
        return exc.errors

    def assertError(self, doc: Any, path: str, *fragments: str) -> dict[str, str]:
        """Exactly one error, at ``path``, whose message contains every fragment."""
        errs = self.errors(doc)
        self.assertEqual(len(errs), 1, errs)
        self.assertEqual(errs[0]["path"], path, errs)
        for frag in fragments:
            self.assertIn(frag, errs[0]["message"])
        return errs[0]


# -- parsing ---------------------------------------------------------------------------------------------

class ParseTests(_Base):
    def test_json_text_and_bytes(self):
        text = json.dumps(greeting_doc())
        self.assertEqual(parse_flow_text(text), greeting_doc())
        self.assertEqual(parse_flow_text(text.encode()), greeting_doc())
        self.assertEqual(parse_flow_text(b"\xef\xbb\xbf" + text.encode()), greeting_doc())

    def test_yaml_text(self):
        self.assertEqual(parse_flow_text(GREETING_YAML), greeting_doc())

    def test_yaml_dates_stay_strings(self):
        d = parse_flow_text("name: x\nnodes: []\ndescription: 2025-01-01\n")
        self.assertEqual(d["description"], "2025-01-01")

    def test_yaml_1_2_core_scalars(self):
        d = parse_flow_text("a: yes\nb: no\nc: on\nd: 12:30\ne: 012\nf: 1e3\ng: True\nh: false\ni: -7\n"
                            "j: 0x1F\nk: .5\nl: .inf\nm: ~\nn: null\no: '1'\np: 1_000\n")
        self.assertEqual(d, {"a": "yes", "b": "no", "c": "on", "d": "12:30", "e": 12, "f": 1000.0, "g": True,
                             "h": False, "i": -7, "j": 31, "k": 0.5, "l": float("inf"), "m": None, "n": None,
                             "o": "1", "p": "1_000"})
        self.assertIs(type(d["f"]), float)

    def test_json_syntax_error_names_file_and_line(self):
        text = '{\n  "name": "x",\n  "nodes": [\n    {"id": "a" "type": "TextNode"}\n  ]\n}\n'
        exc = self.assertRaises(FlowValidationError, parse_flow_text, text, filename="flows/demo.json")
        msg = str(exc)
        self.assertIn("flows/demo.json", msg)
        self.assertIn("invalid JSON at line 4, column 16", msg)

    def test_yaml_syntax_error_names_file_and_line(self):
        text = "name: x\nnodes:\n  - id: a\n    type: [TextNode\n"
        exc = self.assertRaises(FlowValidationError, parse_flow_text, text, filename="demo.yaml")
        msg = str(exc)
        self.assertIn("demo.yaml: invalid YAML at line", msg)

    def test_not_a_mapping(self):
        exc = self.assertRaises(FlowValidationError, parse_flow_text, "[1, 2]")
        self.assertIn("must be an object (mapping), got an array", str(exc))
        exc = self.assertRaises(FlowValidationError, parse_flow_text, "just words")
        self.assertIn("got string 'just words'", str(exc))

    def test_empty_and_binary(self):
        self.assertIn("empty", str(self.assertRaises(FlowValidationError, parse_flow_text, "  \n")))
        exc = self.assertRaises(FlowValidationError, parse_flow_text, b"\xff\xfe\x00", filename="x.json")
        self.assertIn("x.json: not UTF-8", str(exc))

    def test_load_flow_accepts_text(self):
        flow = load_flow(GREETING_YAML, REG)
        self.assertEqual(list(flow.nodes), ["name", "greet", "log"])
        flow = load_flow(json.dumps(greeting_doc()).encode(), REG)
        self.assertEqual(flow.name, "Greeting")


# -- building --------------------------------------------------------------------------------------------

class BuildTests(_Base):
    def test_greeting_flow(self):
        flow = load_flow(greeting_doc(), REG)
        self.assertIsInstance(flow, Flow)
        self.assertEqual((flow.name, flow.description, flow.tags, flow.id), ("Greeting", "says hello", ["demo"], None))
        self.assertEqual(list(flow.nodes), ["name", "greet", "log"])
        name, greet, log = flow.nodes.values()
        self.assertEqual(name.type_name, "TextNode")
        self.assertEqual(name.title, "Name")
        self.assertIsNone(greet.title)
        self.assertEqual(name.values, {"text": "Ada"})
        self.assertEqual(greet.values, {"template": "Hello, {{name}}! You are {{age}}.",
                                        "variables": {"name": "", "age": 36}, "renderedText": ""})
        self.assertEqual(log.values, {"message": ""})
        self.assertEqual(name.system, {"__execute": True, "__success": True, "__error": False, "__errorMessage": ""})
        self.assertEqual([(e.source_node, e.source_path, e.target_node, e.target_path, e.order) for e in flow.edges],
                         [("name", "text", "greet", "variables.name", 0), ("greet", "renderedText", "log", "message", 1)])
        for e in flow.edges:
            self.assertTrue(e.id.startswith("ED") and len(e.id) == 20)

    def test_values_are_deep_copies(self):
        doc = greeting_doc()
        a = load_flow(doc, REG)
        b = load_flow(doc, REG)
        doc["nodes"][1]["values"]["variables"]["age"] = 1
        a.nodes["greet"].values["variables"]["name"] = "changed"
        self.assertEqual(b.nodes["greet"].values["variables"], {"name": "", "age": 36})
        # class defaults are not shared either
        c = load_flow(doc_with([{"id": "o", "type": "ObjectNode"}]), REG)
        c.nodes["o"].values["object"]["x"] = 1
        d = load_flow(doc_with([{"id": "o", "type": "ObjectNode"}]), REG)
        self.assertEqual(d.nodes["o"].values["object"], {})

    def test_defaults_and_unset(self):
        flow = load_flow(doc_with([{"id": "m", "type": "MathNode", "values": {"a": 2.5}}]), REG)
        vals = flow.nodes["m"].values
        self.assertEqual(vals, {"a": 2.5, "b": 0, "result": 0})  # enum without default stays unset
        self.assertIs(flow.nodes["m"].get("operation"), UNSET)

    def test_fixed_schema_object_values_merge_with_defaults(self):
        flow = load_flow(doc_with([{"id": "r", "type": "RegExpNode", "values": {"flags": {"global": False}}}]), REG)
        self.assertEqual(flow.nodes["r"].values["flags"], {"global": False, "caseInsensitive": False,
                                                           "multiline": False})

    def test_system_values(self):
        flow = load_flow(doc_with([{"id": "t", "type": "TextNode", "values": {"__execute": False}}]), REG)
        self.assertIs(flow.nodes["t"].system["__execute"], False)
        self.assertIs(flow.nodes["t"].get("__execute"), False)

    def test_numbers_int_and_float(self):
        flow = load_flow(doc_with([{"id": "a", "type": "NumberNode", "values": {"num": 3}},
                                   {"id": "b", "type": "NumberNode", "values": {"num": -0.5}}]), REG)
        self.assertEqual((flow.nodes["a"].values["num"], flow.nodes["b"].values["num"]), (3, -0.5))

    def test_mutable_ports_accept_any_json(self):
        nodes = [
            {"id": "o", "type": "ObjectNode", "values": {"object": {"a": [1, {"b": None}], "c": "x"}}},
            {"id": "arr", "type": "ArrayNode", "values": {"array": [1, "two", {"three": 3}, None]}},
            {"id": "br", "type": "BranchNode", "values": {"leftValue": {"k": [1]}, "rightValue": None}},
        ]
        flow = load_flow(doc_with(nodes), REG)
        self.assertEqual(flow.nodes["arr"].values["array"], [1, "two", {"three": 3}, None])
        self.assertEqual(flow.nodes["br"].values["leftValue"], {"k": [1]})

    def test_parent_group_membership_and_metadata(self):
        doc = doc_with([
            {"id": "g", "type": "GroupNode", "metadata": {"ui": {"dimensions": {"width": 10, "height": 5}}}},
            {"id": "t", "type": "TextNode", "parent": "g", "metadata": {"ui": {"position": {"x": 1, "y": 2}}}},
        ], [{"from": "t.__success", "to": "g.__execute"}], id="V2flowid")
        flow = load_flow(doc, REG)
        self.assertEqual(flow.id, "V2flowid")
        self.assertEqual(flow.nodes["t"].parent_node_id, "g")
        self.assertEqual(flow.nodes["t"].metadata, {"ui": {"position": {"x": 1, "y": 2}}})

    def test_edge_order_is_document_order_and_multi_edges_allowed(self):
        doc = doc_with([{"id": "a", "type": "TextNode"}, {"id": "b", "type": "TextNode"},
                        {"id": "log", "type": "DebugLogNode"}],
                       [{"from": "b.text", "to": "log.message"}, {"from": "a.text", "to": "log.message"},
                        {"from": "a.__errorMessage", "to": "log.message", "id": "EDmine"}])
        flow = load_flow(doc, REG)
        self.assertEqual([(e.source_node, e.source_path, e.order) for e in flow.edges],
                         [("b", "text", 0), ("a", "text", 1), ("a", "__errorMessage", 2)])
        self.assertEqual(flow.edges[2].id, "EDmine")
        self.assertTrue(flow.edges[2].from_error_port)
        self.assertEqual([e.order for e in flow.incoming("log")], [0, 1, 2])

    def test_child_port_paths(self):
        doc = doc_with([
            {"id": "p", "type": "PersonNode"},
            {"id": "t", "type": "TextNode"},
            {"id": "n", "type": "NumberNode"},
            {"id": "arr", "type": "ArrayNode", "values": {"array": ["x", 2]}},
            {"id": "ev", "type": "EventListenerNode", "values": {"outputData": {"user": {"name": "", "tags": ["a"]}}}},
            {"id": "r", "type": "RegExpNode"},
            {"id": "b", "type": "BooleanNode"},
            {"id": "br", "type": "BranchNode"},
            {"id": "t2", "type": "TextNode"},
            {"id": "n2", "type": "NumberNode"},
        ], [
            {"from": "p.person.address.city", "to": "t.text"},      # fixed schema, nested
            {"from": "t2.text", "to": "p.person.name"},
            {"from": "arr.array[0]", "to": "t.text"},              # mutable array item typed from its value
            {"from": "arr.array[1]", "to": "n2.num"},
            {"from": "ev.outputData.user.name", "to": "t.text"},   # mutable object child typed from its value
            {"from": "ev.outputData.user.tags[0]", "to": "t.text"},
            {"from": "b.flag", "to": "r.flags.global"},
            {"from": "n.num", "to": "arr.array[5]"},               # mutable targets accept anything
            {"from": "t.text", "to": "br.leftValue.deep[2].x"},    # children of any ports
        ])
        flow = load_flow(doc, REG)
        self.assertEqual([f"{e.source_node}.{e.source_path}->{e.target_node}.{e.target_path}" for e in flow.edges], [
            "p.person.address.city->t.text", "t2.text->p.person.name", "arr.array[0]->t.text",
            "arr.array[1]->n2.num", "ev.outputData.user.name->t.text", "ev.outputData.user.tags[0]->t.text",
            "b.flag->r.flags.global", "n.num->arr.array[5]", "t.text->br.leftValue.deep[2].x"])

    def test_declared_types_of_any_ports(self):
        doc = doc_with([
            {"id": "el", "type": "ArrayElementNode", "types": {"element": "string"}},
            {"id": "de", "type": "JsonYamlDeserializerNode",
             "types": {"deserializedObject": {"type": "object", "properties": {"name": "string", "n": "number"}}}},
            {"id": "t", "type": "TextNode"},
            {"id": "n", "type": "NumberNode"},
        ], [{"from": "el.element", "to": "t.text"}, {"from": "de.deserializedObject.name", "to": "t.text"},
            {"from": "de.deserializedObject.n", "to": "n.num"}])
        flow = load_flow(doc, REG)
        spec = flow.nodes["el"].spec("element")
        self.assertEqual((spec.type, spec.underlying.type, spec.direction), ("any", "string", "output"))
        self.assertEqual(len(flow.edges), 3)

    def test_system_port_edges(self):
        doc = doc_with([{"id": "a", "type": "TextNode"}, {"id": "b", "type": "BooleanNode"},
                        {"id": "c", "type": "DebugLogNode"}],
                       [{"from": "a.__success", "to": "c.__execute"}, {"from": "b.flag", "to": "c.__execute"},
                        {"from": "a.__error", "to": "b.flag"}, {"from": "a.__errorMessage", "to": "c.message"}])
        self.assertEqual(len(load_flow(doc, REG).edges), 4)


# -- validation errors -------------------------------------------------------------------------------------

class TopLevelErrorTests(_Base):
    def test_not_a_dict(self):
        self.assertError([1], "", "must be an object")

    def test_unknown_field(self):
        self.assertError(doc_with([], edge=[]), "edge", "unknown field 'edge'")

    def test_name(self):
        d = doc_with([])
        del d["name"]
        self.assertError(d, "name", "required")
        self.assertError(doc_with([], name="  "), "name", "non-empty string")
        self.assertError(doc_with([], name=5), "name", "got number 5")

    def test_description_tags_id(self):
        self.assertError(doc_with([], description=3), "description", "expected a string")
        self.assertError(doc_with([], tags="a"), "tags", "list of strings")
        self.assertError(doc_with([], tags=["a", 1]), "tags", "list of strings")
        self.assertError(doc_with([], id="bad id!"), "id", "flow id")

    def test_nodes_and_edges_containers(self):
        self.assertError({"name": "x"}, "nodes", "required")
        self.assertError({"name": "x", "nodes": {}}, "nodes", "expected a list")
        self.assertError(doc_with([], {}), "edges", "expected a list")

    def test_empty_flow_is_valid(self):
        self.assertEqual(validate_document({"name": "empty", "nodes": []}, REG),
                         {"name": "empty", "nodes": [], "edges": []})

    def test_str_lists_every_error(self):
        exc = self.assertRaises(FlowValidationError, load_flow, {"nodes": [{"id": "a b", "type": "TextNode"}]}, REG)
        text = str(exc)
        self.assertIn("invalid flow document (2 errors):", text)
        self.assertIn("- name: required", text)
        self.assertIn("- nodes[0].id: a node id must be 1-64 characters", text)
        self.assertIsInstance(exc, ValueError)


class NodeErrorTests(_Base):
    def test_node_not_object(self):
        self.assertError(doc_with(["TextNode"]), "nodes[0]", "must be an object")

    def test_unknown_node_field(self):
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "value": {}}]), "nodes[0].value",
                         "unknown node field 'value'")

    def test_ids(self):
        self.assertError(doc_with([{"type": "TextNode"}]), "nodes[0].id", "required")
        self.assertError(doc_with([{"id": "a.b", "type": "TextNode"}]), "nodes[0].id", "[A-Za-z0-9_-]", "'a.b'")
        self.assertError(doc_with([{"id": "x" * 65, "type": "TextNode"}]), "nodes[0].id", "1-64")
        self.assertError(doc_with([{"id": 7, "type": "TextNode"}]), "nodes[0].id", "got number 7")
        load_flow(doc_with([{"id": "x" * 64, "type": "TextNode"}, {"id": "A_b-9", "type": "TextNode"}]), REG)
        self.assertError(doc_with([{"id": "a", "type": "TextNode"}, {"id": "b", "type": "TextNode"},
                                   {"id": "a", "type": "NumberNode"}]),
                         "nodes[2].id", "duplicate node id 'a'", "nodes[0]")

    def test_types(self):
        self.assertError(doc_with([{"id": "a"}]), "nodes[0].type", "node 'a'", "required")
        self.assertError(doc_with([{"id": "a", "type": 3}]), "nodes[0].type", "must be a string")
        err = self.assertError(doc_with([{"id": "a", "type": "TextNod"}]), "nodes[0].type",
                               "node 'a': unknown node type 'TextNod'", "did you mean: TextNode")
        self.assertNotIn("known types", err["message"])
        self.assertError(doc_with([{"id": "a", "type": "textnode"}]), "nodes[0].type", "did you mean: TextNode")
        self.assertError(doc_with([{"id": "a", "type": "Zzzzzzz"}]), "nodes[0].type",
                         "known types: ArrayElementNode, ArrayNode")

    def test_unknown_type_does_not_cascade_into_edges(self):
        doc = doc_with([{"id": "a", "type": "Nope"}, {"id": "t", "type": "TextNode"}],
                       [{"from": "a.out", "to": "t.text"}])
        self.assertError(doc, "nodes[0].type", "unknown node type 'Nope'")

    def test_title_metadata(self):
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "title": 1}]), "nodes[0].title",
                         "node 'a' (TextNode)", "title must be a string")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "metadata": []}]), "nodes[0].metadata",
                         "metadata must be an object")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "metadata": {"x": {1, 2}}}]),
                         "nodes[0].metadata", "not JSON")

    def test_parent(self):
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "parent": 1}]), "nodes[0].parent",
                         "parent must be a node id")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "parent": "gg"}, {"id": "g", "type": "GroupNode"}]),
                         "nodes[0].parent", "node 'a': parent node 'gg' does not exist", "did you mean: g")
        self.assertError(doc_with([{"id": "g", "type": "GroupNode", "parent": "g"}]), "nodes[0].parent",
                         "cannot be its own parent")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "parent": "b"}, {"id": "b", "type": "TextNode"}]),
                         "nodes[0].parent", "parent node 'b' is a TextNode, not a group node")

    def test_unknown_value_key(self):
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "values": {"txt": "x"}}]),
                         "nodes[0].values.txt", "node 'a' (TextNode) has no port 'txt'", "did you mean: text")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "values": {"zzz": "x"}}]),
                         "nodes[0].values.zzz", "(ports: text, __execute, __success, __error, __errorMessage)")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "values": ["x"]}]),
                         "nodes[0].values", "values must be an object")

    def test_value_types(self):
        cases = [
            ("TextNode", "text", 5, "nodes[0].values.text", "port 'text': expected a string, got number 5"),
            ("TextNode", "text", None, "nodes[0].values.text", "expected a string, got null"),
            ("NumberNode", "num", "5", "nodes[0].values.num", "expected a number, got string '5'"),
            ("NumberNode", "num", True, "nodes[0].values.num", "expected a number, got boolean true"),
            ("NumberNode", "num", float("inf"), "nodes[0].values.num", "finite number"),
            ("BooleanNode", "flag", 1, "nodes[0].values.flag", "expected a boolean, got number 1"),
            ("MathNode", "operation", "plus", "nodes[0].values.operation",
             "'plus' is not an option of this enum (options: add, subtract, multiply, divide)"),
            ("MathNode", "operation", 1, "nodes[0].values.operation", "enum option id"),
            ("ObjectNode", "object", [], "nodes[0].values.object", "expected an object, got an array"),
            ("ArrayNode", "array", {}, "nodes[0].values.array", "expected an array, got an object"),
            ("RegExpNode", "flags", {"global": "yes"}, "nodes[0].values.flags.global",
             "port 'flags.global': expected a boolean, got string 'yes'"),
            ("RegExpNode", "flags", {"sticky": True}, "nodes[0].values.flags.sticky",
             "unknown property 'sticky' (properties: global, caseInsensitive, multiline)"),
            ("PersonNode", "person", {"address": {"city": 1}}, "nodes[0].values.person.address.city",
             "expected a string"),
            ("ListNode", "numbers", [1, "2", 3], "nodes[0].values.numbers[1]",
             "port 'numbers[1]': expected a number, got string '2'"),
            ("OddPortsNode", "chan", [], "nodes[0].values.chan", "stream ports cannot be given a value"),
            ("OddPortsNode", "token", 5, "nodes[0].values.token", "expected a secret"),
            ("OddPortsNode", "typed", 5, "nodes[0].values.typed", "expected a string"),
            ("BranchNode", "leftValue", {"a": {1, 2}}, "nodes[0].values.leftValue", "port 'leftValue' is not JSON"),
            ("ObjectNode", "object", {1: "x"}, "nodes[0].values.object", "object key 1 is not a string"),
            ("TextNode", "__execute", "no", "nodes[0].values.__execute", "expected a boolean"),
        ]
        for tname, key, value, path, frag in cases:
            with self.subTest(tname=tname, key=key):
                self.assertError(doc_with([{"id": "a", "type": tname, "values": {key: value}}]), path, frag,
                                 f"({tname})")
        # nulls are fine for any ports, also with an underlying type
        load_flow(doc_with([{"id": "a", "type": "OddPortsNode", "values": {"typed": None, "token": "s"}}]), REG)

    def test_declared_types_errors(self):
        def node(types: Any) -> dict[str, Any]:
            return doc_with([{"id": "a", "type": "ArrayElementNode", "types": types}])

        self.assertError(node(["string"]), "nodes[0].types", "types must be an object")
        self.assertError(node({"nope": "string"}), "nodes[0].types.nope", "has no port 'nope'")
        self.assertError(node({"index": "string"}), "nodes[0].types.index",
                         "port 'index' is a number port; only 'any' ports take a declared type")
        self.assertError(node({"__execute": "string"}), "nodes[0].types.__execute", "system port")
        self.assertError(node({"element": "text"}), "nodes[0].types.element", "unknown port type 'text'")
        self.assertError(node({"element": 5}), "nodes[0].types.element", "kind name or an object")
        self.assertError(node({"element": {"type": "object", "properties": {"a": "wat"}}}),
                         "nodes[0].types.element.properties.a", "unknown port type 'wat'")
        self.assertError(node({"element": {"type": "string", "item": "x"}}), "nodes[0].types.element",
                         "unknown field(s) 'item'")
        self.assertError(node({"element": {"type": "enum", "options": [1]}}), "nodes[0].types.element",
                         "list of option ids")
        self.assertError(node({"element": {"type": "array", "item": "string", "mutable": "yes"}}),
                         "nodes[0].types.element", "'mutable' must be a boolean")

    def test_port_ids_errors(self):
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "portIds": ["x"]}]), "nodes[0].portIds",
                         "portIds must be an object")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "portIds": {"nope": "x"}}]),
                         "nodes[0].portIds.nope", "has no port 'nope'")
        self.assertError(doc_with([{"id": "a", "type": "TextNode", "portIds": {"text": ""}}]),
                         "nodes[0].portIds.text", "non-empty string")


class EdgeErrorTests(_Base):
    NODES: ClassVar[list[dict[str, Any]]] = [
        {"id": "t", "type": "TextNode"}, {"id": "n", "type": "NumberNode"}, {"id": "log", "type": "DebugLogNode"},
        {"id": "m", "type": "MathNode"}, {"id": "p", "type": "PersonNode"}, {"id": "arr", "type": "ArrayNode"},
        {"id": "h", "type": "HandlebarsTemplateNode"}, {"id": "ev", "type": "EventListenerNode"},
        {"id": "el", "type": "ArrayElementNode"}, {"id": "l", "type": "ListNode"}, {"id": "b", "type": "BooleanNode"},
        {"id": "de", "type": "JsonYamlDeserializerNode"}, {"id": "r", "type": "RegExpNode"},
    ]

    def edge_error(self, edge: Any, path: str, *frags: str) -> dict[str, str]:
        return self.assertError(doc_with(copy.deepcopy(self.NODES), [edge]), path, *frags)

    def test_shape(self):
        self.edge_error("t.text->log.message", "edges[0]", "must be an object {from, to}")
        self.edge_error({"from": "t.text", "to": "log.message", "via": 1}, "edges[0].via", "unknown edge field 'via'")
        self.edge_error({"to": "log.message"}, "edges[0].from", "required: 'nodeId.portPath'")
        self.edge_error({"from": "t.text", "to": 5}, "edges[0].to", "expected a 'nodeId.portPath' string")
        self.edge_error({"from": "t", "to": "log.message"}, "edges[0].from", "expected 'nodeId.portPath', got 't'")
        self.edge_error({"from": "t.text", "to": "log.message", "id": 3}, "edges[0].id", "non-empty string")

    def test_missing_node(self):
        self.edge_error({"from": "tt.text", "to": "log.message"}, "edges[0].from",
                        "node 'tt' does not exist", "did you mean: t")

    def test_malformed_path(self):
        self.edge_error({"from": "t.text", "to": "log.message..x"}, "edges[0].to", "malformed port path")
        self.edge_error({"from": "t.text[x]", "to": "log.message"}, "edges[0].from", "malformed port path")

    def test_unknown_port(self):
        self.edge_error({"from": "t.txt", "to": "log.message"}, "edges[0].from",
                        "node 't' (TextNode) has no port 'txt'", "did you mean: text")

    def test_child_paths(self):
        self.edge_error({"from": "t.text.length", "to": "n.num"}, "edges[0].from",
                        "'text' of node 't' (TextNode) is a string port; child paths must be inside an object, "
                        "array or any port")
        self.edge_error({"from": "p.person.height", "to": "n.num"}, "edges[0].from",
                        "object port 'person' of node 'p' (PersonNode) has no property 'height' "
                        "(properties: name, age, address)")
        self.edge_error({"from": "p.person.address.zip", "to": "t.text"}, "edges[0].from",
                        "object port 'person.address'", "no property 'zip'")
        self.edge_error({"from": "p.person[0]", "to": "t.text"}, "edges[0].from",
                        "'person' of node 'p' (PersonNode) is an object port: address its properties as 'person.<key>'")
        self.edge_error({"from": "arr.array.first", "to": "t.text"}, "edges[0].from",
                        "is an array port: address its items as 'array[<index>]'")
        self.edge_error({"from": "t.__success.x", "to": "b.flag"}, "edges[0].from",
                        "system port '__success' of node 't' (TextNode) has no child ports")
        self.edge_error({"from": "p.person.name.first", "to": "t.text"}, "edges[0].from",
                        "'person.name' of node 'p' (PersonNode) is a string port")

    def test_directions(self):
        self.edge_error({"from": "log.message", "to": "t.text"}, "edges[0].from",
                        "Source port log.message is not an output or passthrough port.")
        self.edge_error({"from": "t.__execute", "to": "b.flag"}, "edges[0].from",
                        "Source port t.__execute is not an output or passthrough port.")
        self.edge_error({"from": "t.text", "to": "h.renderedText"}, "edges[0].to",
                        "Target port h.renderedText is not an input or passthrough port.")
        self.edge_error({"from": "b.flag", "to": "t.__success"}, "edges[0].to",
                        "Target port t.__success is not an input or passthrough port.")
        # children inherit the direction of their top-level port
        self.edge_error({"from": "h.variables.name", "to": "t.text"}, "edges[0].from",
                        "Source port h.variables.name is not an output or passthrough port.")
        self.edge_error({"from": "t.text", "to": "ev.outputData.name"}, "edges[0].to",
                        "Target port ev.outputData.name is not an input or passthrough port.")

    def test_incompatible_types(self):
        self.edge_error({"from": "n.num", "to": "t.text"}, "edges[0]",
                        "edge n.num -> t.text: Incompatible port types: number -> string")
        self.edge_error({"from": "t.text", "to": "m.operation"}, "edges[0]", "Incompatible port types: string -> enum")
        self.edge_error({"from": "b.flag", "to": "log.message"}, "edges[0]", "boolean -> string")
        self.edge_error({"from": "n.num", "to": "t.__execute"}, "edges[0]", "number -> boolean")
        self.edge_error({"from": "l.strings", "to": "l.numbers"}, "edges[0]", "connect node 'l' to itself")
        self.edge_error({"from": "arr.array", "to": "p.person"}, "edges[0]", "array -> object")
        self.edge_error({"from": "p.person.age", "to": "r.flags.global"}, "edges[0]", "number -> boolean")

    def test_any_without_type_to_typed_is_refused(self):
        err = self.edge_error({"from": "el.element", "to": "t.text"}, "edges[0]",
                              "Incompatible port types: any -> string", "declare the type of 'element'")
        self.assertIn("types", err["message"])
        self.edge_error({"from": "de.deserializedObject.name", "to": "t.text"}, "edges[0]",
                        "any -> string", "give it a value")
        self.edge_error({"from": "ev.outputData.missing", "to": "t.text"}, "edges[0]", "any -> string")
        # ... but any -> any is fine
        load_flow(doc_with(copy.deepcopy(self.NODES) + [{"id": "br", "type": "BranchNode"}],
                           [{"from": "el.element", "to": "br.leftValue"}]), REG)

    def test_array_and_object_rules(self):
        nodes = copy.deepcopy(self.NODES) + [{"id": "l2", "type": "ListNode"}, {"id": "p2", "type": "PersonNode"},
                                              {"id": "o", "type": "ObjectNode"}]
        ok = [
            {"from": "l.strings", "to": "arr.array"},       # mutable target
            {"from": "l.strings", "to": "l2.anyItems"},     # any items
            {"from": "l.numbers", "to": "l2.numbers"},      # same item type
            {"from": "p.person", "to": "p2.named"},         # source has extra properties
            {"from": "p.person", "to": "o.object"},         # mutable target
            {"from": "o.object", "to": "p2.person"},        # mutable source: schema unknown until it runs
            {"from": "p.person", "to": "p2.anything"},      # schema-less target
        ]
        load_flow(doc_with(nodes, ok), REG)
        self.assertError(doc_with(nodes, [{"from": "l.strings", "to": "l2.numbers"}]), "edges[0]",
                         "Incompatible port types: array -> array (items: string -> number)")
        self.assertError(doc_with(nodes, [{"from": "p.named", "to": "p2.person"}]), "edges[0]",
                         "Incompatible port types: object -> object (source has no property 'age')")
        self.assertError(doc_with(nodes, [{"from": "p.person", "to": "p2.aged"}]), "edges[0]",
                         "object -> object (property 'age': number -> string)")

    def test_duplicates_and_self_loops(self):
        self.assertError(doc_with(copy.deepcopy(self.NODES), [{"from": "t.text", "to": "log.message"},
                                                              {"from": "t.text", "to": "log.message"}]),
                         "edges[1]", "duplicate of edges[0]")
        self.assertError(doc_with(copy.deepcopy(self.NODES), [{"from": "t.text", "to": "log.message", "id": "E1"},
                                                              {"from": "n.num", "to": "m.a", "id": "E1"}]),
                         "edges[1].id", "duplicate edge id 'E1'")
        self.assertError(doc_with(copy.deepcopy(self.NODES), [{"from": "m.result", "to": "m.a"}]), "edges[0]",
                         "edge m.result -> m.a: an edge cannot connect node 'm' to itself")

    def test_cycles(self):
        nodes = [{"id": x, "type": "NumberNode"} for x in ("a", "b", "c", "d")]
        err = self.assertError(doc_with(copy.deepcopy(nodes), [
            {"from": "a.num", "to": "b.num"}, {"from": "d.num", "to": "a.num"},
            {"from": "b.num", "to": "c.num"}, {"from": "c.num", "to": "a.num"}]),
            "edges[0]", "the flow has a cycle: a -> b -> c -> a")
        self.assertNotIn("d", err["message"].split(":", 1)[1])
        # two independent cycles are both reported
        errs = self.errors(doc_with(copy.deepcopy(nodes), [
            {"from": "a.num", "to": "b.num"}, {"from": "b.num", "to": "a.num"},
            {"from": "c.num", "to": "d.num"}, {"from": "d.num", "to": "c.num"}]))
        self.assertEqual([(e["path"], e["message"]) for e in errs], [
            ("edges[0]", "the flow has a cycle: a -> b -> a"), ("edges[2]", "the flow has a cycle: c -> d -> c")])

    def test_group_membership_cycle(self):
        doc = doc_with([{"id": "g", "type": "GroupNode"}, {"id": "t", "type": "TextNode", "parent": "g"}],
                       [{"from": "g.__success", "to": "t.__execute"}])
        self.assertError(doc, "edges[0]", "the flow has a cycle: g -> t -> g",
                         "a group node runs after its member nodes")
        doc = doc_with([{"id": "g", "type": "GroupNode", "parent": "h"}, {"id": "h", "type": "GroupNode", "parent": "g"}])
        self.assertError(doc, "nodes[0].parent", "cycle: g -> h -> g")

    def test_all_errors_are_reported(self):
        doc = {
            "name": "",
            "extra": 1,
            "nodes": [
                {"id": "a", "type": "TextNod", "values": {"text": 1}},
                {"id": "b", "type": "TextNode", "values": {"text": 1, "nope": 2}},
                {"id": "b", "type": "NumberNode"},
                {"id": "c", "type": "NumberNode"},
                {"id": "d", "type": "DebugLogNode"},
            ],
            "edges": [
                {"from": "c.num", "to": "d.message"},
                {"from": "zz.x", "to": "d.message"},
                {"from": "b.text", "to": "c.num"},
                {"from": "d.message", "to": "b.text"},
                {"from": "c.num", "to": "c.num"},
            ],
        }
        errs = self.errors(doc)
        self.assertEqual([e["path"] for e in errs], [
            "extra", "name", "nodes[0].type", "nodes[1].values.text", "nodes[1].values.nope", "nodes[2].id",
            "edges[0]", "edges[1].from", "edges[2]", "edges[3].from", "edges[4]"])
        msgs = " | ".join(e["message"] for e in errs)
        for frag in ("unknown node type 'TextNod'", "port 'text': expected a string", "has no port 'nope'",
                     "duplicate node id 'b'", "number -> string", "node 'zz' does not exist", "string -> number",
                     "Source port d.message", "to itself"):
            self.assertIn(frag, msgs)


# -- documents from flows ----------------------------------------------------------------------------------

class RoundTripTests(_Base):
    def test_round_trip(self):
        doc = greeting_doc()
        doc["nodes"].append({"id": "g", "type": "GroupNode", "title": "Box", "metadata": {"ui": {"x": 1}}})
        doc["nodes"][2]["parent"] = "g"
        doc["nodes"][2]["values"] = {"__execute": False}
        doc["nodes"].append({"id": "el", "type": "ArrayElementNode", "types": {"element": "string"},
                             "portIds": {"element": "element:POabc", "__execute": "execute:POdef"}})
        doc["edges"].append({"from": "el.element", "to": "log.message"})
        doc["id"] = "V2abc"
        flow = load_flow(doc, REG)
        out = flow_to_document(flow)
        self.assertEqual(out["nodes"][0], {"id": "name", "type": "TextNode", "title": "Name", "values": {"text": "Ada"}})
        self.assertEqual(out["nodes"][2], {"id": "log", "type": "DebugLogNode", "values": {"__execute": False},
                                           "parent": "g"})
        self.assertEqual(out["nodes"][3], {"id": "g", "type": "GroupNode", "title": "Box", "metadata": {"ui": {"x": 1}}})
        self.assertEqual(out["nodes"][4]["types"], {"element": "string"})
        self.assertEqual(out["nodes"][4]["portIds"], {"element": "element:POabc", "__execute": "execute:POdef"})
        self.assertEqual([e["id"] for e in out["edges"]], [e.id for e in flow.edges])
        self.assertEqual((out["id"], out["description"], out["tags"]), ("V2abc", "says hello", ["demo"]))
        flow2 = load_flow(out, REG)
        self.assertEqual(flow_to_document(flow2), out)
        self.assertEqual(flow2.edges, flow.edges)
        for nid, node in flow.nodes.items():
            other = flow2.nodes[nid]
            self.assertEqual((node.values, node.system, node.title, node.parent_node_id, node.metadata,
                              node.port_overrides, node.port_ids, node.type_cls),
                             (other.values, other.system, other.title, other.parent_node_id, other.metadata,
                              other.port_overrides, other.port_ids, other.type_cls))
        # the document is JSON-serializable
        json.dumps(out)

    def test_types_round_trip(self):
        decls = [
            "number",
            "object",
            "array",
            {"type": "enum", "options": ["a", "b"]},
            {"type": "object", "properties": {"a": "string", "b": {"type": "array", "item": "number"}}},
            {"type": "object", "properties": {"a": "string"}, "mutable": True},
            {"type": "array", "item": {"type": "object", "properties": {"x": "boolean"}}},
        ]
        for decl in decls:
            with self.subTest(decl=decl):
                doc = doc_with([{"id": "el", "type": "ArrayElementNode", "types": {"element": decl}}])
                self.assertEqual(validate_document(doc, REG)["nodes"][0]["types"], {"element": decl})

    def test_validate_document_normalises(self):
        doc = greeting_doc()
        doc["nodes"][2]["values"] = {"message": ""}  # equal to the default: dropped
        doc["nodes"][0]["values"]["__execute"] = True
        out = validate_document(doc, REG)
        self.assertEqual(out["nodes"][2], {"id": "log", "type": "DebugLogNode"})
        self.assertEqual(out["nodes"][0]["values"], {"text": "Ada"})
        self.assertTrue(all(e["id"].startswith("ED") for e in out["edges"]))
        self.assertEqual(validate_document(out, REG), out)  # idempotent

    def test_values_keep_bool_vs_number(self):
        doc = doc_with([{"id": "br", "type": "BranchNode", "values": {"leftValue": 0, "rightValue": False}},
                        {"id": "f", "type": "BooleanNode", "values": {"flag": False}}])
        out = validate_document(doc, REG)
        self.assertEqual(out["nodes"][0]["values"], {"leftValue": 0, "rightValue": False})
        self.assertNotIn("values", out["nodes"][1])


class HelperTests(SynchronousTestCase):
    def test_json_equal(self):
        self.assertFalse(json_equal(True, 1))
        self.assertFalse(json_equal(0, False))
        self.assertTrue(json_equal(1, 1.0))
        self.assertTrue(json_equal({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}))
        self.assertFalse(json_equal({"a": [True]}, {"a": [1]}))
        self.assertFalse(json_equal("1", 1))

    def test_copy_json(self):
        v = {"a": [1, {"b": "c"}], "d": None}
        c = copy_json(v)
        self.assertEqual(c, v)
        self.assertIsNot(c["a"][1], v["a"][1])

    def test_format_path(self):
        self.assertEqual(format_path(["a", "b", 2, "c", 0, 1]), "a.b[2].c[0][1]")

    def test_ids_used_for_edges(self):
        self.assertEqual(len(ids.edge_id()), 20)
