"""chaingraph_gw.nodes.jsbridge: the JS coercions, JSON, decimal.js formatting and regex translation."""

from __future__ import annotations

import math
from decimal import Decimal

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.nodes.jsbridge import (
    DecimalArgumentError,
    JSONParseError,
    JSRegExp,
    JSRegExpError,
    decimal_to_exponential,
    decimal_to_fixed,
    decimal_to_js_string,
    js_compare_strings,
    js_is_finite,
    js_json_parse,
    js_json_stringify,
    js_number,
    js_number_to_string,
    js_string,
    js_trim,
    js_truthy,
    js_typeof,
    num_out,
    to_decimal,
    translate_js_regex,
    utf16_len,
)
from chaingraph_gw.nodes.library.flow import branch_compare
from chaingraph_gw.nodes.sdk import UNSET


class NumberTests(SynchronousTestCase):
    def assertNaN(self, x: float) -> None:
        self.assertTrue(math.isnan(x), x)

    def test_primitives(self) -> None:
        self.assertEqual(js_number(None), 0)
        self.assertNaN(js_number(UNSET))
        self.assertEqual(js_number(True), 1)
        self.assertEqual(js_number(False), 0)
        self.assertEqual(js_number(5), 5.0)
        self.assertIsInstance(js_number(5), float)
        self.assertEqual(js_number(-0.5), -0.5)

    def test_strings(self) -> None:
        self.assertEqual(js_number(""), 0)
        self.assertEqual(js_number("   \n\t"), 0)
        self.assertEqual(js_number(" 42 "), 42)
        self.assertEqual(js_number("\u00a012\ufeff"), 12)  # JS whitespace includes NBSP and BOM
        self.assertEqual(js_number("1e3"), 1000)
        self.assertEqual(js_number("-1.5e-2"), -0.015)
        self.assertEqual(js_number(".5"), 0.5)
        self.assertEqual(js_number("5."), 5)
        self.assertEqual(js_number("0x1F"), 31)
        self.assertEqual(js_number("0X1f"), 31)
        self.assertEqual(js_number("0o17"), 15)
        self.assertEqual(js_number("0b101"), 5)
        self.assertEqual(js_number("Infinity"), math.inf)
        self.assertEqual(js_number("-Infinity"), -math.inf)
        self.assertEqual(js_number("+Infinity"), math.inf)
        for bad in ("1_000", "inf", "nan", "NaN", "infinity", "abc", "1 2", "-0x10", "0x", "1e", "--1", "١٢"):
            self.assertNaN(js_number(bad))

    def test_lists_and_dicts(self) -> None:
        self.assertEqual(js_number([]), 0)
        self.assertEqual(js_number([7]), 7)
        self.assertEqual(js_number(["8"]), 8)
        self.assertEqual(js_number([[3]]), 3)
        self.assertEqual(js_number([None]), 0)
        self.assertNaN(js_number([True]))  # String([true]) is 'true'
        self.assertNaN(js_number([1, 2]))
        self.assertNaN(js_number({}))
        self.assertNaN(js_number({"a": 1}))

    def test_is_finite_does_not_coerce(self) -> None:
        self.assertTrue(js_is_finite(1))
        self.assertTrue(js_is_finite(-2.5))
        for v in (True, False, "1", None, UNSET, math.nan, math.inf, -math.inf, [1], 10**400):
            self.assertFalse(js_is_finite(v), v)


