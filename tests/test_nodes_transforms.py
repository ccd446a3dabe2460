"""transforms nodes: object keys/values, array first/last/slice/concat/reverse."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from .helpers import async_test
from .test_nodes_ctx import run_node


class ObjectTransformTests(TestCase):
    @async_test
    async def test_keys_and_values(self) -> None:
        ctx = await run_node("ObjectKeysNode", {"object": {"b": 1, "a": [2]}})
        self.assertEqual(ctx.values["keys"], ["b", "a"])
        ctx = await run_node("ObjectValuesNode", {"object": {"b": 1, "a": [2]}})
        self.assertEqual(ctx.values["values"], [1, [2]])
        self.assertEqual((await run_node("ObjectKeysNode", {"object": None})).values["keys"], [])
        self.assertEqual((await run_node("ObjectValuesNode", {"object": [1]})).values["values"], [])


class ArrayTransformTests(TestCase):
    @async_test
    async def test_first_last(self) -> None:
        ctx = await run_node("ArrayFirstNode", {"array": [1, 2, 3]})
        self.assertEqual((ctx.values["element"], ctx.values["isEmpty"]), (1, False))
        ctx = await run_node("ArrayLastNode", {"array": [1, 2, 3]})
        self.assertEqual((ctx.values["element"], ctx.values["isEmpty"]), (3, False))
        for name in ("ArrayFirstNode", "ArrayLastNode"):
            ctx = await run_node(name, {"array": []})
            self.assertEqual((ctx.values["element"], ctx.values["isEmpty"]), (None, True))
            ctx = await run_node(name, {"array": "nope"})
            self.assertEqual((ctx.values["element"], ctx.values["isEmpty"]), (None, True))

    @async_test
    async def test_slice(self) -> None:
        a = [0, 1, 2, 3, 4]

        async def sl(start: object, end: object) -> list:
            return (await run_node("ArraySliceNode", {"array": a, "start": start, "end": end})).values["result"]

        self.assertEqual(await sl(0, -1), a)  # -1 means to the end
        self.assertEqual(await sl(1, 3), [1, 2])
        self.assertEqual(await sl(2, -1), [2, 3, 4])
        self.assertEqual(await sl(-2, -1), [3, 4])
        self.assertEqual(await sl(1, -2), [1, 2])  # other negatives count from the end (JS slice)
        self.assertEqual(await sl(4, 2), [])
        self.assertEqual(await sl(1.7, 3.2), [1, 2])
        self.assertEqual(await sl(0, 99), a)

    @async_test
    async def test_concat_reverse(self) -> None:
        ctx = await run_node("ArrayConcatNode", {"arrayA": [1], "arrayB": [2, 3]})
        self.assertEqual(ctx.values["result"], [1, 2, 3])
        ctx = await run_node("ArrayConcatNode", {"arrayA": None, "arrayB": [2]})
        self.assertEqual(ctx.values["result"], [2])
        ctx = await run_node("ArrayReverseNode", {"array": [1, 2, 3]})
        self.assertEqual(ctx.values["result"], [3, 2, 1])
        self.assertEqual(ctx.values["array"], [1, 2, 3])  # input untouched
        self.assertEqual((await run_node("ArrayReverseNode", {"array": 5})).values["result"], [])
