"""Tests for chaingraph_gw.trpc.superjson (protocol doc §5, executor spec §0/§3)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import math
import pickle
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone

import orjson
from twisted.trial import unittest

from chaingraph_gw.trpc import superjson as sjmod
from chaingraph_gw.trpc.superjson import (
    JSURL,
    UNDEFINED,
    BigInt,
    JSDate,
    JSError,
    JSMap,
    JSRegExp,
    JSSet,
    JSTypedArray,
    SuperJSON,
    SuperJSONError,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(n: int) -> datetime:
    return EPOCH + timedelta(milliseconds=n)


class Point:
    """A plain class registered as "Point" (props = vars())."""

    def __init__(self, **props):
        self.__dict__.update(props)

    def __eq__(self, other):
        return type(other) is Point and vars(self) == vars(other)

    def __repr__(self):
        return f"Point({vars(self)!r})"


SYM = object()


def make_codec() -> SuperJSON:
    sj = SuperJSON()
    sj.register_class("Point", Point)
    sj.register_custom(
        "buffer",
        is_applicable=lambda v: isinstance(v, bytes),
        serialize=lambda v: base64.b64encode(v).decode(),
        deserialize=lambda s: base64.b64decode(s),
    )
    sj.register_symbol("sym", SYM)
    return sj


def dumps(payload) -> str:
    return orjson.dumps(payload).decode()


def loads(text: str):
    return orjson.loads(text)


# -----------------------------------------------------------------------------------------------
# Captured examples, protocol doc §5.2 (superjson 2.2.7), verbatim except for the "dotted key"
# line whose dates the doc abbreviates as "1970-…Z".  (name, wire text, python value)
# -----------------------------------------------------------------------------------------------

_shared = {"x": 1}
_cycle = {"name": "c"}
_cycle["self"] = _cycle

DOC_VECTORS = [
    ("plain", r'{"json":{"a":1,"b":"x"}}', lambda: {"a": 1, "b": "x"}),
    ("undefined root", r'{"json":null,"meta":{"values":["undefined"],"v":1}}', lambda: UNDEFINED),
    ("null", r'{"json":null}', lambda: None),
    ("number", r'{"json":42}', lambda: 42),
    (
        "Date root",
        r'{"json":"2024-01-02T03:04:05.678Z","meta":{"values":["Date"],"v":1}}',
        lambda: datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    ),
    (
        "Date nested",
        (
            r'{"json":{"at":"1970-01-01T00:00:00.000Z","list":["1970-01-01T00:00:00.001Z"]},'
            r'"meta":{"values":{"at":["Date"],"list.0":["Date"]},"v":1}}'
        ),
        lambda: {"at": ms(0), "list": [ms(1)]},
    ),
    (
        "Map",
        r'{"json":[["k",1],[2,"1970-01-01T00:00:00.000Z"]],"meta":{"values":["map",{"1.1":["Date"]}],"v":1}}',
        lambda: JSMap([("k", 1), (2, ms(0))]),
    ),
    (
        "Set",
        r'{"json":[1,"a","1970-01-01T00:00:00.000Z"],"meta":{"values":["set",{"2":["Date"]}],"v":1}}',
        lambda: JSSet([1, "a", ms(0)]),
    ),
    (
        "Map->Set->bigint",
        r'{"json":[[{"a":1},["1"]]],"meta":{"values":["map",{"0.1":["set",{"0":["bigint"]}]}],"v":1}}',
        lambda: JSMap([({"a": 1}, JSSet([BigInt(1)]))]),
    ),
    (
        "bigint",
        r'{"json":{"n":"123"},"meta":{"values":{"n":["bigint"]},"v":1}}',
        lambda: {"n": BigInt(123)},
    ),
    (
        "undefined prop",
        r'{"json":{"a":null,"b":1},"meta":{"values":{"a":["undefined"]},"v":1}}',
        lambda: {"a": UNDEFINED, "b": 1},
    ),
    (
        "undefined in arr",
        r'{"json":[null,1,null],"meta":{"values":{"0":["undefined"],"2":["undefined"]},"v":1}}',
        lambda: [UNDEFINED, 1, UNDEFINED],
    ),
    (
        "RegExp",
        r'{"json":{"r":"/ab+c/gi"},"meta":{"values":{"r":["regexp"]},"v":1}}',
        lambda: {"r": JSRegExp("ab+c", "gi")},
    ),
    (
        "Error",
        r'{"json":{"e":{"name":"Error","message":"x","cause":"c"}},"meta":{"values":{"e":["Error"]},"v":1}}',
        lambda: {"e": JSError("Error", "x", cause="c")},
    ),
    (
        "NaN/Inf/-0",
        (
            r'{"json":{"a":"NaN","b":"Infinity","c":"-Infinity","d":"-0"},'
            r'"meta":{"values":{"a":["number"],"b":["number"],"c":["number"],"d":["number"]},"v":1}}'
        ),
        lambda: {"a": math.nan, "b": math.inf, "c": -math.inf, "d": -0.0},
    ),
    ("URL", r'{"json":"https://x.y/z","meta":{"values":["URL"],"v":1}}', lambda: JSURL("https://x.y/z")),
    (
        "typed array",
        r'{"json":[1,2,3],"meta":{"values":[["typed-array","Uint8Array"]],"v":1}}',
        lambda: JSTypedArray("Uint8Array", [1, 2, 3]),
    ),
    (
        "shared ref",
        r'{"json":{"a":{"x":1},"b":{"x":1}},"meta":{"referentialEqualities":{"a":["b"]},"v":1}}',
        lambda: {"a": _shared, "b": _shared},
    ),
    (
        "cycle",
        r'{"json":{"name":"c","self":null},"meta":{"referentialEqualities":[["self"]],"v":1}}',
        lambda: _cycle,
    ),
    (
        "dotted key",
        (
            r'{"json":{"a.b":"1970-01-01T00:00:00.000Z","c\\d":"1970-01-01T00:00:00.000Z"},'
            r'"meta":{"values":{"a\\.b":["Date"],"c\\\\d":["Date"]},"v":1}}'
        ),
        lambda: {"a.b": ms(0), "c\\d": ms(0)},
    ),
    (
        "class",
        r'{"json":{"p":{"x":3}},"meta":{"values":{"p":[["class","Point"]]},"v":1}}',
        lambda: {"p": Point(x=3)},
    ),
    (
        "custom",
        r'{"json":{"buf":"aGk="},"meta":{"values":{"buf":[["custom","buffer"]]},"v":1}}',
        lambda: {"buf": b"hi"},
    ),
]

# Payloads produced by the real superjson 2.2.7 (conformance/node_modules) for the JS values
# named; each must survive deserialize -> serialize byte for byte.
EXTRA_VECTORS = [
    (
        "ordering",
        r'{"json":["1970-01-01T00:00:00.000Z",{"a":"1970-01-01T00:00:00.001Z"},"1970-01-01T00:00:00.002Z",["1970-01-01T00:00:00.003Z"],null],"meta":{"values":{"0":["Date"],"2":["Date"],"4":["undefined"],"1.a":["Date"],"3.0":["Date"]},"v":1}}',
    ),
    (
        "ordering2",
        r'{"json":{"1":"1970-01-01T00:00:00.001Z","2":"1970-01-01T00:00:00.004Z","10":"1970-01-01T00:00:00.003Z","b":"1970-01-01T00:00:00.000Z","c":{"x":"1970-01-01T00:00:00.002Z"},"01":"1970-01-01T00:00:00.005Z"},"meta":{"values":{"1":["Date"],"2":["Date"],"10":["Date"],"b":["Date"],"c.x":["Date"],"01":["Date"]},"v":1}}',
    ),
    (
        "mapOrder",
        r'{"json":[[{"k":"1970-01-01T00:00:00.000Z"},"1970-01-01T00:00:00.001Z"],["1970-01-01T00:00:00.002Z",{"v":"1970-01-01T00:00:00.003Z"}]],"meta":{"values":["map",{"0.1":["Date"],"0.0.k":["Date"],"1.0":["Date"],"1.1.v":["Date"]}],"v":1}}',
    ),
    (
        "mapObjKeys",
        r'{"json":[[{"id":1},"x"],[[1,2],"1970-01-01T00:00:00.000Z"],[null,null]],"meta":{"values":["map",{"1.1":["Date"],"2.1":["undefined"]}],"v":1}}',
    ),
    (
        "setObjs",
        r'{"json":[{"a":1},{"a":1},{"b":"1970-01-01T00:00:00.000Z"}],"meta":{"values":["set",{"2.b":["Date"]}],"v":1}}',
    ),
    (
        "years",
        r'{"json":["-000001-01-01T00:00:00.000Z","0001-01-01T00:00:00.000Z","9999-12-31T23:59:59.999Z","+010000-01-01T00:00:00.000Z","+275760-09-13T00:00:00.000Z","-271821-04-20T00:00:00.000Z","1969-12-31T23:59:59.999Z"],"meta":{"values":{"0":["Date"],"1":["Date"],"2":["Date"],"3":["Date"],"4":["Date"],"5":["Date"],"6":["Date"]},"v":1}}',
    ),
    (
        "errorUndefCause",
        r'{"json":{"name":"Error","message":"u","cause":null},"meta":{"values":["Error",{"cause":["undefined"]}],"v":1}}',
    ),
    (
        "errorNested",
        r'{"json":{"name":"Error","message":"outer","cause":{"name":"TypeError","message":"inner"}},"meta":{"values":["Error",{"cause":["Error"]}],"v":1}}',
    ),
    (
        "errorDateCause",
        r'{"json":{"e":{"name":"Error","message":"x","cause":"1970-01-01T00:00:00.005Z"}},"meta":{"values":{"e":["Error",{"cause":["Date"]}]},"v":1}}',
    ),
    ("errorNoCause", r'{"json":{"name":"Error","message":"boom"},"meta":{"values":["Error"],"v":1}}'),
    (
        "typedFloat",
        r'{"json":{"f":[1.5,"NaN","-0","Infinity","-Infinity",0]},"meta":{"values":{"f":[["typed-array","Float64Array"]]},"v":1}}',
    ),
    (
        "typedBig",
        r'{"json":["1","-5","4611686018427387904"],"meta":{"values":[["typed-array","BigInt64Array"]],"v":1}}',
    ),
    ("typedU8C", r'{"json":[0,255],"meta":{"values":[["typed-array","Uint8ClampedArray"]],"v":1}}'),
    (
        "regexp",
        r'{"json":{"r":"/ab+c/gi","s":"/a\\/b/","t":"/a\\/b\\/c/y","e":"/(?:)/"},"meta":{"values":{"r":["regexp"],"s":["regexp"],"t":["regexp"],"e":["regexp"]},"v":1}}',
    ),
    (
        "dotted",
        r'{"json":{"a.b":"1970-01-01T00:00:00.000Z","c\\d":"1970-01-01T00:00:00.000Z","e\\.f":"1970-01-01T00:00:00.001Z","g..h":"1970-01-01T00:00:00.002Z","":"1970-01-01T00:00:00.003Z"},"meta":{"values":{"a\\.b":["Date"],"c\\\\d":["Date"],"e\\\\\\.f":["Date"],"g\\.\\.h":["Date"],"":["Date"]},"v":1}}',
    ),
    (
        "clsDate",
        r'{"json":[{"x":1,"y":2,"at":"1970-01-01T00:00:00.007Z"}],"meta":{"values":{"0":[["class","Point"],{"at":["Date"]}]},"v":1}}',
    ),
    ("sym", r'{"json":{"s":"sym"},"meta":{"values":{"s":[["symbol","sym"]]},"v":1}}'),
    (
        "deep",
        r'{"json":{"a":{"b":{"c":{"d":[{"e":[[[1,"1970-01-01T00:00:00.000Z"]]]}]}}}},"meta":{"values":{"a.b.c.d.0.e":["set",{"0":["map",{"0.1":["Date"]}]}]},"v":1}}',
    ),
    (
        "emptyMapSet",
        r'{"json":{"m":[],"s":[],"a":[],"o":{}},"meta":{"values":{"m":["map"],"s":["set"]},"v":1}}',
    ),
    (
        "bigHuge",
        r'{"json":{"n":"10000000000000000000000000000000000000000","m":"-9223372036854775808"},"meta":{"values":{"n":["bigint"],"m":["bigint"]},"v":1}}',
    ),
    ("urlNested", r'{"json":{"u":["http://a.b/c?d=e#f"]},"meta":{"values":{"u.0":["URL"]},"v":1}}'),
    (
        "cycleNested",
        r'{"json":{"inner":{"v":1,"back":null},"inner2":{"v":1,"back":null}},"meta":{"referentialEqualities":{"inner":["inner2","inner.back"]},"v":1}}',
    ),
    ("cycleArray", r'{"json":[1,null],"meta":{"referentialEqualities":[["1"]],"v":1}}'),
    (
        "cycleMap",
        r'{"json":{"m":[["self",null],["d","1970-01-01T00:00:00.000Z"]]},"meta":{"values":{"m":["map",{"1.1":["Date"]}]},"referentialEqualities":{"m":["m.0.1"]},"v":1}}',
    ),
    (
        "cycleAndShared",
        r'{"json":{"s":{"y":"1970-01-01T00:00:00.001Z"},"t":{"y":"1970-01-01T00:00:00.001Z"},"me":null},"meta":{"values":{"s.y":["Date"],"t.y":["Date"]},"referentialEqualities":[["me"],{"s":["t"]}],"v":1}}',
    ),
]


class CapturedVectorTests(unittest.TestCase):
    def setUp(self):
        self.sj = make_codec()

    def assertSameEncoding(self, a, b, msg=None):
        self.assertEqual(dumps(self.sj.serialize(a)), dumps(self.sj.serialize(b)), msg)

    def test_doc_vectors_encode_exactly(self):
        """Python value -> the exact captured JSON text (key order json/meta, values/refs/v)."""
        for name, text, make in DOC_VECTORS:
            got = dumps(self.sj.serialize(make()))
            if name == "shared ref":
                # Documented deviation: acyclic shared references are written in full without
                # referentialEqualities (doc §5.3 step 5).
                self.assertEqual(got, r'{"json":{"a":{"x":1},"b":{"x":1}}}', name)
            else:
                self.assertEqual(got, text, name)

    def test_doc_vectors_decode(self):
        for name, text, make in DOC_VECTORS:
            got = self.sj.deserialize(loads(text))
            if name == "NaN/Inf/-0":
                self.assertTrue(math.isnan(got["a"]))
                self.assertEqual(got["b"], math.inf)
                self.assertEqual(got["c"], -math.inf)
                self.assertEqual(math.copysign(1.0, got["d"]), -1.0)
                self.assertSameEncoding(got, make())
            elif name == "cycle":
                self.assertIs(got["self"], got)
                self.assertEqual(got["name"], "c")
            elif name == "shared ref":
                self.assertIs(got["a"], got["b"])
                self.assertEqual(got, make())
            else:
                self.assertEqual(got, make(), name)

    def test_doc_vectors_reencode_byte_identical(self):
        """serialize(deserialize(p)) == p for superjson-made payloads."""
        for name, text, _make in DOC_VECTORS:
            again = dumps(self.sj.serialize(self.sj.deserialize(loads(text))))
            if name == "shared ref":
                self.assertEqual(again, r'{"json":{"a":{"x":1},"b":{"x":1}}}')
            else:
                self.assertEqual(again, text, name)

    def test_doc_vectors_python_roundtrip(self):
        for name, _text, make in DOC_VECTORS:
            value = make()
            back = self.sj.deserialize(loads(dumps(self.sj.serialize(value))))
            if name == "cycle":
                self.assertIs(back["self"], back)
            else:
                self.assertSameEncoding(back, value, name)
                if name != "NaN/Inf/-0":
                    self.assertEqual(back, value, name)

    def test_superjson_227_vectors_roundtrip(self):
        for name, text in EXTRA_VECTORS:
            value = self.sj.deserialize(loads(text))
            self.assertEqual(dumps(self.sj.serialize(value)), text, name)

    def test_extra_vectors_decoded_values(self):
        v = dict(EXTRA_VECTORS)
        years = self.sj.deserialize(loads(v["years"]))
        self.assertEqual(years[0], JSDate("-000001-01-01T00:00:00.000Z"))
        self.assertEqual(years[1], datetime(1, 1, 1, tzinfo=UTC))
        self.assertEqual(years[2], datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
        self.assertIsInstance(years[3], JSDate)
        self.assertEqual(years[6], ms(-1))
        big = self.sj.deserialize(loads(v["typedBig"]))
        self.assertEqual(big, JSTypedArray("BigInt64Array", [1, -5, 2**62]))
        self.assertIsInstance(big.values[2], BigInt)
        err = self.sj.deserialize(loads(v["errorNested"]))
        self.assertEqual(err, JSError("Error", "outer", cause=JSError("TypeError", "inner")))
        cyc = self.sj.deserialize(loads(v["cycleMap"]))
        self.assertIs(cyc["m"].get("self"), cyc["m"])
        self.assertEqual(cyc["m"].get("d"), ms(0))
        both = self.sj.deserialize(loads(v["cycleAndShared"]))
        self.assertIs(both["me"], both)
        self.assertIs(both["s"], both["t"])
        self.assertEqual(both["s"]["y"], ms(1))
        nested = self.sj.deserialize(loads(v["cycleNested"]))
        self.assertIs(nested["inner"]["back"], nested["inner"])
        self.assertIs(nested["inner2"], nested["inner"])
        # superjson 2.2.7 also tracks identity of shared Dates; acyclic identity is not re-emitted.
        shared_date = self.sj.deserialize(
            loads(
                r'{"json":{"a":"1970-01-01T00:00:00.009Z","b":["1970-01-01T00:00:00.009Z"]},'
                r'"meta":{"values":{"a":["Date"],"b.0":["Date"]},"referentialEqualities":{"a":["b.0"]},"v":1}}'
            )
        )
        self.assertIs(shared_date["b"][0], shared_date["a"])
        self.assertEqual(shared_date["a"], ms(9))

    def test_executor_spec_legacy_input(self):
        """Executor spec §0: the frontend's getRootExecutions input (superjson 2.2.2, no v)."""
        text = r'{"json":{"flowId":"F","limit":100,"after":null},"meta":{"values":{"after":["undefined"]}}}'
        got = self.sj.deserialize(loads(text))
        self.assertEqual(got, {"flowId": "F", "limit": 100, "after": UNDEFINED})
        self.assertIn("after", got)
        self.assertEqual(
            dumps(self.sj.serialize(got)),
            r'{"json":{"flowId":"F","limit":100,"after":null},"meta":{"values":{"after":["undefined"]},"v":1}}',
        )


