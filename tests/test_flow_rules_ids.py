"""Tests for chaingraph_gw.flow.rules (connect-time compatibility) and chaingraph_gw.flow.ids."""

from __future__ import annotations

import re
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.flow import ids
from chaingraph_gw.flow.rules import can_connect, type_mismatch
from chaingraph_gw.nodes.sdk import (
    SYSTEM_PORT_SPECS,
    PortSpec,
    any_port,
    array,
    boolean,
    enum,
    number,
    obj,
    string,
)

OUT = "output"
IN = "input"


def out(spec: PortSpec) -> PortSpec:
    return replace(spec, direction=OUT)


class DirectionTests(SynchronousTestCase):
    def test_source_must_be_output_or_passthrough(self):
        self.assertEqual(can_connect(string("a"), string("b")),
                         "Source port a is not an output or passthrough port.")
        self.assertEqual(can_connect(string("a"), string("b"), source_label="n.a"),
                         "Source port n.a is not an output or passthrough port.")
        self.assertIsNone(can_connect(string("a", direction="passthrough"), string("b")))
        self.assertIsNone(can_connect(string("a", direction=OUT), string("b", direction="passthrough")))

    def test_target_must_be_input_or_passthrough(self):
        self.assertEqual(can_connect(string("a", direction=OUT), string("b", direction=OUT), target_label="m.b"),
                         "Target port m.b is not an input or passthrough port.")

    def test_system_ports(self):
        execute, success, error, message = SYSTEM_PORT_SPECS
        self.assertIsNone(can_connect(success, execute))
        self.assertIsNone(can_connect(error, execute))
        self.assertIsNone(can_connect(message, string("log")))
        self.assertIn("Source port __execute", can_connect(execute, execute))
        self.assertEqual(can_connect(message, execute), "Incompatible port types: string -> boolean")


class TypeRuleTests(SynchronousTestCase):
    def check(self, source: PortSpec, target: PortSpec) -> str | None:
        return can_connect(out(source), target)

    def test_same_primitive_kinds(self):
        for make in (string, number, boolean):
            self.assertIsNone(self.check(make("s"), make("t")))
        self.assertIsNone(self.check(enum("s", ["a"]), enum("t", ["b"])))
        self.assertIsNone(self.check(PortSpec("s", "secret"), PortSpec("t", "secret")))
        self.assertIsNone(self.check(PortSpec("s", "stream"), PortSpec("t", "stream")))

    def test_refused_pairs(self):
        pairs = [
            (number("s"), string("t"), "number -> string"),
            (string("s"), number("t"), "string -> number"),
            (boolean("s"), string("t"), "boolean -> string"),
            (enum("s", ["a"]), string("t"), "enum -> string"),
            (string("s"), enum("t", ["a"]), "string -> enum"),
            (obj("s"), array("t"), "object -> array"),
            (array("s"), obj("t"), "array -> object"),
            (number("s"), boolean("t"), "number -> boolean"),
        ]
        for s, t, reason in pairs:
            self.assertEqual(self.check(s, t), f"Incompatible port types: {reason}")

    def test_any(self):
        for src in (string("s"), number("s"), boolean("s"), enum("s", ["a"]), obj("s"), array("s"),
                    PortSpec("s", "secret"), PortSpec("s", "stream"), any_port("s")):
            self.assertIsNone(self.check(src, any_port("t")), src.type)
        for tgt in (string("t"), number("t"), boolean("t"), obj("t"), array("t"), enum("t", ["a"])):
            self.assertEqual(self.check(any_port("s"), tgt), f"Incompatible port types: any -> {tgt.type}")

    def test_any_is_unwrapped(self):
        s = any_port("s", underlying=string("u"))
        self.assertIsNone(self.check(s, string("t")))
        self.assertEqual(self.check(s, number("t")), "Incompatible port types: string -> number")
        t = any_port("t", underlying=number("u"))
        self.assertIsNone(self.check(number("s"), t))
        self.assertEqual(self.check(string("s"), t), "Incompatible port types: string -> number")
        nested = any_port("s", underlying=any_port("u", underlying=boolean("v")))
        self.assertIsNone(self.check(nested, boolean("t")))

    def test_objects(self):
        person = obj("s", schema=(string("name"), number("age")))
        self.assertIsNone(self.check(person, obj("t", schema=(string("name"),))))
        self.assertIsNone(self.check(person, obj("t", is_schema_mutable=True, schema=(boolean("x"),))))
        self.assertIsNone(self.check(person, obj("t")))
        self.assertIsNone(self.check(obj("s", is_schema_mutable=True), obj("t", schema=(string("name"),))))
        self.assertEqual(self.check(obj("s", schema=(string("name"),)), person),
                         "Incompatible port types: object -> object (source has no property 'age')")
        self.assertEqual(self.check(person, obj("t", schema=(string("age"),))),
                         "Incompatible port types: object -> object (property 'age': number -> string)")
        deep_s = obj("s", schema=(obj("inner", schema=(number("x"),)),))
        deep_t = obj("t", schema=(obj("inner", schema=(string("x"),)),))
        self.assertEqual(type_mismatch(deep_s, deep_t),
                         "object -> object (property 'inner': object -> object (property 'x': number -> string))")

    def test_arrays(self):
        strings = array("s", item=string("i"))
        self.assertIsNone(self.check(strings, array("t", item=string("i"))))
        self.assertIsNone(self.check(strings, array("t", item=number("i"), is_mutable=True)))
        self.assertIsNone(self.check(strings, array("t")))
        self.assertIsNone(self.check(strings, array("t", item=any_port("i"))))
        self.assertIsNone(self.check(array("s", is_mutable=True), array("t", item=number("i"))))
        self.assertEqual(self.check(strings, array("t", item=number("i"))),
                         "Incompatible port types: array -> array (items: string -> number)")
        self.assertEqual(self.check(array("s"), array("t", item=number("i"))),
                         "Incompatible port types: array -> array (items: any -> number)")


class IdTests(SynchronousTestCase):
    def test_formats(self):
        alphabet = re.escape(ids.ALPHABET)
        cases = [(ids.flow_id, "V2", 24), (ids.execution_id, "EX", 24), (ids.event_id, "EV", 24),
                 (ids.edge_id, "ED", 18), (ids.node_id, "NO", 16), (ids.command_id, "CMD", 24),
                 (ids.request_id, "REQ", 16)]
        for fn, prefix, n in cases:
            value = fn()
            self.assertRegex(value, f"^{prefix}[{alphabet}]{{{n}}}$")
        self.assertRegex(ids.port_id("text"), f"^text:PO[{alphabet}]{{16}}$")

    def test_alphabet(self):
        self.assertEqual(ids.ALPHABET, "346789ABCDEFGHJKLMNPQRTUVWXYabcdefghijkmnpqrtwxyz")
        self.assertEqual(len(set(ids.ALPHABET)), 49)

    def test_random_and_uniform_enough(self):
        values = {ids.execution_id() for _ in range(2000)}
        self.assertEqual(len(values), 2000)
        chars = ids.random_chars(20000)
        counts = [chars.count(c) for c in ids.ALPHABET]
        self.assertEqual(sum(counts), 20000)
        self.assertGreater(min(counts), 250)  # expected ~408 each
        self.assertLess(max(counts), 600)
        self.assertEqual(ids.random_chars(0), "")
