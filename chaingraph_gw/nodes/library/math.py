"""math: arithmetic (decimal.js semantics), boolean logic and random numbers."""

from __future__ import annotations

import random
from decimal import ROUND_FLOOR, Decimal

from ..jsbridge import DEC_CTX, dec_is_integer, js_is_finite, js_string, js_truthy, num_out, to_decimal
from ..sdk import NodeContext, NodeError, NodeType, boolean, enum, number, register
from ._util import get

MATH_OPERATIONS = ("add", "subtract", "multiply", "divide", "modulo", "power", "min", "max", "average",
                   "absolute_difference", "percentage", "log_base")

_WIDE = DEC_CTX.copy()
_WIDE.prec = 10_000


def _operand(v: object) -> Decimal:
    """A non-finite-number operand (string, null, bool, NaN, ±Inf) counts as 0."""
    return to_decimal(v) if js_is_finite(v) else Decimal(0)


def math_operation(op: object, a: Decimal, b: Decimal) -> Decimal:
    c = DEC_CTX
    if op == "add":
        return c.add(a, b)
    if op == "subtract":
        return c.subtract(a, b)
    if op == "multiply":
        return c.multiply(a, b)
    if op == "divide":
        if b.is_zero():
            raise NodeError("Division by zero is not allowed")
        return c.divide(a, b)
    if op == "modulo":
        if b.is_zero():
            raise NodeError("Modulo by zero is not allowed")
        return c.plus(_WIDE.remainder(a, b))  # truncated: the sign follows the dividend
    if op == "power":
        if a < 0 and not dec_is_integer(b):
            raise NodeError("Cannot raise negative number to non-integer power")
        if b.is_zero():
            return Decimal(1)
        return c.power(a, b)
    if op == "min":
        return min(a, b)
    if op == "max":
        return max(a, b)
    if op == "average":
        return c.divide(c.add(a, b), Decimal(2))
    if op == "absolute_difference":
        return c.abs(c.subtract(a, b))
    if op == "percentage":
        if b.is_zero():
            raise NodeError("Cannot calculate percentage with zero denominator")
        return c.multiply(c.divide(a, b), Decimal(100))
    if op == "log_base":
        if b <= 0 or b == 1:
            raise NodeError("Log base must be positive and not equal to 1")
        if a <= 0:
            raise NodeError("Cannot take logarithm of non-positive number")
        return c.divide(a.ln(c), b.ln(c))
    raise NodeError(f"Unknown operation: {js_string(op)}")


@register
class MathNode(NodeType):
    type_name = "MathNode"
    title = "Math"
    category = "math"
    description = "Performs a mathematical operation on two numbers"
    tags = ("math", "arithmetic", "calculate")
    ports = (
        number("a", direction="passthrough", default=0, title="A"),
        number("b", direction="passthrough", default=0, title="B"),
        enum("operation", MATH_OPERATIONS, direction="passthrough", title="Operation"),  # no default
        number("result", direction="output", default=0, title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        a, b = _operand(get(ctx, "a")), _operand(get(ctx, "b"))
        result = math_operation(get(ctx, "operation"), a, b)
        if not result.is_finite():
            raise NodeError("Result is not a finite number")
        # Beyond the float range decimal.js' toNumber() gives ±Infinity (it serializes as JSON null).
        ctx.values["result"] = num_out(float(result))


class _LogicNode(NodeType):
    """Shared body of AndNode / OrNode: result = _combine(inputX, inputY) with JS operator semantics."""

    category = "math"
    ports = (
        boolean("inputX", default=False, title="X"),
        boolean("inputY", default=False, title="Y"),
        boolean("result", direction="output", default=False, title="Result"),
    )

    @staticmethod
    def _combine(x: object, y: object) -> object:
        raise NotImplementedError

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["result"] = self._combine(get(ctx, "inputX"), get(ctx, "inputY"))


@register
class AndNode(_LogicNode):
    type_name = "AndNode"
    title = "And"
    description = "Logical AND of two booleans"
    tags = ("logic", "boolean", "and")

    @staticmethod
    def _combine(x: object, y: object) -> object:
        return y if js_truthy(x) else x  # JS &&


@register
class OrNode(_LogicNode):
    type_name = "OrNode"
    title = "Or"
    description = "Logical OR of two booleans"
    tags = ("logic", "boolean", "or")

    @staticmethod
    def _combine(x: object, y: object) -> object:
        return x if js_truthy(x) else y  # JS ||


@register
class NotNode(NodeType):
    type_name = "NotNode"
    title = "Not"
    category = "math"
    description = "Logical NOT of a boolean"
    tags = ("logic", "boolean", "not")
    ports = (
        boolean("input", default=False, title="Input"),
        boolean("result", direction="output", default=True, title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["result"] = not js_truthy(get(ctx, "input"))


@register
class RandomNode(NodeType):
    type_name = "RandomNode"
    title = "Random Number"
    category = "math"
    description = "A random number between Range From and Range To in steps of Step"
    tags = ("random", "number")
    ports = (
        number("rangeFrom", default=0, title="Range From"),
        number("rangeTo", default=100, title="Range To"),
        number("step", default=1, title="Step"),
        number("result", direction="output", default=0, title="Result"),
    )

    rng = random.SystemRandom()

    async def execute(self, ctx: NodeContext) -> None:
        f, t, s = get(ctx, "rangeFrom"), get(ctx, "rangeTo"), get(ctx, "step")
        lo = to_decimal(f) if js_is_finite(f) else Decimal(0)
        hi = to_decimal(t) if js_is_finite(t) else Decimal(100)
        step = to_decimal(s) if js_is_finite(s) and s > 0 else Decimal(1)
        if lo > hi:
            raise NodeError("Invalid range: Range From must be less than or equal to Range To.")
        n = int(DEC_CTX.divide(DEC_CTX.subtract(hi, lo), step).to_integral_value(rounding=ROUND_FLOOR))
        k = self.rng.randint(0, n)
        ctx.values["result"] = num_out(float(DEC_CTX.add(lo, DEC_CTX.multiply(Decimal(k), step))))