class StringTests(SynchronousTestCase):
    def test_number_to_string(self) -> None:
        cases = {
            1e21: "1e+21", 1e-7: "1e-7", 0.1: "0.1", 3.0: "3", -0.0: "0", 100.0: "100",
            1e20: "100000000000000000000", 123456789012345680000.0: "123456789012345680000",
            0.000001: "0.000001", 1.5e-6: "0.0000015", 1.5e-7: "1.5e-7", 1.2345e25: "1.2345e+25",
            0.1 + 0.2: "0.30000000000000004", 1 / 3: "0.3333333333333333", -1.5: "-1.5", 2**53: "9007199254740992",
            5e-324: "5e-324", 1.7976931348623157e308: "1.7976931348623157e+308", 123.456: "123.456",
        }
        for value, text in cases.items():
            self.assertEqual(js_number_to_string(value), text, repr(value))
        self.assertEqual(js_number_to_string(math.nan), "NaN")
        self.assertEqual(js_number_to_string(math.inf), "Infinity")
        self.assertEqual(js_number_to_string(-math.inf), "-Infinity")
        self.assertEqual(js_number_to_string(10**21), "1e+21")
        self.assertEqual(js_number_to_string(12), "12")
        self.assertEqual(js_number_to_string(0.0), "0")

    def test_string(self) -> None:
        self.assertEqual(js_string(None), "null")
        self.assertEqual(js_string(UNSET), "undefined")
        self.assertEqual(js_string(True), "true")
        self.assertEqual(js_string(False), "false")
        self.assertEqual(js_string(2.0), "2")
        self.assertEqual(js_string(-0.0), "0")
        self.assertEqual(js_string(1e21), "1e+21")
        self.assertEqual(js_string("x"), "x")
        self.assertEqual(js_string([1, "a", None, True, [2, 3]]), "1,a,,true,2,3")
        self.assertEqual(js_string([]), "")
        self.assertEqual(js_string({"a": 1}), "[object Object]")
        self.assertEqual(js_string([{"a": 1}]), "[object Object]")

    def test_truthy_typeof_trim_len(self) -> None:
        for v in (False, 0, 0.0, -0.0, math.nan, "", None, UNSET):
            self.assertFalse(js_truthy(v), v)
        for v in (True, 1, -1, "0", "false", [], {}, " "):
            self.assertTrue(js_truthy(v), v)
        self.assertEqual([js_typeof(v) for v in (None, UNSET, True, 1, 1.5, "s", [], {})],
                         ["object", "undefined", "boolean", "number", "number", "string", "object", "object"])
        self.assertEqual(js_trim("\u00a0 x \u2028"), "x")
        self.assertEqual(utf16_len("a😀é"), 4)
        self.assertEqual(utf16_len(""), 0)

    def test_compare_strings_utf16_order(self) -> None:
        self.assertEqual(js_compare_strings("a", "b"), -1)
        self.assertEqual(js_compare_strings("b", "a"), 1)
        self.assertEqual(js_compare_strings("a", "a"), 0)
        self.assertEqual(js_compare_strings("B", "a"), -1)
        # U+1F600 is D83D DE00 in UTF-16, which sorts before U+FF5E (code point order says the opposite)
        self.assertEqual(js_compare_strings("😀", "～"), -1)

    def test_num_out(self) -> None:
        self.assertEqual(repr(num_out(3.0)), "3")
        self.assertEqual(repr(num_out(0.5)), "0.5")
        self.assertEqual(num_out(math.inf), math.inf)
        self.assertIsInstance(num_out(2.0**60), float)
        self.assertEqual(num_out(True), 1)


class JSONTests(SynchronousTestCase):
    def test_compact(self) -> None:
        self.assertEqual(js_json_stringify({"a": [1, 2.0, "x"], "b": None, "c": True}),
                         '{"a":[1,2,"x"],"b":null,"c":true}')

    def test_pretty(self) -> None:
        self.assertEqual(js_json_stringify({"a": [1, {}], "b": []}, 2),
                         '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": []\n}')
        self.assertEqual(js_json_stringify([], 2), "[]")

    def test_special_values(self) -> None:
        self.assertEqual(js_json_stringify([math.nan, math.inf, -math.inf, -0.0, 1e21]), "[null,null,null,0,1e+21]")
        self.assertEqual(js_json_stringify("é✓\n\"\\\x01\u2028"), '"é✓\\n\\"\\\\\\u0001\u2028"')
        self.assertEqual(js_json_stringify("\ud800"), '"\\ud800"')
        self.assertIsNone(js_json_stringify(UNSET))
        self.assertEqual(js_json_stringify({"a": UNSET, "b": 1}), '{"b":1}')
        self.assertEqual(js_json_stringify([UNSET]), "[null]")
        self.assertEqual(js_json_stringify("x"), '"x"')
        self.assertEqual(js_json_stringify(None), "null")

    def test_circular(self) -> None:
        a: dict = {}
        a["self"] = a
        self.assertRaises(TypeError, js_json_stringify, a)
        shared = [1]
        self.assertEqual(js_json_stringify([shared, shared]), "[[1],[1]]")  # repeated is not circular

    def test_parse(self) -> None:
        self.assertEqual(js_json_parse(' {"a": [1, 2.5, "x", null, true]} '), {"a": [1, 2.5, "x", None, True]})
        self.assertEqual(js_json_parse("[1e400, -0, 12345678901234567890]"), [math.inf, 0, 12345678901234567890])
        for bad, msg in (  # V8 (Node 20) JSON.parse messages
                ("", "Unexpected end of JSON input"), ('{"a":', "Unexpected end of JSON input"),
                ("nope", "Unexpected token 'o', \"nope\" is not valid JSON"),
                ("[NaN]", "Unexpected token 'N', \"[NaN]\" is not valid JSON"),
                ("{'a':1}", "Expected property name or '}' in JSON at position 1"),
                ('{"a":1} x', "Unexpected non-whitespace character after JSON at position 8"),
                ("[1 2]", "Expected ',' or ']' after array element in JSON at position 3"),
                ('{"a" 1}', "Expected ':' after property name in JSON at position 5"),
                ('{"a":1,}', "Expected double-quoted property name in JSON at position 7"),
                ('{"a":1', "Expected ',' or '}' after property value in JSON at position 6"),
                ('"abc', "Unterminated string in JSON at position 4"),
                ("01", "Unexpected number in JSON at position 1"),
                ("1.", "Unterminated fractional number in JSON at position 2"),
                ("-", "No number after minus sign in JSON at position 1"),
                ("1e", "Exponent part is missing a number in JSON at position 2"),
                ('"\\q"', "Bad escaped character in JSON at position 2"),
                ('"\\u12"', "Bad Unicode escape in JSON at position 5"),
                ('"a\u0001b"', "Bad control character in string literal in JSON at position 2"),
                ("<html><body>hello world</body></html>", "Unexpected token '<', \"<html><bod\"... is not valid JSON"),
                ("[1,2,3,4,5,6,7,8,9,10,11,12,}", "Unexpected token '}', ...\",10,11,12,}\" is not valid JSON")):
            e = self.assertRaises(JSONParseError, js_json_parse, bad)
            self.assertEqual(str(e), msg)


