"""data: inspection and conversion."""

from __future__ import annotations

from ..jsbridge import (
    DecimalArgumentError,
    decimal_to_exponential,
    decimal_to_fixed,
    decimal_to_js_string,
    is_js_number,
    js_truthy,
    to_decimal,
    utf16_len,
)
from ..sdk import UNSET, NodeContext, NodeError, NodeType, any_port, array, boolean, number, register, string
from ._util import get, nullish


@register
class ArrayLengthNode(NodeType):
    type_name = "ArrayLengthNode"
    title = "Array Length"
    category = "data"
    description = "The number of elements in an array (0 for a non-array)"
    tags = ("array", "length", "count")
    ports = (
        array("array", default=[], item=any_port("item"), title="Array"),
        number("length", direction="output", default=0, title="Length"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        arr = get(ctx, "array")
        ctx.values["length"] = len(arr) if isinstance(arr, list) else 0


@register
class NumberToStringNode(NodeType):
    type_name = "NumberToStringNode"
    title = "Number to String"
    category = "data"
    description = "Formats a number as text (automatic, fixed decimal places or exponential)"
    tags = ("number", "string", "format", "convert")
    ports = (
        number("number", default=0, title="Number"),
        number("decimalPlaces", default=-1, min=-1, integer=True, required=True, title="Decimal Places"),
        boolean("exponential", default=False, title="Exponential Notation"),
        string("text", direction="output", default="", title="String"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        value = get(ctx, "number")
        if nullish(value):
            ctx.values["text"] = ""
            raise NodeError("Expected a number to convert to a string")
        try:
            d = to_decimal(value)
            dp = get(ctx, "decimalPlaces")
            dp = -1 if nullish(dp) else dp
            auto = is_js_number(dp) and dp == -1
            if js_truthy(get(ctx, "exponential")):
                text = decimal_to_exponential(d) if auto else decimal_to_exponential(d, dp)
            elif auto:
                text = decimal_to_js_string(d)
            else:
                text = decimal_to_fixed(d, dp)
        except DecimalArgumentError as exc:
            raise NodeError(str(exc)) from None
        ctx.values["text"] = text


def _lower(v: object, name: str) -> str:
    if isinstance(v, str):
        return v.lower()
    if v is None or v is UNSET:
        raise TypeError(f"Cannot read properties of {'null' if v is None else 'undefined'} (reading 'toLowerCase')")
    raise TypeError(f"this.{name}.toLowerCase is not a function")


@register
class TextSearchNode(NodeType):
    type_name = "TextSearchNode"
    title = "Text Search"
    category = "data"
    description = "Case-insensitive test whether the source text contains the search text"
    tags = ("text", "search", "contains", "string")
    ports = (
        string("sourceText", default="", title="Source Text"),
        string("searchText", default="", title="Search Text"),
        boolean("result", direction="output", default=False, title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        src = _lower(get(ctx, "sourceText"), "sourceText")
        ctx.values["result"] = _lower(get(ctx, "searchText"), "searchText") in src


@register
class StringLengthNode(NodeType):
    type_name = "StringLengthNode"
    title = "String Length"
    category = "data"
    description = "The length of a text in UTF-16 code units (like JS string.length)"
    tags = ("string", "length", "count", "text")
    ports = (
        string("text", default="", title="Text"),
        number("length", direction="output", default=0, title="Length"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        text = get(ctx, "text")
        if isinstance(text, str):
            ctx.values["length"] = utf16_len(text)
        elif isinstance(text, list):
            ctx.values["length"] = len(text)
        else:
            ctx.values["length"] = 0