# -----------------------------------------------------------------------------------------------
# Paths and escaping
# -----------------------------------------------------------------------------------------------


class PathEscapingTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_encode_always_v1_escapes(self):
        p = self.sj.serialize({"a.b": ms(0), "c\\d": ms(0), "e\\.f": ms(1), "": ms(2)})
        self.assertEqual(
            list(p["meta"]["values"]),
            ["a\\.b", "c\\\\d", "e\\\\\\.f", ""],
        )
        self.assertEqual(p["meta"]["v"], 1)

    def test_legacy_escaped_dot(self):
        payload = {"json": {"a.b": "1970-01-01T00:00:00.000Z"}, "meta": {"values": {"a\\.b": ["Date"]}}}
        self.assertEqual(self.sj.deserialize(payload), {"a.b": ms(0)})

    def test_legacy_backslash_is_literal(self):
        # Legacy: a single backslash not followed by "." is part of the key.
        payload = {"json": {"c\\d": "1970-01-01T00:00:00.000Z"}, "meta": {"values": {"c\\d": ["Date"]}}}
        self.assertEqual(self.sj.deserialize(payload), {"c\\d": ms(0)})
        # ...so a doubled backslash means two backslashes, which is not the key.
        payload = {"json": {"c\\d": "x"}, "meta": {"values": {"c\\\\d": ["Date"]}}}
        e = self.assertRaises(SuperJSONError, self.sj.deserialize, payload)
        self.assertIn("not found", str(e))

    def test_v1_backslash_escapes(self):
        payload = {
            "json": {"c\\d": "1970-01-01T00:00:00.000Z"},
            "meta": {"values": {"c\\\\d": ["Date"]}, "v": 1},
        }
        self.assertEqual(self.sj.deserialize(payload), {"c\\d": ms(0)})

    def test_v1_rejects_unknown_escape(self):
        payload = {
            "json": {"c\\d": "1970-01-01T00:00:00.000Z"},
            "meta": {"values": {"c\\d": ["Date"]}, "v": 1},
        }
        e = self.assertRaises(SuperJSONError, self.sj.deserialize, payload)
        self.assertIn('meta.values path "c\\d"', str(e))
        self.assertIn("invalid escape", str(e))

    def test_same_path_differs_between_legacy_and_v1(self):
        # Path text  a\\.b  : v1 -> ["a\\", "b"] ; legacy -> ["a\\.b"]
        path = "a\\\\.b"
        v1 = {
            "json": {"a\\": {"b": "1970-01-01T00:00:00.000Z"}},
            "meta": {"values": {path: ["Date"]}, "v": 1},
        }
        self.assertEqual(self.sj.deserialize(v1), {"a\\": {"b": ms(0)}})
        legacy = {"json": {"a\\.b": "1970-01-01T00:00:00.000Z"}, "meta": {"values": {path: ["Date"]}}}
        self.assertEqual(self.sj.deserialize(legacy), {"a\\.b": ms(0)})

    def test_trailing_backslash_in_v1(self):
        payload = {"json": {"a\\": 1}, "meta": {"values": {"a\\": ["bigint"]}, "v": 1}}
        e = self.assertRaises(SuperJSONError, self.sj.deserialize, payload)
        self.assertIn("invalid escape", str(e))

    def test_nested_tree_object_form(self):
        # {"a": {"b": [...]}} is the same as {"a.b": [...]}.
        payload = {"json": {"a": {"b": "5"}}, "meta": {"values": {"a": {"b": ["bigint"]}}, "v": 1}}
        self.assertEqual(self.sj.deserialize(payload), {"a": {"b": 5}})

    def test_annotation_key_order_like_js(self):
        value = {"b": ms(0), "1": ms(1), "c": {"x": ms(2)}, "10": ms(3), "2": ms(4), "01": ms(5)}
        self.assertEqual(
            list(self.sj.serialize(value)["meta"]["values"]),
            ["1", "2", "10", "b", "c.x", "01"],
        )
        self.assertEqual(
            list(self.sj.serialize([ms(0), {"a": ms(1)}, ms(2)])["meta"]["values"]),
            ["0", "2", "1.a"],
        )


