"""YAML output in the eemeli-yaml style, and YAML 1.2 parsing."""

from __future__ import annotations

import math

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.nodes.library.yaml_style import yaml_parse, yaml_stringify


class YamlStringifyTests(SynchronousTestCase):
    def test_catalog_example(self) -> None:
        self.assertEqual(yaml_stringify({"a": 1, "d": [1, 2], "f": "multi\nline"}),
                         "a: 1\nd:\n  - 1\n  - 2\nf: |-\n  multi\n  line\n")

    def test_collections(self) -> None:
        self.assertEqual(yaml_stringify([1, "a"]), "- 1\n- a\n")
        self.assertEqual(yaml_stringify({}), "{}\n")
        self.assertEqual(yaml_stringify([]), "[]\n")
        self.assertEqual(yaml_stringify({"e": {}, "l": []}), "e: {}\nl: []\n")
        self.assertEqual(yaml_stringify([{"a": 1, "b": [1, {"c": 2}]}, [1, 2]]),
                         "- a: 1\n  b:\n    - 1\n    - c: 2\n- - 1\n  - 2\n")
        self.assertEqual(yaml_stringify({"a": {"b": {"c": None}}}), "a:\n  b:\n    c: null\n")

    def test_scalars(self) -> None:
        self.assertEqual(yaml_stringify("hello"), "hello\n")
        self.assertEqual(yaml_stringify(True), "true\n")
        self.assertEqual(yaml_stringify(None), "null\n")
        self.assertEqual(yaml_stringify({"f": 1.5, "i": 3.0, "big": 1e21, "nan": math.nan, "inf": -math.inf}),
                         "f: 1.5\ni: 3\nbig: 1e+21\nnan: .nan\ninf: -.inf\n")

    def test_quoting(self) -> None:
        cases = {
            "true": '"true"', "False": '"False"', "null": '"null"', "~": '"~"', "": '""', "123": '"123"',
            "-1.5": '"-1.5"', "0x1F": '"0x1F"', "1e3": '"1e3"', ".inf": '".inf"', "yes": "yes", "no": "no",
            "on": "on", " lead": '" lead"', "trail ": '"trail "', "a: b": '"a: b"', "a #b": '"a #b"',
            "#x": '"#x"', "- x": '"- x"', "-": '"-"', "[x]": '"[x]"', "@x": '"@x"', "say \"hi\"": 'say "hi"',
            "\"q\" 'b": "\"\\\"q\\\" 'b\"", "'q": "\"'q\"", "\"q": "'\"q'", "a:b": "a:b", "tab\tx": "tab\tx",
            "bell\x07": '"bell\\a"',
        }
        for value, out in cases.items():
            self.assertEqual(yaml_stringify({"k": value}), f"k: {out}\n", repr(value))

    def test_keys(self) -> None:
        self.assertEqual(yaml_stringify({"1": "a", "true": "b", "x y": "c", "": "d"}),
                         '"1": a\n"true": b\nx y: c\n"": d\n')

    def test_block_scalars(self) -> None:
        self.assertEqual(yaml_stringify({"s": "a\nb\n"}), "s: |\n  a\n  b\n")
        self.assertEqual(yaml_stringify({"s": "a\nb\n\n"}), "s: |+\n  a\n  b\n\n")
        self.assertEqual(yaml_stringify({"s": "a\n\nb"}), "s: |-\n  a\n\n  b\n")
        self.assertEqual(yaml_stringify({"s": "  indented\nx"}), "s: |2-\n    indented\n  x\n")
        self.assertEqual(yaml_stringify(["a\nb"]), "- |-\n  a\n  b\n")
        self.assertEqual(yaml_stringify({"o": {"s": "x\ny"}}), "o:\n  s: |-\n    x\n    y\n")
        self.assertEqual(yaml_stringify("top\nlevel"), "|-\ntop\nlevel\n")

    def test_long_plain_strings_fold(self) -> None:
        text = " ".join(["word"] * 30)
        out = yaml_stringify({"k": text})
        lines = out.splitlines()
        self.assertGreater(len(lines), 1)
        self.assertTrue(all(len(line) <= 80 for line in lines), out)
        self.assertTrue(lines[1].startswith("  word"))
        self.assertEqual(yaml_parse(out), {"k": text})

    def test_directives(self) -> None:
        self.assertEqual(yaml_stringify({"a": 1}, directives=True), "---\na: 1\n")
        self.assertEqual(yaml_stringify("a\nb", directives=True), "--- |-\na\nb\n")

    def test_round_trip(self) -> None:
        data = {"name": "x", "n": [1, 2.5, None, True, "true", "", "a: b", "multi\nline\n"], "o": {"k": {}}}
        self.assertEqual(yaml_parse(yaml_stringify(data)), data)


class YamlParseTests(SynchronousTestCase):
    def test_core_schema(self) -> None:
        self.assertEqual(yaml_parse("a: yes\nb: 0x1F\nc: 2020-01-01\nd: .inf\ne: ~\nf: [1, 2]\ng: 0o17\nh: On\n"),
                         {"a": "yes", "b": 31, "c": "2020-01-01", "d": math.inf, "e": None, "f": [1, 2], "g": 15,
                          "h": "On"})
        self.assertEqual(yaml_parse("t: true\nx: 1_000\ny: 1:30"), {"t": True, "x": "1_000", "y": "1:30"})

    def test_errors(self) -> None:
        self.assertRaises(ValueError, yaml_parse, "a: [1, 2")
        self.assertRaises(ValueError, yaml_parse, "a: 1\n---\nb: 2\n")  # one document only
        self.assertRaises(ValueError, yaml_parse, "&a [*a]")  # recursive

    def test_alias_bomb_is_refused(self) -> None:
        bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n" for i in range(12))
        e = self.assertRaises(ValueError, yaml_parse, bomb)
        self.assertIn("Excessive alias count", str(e))
        self.assertEqual(yaml_parse("a: &x [1]\nb: *x"), {"a": [1], "b": [1]})
