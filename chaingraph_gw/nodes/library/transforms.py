"""transforms: array and object reshaping (@HEAD nodes)."""

from __future__ import annotations

import math
from typing import Any

from ..jsbridge import js_number
from ..sdk import NodeContext, NodeType, any_port, array, boolean, number, obj, register, string
from ._util import deep, get


def _arr(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any, default: int) -> int | float:
    """JS ToIntegerOrInfinity (NaN → default)."""
    n = js_number(v)
    if math.isnan(n):
        return default
    if math.isinf(n):
        return n
    return int(n)


def _obj_port(key: str = "object") -> Any:
    return obj(key, direction="passthrough", default={}, schema=(), is_schema_mutable=True, is_mutable=True,
               title="Object")


def _arr_port(key: str = "array", title: str = "Array") -> Any:
    return array(key, direction="passthrough", default=[], item=any_port("item"), is_mutable=True, title=title)


@register
class ObjectKeysNode(NodeType):
    type_name = "ObjectKeysNode"
    title = "Object Keys"
    category = "transforms"
    description = "The keys of an object"
    tags = ("object", "keys")
    ports = (
        _obj_port(),
        array("keys", direction="output", default=[], item=string("item"), title="Keys"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        o = get(ctx, "object")
        ctx.values["keys"] = list(o.keys()) if isinstance(o, dict) else []


@register
class ObjectValuesNode(NodeType):
    type_name = "ObjectValuesNode"
    title = "Object Values"
    category = "transforms"
    description = "The values of an object"
    tags = ("object", "values")
    ports = (
        _obj_port(),
        array("values", direction="output", default=[], item=any_port("item"), title="Values"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        o = get(ctx, "object")
        ctx.values["values"] = deep(list(o.values())) if isinstance(o, dict) else []


class _ArrayEndNode(NodeType):
    """Shared body of ArrayFirstNode / ArrayLastNode: the element at `_index` (0 or -1)."""

    _index = 0
    category = "transforms"
    ports = (
        _arr_port(),
        any_port("element", direction="output", default=None, title="Element"),
        boolean("isEmpty", direction="output", default=True, title="Is Empty"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        a = _arr(get(ctx, "array"))
        ctx.values["element"] = deep(a[self._index]) if a else None
        ctx.values["isEmpty"] = not a


@register
class ArrayFirstNode(_ArrayEndNode):
    type_name = "ArrayFirstNode"
    title = "Array First"
    description = "The first element of an array"
    tags = ("array", "first", "head")
    _index = 0


@register
class ArrayLastNode(_ArrayEndNode):
    type_name = "ArrayLastNode"
    title = "Array Last"
    description = "The last element of an array"
    tags = ("array", "last", "tail")
    _index = -1


@register
class ArraySliceNode(NodeType):
    type_name = "ArraySliceNode"
    title = "Array Slice"
    category = "transforms"
    description = "Elements from start up to (not including) end; end -1 means to the end"
    tags = ("array", "slice", "subarray")
    ports = (
        _arr_port(),
        number("start", default=0, integer=True, title="Start"),
        number("end", default=-1, integer=True, title="End"),
        array("result", direction="output", default=[], item=any_port("item"), title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        a = _arr(get(ctx, "array"))
        start, end = _int(get(ctx, "start"), 0), _int(get(ctx, "end"), -1)

        def clamp(i: float) -> int:
            if i < 0:
                return max(0, len(a) + int(i)) if not math.isinf(i) else 0
            return min(len(a), int(i)) if not math.isinf(i) else len(a)

        s = clamp(start)
        e = len(a) if end == -1 else clamp(end)
        ctx.values["result"] = deep(a[s:e]) if e > s else []


@register
class ArrayConcatNode(NodeType):
    type_name = "ArrayConcatNode"
    title = "Array Concat"
    category = "transforms"
    description = "Array A followed by array B (a non-array counts as empty)"
    tags = ("array", "concat", "merge")
    ports = (
        _arr_port("arrayA", "Array A"),
        _arr_port("arrayB", "Array B"),
        array("result", direction="output", default=[], item=any_port("item"), title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["result"] = deep(_arr(get(ctx, "arrayA")) + _arr(get(ctx, "arrayB")))


@register
class ArrayReverseNode(NodeType):
    type_name = "ArrayReverseNode"
    title = "Array Reverse"
    category = "transforms"
    description = "The array in reverse order"
    tags = ("array", "reverse")
    ports = (
        _arr_port(),
        array("result", direction="output", default=[], item=any_port("item"), title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["result"] = deep(list(reversed(_arr(get(ctx, "array")))))