class DecimalTests(SynchronousTestCase):
    def test_from_float_repr(self) -> None:
        self.assertEqual(to_decimal(1.005), Decimal("1.005"))
        self.assertEqual(to_decimal(0.1), Decimal("0.1"))
        self.assertEqual(to_decimal(7), Decimal(7))
        self.assertEqual(to_decimal("0x1F"), Decimal(31))
        self.assertEqual(to_decimal(" 2.50 "), Decimal("2.50"))
        self.assertTrue(to_decimal(math.nan).is_nan())
        for bad in (True, None, UNSET, "abc", [1]):
            e = self.assertRaises(DecimalArgumentError, to_decimal, bad)
            self.assertTrue(str(e).startswith("[DecimalError] Invalid argument: "))

    def test_to_string(self) -> None:
        f = lambda x: decimal_to_js_string(to_decimal(x))
        self.assertEqual(f(1e21), "1e+21")
        self.assertEqual(f(1e20), "100000000000000000000")
        self.assertEqual(f(1e-7), "1e-7")
        self.assertEqual(f(1.5e-7), "1.5e-7")
        self.assertEqual(f(0.000001), "0.000001")
        self.assertEqual(f(-0.0), "0")
        self.assertEqual(f(0.1), "0.1")
        self.assertEqual(f(123.45), "123.45")
        self.assertEqual(f(-2.5), "-2.5")
        self.assertEqual(decimal_to_js_string(Decimal("1.500")), "1.5")
        self.assertEqual(decimal_to_js_string(Decimal("NaN")), "NaN")
        self.assertEqual(decimal_to_js_string(Decimal("-Infinity")), "-Infinity")

    def test_to_fixed_half_up(self) -> None:
        self.assertEqual(decimal_to_fixed(to_decimal(1.005), 2), "1.01")
        self.assertEqual(decimal_to_fixed(to_decimal(2.5), 0), "3")
        self.assertEqual(decimal_to_fixed(to_decimal(-2.5), 0), "-3")
        self.assertEqual(decimal_to_fixed(to_decimal(1.45), 1), "1.5")
        self.assertEqual(decimal_to_fixed(to_decimal(3), 2), "3.00")
        self.assertEqual(decimal_to_fixed(to_decimal(-0.001), 2), "-0.00")
        self.assertEqual(decimal_to_fixed(to_decimal(1e21), 1), "1000000000000000000000.0")
        self.assertRaises(DecimalArgumentError, decimal_to_fixed, Decimal(1), -2)
        self.assertRaises(DecimalArgumentError, decimal_to_fixed, Decimal(1), 1.5)
        self.assertRaises(DecimalArgumentError, decimal_to_fixed, Decimal(1), "2")
        self.assertRaises(DecimalArgumentError, decimal_to_fixed, Decimal(1), 10**8)  # bounded (decimal.js: 1e9)

    def test_to_exponential(self) -> None:
        self.assertEqual(decimal_to_exponential(to_decimal(12345)), "1.2345e+4")
        self.assertEqual(decimal_to_exponential(to_decimal(12345), 2), "1.23e+4")
        self.assertEqual(decimal_to_exponential(to_decimal(12355), 2), "1.24e+4")
        self.assertEqual(decimal_to_exponential(to_decimal(99999), 2), "1.00e+5")
        self.assertEqual(decimal_to_exponential(to_decimal(1), 2), "1.00e+0")
        self.assertEqual(decimal_to_exponential(to_decimal(0)), "0e+0")
        self.assertEqual(decimal_to_exponential(to_decimal(0.00012)), "1.2e-4")
        self.assertEqual(decimal_to_exponential(to_decimal(-5)), "-5e+0")


