"""flow nodes: Branch, Switch, Gate v1, events, Sleep (incl. cancellation), IsRootExecution."""

from __future__ import annotations

import asyncio
import time

from twisted.trial.unittest import TestCase

from .helpers import async_test
from .test_nodes_ctx import FakeContext, NoEmitContext, make_ctx, node_class, node_error, run_node


async def branch(left: object, op: str, right: object) -> bool:
    ctx = await run_node("BranchNode", {"leftValue": left, "operator": op, "rightValue": right})
    return ctx.values["result"]


class BranchNodeTests(TestCase):
    @async_test
    async def test_operators(self) -> None:
        self.assertTrue(await branch(5, "equals", 5))
        self.assertTrue(await branch("5", "equals", 5.0))
        self.assertTrue(await branch("a", "notEquals", "b"))
        self.assertTrue(await branch(3, "greaterThan", 2))
        self.assertTrue(await branch(2, "lessThan", 3))
        self.assertTrue(await branch(3, "greaterThanOrEquals", 3))
        self.assertTrue(await branch(3, "lessThanOrEquals", 3))
        self.assertTrue(await branch("hello world", "contains", "lo w"))
        self.assertTrue(await branch("hello", "notContains", "z"))
        self.assertTrue(await branch("hello", "startsWith", "he"))
        self.assertTrue(await branch("hello", "endsWith", "llo"))
        self.assertFalse(await branch("hello", "unknownOp", "hello"))

    @async_test
    async def test_quirks(self) -> None:
        self.assertTrue(await branch("", "equals", 0))
        self.assertTrue(await branch(True, "equals", 1))
        self.assertTrue(await branch("10", "greaterThan", "9"))
        self.assertFalse(await branch(None, "equals", 0))
        self.assertTrue(await branch({"a": 1}, "contains", "object"))
        self.assertFalse(await branch([1, 2], "equals", "1,2"))
        self.assertTrue(await branch(None, "equals", None))

    @async_test
    async def test_defaults(self) -> None:
        ctx = await run_node("BranchNode")  # null equals null
        self.assertIs(ctx.values["result"], True)


class SwitchNodeTests(TestCase):
    @async_test
    async def test_matching_case(self) -> None:
        ctx = await run_node("SwitchNode", {"input": "b", "caseObject": {"a": False, "b": False, "c": True}})
        self.assertEqual(ctx.values["caseObject"], {"a": False, "b": True, "c": False})
        self.assertIs(ctx.values["default"], False)

    @async_test
    async def test_default_when_no_case_matches(self) -> None:
        ctx = await run_node("SwitchNode", {"input": "zzz", "caseObject": {"a": True}})
        self.assertEqual(ctx.values["caseObject"], {"a": False})
        self.assertIs(ctx.values["default"], True)

    @async_test
    async def test_strict_comparison(self) -> None:
        ctx = await run_node("SwitchNode", {"input": 1, "caseObject": {"1": False}})
        self.assertEqual(ctx.values["caseObject"], {"1": False})
        self.assertIs(ctx.values["default"], True)
        port = node_class("SwitchNode").port("caseObject")
        self.assertEqual((port.direction, port.ui), ("output", {"allowedTypes": ["boolean"], "hidePort": True}))


class GateNodeTests(TestCase):
    @async_test
    async def test_v1_copies_truthy_inputs(self) -> None:
        ctx = await run_node("GateNode", {
            "inputObject": {"gate-input-1": "x", "gate-input-2": 0, "gate-input-3": {"a": 1}},
            "outputObject": {"o3": {"keep": True}},
            "connectionsMap": '{"gate-input-1": "o1", "gate-input-2": "o2", "gate-input-3": "o3"}',
        })
        self.assertEqual(ctx.values["outputObject"], {"o1": "x", "o3": {"keep": True, "a": 1}})

    @async_test
    async def test_v1_swallows_errors(self) -> None:
        ctx = await run_node("GateNode", {"connectionsMap": "{not json"})
        self.assertEqual(ctx.values["outputObject"], {})


class EventNodeTests(TestCase):
    @async_test
    async def test_emitter_emits(self) -> None:
        ctx = await run_node("EventEmitterNode", {"eventName": "ping", "payload": {"n": 1, "s": "x"}})
        self.assertEqual(ctx.events, [("ping", {"n": 1, "s": "x"})])

    @async_test
    async def test_emitter_errors(self) -> None:
        self.assertEqual(await node_error("EventEmitterNode", {"eventName": ""}),
                         "Event name is required to emit an event")
        self.assertEqual(await node_error("EventEmitterNode", {"eventName": "x"}, ctx=NoEmitContext()),
                         "Event emission is not supported in this context")

    @async_test
    async def test_listener_matching_event(self) -> None:
        ctx = await run_node("EventListenerNode", {"eventName": "ping", "outputData": {"old": 1, "n": 0}},
                             event_data={"eventName": "ping", "payload": {"n": 5, "extra": True}})
        self.assertEqual(ctx.values["outputData"], {"n": 5, "extra": True})

    @async_test
    async def test_listener_ignores_other_events_and_root(self) -> None:
        ctx = await run_node("EventListenerNode", {"eventName": "ping", "outputData": {"n": 0}},
                             event_data={"eventName": "pong", "payload": {"n": 5}})
        self.assertEqual(ctx.values["outputData"], {"n": 0})
        ctx = await run_node("EventListenerNode", {"eventName": "ping", "outputData": {"n": 0}})
        self.assertEqual(ctx.values["outputData"], {"n": 0})
        ctx = await run_node("EventListenerNode", {"eventName": "ping"}, event_data={"eventName": "ping"})
        self.assertEqual(ctx.values["outputData"], {})
        self.assertEqual(node_class("EventListenerNode").flow_ports, {"disabledAutoExecution": True})


class SleepNodeTests(TestCase):
    @async_test
    async def test_sleeps_for_duration(self) -> None:
        t0 = time.monotonic()
        ctx = await run_node("SleepNode", {"duration": 50})
        self.assertGreaterEqual(time.monotonic() - t0, 0.045)
        self.assertEqual(ctx.sleeps, [0.05])
        self.assertGreaterEqual(ctx.values["actualDuration"], 45)
        ctx = await run_node("SleepNode", {"duration": -5})
        self.assertEqual(ctx.sleeps, [0.0])

    @async_test
    async def test_stop_cancels_sleep(self) -> None:
        ctx = make_ctx("SleepNode", {"duration": 10_000})
        task = asyncio.ensure_future(node_class("SleepNode")().execute(ctx))
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        self.assertLess(time.monotonic() - t0, 0.5)
        self.assertEqual(ctx.values["actualDuration"], 0)  # never written

    @async_test
    async def test_aborted_signal(self) -> None:
        ctx = FakeContext()
        ctx.signal.aborted = True
        self.assertEqual(await node_error("SleepNode", {"duration": 10}, ctx=ctx), "Sleep aborted")


class IsRootExecutionNodeTests(TestCase):
    @async_test
    async def test_root_and_child(self) -> None:
        self.assertIs((await run_node("IsRootExecutionNode")).values["isRoot"], True)
        ctx = await run_node("IsRootExecutionNode", depth=1, parent_execution_id="EXparent")
        self.assertIs(ctx.values["isRoot"], False)