# -----------------------------------------------------------------------------------------------
# Types
# -----------------------------------------------------------------------------------------------


class ContainerTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def roundtrip(self, value):
        return self.sj.deserialize(loads(dumps(self.sj.serialize(value))))

    def test_nested_map_set_bigint(self):
        value = JSMap([("k", JSSet([BigInt(1), 2**60, "s"])), ("n", JSMap([(ms(5), {"d": ms(6)})]))])
        p = self.sj.serialize(value)
        self.assertEqual(
            p["meta"]["values"],
            [
                "map",
                {
                    "0.1": ["set", {"0": ["bigint"], "1": ["bigint"]}],
                    "1.1": ["map", {"0.0": ["Date"], "0.1.d": ["Date"]}],
                },
            ],
        )
        back = self.roundtrip(value)
        self.assertEqual(back, value)
        self.assertIsInstance(back.get("k").items[1], BigInt)

    def test_map_with_object_keys(self):
        value = JSMap([({"id": 1}, "x"), ([1, 2], ms(0)), (None, UNDEFINED)])
        p = self.sj.serialize(value)
        self.assertEqual(p["json"], [[{"id": 1}, "x"], [[1, 2], "1970-01-01T00:00:00.000Z"], [None, None]])
        self.assertEqual(p["meta"]["values"], ["map", {"1.1": ["Date"], "2.1": ["undefined"]}])
        back = self.roundtrip(value)
        self.assertEqual(back, value)
        self.assertEqual(back.get({"id": 1}), "x")
        self.assertEqual(back.get([1, 2]), ms(0))
        self.assertIs(back.get(None, "missing"), UNDEFINED)
        self.assertEqual(back.get({"id": 2}, "missing"), "missing")

    def test_map_keys_that_are_dates(self):
        value = JSMap([(ms(1), "one")])
        self.assertEqual(self.sj.serialize(value)["meta"]["values"], ["map", {"0.0": ["Date"]}])
        self.assertEqual(self.roundtrip(value).get(ms(1)), "one")

    def test_jsmap_api(self):
        m = JSMap.from_dict({"a": 1, "b": 2})
        self.assertEqual(len(m), 2)
        self.assertEqual(list(m), [("a", 1), ("b", 2)])
        self.assertEqual(m.items(), [("a", 1), ("b", 2)])
        m["a"] = 3
        m[{"k": 1}] = 4
        self.assertEqual(m["a"], 3)
        self.assertEqual(m[{"k": 1}], 4)
        self.assertIn({"k": 1}, m)
        self.assertEqual(m.keys(), ["a", "b", {"k": 1}])
        # Order does not matter for equality; True and 1 are different keys (as in JS).
        self.assertEqual(JSMap([(1, "a"), (2, "b")]), JSMap([(2, "b"), (1, "a")]))
        self.assertNotEqual(JSMap([(1, "a")]), JSMap([(True, "a")]))
        self.assertEqual(len(JSMap([(1, "a"), (1, "b")])), 1)
        self.assertEqual(JSMap([(1, "a"), (1, "b")])[1], "b")
        self.assertEqual(JSMap({"x": 1}).to_dict(), {"x": 1})
        self.assertEqual(pickle.loads(pickle.dumps(m)), m)

    def test_set_with_dict_elements(self):
        value = JSSet([{"a": 1}, {"b": ms(0)}, [1, 2]])
        p = self.sj.serialize(value)
        self.assertEqual(p["json"], [{"a": 1}, {"b": "1970-01-01T00:00:00.000Z"}, [1, 2]])
        self.assertEqual(p["meta"]["values"], ["set", {"1.b": ["Date"]}])
        self.assertEqual(self.roundtrip(value), value)

    def test_jsset_api(self):
        s = JSSet([1, True, 1.0, {"a": 1}, {"a": 1}, "x"])
        self.assertEqual(s.items, [1, True, {"a": 1}, "x"])
        self.assertEqual(JSSet([1, 2, 3]), {3, 2, 1})
        self.assertEqual(JSSet([1, 2, 3]), JSSet([3, 1, 2]))
        self.assertNotEqual(JSSet([1, 2]), JSSet([1, 3]))
        self.assertEqual(JSSet([{"a": 1}, [2]]), JSSet([[2], {"a": 1}]))
        self.assertIn({"a": 1}, s)
        s.add({"b": 2})
        s.add({"b": 2})
        self.assertEqual(len(s), 5)
        s.discard({"b": 2})
        self.assertEqual(len(s), 4)

    def test_python_sets_encode_as_set(self):
        p = self.sj.serialize({"s": {3}, "f": frozenset({"a"})})
        self.assertEqual(
            p, {"json": {"s": [3], "f": ["a"]}, "meta": {"values": {"s": ["set"], "f": ["set"]}, "v": 1}}
        )
        self.assertEqual(self.roundtrip({1, 2, 3}), {1, 2, 3})

    def test_decoded_set_keeps_equal_looking_elements(self):
        # A JS Set can hold two distinct objects that look equal.
        got = self.sj.deserialize(loads(r'{"json":[{"a":1},{"a":1}],"meta":{"values":["set"],"v":1}}'))
        self.assertEqual(len(got), 2)

    def test_tuple_encodes_as_array(self):
        self.assertEqual(self.sj.serialize((1, "a", None)), {"json": [1, "a", None]})
        p = self.sj.serialize({"t": (1, (2, ms(0)))})
        self.assertEqual(p["json"], {"t": [1, [2, "1970-01-01T00:00:00.000Z"]]})
        self.assertEqual(p["meta"]["values"], {"t.1.1": ["Date"]})

    def test_empty_containers(self):
        self.assertEqual(self.sj.serialize({}), {"json": {}})
        self.assertEqual(self.sj.serialize([]), {"json": []})
        self.assertEqual(
            self.sj.serialize({"m": JSMap(), "s": JSSet()}),
            {"json": {"m": [], "s": []}, "meta": {"values": {"m": ["map"], "s": ["set"]}, "v": 1}},
        )


class UndefinedTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_sentinel(self):
        self.assertFalse(UNDEFINED)
        self.assertEqual(repr(UNDEFINED), "undefined")
        self.assertEqual(UNDEFINED, UNDEFINED)
        self.assertIs(type(UNDEFINED)(), UNDEFINED)
        self.assertIs(copy.copy(UNDEFINED), UNDEFINED)
        self.assertIs(copy.deepcopy({"a": UNDEFINED})["a"], UNDEFINED)
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            self.assertIs(pickle.loads(pickle.dumps(UNDEFINED, proto)), UNDEFINED)
        self.assertNotEqual(UNDEFINED, None)

    def test_root(self):
        self.assertEqual(
            self.sj.serialize(UNDEFINED), {"json": None, "meta": {"values": ["undefined"], "v": 1}}
        )
        self.assertIs(
            self.sj.deserialize({"json": None, "meta": {"values": ["undefined"], "v": 1}}), UNDEFINED
        )

    def test_prop_keeps_key(self):
        got = self.sj.deserialize(self.sj.serialize({"a": UNDEFINED, "b": 1}))
        self.assertEqual(list(got), ["a", "b"])
        self.assertIs(got["a"], UNDEFINED)

    def test_array_slot_kept(self):
        got = self.sj.deserialize(loads(dumps(self.sj.serialize([UNDEFINED, 1, [UNDEFINED]]))))
        self.assertEqual(got, [UNDEFINED, 1, [UNDEFINED]])
        self.assertIs(got[0], UNDEFINED)

    def test_undefined_ignores_json_value(self):
        self.assertIs(self.sj.deserialize({"json": 5, "meta": {"values": ["undefined"]}}), UNDEFINED)


class NumberTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_special_floats(self):
        p = self.sj.serialize([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, -2.25])
        self.assertEqual(p["json"], ["NaN", "Infinity", "-Infinity", "-0", 0.0, 1.5, -2.25])
        self.assertEqual(
            p["meta"]["values"], {"0": ["number"], "1": ["number"], "2": ["number"], "3": ["number"]}
        )
        back = self.sj.deserialize(loads(dumps(p)))
        self.assertTrue(math.isnan(back[0]))
        self.assertEqual(back[1:3], [math.inf, -math.inf])
        self.assertEqual(math.copysign(1, back[3]), -1)
        self.assertEqual(math.copysign(1, back[4]), 1)
        self.assertEqual(dumps(self.sj.serialize(back)), dumps(p))

    def test_number_decoding_is_float(self):
        got = self.sj.deserialize(
            {"json": {"a": "Infinity", "b": 3}, "meta": {"values": {"a": ["number"], "b": ["number"]}}}
        )
        self.assertEqual(got, {"a": math.inf, "b": 3.0})
        self.assertIs(type(got["b"]), float)

    def test_big_ints(self):
        cases = {
            2**53 - 1: {"json": 2**53 - 1},
            -(2**53 - 1): {"json": -(2**53 - 1)},
            2**53: {"json": "9007199254740992", "meta": {"values": ["bigint"], "v": 1}},
            -(2**53): {"json": "-9007199254740992", "meta": {"values": ["bigint"], "v": 1}},
            10**100: {"json": str(10**100), "meta": {"values": ["bigint"], "v": 1}},
            BigInt(5): {"json": "5", "meta": {"values": ["bigint"], "v": 1}},
            BigInt(-7): {"json": "-7", "meta": {"values": ["bigint"], "v": 1}},
        }
        for value, expected in cases.items():
            self.assertEqual(self.sj.serialize(value), expected, value)
        back = self.sj.deserialize(loads(dumps(self.sj.serialize({"n": 2**64 + 1}))))
        self.assertEqual(back, {"n": 2**64 + 1})
        self.assertIs(type(back["n"]), BigInt)

    def test_bool_is_not_an_int(self):
        self.assertEqual(self.sj.serialize([True, False]), {"json": [True, False]})

    def test_bigint_type(self):
        b = BigInt(12)
        self.assertEqual(repr(b), "BigInt(12)")
        self.assertEqual(str(b), "12")
        self.assertEqual(f"{b}", "12")
        self.assertEqual(b, 12)
        self.assertIsInstance(b, int)
        self.assertEqual(pickle.loads(pickle.dumps(b)), b)
        self.assertIs(type(pickle.loads(pickle.dumps(b))), BigInt)

    def test_int_and_str_subclasses(self):
        import enum

        class Color(enum.IntEnum):
            RED = 1

        class Kind(str, enum.Enum):
            A = "a"

        p = self.sj.serialize({"c": Color.RED, "k": Kind.A, Kind.A: 1})
        self.assertEqual(p, {"json": {"c": 1, "k": "a", "a": 1}})
        self.assertIs(type(p["json"]["c"]), int)
        self.assertIs(type(p["json"]["k"]), str)
        self.assertEqual([type(k) for k in p["json"]], [str, str, str])


class DateTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def enc(self, v):
        return self.sj.serialize(v)["json"]

    def dec(self, s):
        return self.sj.deserialize({"json": s, "meta": {"values": ["Date"], "v": 1}})

    def test_ms_precision_truncates(self):
        self.assertEqual(
            self.enc(datetime(2024, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)), "2024-01-02T03:04:05.678Z"
        )
        self.assertEqual(self.enc(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)), "2024-01-02T03:04:05.000Z")

    def test_timezone_conversion(self):
        ist = timezone(timedelta(hours=5, minutes=30))
        self.assertEqual(
            self.enc(datetime(2024, 1, 2, 8, 34, 5, 678000, tzinfo=ist)), "2024-01-02T03:04:05.678Z"
        )
        pst = timezone(timedelta(hours=-8))
        self.assertEqual(self.enc(datetime(2023, 12, 31, 20, 0, tzinfo=pst)), "2024-01-01T04:00:00.000Z")
        self.assertEqual(
            self.enc(datetime(2024, 1, 1, tzinfo=timezone(timedelta(0)))), "2024-01-01T00:00:00.000Z"
        )

    def test_naive_is_utc(self):
        self.assertEqual(self.enc(datetime(2024, 1, 2, 3, 4, 5, 678000)), "2024-01-02T03:04:05.678Z")

    def test_small_years_and_conversion_overflow(self):
        self.assertEqual(self.enc(datetime(999, 1, 1, tzinfo=UTC)), "0999-01-01T00:00:00.000Z")
        self.assertEqual(self.enc(datetime(1, 1, 1)), "0001-01-01T00:00:00.000Z")
        # UTC conversion leaving Python's range gives the JS extended form.
        self.assertEqual(
            self.enc(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))),
            "+010000-01-01T04:00:00.000Z",
        )
        self.assertEqual(
            self.enc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))),
            "0000-12-31T19:00:00.000Z",
        )

    def test_decode(self):
        d = self.dec("2024-01-02T03:04:05.678Z")
        self.assertEqual(d, datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
        self.assertIs(d.tzinfo, UTC)
        self.assertEqual(d.microsecond, 678 * 1000)

    def test_decode_offsets_and_shapes(self):
        expected = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        for s in (
            "2024-01-02T08:34:05.678+05:30",
            "2024-01-01T19:04:05.678-08:00",
            "2024-01-02T03:04:05.678+00:00",
            "2024-01-02T03:04:05.678",  # no offset: UTC
            "2024-01-02T03:04:05.678901Z",  # sub-ms digits are dropped, like JS
            "+002024-01-02T03:04:05.678Z",  # extended form, year Python can hold
        ):
            d = self.dec(s)
            self.assertEqual(d, expected, s)
            self.assertIs(d.tzinfo, UTC, s)
        self.assertEqual(self.dec("2024-01-02T03:04:05Z"), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        self.assertEqual(self.dec("2024-01-02"), datetime(2024, 1, 2, tzinfo=UTC))

    def test_extended_years_via_jsdate(self):
        for s in (
            "+012345-06-07T08:09:10.011Z",
            "-000001-01-01T00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "+275760-09-13T00:00:00.000Z",
            "-271821-04-20T00:00:00.000Z",
        ):
            d = self.dec(s)
            self.assertIsInstance(d, JSDate, s)
            self.assertEqual(d.iso, s)
            self.assertEqual(self.sj.serialize(d), {"json": s, "meta": {"values": ["Date"], "v": 1}})
        self.assertEqual(JSDate.from_epoch_ms(8_640_000_000_000_000).iso, "+275760-09-13T00:00:00.000Z")
        self.assertEqual(JSDate.from_epoch_ms(-1).iso, "1969-12-31T23:59:59.999Z")
        self.assertEqual(JSDate("-000001-01-01T00:00:00.000Z").epoch_ms, -62198755200000)
        self.assertEqual(JSDate("0000-01-01T00:00:00Z"), JSDate("0000-01-01T00:00:00.000Z"))
        self.assertEqual(
            JSDate("2024-01-02T03:04:05.678Z").to_datetime(),
            datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        )
        self.assertEqual(
            pickle.loads(pickle.dumps(JSDate("+012345-06-07T08:09:10.011Z"))).iso,
            "+012345-06-07T08:09:10.011Z",
        )
        for bad in (
            "+275760-09-13T00:00:00.001Z",
            "-000000-01-01T00:00:00.000Z",
            "2024-02-30T00:00:00Z",
            "nope",
        ):
            self.assertRaises(ValueError, JSDate, bad)

    def test_date_and_time_objects_rejected(self):
        e = self.assertRaises(TypeError, self.sj.serialize, {"d": date(2024, 1, 2)})
        self.assertIn("datetime.date", str(e))
        self.assertIn('path "d"', str(e))
        self.assertRaises(TypeError, self.sj.serialize, time(1, 2))


class RegExpUrlErrorTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_regexp_with_slash_in_body(self):
        got = self.sj.deserialize(
            loads(r'{"json":["/a\\/b/g","/x/y/z/i"],"meta":{"values":{"0":["regexp"],"1":["regexp"]},"v":1}}')
        )
        self.assertEqual(got, [JSRegExp("a\\/b", "g"), JSRegExp("x/y/z", "i")])
        self.assertEqual(str(got[0]), "/a\\/b/g")
        self.assertEqual(self.sj.serialize(got)["json"], ["/a\\/b/g", "/x/y/z/i"])
        self.assertEqual(
            self.sj.serialize(JSRegExp("(?:)")), {"json": "/(?:)/", "meta": {"values": ["regexp"], "v": 1}}
        )

    def test_url(self):
        p = self.sj.serialize({"u": JSURL("https://example.com/a?b=c")})
        self.assertEqual(p["meta"]["values"], {"u": ["URL"]})
        back = self.sj.deserialize(p)
        self.assertIs(type(back["u"]), JSURL)
        self.assertEqual(back["u"], "https://example.com/a?b=c")

    def test_error_with_date_cause(self):
        value = {"e": JSError("Error", "x", cause=ms(5))}
        p = self.sj.serialize(value)
        self.assertEqual(
            dumps(p),
            r'{"json":{"e":{"name":"Error","message":"x","cause":"1970-01-01T00:00:00.005Z"}},'
            r'"meta":{"values":{"e":["Error",{"cause":["Date"]}]},"v":1}}',
        )
        self.assertEqual(self.sj.deserialize(p), value)

    def test_error_with_error_cause_and_extra_props(self):
        value = JSError(
            "TypeError", "bad", cause=JSError("Error", "inner"), extra={"code": "E1", "at": ms(1)}
        )
        p = self.sj.serialize(value)
        self.assertEqual(
            p,
            {
                "json": {
                    "name": "TypeError",
                    "message": "bad",
                    "cause": {"name": "Error", "message": "inner"},
                    "code": "E1",
                    "at": "1970-01-01T00:00:00.001Z",
                },
                "meta": {"values": ["Error", {"cause": ["Error"], "at": ["Date"]}], "v": 1},
            },
        )
        self.assertEqual(self.sj.deserialize(loads(dumps(p))), value)

    def test_error_without_cause_and_undefined_cause(self):
        self.assertEqual(self.sj.serialize(JSError("Error", "m"))["json"], {"name": "Error", "message": "m"})
        present = JSError("Error", "m", has_cause=True)
        self.assertEqual(
            self.sj.serialize(present),
            {
                "json": {"name": "Error", "message": "m", "cause": None},
                "meta": {"values": ["Error", {"cause": ["undefined"]}], "v": 1},
            },
        )

    def test_python_exceptions(self):
        p = self.sj.serialize({"err": ValueError("boom"), "k": KeyError("x")})
        self.assertEqual(
            p,
            {
                "json": {
                    "err": {"name": "ValueError", "message": "boom"},
                    "k": {"name": "KeyError", "message": "'x'"},
                },
                "meta": {"values": {"err": ["Error"], "k": ["Error"]}, "v": 1},
            },
        )
        self.assertEqual(self.sj.deserialize(p)["err"], JSError("ValueError", "boom"))
        self.assertEqual(JSError.from_exception(RuntimeError("r")), JSError("RuntimeError", "r"))

    def test_typed_arrays(self):
        value = {
            "f": JSTypedArray("Float32Array", [1.5, math.nan, -0.0, math.inf, 2]),
            "b": JSTypedArray("BigUint64Array", [1, 2**64 - 1]),
        }
        p = self.sj.serialize(value)
        self.assertEqual(
            p["json"], {"f": [1.5, "NaN", "-0", "Infinity", 2], "b": ["1", "18446744073709551615"]}
        )
        self.assertEqual(
            p["meta"]["values"],
            {"f": [["typed-array", "Float32Array"]], "b": [["typed-array", "BigUint64Array"]]},
        )
        self.assertEqual(dumps(self.sj.serialize(self.sj.deserialize(loads(dumps(p))))), dumps(p))
        self.assertRaises(TypeError, self.sj.serialize, JSTypedArray("Float16Array", [1]))


# -----------------------------------------------------------------------------------------------
# Registries
# -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExecutionEvent:
    """Shaped like ChainGraph's ExecutionEventImpl (executor spec §3)."""

    index: int
    type: str
    timestamp: datetime
    data: dict


@dataclasses.dataclass
class Ev:
    name: str
    at: datetime
    tags: set
    inner: Ev | None = None


class RegistryTests(unittest.TestCase):
    def make_event_codec(self) -> SuperJSON:
        sj = SuperJSON()
        sj.register_custom(
            "BaseNode",
            is_applicable=lambda v: False,
            serialize=lambda v: v,
            deserialize=lambda v: {"node": v},
        )
        inner = sj

        def ser(ev: ExecutionEvent):
            # @HEAD shape: data is a nested {json, meta} object; timestamp an un-walked Date.
            return {
                "index": ev.index,
                "type": ev.type,
                "timestamp": ev.timestamp,
                "data": inner.serialize(ev.data),
            }

        def de(v):
            data = v["data"]
            if isinstance(data, str):  # @960 shape: data is SuperJSON.stringify(data)
                data = orjson.loads(data)
            return ExecutionEvent(v["index"], v["type"], v["timestamp"], inner.deserialize(data))

        sj.register_custom(
            "ExecutionEventImpl",
            is_applicable=lambda v: isinstance(v, ExecutionEvent),
            serialize=ser,
            deserialize=de,
        )
        return sj

    def test_custom_value_is_not_walked(self):
        sj = self.make_event_codec()
        ts = datetime(2024, 1, 2, tzinfo=UTC)
        ev = ExecutionEvent(1, "node:failed", ts, {"error": JSError("Error", "boom"), "executionTime": 5})
        p = sj.serialize([ev])
        self.assertEqual(p["meta"], {"values": {"0": [["custom", "ExecutionEventImpl"]]}, "v": 1})
        out = p["json"][0]
        self.assertIs(out["timestamp"], ts)  # left for the JSON encoder, like JS JSON.stringify
        self.assertEqual(
            out["data"],
            {
                "json": {"error": {"name": "Error", "message": "boom"}, "executionTime": 5},
                "meta": {"values": {"error": ["Error"]}, "v": 1},
            },
        )
        back = sj.deserialize(loads(dumps(p)))
        self.assertEqual(back[0].data, {"error": JSError("Error", "boom"), "executionTime": 5})
        self.assertEqual(back[0].timestamp, "2024-01-02T00:00:00+00:00")  # orjson's own datetime text

    def test_executor_spec_960_event_payload(self):
        """Executor spec §0 example (superjson 2.2.2, legacy, data as a JSON string)."""
        sj = self.make_event_codec()
        data = (
            '{"json":{"node":{"id":"n1","metadata":{"type":"X"}},"error":{"name":"Error","message":"boom"},'
            '"executionTime":5},"meta":{"values":{"node":[["custom","BaseNode"]],"error":["Error"]}}}'
        )
        payload = {
            "json": [
                {"index": 1, "type": "node:failed", "timestamp": "1970-01-01T00:00:00.000Z", "data": data}
            ],
            "meta": {"values": {"0": [["custom", "ExecutionEventImpl"]]}},
        }
        (ev,) = sj.deserialize(loads(dumps(payload)))
        self.assertEqual(ev.index, 1)
        self.assertEqual(ev.timestamp, "1970-01-01T00:00:00.000Z")
        self.assertEqual(ev.data["error"], JSError("Error", "boom"))
        self.assertEqual(ev.data["node"], {"node": {"id": "n1", "metadata": {"type": "X"}}})

    def test_custom_precedence_and_order(self):
        sj = SuperJSON()
        sj.register_custom(
            "first",
            is_applicable=lambda v: isinstance(v, datetime),
            serialize=lambda v: "F",
            deserialize=lambda v: v,
        )
        sj.register_custom(
            "second",
            is_applicable=lambda v: isinstance(v, datetime),
            serialize=lambda v: "S",
            deserialize=lambda v: v,
        )
        self.assertEqual(
            sj.serialize(ms(0)), {"json": "F", "meta": {"values": [["custom", "first"]], "v": 1}}
        )
        # Re-registering a name replaces it in place.
        sj.register_custom(
            "first", is_applicable=lambda v: False, serialize=lambda v: "X", deserialize=lambda v: v
        )
        self.assertEqual(sj.serialize(ms(0))["json"], "S")

    def test_custom_for_containers(self):
        sj = SuperJSON()
        sj.register_custom(
            "tagged",
            is_applicable=lambda v: isinstance(v, dict) and "__tag" in v,
            serialize=lambda v: v["__tag"],
            deserialize=lambda v: {"__tag": v},
        )
        p = sj.serialize({"a": {"__tag": "t"}, "b": [{"__tag": "u"}]})
        self.assertEqual(p["json"], {"a": "t", "b": ["u"]})
        self.assertEqual(p["meta"]["values"], {"a": [["custom", "tagged"]], "b.0": [["custom", "tagged"]]})
        self.assertEqual(sj.deserialize(p), {"a": {"__tag": "t"}, "b": [{"__tag": "u"}]})

    def test_class_with_nested_date_props(self):
        sj = SuperJSON()
        sj.register_class("Ev", Ev)
        value = Ev("a", ms(1), {"x"}, inner=Ev("b", ms(2), set()))
        p = sj.serialize({"ev": value})
        self.assertEqual(
            p,
            {
                "json": {
                    "ev": {
                        "name": "a",
                        "at": "1970-01-01T00:00:00.001Z",
                        "tags": ["x"],
                        "inner": {"name": "b", "at": "1970-01-01T00:00:00.002Z", "tags": [], "inner": None},
                    }
                },
                "meta": {
                    "values": {
                        "ev": [
                            ["class", "Ev"],
                            {
                                "at": ["Date"],
                                "tags": ["set"],
                                "inner": [["class", "Ev"], {"at": ["Date"], "tags": ["set"]}],
                            },
                        ]
                    },
                    "v": 1,
                },
            },
        )
        back = sj.deserialize(loads(dumps(p)))["ev"]
        self.assertIsInstance(back, Ev)
        self.assertEqual(back, value)
        self.assertIsInstance(back.inner, Ev)

    def test_class_custom_props(self):
        class Money:
            def __init__(self, cents):
                self.cents = cents

        sj = SuperJSON()
        sj.register_class(
            "Money",
            Money,
            to_props=lambda m: {"amount": m.cents / 100},
            from_props=lambda p: Money(round(p["amount"] * 100)),
        )
        p = sj.serialize(Money(1250))
        self.assertEqual(p, {"json": {"amount": 12.5}, "meta": {"values": [["class", "Money"]], "v": 1}})
        self.assertEqual(sj.deserialize(p).cents, 1250)

    def test_class_registration_rules(self):
        sj = SuperJSON()
        self.assertRaises(ValueError, sj.register_class, "D", dict)
        sj.register_class("P", Point)
        self.assertRaises(ValueError, sj.register_class, "P", Ev)
        # Subclasses are not matched (superjson matches the exact constructor).
        sub = type("SubPoint", (Point,), {})
        self.assertRaises(TypeError, sj.serialize, sub(x=1))
        # The default from_props refuses dunder attributes.
        e = self.assertRaises(
            SuperJSONError,
            sj.deserialize,
            {"json": {"__class__": 1}, "meta": {"values": [["class", "P"]], "v": 1}},
        )
        self.assertIn('class "P" could not be rebuilt', str(e))

    def test_symbols(self):
        sj = SuperJSON()
        token = object()
        sj.register_symbol("tok", token, description="my token")
        p = sj.serialize({"t": token})
        self.assertEqual(
            p, {"json": {"t": "my token"}, "meta": {"values": {"t": [["symbol", "tok"]]}, "v": 1}}
        )
        self.assertIs(sj.deserialize(p)["t"], token)
        self.assertRaises(ValueError, sj.register_symbol, "s", "a string")

    def test_pydantic_models_are_dumped(self):
        try:
            import pydantic
        except ImportError:  # pragma: no cover
            raise unittest.SkipTest("pydantic not installed") from None

        class M(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(populate_by_name=True)
            flow_id: str = pydantic.Field(alias="flowId")
            at: datetime
            tags: set[str] = set()

        p = SuperJSON().serialize({"m": M(flowId="F", at=ms(0), tags={"a"})})
        self.assertEqual(
            p,
            {
                "json": {"m": {"flowId": "F", "at": "1970-01-01T00:00:00.000Z", "tags": ["a"]}},
                "meta": {"values": {"m.at": ["Date"], "m.tags": ["set"]}, "v": 1},
            },
        )

    def test_model_dump_duck_typing(self):
        class Fake:
            def model_dump(self, mode, by_alias):
                assert mode == "python" and by_alias
                return {"x": ms(0)}

        self.assertEqual(SuperJSON().serialize(Fake())["meta"]["values"], {"x": ["Date"]})

    def test_unregistered_dataclass_is_rejected(self):
        e = self.assertRaises(TypeError, SuperJSON().serialize, {"ev": [Ev("a", ms(0), set())]})
        self.assertIn("dataclass", str(e))
        self.assertIn('path "ev.0"', str(e))

    def test_default_instance_and_module_functions(self):
        self.assertEqual(sjmod.serialize({"a": ms(0)}), sjmod.default.serialize({"a": ms(0)}))
        self.assertEqual(sjmod.deserialize({"json": 1}), 1)


# -----------------------------------------------------------------------------------------------
# Referential equalities / cycles
# -----------------------------------------------------------------------------------------------


class ReferentialEqualityTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_object_form(self):
        got = self.sj.deserialize(
            loads(
                r'{"json":{"a":{"x":1},"b":[{"x":1}]},"meta":{"referentialEqualities":{"a":["b.0"]},"v":1}}'
            )
        )
        self.assertIs(got["b"][0], got["a"])

    def test_root_array_form_with_record(self):
        got = self.sj.deserialize(
            loads(
                r'{"json":{"me":null,"s":{"y":1},"t":{"y":1},"l":[null]},"meta":{"referentialEqualities":[["me","l.0"],{"s":["t"]}],"v":1}}'
            )
        )
        self.assertIs(got["me"], got)
        self.assertIs(got["l"][0], got)
        self.assertIs(got["t"], got["s"])

    def test_refs_after_values(self):
        # Values are converted first; identity then points at the converted object.
        got = self.sj.deserialize(
            loads(
                r'{"json":{"a":[1],"b":[1]},"meta":{"values":{"a":["set"],"b":["set"]},"referentialEqualities":{"a":["b"]},"v":1}}'
            )
        )
        self.assertIs(got["a"], got["b"])
        self.assertIsInstance(got["a"], JSSet)

    def test_cycle_roundtrip(self):
        value = {"name": "c", "items": []}
        value["items"].append(value)
        value["self"] = value
        p = self.sj.serialize(value)
        self.assertEqual(
            dumps(p),
            r'{"json":{"name":"c","items":[null],"self":null},"meta":{"referentialEqualities":[["self","items.0"]],"v":1}}',
        )
        back = self.sj.deserialize(loads(dumps(p)))
        self.assertIs(back["self"], back)
        self.assertIs(back["items"][0], back)

    def test_cycle_with_dates_and_direct_python_roundtrip(self):
        shared = {"d": ms(3)}
        value = {"a": shared, "b": shared, "loop": None}
        value["loop"] = value
        p = self.sj.serialize(value)
        self.assertEqual(p["meta"]["values"], {"a.d": ["Date"], "b.d": ["Date"]})
        self.assertEqual(p["meta"]["referentialEqualities"], [["loop"], {"a": ["b"]}])
        back = self.sj.deserialize(p)  # straight from the dict, no JSON text in between
        self.assertIs(back["loop"], back)
        self.assertIs(back["a"], back["b"])
        self.assertEqual(back["a"]["d"], ms(3))
        self.assertEqual(value["a"]["d"], ms(3))  # input untouched

    def test_cycle_through_list_and_map(self):
        lst: list = [1]
        lst.append(lst)
        self.assertEqual(
            dumps(self.sj.serialize(lst)), r'{"json":[1,null],"meta":{"referentialEqualities":[["1"]],"v":1}}'
        )
        m = JSMap()
        m["self"] = m
        p = self.sj.serialize(m)
        self.assertEqual(
            dumps(p),
            r'{"json":[["self",null]],"meta":{"values":["map"],"referentialEqualities":[["0.1"]],"v":1}}',
        )
        back = self.sj.deserialize(p)
        self.assertIs(back["self"], back)

    def test_shared_acyclic_not_emitted(self):
        shared = {"x": ms(0)}
        p = self.sj.serialize({"a": shared, "b": shared})
        self.assertNotIn("referentialEqualities", p["meta"])
        self.assertEqual(p["meta"]["values"], {"a.x": ["Date"], "b.x": ["Date"]})
        self.assertIsNot(p["json"]["a"], p["json"]["b"])

    def test_deep_values(self):
        deep: list = []
        cur = deep
        for _ in range(150):
            nxt: list = []
            cur.append(nxt)
            cur = nxt
        cur.append(ms(0))
        p = self.sj.serialize(deep)
        self.assertEqual(list(p["meta"]), ["values", "v"])
        self.assertEqual(p["meta"]["values"], {".".join(["0"] * 151): ["Date"]})
        very: list = []
        cur = very
        for _ in range(sys.getrecursionlimit() * 2):
            nxt = []
            cur.append(nxt)
            cur = nxt
        e = self.assertRaises(ValueError, self.sj.serialize, very)
        self.assertIn("nested too deeply", str(e))


# -----------------------------------------------------------------------------------------------
# Copy behaviour
# -----------------------------------------------------------------------------------------------


class NoCopyTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_plain_value_returned_untouched(self):
        value = {"a": [1, 2, {"b": "c"}], "d": None, "e": 1.5}
        self.assertIs(self.sj.serialize(value)["json"], value)
        lst = [1, "x", [True]]
        self.assertIs(self.sj.serialize(lst)["json"], lst)

    def test_only_changed_path_is_copied(self):
        untouched = {"x": [1, 2, 3]}
        inner = {"at": ms(0), "n": 1}
        value = {"plain": untouched, "inner": inner}
        p = self.sj.serialize(value)
        self.assertIsNot(p["json"], value)
        self.assertIs(p["json"]["plain"], untouched)
        self.assertIsNot(p["json"]["inner"], inner)
        self.assertEqual(inner["at"], ms(0))  # input not mutated
        self.assertEqual(value["inner"], {"at": ms(0), "n": 1})

    def test_deserialize_without_meta_returns_json(self):
        j = {"a": [1, 2]}
        self.assertIs(self.sj.deserialize({"json": j}), j)
        self.assertIs(self.sj.deserialize({"json": j, "meta": None}), j)
        self.assertIs(self.sj.deserialize({"json": j, "meta": {"v": 1}}), j)

    def test_deserialize_in_place_or_copy(self):
        payload = {"json": {"a": "1970-01-01T00:00:00.000Z"}, "meta": {"values": {"a": ["Date"]}, "v": 1}}
        kept = loads(dumps(payload))
        got = self.sj.deserialize(kept, copy=True)
        self.assertEqual(got, {"a": ms(0)})
        self.assertEqual(kept, payload)
        got = self.sj.deserialize(kept)
        self.assertIs(got, kept["json"])

    def test_python_direct_roundtrip_leaves_input_alone(self):
        value = {"a": {"d": ms(0), "plain": {"k": 1}}, "u": UNDEFINED}
        snapshot = copy.deepcopy(value)
        back = self.sj.deserialize(self.sj.serialize(value))
        self.assertEqual(back, value)
        self.assertEqual(value, snapshot)


# -----------------------------------------------------------------------------------------------
# Round trip of everything together
# -----------------------------------------------------------------------------------------------


class RoundTripTests(unittest.TestCase):
    def test_everything(self):
        sj = make_codec()
        sj.register_class("Ev", Ev)
        value = {
            "str": "s",
            "int": 1,
            "neg": -5,
            "float": 2.5,
            "bool": False,
            "none": None,
            "big": 2**70,
            "bigint": BigInt(3),
            "date": datetime(2024, 5, 6, 7, 8, 9, 10000, tzinfo=UTC),
            "jsdate": JSDate("+020000-01-01T00:00:00.000Z"),
            "undef": UNDEFINED,
            "list": [1, [2, [ms(1), UNDEFINED]], {"deep": {"er": BigInt(9)}}],
            "set": JSSet([1, "two", ms(2), {"three": 3}]),
            "map": JSMap([("a", 1), ({"obj": True}, JSSet([BigInt(1)])), (ms(3), JSMap([(1, 2)]))]),
            "re": JSRegExp("^a.*b$", "im"),
            "err": JSError(
                "RangeError", "out", cause=JSError("Error", "why", cause=ms(4)), extra={"code": 7}
            ),
            "url": JSURL("https://x.y/?q=1"),
            "typed": JSTypedArray("Int16Array", [-1, 0, 1]),
            "cls": Point(x=1, when=ms(5), tags=JSSet(["t"])),
            "ev": Ev("e", ms(6), {"a"}),
            "custom": b"\x00\x01",
            "sym": SYM,
            "dotted.key": {"back\\slash": ms(7)},
            "": {"": ms(8)},
        }
        p = sj.serialize(value)
        back = sj.deserialize(loads(dumps(p)))
        self.assertEqual(back, value)
        self.assertEqual(dumps(sj.serialize(back)), dumps(p))
        self.assertEqual(sj.serialize(copy.deepcopy(value, {id(SYM): SYM})), p)


# -----------------------------------------------------------------------------------------------
# Errors
# -----------------------------------------------------------------------------------------------

MALFORMED = [
    ("payload not an object", [1, 2], "payload must be an object, got array"),
    ("payload null", None, "payload must be an object, got null"),
    ("no json key", {"meta": {}}, 'no "json" key'),
    ("meta not an object", {"json": 1, "meta": "x"}, "meta must be an object, got string"),
    ("meta.v not a number", {"json": 1, "meta": {"values": ["bigint"], "v": "1"}}, "meta.v must be a number"),
    (
        "values wrong shape",
        {"json": 1, "meta": {"values": "Date"}},
        "meta.values must be an object or an array, got string",
    ),
    (
        "values entry wrong shape",
        {"json": {"a": 1}, "meta": {"values": {"a": "Date"}}},
        'meta.values path "a": annotation must be an array or an object',
    ),
    (
        "empty annotation",
        {"json": 1, "meta": {"values": []}},
        "meta.values (root): annotation must be [type] or [type, children]",
    ),
    (
        "annotation too long",
        {"json": 1, "meta": {"values": ["Date", {}, 3]}},
        "annotation must be [type] or [type, children]",
    ),
    (
        "children not an object",
        {"json": [], "meta": {"values": ["map", []]}},
        "annotation children must be an object, got array",
    ),
    (
        "key not found",
        {"json": {"a": 1}, "meta": {"values": {"b": ["Date"]}}},
        "meta.values path \"b\": key 'b' not found in json",
    ),
    (
        "intermediate key not found",
        {"json": {"a": {}}, "meta": {"values": {"a.x.y": ["Date"]}}},
        "meta.values path \"a.x.y\": key 'x' not found",
    ),
    (
        "index out of range",
        {"json": {"l": [1]}, "meta": {"values": {"l.5": ["bigint"]}}},
        'meta.values path "l.5": index 5 out of range for array of length 1',
    ),
    (
        "non-index into array",
        {"json": {"l": [1]}, "meta": {"values": {"l.x": ["bigint"]}}},
        "segment 'x' is not an index into array",
    ),
    (
        "descend into scalar",
        {"json": {"a": 1}, "meta": {"values": {"a.b": ["Date"]}}},
        'meta.values path "a.b": cannot descend into number',
    ),
    (
        "unknown type",
        {"json": {"a": {"b": 1}}, "meta": {"values": {"a.b": ["foo"]}}},
        'meta.values path "a.b": unknown type annotation "foo"',
    ),
    (
        "unknown composite type",
        {"json": 1, "meta": {"values": [["weird", "x"]]}},
        'unknown type annotation "weird"',
    ),
    (
        "malformed composite type",
        {"json": 1, "meta": {"values": [["custom"]]}},
        "malformed type annotation ['custom']",
    ),
    (
        "bad Date string",
        {"json": {"d": "yesterday"}, "meta": {"values": {"d": ["Date"]}}},
        "meta.values path \"d\": invalid Date string 'yesterday'",
    ),
    (
        "impossible Date",
        {"json": "2024-02-30T00:00:00.000Z", "meta": {"values": ["Date"]}},
        "invalid Date string",
    ),
    (
        "Date not a string",
        {"json": 5, "meta": {"values": ["Date"]}},
        "Date value must be an ISO string, got number",
    ),
    (
        "unregistered custom",
        {"json": 1, "meta": {"values": [["custom", "Nope"]]}},
        'meta.values (root): unregistered custom type "Nope"',
    ),
    (
        "unregistered class",
        {"json": {"p": {}}, "meta": {"values": {"p": [["class", "Nope"]]}}},
        'meta.values path "p": unregistered class "Nope"',
    ),
    (
        "unregistered symbol",
        {"json": "s", "meta": {"values": [["symbol", "nope"]]}},
        'unregistered symbol "nope"',
    ),
    (
        "bad bigint string",
        {"json": {"n": "12x"}, "meta": {"values": {"n": ["bigint"]}}},
        "meta.values path \"n\": invalid bigint '12x'",
    ),
    ("bigint float", {"json": 1.5, "meta": {"values": ["bigint"]}}, "invalid bigint 1.5"),
    ("bigint too long", {"json": "9" * 5000, "meta": {"values": ["bigint"]}}, "bigint string too long"),
    (
        "set not an array",
        {"json": {"s": {}}, "meta": {"values": {"s": ["set"]}}},
        'meta.values path "s": set value must be an array, got object',
    ),
    (
        "map entries not pairs",
        {"json": [[1, 2, 3]], "meta": {"values": ["map"]}},
        "map entry 0 is not a [key, value] pair",
    ),
    ("map not an array", {"json": {}, "meta": {"values": ["map"]}}, "map value must be an array"),
    ("bad number", {"json": "lots", "meta": {"values": ["number"]}}, "invalid number 'lots'"),
    ("bad regexp", {"json": "abc", "meta": {"values": ["regexp"]}}, "invalid regexp 'abc'"),
    ("bad regexp flags", {"json": "/a/Q", "meta": {"values": ["regexp"]}}, "invalid regexp flags 'Q'"),
    (
        "Error not an object",
        {"json": "boom", "meta": {"values": ["Error"]}},
        "Error value must be an object, got string",
    ),
    (
        "Error message not a string",
        {"json": {"name": "E", "message": 1}, "meta": {"values": ["Error"]}},
        "Error name and message must be strings",
    ),
    ("bad URL", {"json": "not a url", "meta": {"values": ["URL"]}}, "invalid URL 'not a url'"),
    (
        "unknown typed array",
        {"json": [1], "meta": {"values": [["typed-array", "Foo"]]}},
        'unknown typed array kind "Foo"',
    ),
    (
        "bad typed array element",
        {"json": ["x"], "meta": {"values": [["typed-array", "Uint8Array"]]}},
        "invalid Uint8Array element 'x'",
    ),
    (
        "v1 invalid escape",
        {"json": {"a": 1}, "meta": {"values": {"a\\x": ["Date"]}, "v": 1}},
        'meta.values path "a\\x": invalid escape "\\x"',
    ),
    (
        "map selector",
        {
            "json": {"m": [[1, {}]]},
            "meta": {"values": {"m": ["map"]}, "referentialEqualities": {"m.0.1": ["m.0.2"]}},
        },
        'meta.referentialEqualities path "m.0.2": Map entry selector must be 0 (key) or 1 (value)',
    ),
    (
        "refs wrong shape",
        {"json": {}, "meta": {"referentialEqualities": "a"}},
        "meta.referentialEqualities must map paths to arrays of paths",
    ),
    (
        "refs targets wrong shape",
        {"json": {"a": 1}, "meta": {"referentialEqualities": {"a": "b"}}},
        'meta.referentialEqualities path "a": expected an array of path strings',
    ),
    (
        "refs path not found",
        {"json": {"a": {}}, "meta": {"referentialEqualities": {"a": ["b.c"]}}},
        "meta.referentialEqualities path \"b.c\": key 'b' not found",
    ),
    (
        "refs root form too long",
        {"json": {}, "meta": {"referentialEqualities": [[], {}, 1]}},
        "array form must be [rootPaths] or [rootPaths, record]",
    ),
]


class MalformedTests(unittest.TestCase):
    def setUp(self):
        self.sj = SuperJSON()

    def test_malformed_payloads(self):
        for name, payload, message in MALFORMED:
            e = self.assertRaises(SuperJSONError, self.sj.deserialize, payload)
            self.assertIsInstance(e, ValueError)
            self.assertIn(message, str(e), name)

    def test_failing_custom_deserializer_is_wrapped(self):
        sj = SuperJSON()
        sj.register_custom("num", is_applicable=lambda v: False, serialize=str, deserialize=int)
        e = self.assertRaises(
            SuperJSONError,
            sj.deserialize,
            {"json": {"n": "x"}, "meta": {"values": {"n": [["custom", "num"]]}}},
        )
        self.assertIn('meta.values path "n": custom type "num" could not deserialize the value', str(e))
        self.assertIsInstance(e.__cause__, ValueError)

    def test_deeply_nested_meta(self):
        tree: dict = {"a": ["Date"]}
        for _ in range(sys.getrecursionlimit()):
            tree = {"a": tree}
        j: dict = {}
        cur = j
        for _ in range(sys.getrecursionlimit() + 1):
            cur["a"] = {}
            cur = cur["a"]
        e = self.assertRaises(SuperJSONError, self.sj.deserialize, {"json": j, "meta": {"values": tree}})
        self.assertIn("nested too deeply", str(e))

    def test_non_str_dict_key(self):
        e = self.assertRaises(TypeError, self.sj.serialize, {"a": {"ok": 1, 1: "x"}})
        self.assertIn("dict key 1 of type int is not a str", str(e))
        self.assertIn('path "a"', str(e))
        e = self.assertRaises(TypeError, self.sj.serialize, {(1, 2): "x"})
        self.assertIn("the root", str(e))

    def test_unknown_type_mentions_path(self):
        class Thing:
            pass

        e = self.assertRaises(TypeError, self.sj.serialize, {"a": [1, {"b.c": Thing()}]})
        msg = str(e)
        self.assertIn("Thing", msg)
        self.assertIn('path "a.1.b\\.c"', msg)
        e = self.assertRaises(TypeError, self.sj.serialize, JSMap([("k", object())]))
        self.assertIn('path "0.1"', str(e))
        self.assertIn("object", str(e))
        e = self.assertRaises(TypeError, self.sj.serialize, {"e": JSError("E", "m", extra={"x": {1j}})})
        self.assertIn('path "e.x.0"', str(e))
        e = self.assertRaises(TypeError, self.sj.serialize, b"bytes")
        self.assertIn("bytes", str(e))
        self.assertIn("the root", str(e))

    def test_error_messages_clip_payload_text(self):
        long = "x" * 10_000
        e = self.assertRaises(
            SuperJSONError, self.sj.deserialize, {"json": long, "meta": {"values": ["Date"]}}
        )
        self.assertLess(len(str(e)), 300)
        e = self.assertRaises(
            SuperJSONError, self.sj.deserialize, {"json": {}, "meta": {"values": {long: ["Date"]}}}
        )
        self.assertLess(len(str(e)), 400)
        e = self.assertRaises(SuperJSONError, self.sj.deserialize, {"json": 1, "meta": {"values": [long]}})
        self.assertLess(len(str(e)), 300)

    def test_enum_members_in_cyclic_values_are_not_identities(self):
        import enum

        class Color(enum.IntEnum):
            RED = 1

        value = {"a": Color.RED, "b": Color.RED}
        value["self"] = value
        self.assertEqual(
            self.sj.serialize(value),
            {"json": {"a": 1, "b": 1, "self": None}, "meta": {"referentialEqualities": [["self"]], "v": 1}},
        )