class RegexTranslationTests(SynchronousTestCase):
    def test_named_groups_and_backrefs(self) -> None:
        py, _ = translate_js_regex(r"(?<year>\d{4})-\k<year>")
        self.assertIn("(?P<year>", py)
        self.assertIn("(?P=year)", py)
        self.assertEqual(JSRegExp(r"(?<y>\d+)-\k<y>").match("12-12 x"), ["12-12", "12"])
        self.assertEqual(JSRegExp(r"(a)\1").match("aa"), ["aa", "a"])

    def test_js_character_classes(self) -> None:
        self.assertIsNone(JSRegExp(r"\d").match("٣"))  # \d is ASCII-only in JS
        self.assertIsNone(JSRegExp(r"\w").match("é"))
        self.assertEqual(JSRegExp(r"\s", "g").match("a\u00a0b\ufeffc"), ["\u00a0", "\ufeff"])
        self.assertEqual(JSRegExp(r"[\d_]+", "g").match("a1_2b"), ["1_2"])
        self.assertEqual(JSRegExp(r"\bé", "g").match("é é"), None)  # é is not a word char: no \b before it
        self.assertEqual(JSRegExp(r"\bcat\b", "g").match("cat concat cat"), ["cat", "cat"])

    def test_dot_and_anchors(self) -> None:
        self.assertIsNone(JSRegExp("a.b").match("a\rb"))
        self.assertEqual(JSRegExp("a.b", "s").match("a\nb"), ["a\nb"])
        self.assertIsNone(JSRegExp("a$").match("a\n"))  # no match before a final newline in JS
        self.assertEqual(JSRegExp("^b$", "m").match("a\r\nb\r\nc"), ["b"])
        self.assertEqual(JSRegExp("^x", "gm").match("x\u2028x"), ["x", "x"])

    def test_flags(self) -> None:
        self.assertEqual(JSRegExp("abc", "i").match("xABC"), ["ABC"])
        self.assertEqual(JSRegExp(r"\u{1F600}", "u").match("😀"), ["😀"])
        e = self.assertRaises(JSRegExpError, JSRegExp, "a", "gg")
        self.assertIn("Invalid flags", str(e))

    def test_js_quirks(self) -> None:
        self.assertEqual(JSRegExp("[^]", "g").match("a\n"), ["a", "\n"])
        self.assertIsNone(JSRegExp("[]").match("abc"))
        self.assertEqual(JSRegExp("a{,2}").match("a{,2}"), ["a{,2}"])  # not a quantifier in JS
        self.assertEqual(JSRegExp(r"\cJ").match("\n"), ["\n"])
        self.assertEqual(JSRegExp(r"\/").match("/"), ["/"])
        self.assertEqual(JSRegExp(r"\A").match("A"), ["A"])  # identity escape, not an anchor

    def test_errors_have_v8_shape(self) -> None:
        for pat, reason in (("(", "Unterminated group"), ("a)", "Unmatched ')'"), ("*", "Nothing to repeat"),
                            ("[a", "Unterminated character class"), ("\\", "\\ at end of pattern"),
                            ("(?P<x>a)", "Invalid group"), ("a**", "Nothing to repeat"), ("a++", "Nothing to repeat")):
            e = self.assertRaises(JSRegExpError, JSRegExp, pat, "g")
            self.assertEqual(str(e), f"Invalid regular expression: /{pat}/g: {reason}")

    def test_match_semantics(self) -> None:
        self.assertEqual(JSRegExp(r"(\w)(\d)?").match("a1 a 1"), ["a1", "a", "1"])
        self.assertEqual(JSRegExp(r"(\w)(x)?").match("a"), ["a", "a", None])
        self.assertEqual(JSRegExp(r"\d", "g").match("a1b2"), ["1", "2"])
        self.assertIsNone(JSRegExp(r"\d", "g").match("ab"))
        self.assertEqual(JSRegExp("|a", "g").match("a"), ["", ""])  # an empty match advances by one
        self.assertEqual(JSRegExp("a*", "g").match("baaa"), ["", "aaa", ""])
        self.assertEqual(len(list(JSRegExp("(x)?", "g").iter_all("abc"))), 4)  # terminates

    def test_replace_tokens(self) -> None:
        rx = JSRegExp(r"(?<y>\d{4})-(\d\d)", "g")
        self.assertEqual(rx.replace("2020-12 x", "$2/$<y> [$&] $$ $0 $9 $<nope>|"), "12/2020 [2020-12] $ $0 $9 | x")
        self.assertEqual(JSRegExp("b").replace("abc", "[$`|$']"), "a[a|c]c")
        self.assertEqual(JSRegExp("b").replace("abab", "X"), "aXab")  # no g: first only
        self.assertEqual(JSRegExp("a*", "g").replace("baaa", "-"), "-b--")
        self.assertEqual(JSRegExp("(a)").replace("a", "$<x>"), "$<x>")  # no named groups: literal
        self.assertEqual(JSRegExp("(a)").replace("a", "$11"), "a1")  # $1 then '1'
        self.assertEqual(JSRegExp("(a)(b)?").replace("a", "[$2]"), "[]")


