"""data nodes: ArrayLength, NumberToString (decimal.js formats), TextSearch, StringLength."""

from __future__ import annotations

import math

from twisted.trial.unittest import TestCase

from chaingraph_gw.nodes.sdk import UNSET

from .helpers import async_test
from .test_nodes_ctx import node_error, run_node


async def n2s(number: object, dp: object = -1, exp: object = False) -> str:
    ctx = await run_node("NumberToStringNode", {"number": number, "decimalPlaces": dp, "exponential": exp})
    return ctx.values["text"]


class ArrayLengthNodeTests(TestCase):
    @async_test
    async def test_length(self) -> None:
        self.assertEqual((await run_node("ArrayLengthNode", {"array": [1, 2, 3]})).values["length"], 3)
        self.assertEqual((await run_node("ArrayLengthNode", {"array": []})).values["length"], 0)
        for bad in (None, "abc", {"a": 1}, 5):
            self.assertEqual((await run_node("ArrayLengthNode", {"array": bad})).values["length"], 0)
        self.assertEqual((await run_node("ArrayLengthNode", {"array": UNSET})).values["length"], 0)


class NumberToStringNodeTests(TestCase):
    @async_test
    async def test_auto(self) -> None:
        self.assertEqual(await n2s(1e21), "1e+21")
        self.assertEqual(await n2s(1e-7), "1e-7")
        self.assertEqual(await n2s(123.456), "123.456")
        self.assertEqual(await n2s(5), "5")
        self.assertEqual(await n2s(0.1 + 0.2), "0.30000000000000004")
        self.assertEqual(await n2s(-0.0), "0")
        self.assertEqual(await n2s(math.nan), "NaN")
        self.assertEqual(await n2s(1.5, None), "1.5")  # null decimalPlaces means auto

    @async_test
    async def test_fixed_half_up(self) -> None:
        self.assertEqual(await n2s(1.005, 2), "1.01")
        self.assertEqual(await n2s(2.5, 0), "3")
        self.assertEqual(await n2s(1.5, 3), "1.500")
        self.assertEqual(await n2s(-1.005, 2), "-1.01")
        self.assertEqual(await n2s(1e21, 0), "1000000000000000000000")

    @async_test
    async def test_exponential(self) -> None:
        self.assertEqual(await n2s(12345, -1, True), "1.2345e+4")
        self.assertEqual(await n2s(12345, 2, True), "1.23e+4")
        self.assertEqual(await n2s(0.00015, 1, True), "1.5e-4")

    @async_test
    async def test_errors(self) -> None:
        self.assertEqual(await node_error("NumberToStringNode", {"number": None}),
                         "Expected a number to convert to a string")
        self.assertEqual(await node_error("NumberToStringNode", {"number": UNSET}),
                         "Expected a number to convert to a string")
        self.assertEqual(await node_error("NumberToStringNode", {"number": 1, "decimalPlaces": -2}),
                         "[DecimalError] Invalid argument: -2")
        self.assertEqual(await node_error("NumberToStringNode", {"number": "abc"}),
                         "[DecimalError] Invalid argument: abc")


class TextSearchNodeTests(TestCase):
    @async_test
    async def test_case_insensitive(self) -> None:
        ctx = await run_node("TextSearchNode", {"sourceText": "Hello World", "searchText": "WORLD"})
        self.assertIs(ctx.values["result"], True)
        ctx = await run_node("TextSearchNode", {"sourceText": "Hello", "searchText": "bye"})
        self.assertIs(ctx.values["result"], False)
        ctx = await run_node("TextSearchNode", {"sourceText": "", "searchText": ""})
        self.assertIs(ctx.values["result"], True)  # an empty search always matches

    @async_test
    async def test_non_string_source_throws(self) -> None:
        self.assertEqual(await node_error("TextSearchNode", {"sourceText": 5}),
                         "this.sourceText.toLowerCase is not a function")
        self.assertEqual(await node_error("TextSearchNode", {"sourceText": None}),
                         "Cannot read properties of null (reading 'toLowerCase')")


class StringLengthNodeTests(TestCase):
    @async_test
    async def test_utf16_units(self) -> None:
        self.assertEqual((await run_node("StringLengthNode", {"text": "héllo"})).values["length"], 5)
        self.assertEqual((await run_node("StringLengthNode", {"text": "😀"})).values["length"], 2)
        self.assertEqual((await run_node("StringLengthNode", {"text": ""})).values["length"], 0)
        self.assertEqual((await run_node("StringLengthNode", {"text": None})).values["length"], 0)
