"""utilities nodes: DebugLog, Handlebars, Langchain template, RegExp, JSON/YAML (de)serializers,
ArrayElement, ServerTime."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from twisted.trial.unittest import TestCase

from chaingraph_gw.nodes.library.utilities import ServerTimeNode, format_server_time
from chaingraph_gw.nodes.sdk import any_port, array, number, obj, string

from .helpers import async_test
from .test_nodes_ctx import FakeContext, node_class, node_error, run_node


class DebugLogNodeTests(TestCase):
    @async_test
    async def test_logs_message(self) -> None:
        ctx = await run_node("DebugLogNode", {"message": "hello"})
        self.assertEqual(ctx.logs, ["hello"])
        ctx = await run_node("DebugLogNode", {"message": 12})
        self.assertEqual(ctx.logs, ["12"])


class HandlebarsNodeTests(TestCase):
    @async_test
    async def test_renders_without_escaping(self) -> None:
        ctx = await run_node("HandlebarsTemplateNode", {
            "template": "Hi {{user.name}} <{{tag}}> {{missing}}!", "variables": {"user": {"name": "Ada"}, "tag": "<b>"}})
        self.assertEqual(ctx.values["renderedText"], "Hi Ada <<b>> !")

    @async_test
    async def test_default_template(self) -> None:
        ctx = await run_node("HandlebarsTemplateNode", {
            "variables": {"user": {"name": "Ada", "isAdmin": True, "roles": ["a", "b"]}}})
        self.assertEqual(ctx.values["renderedText"],
                         "Hello, Ada!\nYou have administrator access.\nYour roles:\n- a\n- b\n")

    @async_test
    async def test_helpers(self) -> None:
        ctx = await run_node("HandlebarsTemplateNode", {
            "template": "{{json o}}|{{yaml o}}|{{yml o}}|{{uppercase s}}|{{lowercase s}}|{{uppercase ''}}",
            "variables": {"o": {"a": [1, 2]}, "s": "MiX"}})
        self.assertEqual(ctx.values["renderedText"],
                         '{\n  "a": [\n    1,\n    2\n  ]\n}|a:\n  - 1\n  - 2\n|a:\n  - 1\n  - 2\n|MIX|mix|')

    @async_test
    async def test_log_helper_sends_debug_log(self) -> None:
        ctx = await run_node("HandlebarsTemplateNode", {
            "template": "{{log 'value is' v}}{{log 'careful' level='warn'}}done", "variables": {"v": 3}})
        self.assertEqual(ctx.values["renderedText"], "done")
        self.assertEqual(ctx.logs, ["[Handlebars] [info] value is 3", "[Handlebars] [warn] careful"])

    @async_test
    async def test_errors(self) -> None:
        self.assertEqual(await node_error("HandlebarsTemplateNode", {"template": ""}),
                         "Handlebars template rendering failed: Error: Template string is required")
        msg = await node_error("HandlebarsTemplateNode", {"template": "line\n{{#if a}}x"})
        self.assertTrue(msg.startswith("Handlebars template rendering failed: Error: Parse error on line 2:\n"), msg)
        self.assertEqual(await node_error("HandlebarsTemplateNode", {"template": "{{nope 1}}"}),
                         'Handlebars template rendering failed: Error: Missing helper: "nope"')


class LangchainTemplateNodeTests(TestCase):
    @async_test
    async def test_renders(self) -> None:
        ctx = await run_node("LangchainTemplateNode", {"variables": {"topic": "cats"}})
        self.assertEqual(ctx.values["renderedText"], "Tell me a joke about cats")
        ctx = await run_node("LangchainTemplateNode", {"template": "{{literal}} {n} {o}",
                                                        "variables": {"n": 2, "o": {"a": 1}}})
        self.assertEqual(ctx.values["renderedText"], '{literal} 2 {"a":1}')

    @async_test
    async def test_errors(self) -> None:
        self.assertEqual(await node_error("LangchainTemplateNode", {"template": "{a} {b} {a}", "variables": {}}),
                         "Template rendering failed: Missing required variables: a, b")
        self.assertEqual(await node_error("LangchainTemplateNode", {"template": ""}),
                         "Template rendering failed: Template string is required")


def flags(**kw: bool) -> dict[str, bool]:
    base = {"global": True, "caseInsensitive": False, "multiline": False, "dotAll": False, "unicode": False}
    base.update(kw)
    return base


async def rx(mode: str, source: str, pattern: str, **kw: Any) -> dict[str, Any]:
    values = {"mode": mode, "sourceText": source, "pattern": pattern}
    values.update(kw)
    ctx = await run_node("RegExpNode", values)
    return {k: ctx.values[k] for k in ("result", "matchCount", "hasMatches")}


class RegExpNodeTests(TestCase):
    @async_test
    async def test_match_global(self) -> None:
        self.assertEqual(await rx("match", "a1 b22 c333", r"\d+"),
                         {"result": "1 22 333", "matchCount": 3, "hasMatches": True})
        self.assertEqual(await rx("match", "abc", r"\d"), {"result": "", "matchCount": 0, "hasMatches": False})

    @async_test
    async def test_match_without_global_returns_groups(self) -> None:
        self.assertEqual(await rx("match", "a1 a 1", r"(\w)(\d)", flags=flags(**{"global": False})),
                         {"result": "a1 a 1", "matchCount": 3, "hasMatches": True})
        self.assertEqual(await rx("match", "xa", r"(a)(b)?", flags=flags(**{"global": False}), joinDelimiter=","),
                         {"result": "a,a,", "matchCount": 3, "hasMatches": True})

    @async_test
    async def test_replace(self) -> None:
        self.assertEqual(await rx("replace", "John Smith", r"(\w+)\s(\w+)", replacementText="$2, $1 ($&) $$"),
                         {"result": "Smith, John (John Smith) $", "matchCount": 1, "hasMatches": True})
        r = await rx("replace", "a-b-c", "-", replacementText="+", flags=flags(**{"global": False}))
        self.assertEqual(r, {"result": "a+b-c", "matchCount": 2, "hasMatches": True})  # counts all matches
        r = await rx("replace", "2024-01", r"(?<y>\d{4})-(?<m>\d\d)", replacementText="$<m>/$<y>")
        self.assertEqual(r["result"], "01/2024")

    @async_test
    async def test_test_mode(self) -> None:
        self.assertEqual(await rx("test", "Hello", "hello", flags=flags(caseInsensitive=True)),
                         {"result": "true", "matchCount": 1, "hasMatches": True})
        self.assertEqual(await rx("test", "Hello", "hello"), {"result": "false", "matchCount": 0, "hasMatches": False})

    @async_test
    async def test_extract(self) -> None:
        r = await rx("extract", "a=1, b=2, c", r"(\w)=(\d)|(\w)$", joinDelimiter="|")
        self.assertEqual(r, {"result": "a|1|b|2|c", "matchCount": 5, "hasMatches": True})

    @async_test
    async def test_extract_empty_match_terminates(self) -> None:
        r = await rx("extract", "abc", r"(x)?")
        self.assertEqual(r, {"result": "", "matchCount": 0, "hasMatches": False})
        r = await rx("extract", "ab", r"(a?)", flags=flags(**{"global": False}))
        self.assertEqual(r["matchCount"], 3)  # 'a', '' at 1, '' at 2

    @async_test
    async def test_flags(self) -> None:
        r = await rx("match", "a\nb", "^b$", flags=flags(multiline=True))
        self.assertEqual(r["result"], "b")
        r = await rx("match", "a\nb", "a.b", flags=flags(dotAll=True))
        self.assertEqual(r["result"], "a\nb")

    @async_test
    async def test_errors(self) -> None:
        p = "RegExpNode execution failed: "
        self.assertEqual(await node_error("RegExpNode", {"sourceText": "x", "pattern": ""}),
                         p + "RegExp pattern is required.")
        self.assertEqual(await node_error("RegExpNode", {"sourceText": "", "pattern": "x"}),
                         p + "Source text is empty.")
        self.assertEqual(await node_error("RegExpNode", {"sourceText": "x", "pattern": "(a"}),
                         p + "Invalid regular expression: Invalid regular expression: /(a/g: Unterminated group")
        self.assertEqual(await node_error("RegExpNode", {"sourceText": "x", "pattern": "x", "mode": "split"}),
                         p + "Unsupported operation mode: split")


class JSONSerializerNodeTests(TestCase):
    @async_test
    async def test_pretty_and_compact(self) -> None:
        data = {"name": "Zoë", "n": [1, 2.5, math.nan], "ok": True, "none": None}
        ctx = await run_node("JSONSerializerNode", {"data": data})
        self.assertEqual(ctx.values["json"],
                         '{\n  "name": "Zoë",\n  "n": [\n    1,\n    2.5,\n    null\n  ],\n  "ok": true,\n  "none": null\n}')
        ctx = await run_node("JSONSerializerNode", {"data": data, "pretty": False})
        self.assertEqual(ctx.values["json"], '{"name":"Zoë","n":[1,2.5,null],"ok":true,"none":null}')

    @async_test
    async def test_null_undefined_and_strings(self) -> None:
        self.assertEqual((await run_node("JSONSerializerNode", {"data": None})).values["json"], "null")
        self.assertEqual((await run_node("JSONSerializerNode", {})).values["json"], "null")
        self.assertEqual((await run_node("JSONSerializerNode", {"data": "hi"})).values["json"], '"hi"')

    @async_test
    async def test_circular_fails(self) -> None:
        a: dict[str, Any] = {}
        a["a"] = a
        self.assertEqual(await node_error("JSONSerializerNode", {"data": a}), "Converting circular structure to JSON")


class YAMLSerializerNodeTests(TestCase):
    @async_test
    async def test_style(self) -> None:
        ctx = await run_node("YAMLSerializerNode", {"data": {"a": 1, "d": [1, 2], "f": "multi\nline"}})
        self.assertEqual(ctx.values["yaml"], "a: 1\nd:\n  - 1\n  - 2\nf: |-\n  multi\n  line\n")
        ctx = await run_node("YAMLSerializerNode", {"data": {"t": "true", "y": "yes"}})
        self.assertEqual(ctx.values["yaml"], 't: "true"\ny: yes\n')

    @async_test
    async def test_directives_and_null(self) -> None:
        ctx = await run_node("YAMLSerializerNode", {"data": {"a": 1}, "includeDirectives": True})
        self.assertEqual(ctx.values["yaml"], "---\na: 1\n")
        self.assertEqual((await run_node("YAMLSerializerNode", {"data": None})).values["yaml"], "null")
        self.assertEqual((await run_node("YAMLSerializerNode", {})).values["yaml"], "null")
        self.assertNotIn("yaml", node_class("YAMLSerializerNode").initial_values())  # no default


def schema_ctx(underlying: Any) -> FakeContext:
    cfg = any_port("deserializedObject", direction="output", underlying=underlying).to_config() if underlying else {
        "key": "deserializedObject", "type": "any"}
    return FakeContext(port_configs={"deserializedObject": cfg})


PERSON = obj("p", schema=(string("name"), number("age"), array("tags", item=string("t"))))


class JsonYamlDeserializerNodeTests(TestCase):
    async def des(self, text: str, schema: Any, **kw: Any) -> Any:
        values = {"inputString": text}
        values.update(kw)
        ctx = await run_node("JsonYamlDeserializerNode", values, ctx=schema_ctx(schema))
        return ctx.values["deserializedObject"]

    async def err(self, text: str, schema: Any, **kw: Any) -> str:
        values = {"inputString": text}
        values.update(kw)
        return await node_error("JsonYamlDeserializerNode", values, ctx=schema_ctx(schema))

    @async_test
    async def test_json_filtered_by_schema(self) -> None:
        v = await self.des('{"name": "Ada", "age": 36, "tags": ["x"], "extra": 1}', PERSON)
        self.assertEqual(v, {"name": "Ada", "age": 36, "tags": ["x"]})

    @async_test
    async def test_yaml_in_auto_mode(self) -> None:
        v = await self.des("name: Ada\nage: 36\ntags:\n  - x\nactive: yes\n", PERSON)
        self.assertEqual(v, {"name": "Ada", "age": 36, "tags": ["x"]})
        self.assertEqual(await self.des("- 1\n- 2\n", array("a", item=number("n"))), [1, 2])
        self.assertEqual(await self.des("yes", string("s")), "yes")  # YAML 1.2: not a boolean

    @async_test
    async def test_primitives_and_blank(self) -> None:
        self.assertEqual(await self.des("3.5", number("n")), 3.5)
        self.assertEqual(await self.des('"hi"', string("s")), "hi")
        self.assertIsNone(await self.des("   ", number("n")))

    @async_test
    async def test_ignore_missing_fields(self) -> None:
        v = await self.des('{"name": 5}', PERSON, ignoreMissingFields=True)
        self.assertEqual(v, {"name": None, "age": None, "tags": None})

    @async_test
    async def test_max_depth(self) -> None:
        nested = obj("o", schema=(obj("inner", schema=(number("x"),)),))
        self.assertEqual(await self.des('{"inner": {"x": 1, "y": 2}}', nested), {"inner": {"x": 1}})
        self.assertEqual(await self.des('{"inner": {"x": 1, "y": 2}}', nested, maxDepth=1),
                         {"inner": {"x": 1, "y": 2}})

    @async_test
    async def test_errors(self) -> None:
        p = "Failed to execute: Error: "
        self.assertEqual(await self.err("{bad: [", PERSON),
                         p + "Failed to parse input string: Error: Format error: Input must be valid JSON or YAML")
        self.assertEqual(await self.err("a: 1", PERSON, inputFormat="yaml"),
                         p + "Failed to parse input string: Error: Unsupported input format: yaml")
        self.assertEqual(await self.err('"3"', number("n")),
                         p + "Error applying value to provided schema: Error: Types mismatch: expected number but "
                             "got string")
        self.assertEqual(await self.err('{"name": "x"}', PERSON),
                         p + "Error applying value to provided schema: Error: Required field 'age' is missing in "
                             "the input data")
        self.assertEqual(await self.err("[1]", PERSON),
                         p + "Error applying value to provided schema: TypeError: Expected object but got array")
        self.assertEqual(await self.err('{"a": 1}', None),
                         p + "Output port has no schema assigned. Make sure that you've provided a valid schema of "
                             "one of these types: number, boolean, string, object, array.")

    @async_test
    async def test_without_port_config_support_passes_through(self) -> None:
        ctx = await run_node("JsonYamlDeserializerNode", {"inputString": '{"a": [1]}'})
        self.assertEqual(ctx.values["deserializedObject"], {"a": [1]})


class ArrayElementNodeTests(TestCase):
    @async_test
    async def test_element(self) -> None:
        ctx = await run_node("ArrayElementNode", {"array": ["a", {"b": 1}], "index": 1})
        self.assertEqual(ctx.values["element"], {"b": 1})
        ctx = await run_node("ArrayElementNode", {"array": ["a", "b"], "index": 0.5})
        self.assertNotIn("element", ctx.values)  # JS undefined

    @async_test
    async def test_errors(self) -> None:
        self.assertEqual(await node_error("ArrayElementNode", {"array": "abc"}),
                         'The "array" is empty or not an array')
        self.assertEqual(await node_error("ArrayElementNode", {"array": [1, 2], "index": 2}),
                         "Index 2 is out of bounds for array of length 2")
        self.assertEqual(await node_error("ArrayElementNode", {"array": [1], "index": -1}),
                         "Index -1 is out of bounds for array of length 1")


class ServerTimeNodeTests(TestCase):
    NOW = dt.datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

    def test_formats(self) -> None:
        f = format_server_time
        self.assertEqual(f(self.NOW, "ISO", "", "UTC"), "2025-01-01T12:00:00.123Z")
        self.assertEqual(f(self.NOW, "ISO", "", "Asia/Tokyo"), "2025-01-01T21:00:00GMT+09:00")
        self.assertEqual(f(self.NOW, "ISO", "", "Europe/London"), "2025-01-01T12:00:00GMT")
        self.assertEqual(f(self.NOW, "ISO", "", "Asia/Kolkata"), "2025-01-01T17:30:00GMT+05:30")
        self.assertEqual(f(self.NOW, "Locale", "", "UTC"), "January 1, 2025 at 12:00:00 PM UTC")
        self.assertEqual(f(self.NOW, "Locale", "", "America/New_York"), "January 1, 2025 at 07:00:00 AM EST")
        self.assertEqual(f(self.NOW, "Locale", "", "Europe/Paris"), "January 1, 2025 at 01:00:00 PM GMT+1")
        self.assertEqual(f(self.NOW, "Custom", "", "UTC"), "2025-01-01 12:00:00")
        self.assertEqual(f(self.NOW, "Custom", "DD MMM YYYY HH:mm:ss", "Asia/Tokyo"), "01 Jan 2025 21:00:00")
        self.assertEqual(f(self.NOW, "Custom", "h:mm a", "America/New_York"), "7:00 AM")
        self.assertEqual(f(self.NOW, "ISO", "", "Mars/Base"), "2025-01-01T12:00:00.123Z")  # fallback

    @async_test
    async def test_execute(self) -> None:
        self.patch(ServerTimeNode, "clock", staticmethod(lambda: self.NOW))
        ctx = await run_node("ServerTimeNode")
        self.assertEqual(ctx.values["formattedTime"], "2025-01-01T12:00:00.123Z")
        self.assertEqual(ctx.values["timestampMilliseconds"], 1735732800123)
        self.assertEqual(ctx.values["timestampSeconds"], 1735732800)
        ctx = await run_node("ServerTimeNode", {"timeFormat": "Custom", "customFormat": "YYYY"})
        self.assertEqual(ctx.values["formattedTime"], "2025")