class BranchQuirkTests(SynchronousTestCase):
    """catalog §1.5: JS Number() quirks seen through BranchNode."""

    def test_documented_quirks(self) -> None:
        self.assertTrue(branch_compare("", "equals", 0))
        self.assertTrue(branch_compare(True, "equals", 1))
        self.assertTrue(branch_compare("10", "greaterThan", "9"))
        self.assertFalse(branch_compare(None, "equals", 0))
        self.assertTrue(branch_compare({"a": 1}, "contains", "object"))
        self.assertFalse(branch_compare([1, 2], "equals", "1,2"))

    def test_null_rules(self) -> None:
        self.assertTrue(branch_compare(None, "equals", None))
        self.assertTrue(branch_compare(UNSET, "equals", None))
        self.assertFalse(branch_compare(None, "notEquals", None))
        self.assertTrue(branch_compare(None, "notEquals", 0))
        self.assertTrue(branch_compare(None, "lessThan", 1))  # Number(null) = 0
        self.assertTrue(branch_compare(None, "startsWith", ""))

    def test_strict_identity_fallback(self) -> None:
        self.assertTrue(branch_compare("abc", "equals", "abc"))
        self.assertFalse(branch_compare("abc", "equals", "ABC"))
        self.assertFalse(branch_compare({}, "equals", {}))
        self.assertFalse(branch_compare(True, "equals", "true"))
        self.assertFalse(branch_compare(math.nan, "equals", math.nan))
        self.assertTrue(branch_compare([], "equals", 0))
        self.assertTrue(branch_compare(" 1 ", "equals", 1))

    def test_ordering(self) -> None:
        self.assertTrue(branch_compare("b", "greaterThan", "a"))
        self.assertTrue(branch_compare("B", "lessThan", "a"))  # UTF-16 order
        self.assertTrue(branch_compare("abc", "greaterThanOrEquals", "abc"))
        self.assertTrue(branch_compare(2, "lessThanOrEquals", "2"))
        self.assertTrue(branch_compare("x", "greaterThan", 5))  # not numeric: '5' < 'x' as strings
        self.assertFalse(branch_compare("10", "lessThan", "9"))  # numeric, not lexicographic

    def test_string_operators(self) -> None:
        self.assertTrue(branch_compare("Hello", "startsWith", "He"))
        self.assertTrue(branch_compare("Hello", "endsWith", "lo"))
        self.assertTrue(branch_compare("Hello", "notContains", "x"))
        self.assertTrue(branch_compare(12345, "contains", 234))
        self.assertTrue(branch_compare([1, 2], "contains", "1,2"))
        self.assertFalse(branch_compare("a", "bogus", "a"))
