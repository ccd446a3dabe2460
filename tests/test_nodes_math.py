"""math nodes: MathNode (decimal.js semantics and every error), And/Or/Not, Random."""

from __future__ import annotations

import math

from twisted.trial.unittest import TestCase

from chaingraph_gw.nodes.sdk import UNSET

from .helpers import async_test
from .test_nodes_ctx import node_error, run_node


async def calc(op: object, a: object = 0, b: object = 0) -> object:
    ctx = await run_node("MathNode", {"a": a, "b": b, "operation": op})
    return ctx.values["result"]


class MathNodeTests(TestCase):
    @async_test
    async def test_operations(self) -> None:
        self.assertEqual(await calc("add", 0.1, 0.2), 0.3)
        self.assertEqual(await calc("subtract", 0.3, 0.1), 0.2)
        self.assertEqual(await calc("multiply", 1.1, 3), 3.3)
        self.assertEqual(await calc("divide", 1, 3), 0.3333333333333333)
        self.assertEqual(await calc("modulo", -7, 3), -1)
        self.assertEqual(await calc("modulo", 7.5, 2), 1.5)
        self.assertEqual(await calc("power", 2, 0.5), 1.4142135623730951)
        self.assertEqual(await calc("power", -2, 3), -8)
        self.assertEqual(await calc("power", 0, 0), 1)
        self.assertEqual(await calc("min", 3, -1), -1)
        self.assertEqual(await calc("max", 3, -1), 3)
        self.assertEqual(await calc("average", 3, 4), 3.5)
        self.assertEqual(await calc("absolute_difference", 3, 10), 7)
        self.assertEqual(await calc("percentage", 1, 8), 12.5)
        self.assertEqual(await calc("log_base", 8, 2), 3)
        self.assertEqual(await calc("log_base", 100, 10), 2)

    @async_test
    async def test_integral_results_are_ints(self) -> None:
        self.assertEqual(repr(await calc("add", 1.5, 1.5)), "3")

    @async_test
    async def test_non_finite_operands_count_as_zero(self) -> None:
        self.assertEqual(await calc("add", "5", 2), 2)
        self.assertEqual(await calc("add", None, True), 0)
        self.assertEqual(await calc("add", math.nan, math.inf), 0)
        ctx = await run_node("MathNode", {"a": UNSET, "b": 4, "operation": "add"})
        self.assertEqual(ctx.values["result"], 4)

    @async_test
    async def test_huge_result_passes_as_infinity(self) -> None:
        self.assertEqual(await calc("multiply", 1e308, 10), math.inf)

    @async_test
    async def test_errors(self) -> None:
        cases = [
            ("divide", 1, 0, "Division by zero is not allowed"),
            ("modulo", 1, 0, "Modulo by zero is not allowed"),
            ("power", -8, 0.5, "Cannot raise negative number to non-integer power"),
            ("percentage", 1, 0, "Cannot calculate percentage with zero denominator"),
            ("log_base", 8, 1, "Log base must be positive and not equal to 1"),
            ("log_base", 8, -2, "Log base must be positive and not equal to 1"),
            ("log_base", 0, 2, "Cannot take logarithm of non-positive number"),
            ("power", 0, -1, "Result is not a finite number"),
            ("sqrt", 1, 1, "Unknown operation: sqrt"),
            (None, 1, 1, "Unknown operation: null"),
        ]
        for op, a, b, msg in cases:
            self.assertEqual(await node_error("MathNode", {"a": a, "b": b, "operation": op}), msg, op)
        self.assertEqual(await node_error("MathNode", {"a": 1, "b": 2}), "Unknown operation: undefined")


class LogicNodeTests(TestCase):
    @async_test
    async def test_and_or(self) -> None:
        for x in (False, True):
            for y in (False, True):
                ctx = await run_node("AndNode", {"inputX": x, "inputY": y})
                self.assertIs(ctx.values["result"], x and y)
                ctx = await run_node("OrNode", {"inputX": x, "inputY": y})
                self.assertIs(ctx.values["result"], x or y)

    @async_test
    async def test_js_operator_semantics_on_non_booleans(self) -> None:
        self.assertEqual((await run_node("AndNode", {"inputX": "a", "inputY": 0})).values["result"], 0)
        self.assertEqual((await run_node("OrNode", {"inputX": "", "inputY": "b"})).values["result"], "b")

    @async_test
    async def test_not(self) -> None:
        self.assertIs((await run_node("NotNode", {"input": True})).values["result"], False)
        self.assertIs((await run_node("NotNode", {"input": False})).values["result"], True)
        self.assertIs((await run_node("NotNode", {"input": 0})).values["result"], True)


class RandomNodeTests(TestCase):
    @async_test
    async def test_values_in_range_on_step_grid(self) -> None:
        seen = set()
        for _ in range(300):
            ctx = await run_node("RandomNode", {"rangeFrom": 0.1, "rangeTo": 0.5, "step": 0.1})
            seen.add(ctx.values["result"])
        self.assertTrue(seen <= {0.1, 0.2, 0.3, 0.4, 0.5}, seen)
        self.assertIn(0.5, seen)  # `to` is reachable (decimal arithmetic)

    @async_test
    async def test_defaults_and_sanitizing(self) -> None:
        for _ in range(50):
            r = (await run_node("RandomNode", {"rangeFrom": "x", "rangeTo": None, "step": -3})).values["result"]
            self.assertTrue(0 <= r <= 100 and r == int(r), r)
        ctx = await run_node("RandomNode", {"rangeFrom": 5, "rangeTo": 5})
        self.assertEqual(ctx.values["result"], 5)

    @async_test
    async def test_invalid_range(self) -> None:
        self.assertEqual(await node_error("RandomNode", {"rangeFrom": 10, "rangeTo": 1}),
                         "Invalid range: Range From must be less than or equal to Range To.")
