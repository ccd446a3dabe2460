"""Tests for chaingraph_gw.engine (executor spec §2/§3/§5/§6, node catalog §3)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from twisted.trial import unittest

from chaingraph_gw.engine import events as ev
from chaingraph_gw.engine.engine import ExecutionEngine, Outcome
from chaingraph_gw.engine.options import ExecutionOptions
from chaingraph_gw.flow.model import Edge, Flow, NodeInstance
from chaingraph_gw.nodes.sdk import NodeError, NodeRegistry, NodeType, any_port, boolean, number, obj, string
from chaingraph_gw.trpc.superjson import JSError

from .helpers import async_test, wait_for

registry = NodeRegistry()


# -- tiny node types ---------------------------------------------------------------------------------

@registry.register
class ValueNode(NodeType):
    """Copies ``input`` to ``value`` (a source when nothing is connected)."""

    type_name = "TestValue"
    ports = (any_port("input"), any_port("value", direction="output"))

    async def execute(self, ctx: Any) -> None:
        ctx.values["value"] = ctx.values.get("input")


@registry.register
class AddNode(NodeType):
    type_name = "TestAdd"
    ports = (number("a", default=0), number("b", default=0), number("result", direction="output", default=0))

    async def execute(self, ctx: Any) -> None:
        ctx.values["result"] = ctx.values["a"] + ctx.values["b"]


@registry.register
class BoolNode(NodeType):
    type_name = "TestBool"
    ports = (boolean("input", default=True), boolean("result", direction="output", default=False))

    async def execute(self, ctx: Any) -> None:
        ctx.values["result"] = bool(ctx.values["input"])


@registry.register
class NotNode(NodeType):
    type_name = "TestNot"
    ports = (boolean("input", default=False), boolean("result", direction="output", default=False))

    async def execute(self, ctx: Any) -> None:
        ctx.values["result"] = not ctx.values["input"]


@registry.register
class FailNode(NodeType):
    type_name = "TestFail"
    ports = (string("value", direction="output", default="never"),)

    async def execute(self, ctx: Any) -> None:
        raise NodeError("boom")


@registry.register
class SleepNode(NodeType):
    """Sleeps ``seconds`` through ctx.sleep; records start/end and the abort signal."""

    type_name = "TestSleep"
    ports = (number("seconds", default=0.05), any_port("value", direction="output"))
    log: ClassVar[list[tuple[str, str, float]]] = []
    signals: ClassVar[list[Any]] = []

    async def execute(self, ctx: Any) -> None:
        SleepNode.signals.append(ctx.signal)
        SleepNode.log.append(("start", ctx.node_id, time.monotonic()))
        await ctx.sleep(ctx.values["seconds"])
        SleepNode.log.append(("end", ctx.node_id, time.monotonic()))
        ctx.values["value"] = ctx.node_id


@registry.register
class LogNode(NodeType):
    type_name = "TestLog"
    ports = (any_port("message"),)
    seen: ClassVar[list[Any]] = []

    async def execute(self, ctx: Any) -> None:
        LogNode.seen.append((ctx.node_id, ctx.values.get("message")))
        ctx.debug_log(f"log: {ctx.values.get('message')}")


@registry.register
class EmitterNode(NodeType):
    type_name = "TestEmitter"
    ports = (string("eventName", default=""), obj("payload", default={}))

    async def execute(self, ctx: Any) -> None:
        ctx.emit_event(ctx.values["eventName"], ctx.values["payload"])


@registry.register
class ListenerNode(NodeType):
    type_name = "TestListener"
    flow_ports: ClassVar[dict[str, Any]] = {"disabledAutoExecution": True}
    ports = (string("eventName", default=""), obj("outputData", direction="output", default={}))

    async def execute(self, ctx: Any) -> None:
        data = ctx.event_data
        if data and data.get("eventName") == ctx.values["eventName"]:
            ctx.values["outputData"] = data.get("payload") or {}


@registry.register
class GroupNode(NodeType):
    type_name = "TestGroup"
    category = "group"
    ports = ()
    ran: ClassVar[list[str]] = []

    async def execute(self, ctx: Any) -> None:
        GroupNode.ran.append(ctx.node_id)


@registry.register
class ToolsNode(NodeType):
    """A non-group parent (its children are "tools": marked completed without running)."""

    type_name = "TestTools"
    category = "ai"
    ports = ()

    async def execute(self, ctx: Any) -> None:
        pass


# -- helpers -----------------------------------------------------------------------------------------

def node(nid: str, cls: type[NodeType], parent: str | None = None, **values: Any) -> NodeInstance:
    return NodeInstance(nid, cls, values={**cls.initial_values(), **values}, parent_node_id=parent)


def make_flow(nodes: list[NodeInstance], edges: list[tuple[str, str, str, str]] = ()) -> Flow:
    return Flow(
        name="test flow",
        nodes={n.id: n for n in nodes},
        edges=[Edge(f"e{i}", s, sp, t, tp, i) for i, (s, sp, t, tp) in enumerate(edges)],
        id="V2testflow",
    )


class Run:
    """An engine plus the events it emitted."""

    def __init__(self, flow: Flow, on_event: Any = None, **kw: Any) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.emitted: list[tuple[str, Any]] = []
        self.on_event = on_event
        kw.setdefault("options", ExecutionOptions())
        kw.setdefault("on_emitted_event", lambda name, payload: self.emitted.append((name, payload)))
        self.flow = flow
        self.engine = ExecutionEngine(flow, execution_id="EXtest", flow_id="V2testflow", emit=self._emit, **kw)

    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        assert not self.events or self.events[-1][0] not in ev.TERMINAL_EVENTS, f"{type_} after terminal"
        self.events.append((type_, data))
        if self.on_event is not None:
            self.on_event(self, type_, data)

    @property
    def types(self) -> list[str]:
        return [t for t, _ in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == type_]

    def node_events(self, nid: str) -> list[str]:
        """The non-status events about node ``nid``, in order."""
        out = []
        for t, d in self.events:
            n = d.get("node")
            about = (d.get("nodeId") if t != ev.NODE_STATUS_CHANGED else None) or (
                _snap_id(n) if n is not None else None) or d.get("serializedEdge", {}).get("targetNodeId")
            if about == nid:
                out.append(t)
        return out

    def statuses(self, nid: str) -> list[str]:
        return [d["newStatus"] for t, d in self.of_with_type(ev.NODE_STATUS_CHANGED) if d["nodeId"] == nid]

    def of_with_type(self, type_: str) -> list[tuple[str, dict[str, Any]]]:
        return [(t, d) for t, d in self.events if t == type_]

    def started(self) -> list[str]:
        return [_snap_id(d["node"]) for d in self.of(ev.NODE_STARTED)]

    def skipped(self) -> dict[str, str]:
        return {d["nodeId"]: d["reason"] for d in self.of(ev.NODE_SKIPPED)}

    async def run(self) -> Outcome:
        outcome = await self.engine.run()
        self.check_terminal()
        return outcome

    def check_terminal(self) -> None:
        terminals = [t for t in self.types if t in ev.TERMINAL_EVENTS]
        assert len(terminals) == 1, f"terminal events: {terminals}"
        assert self.types[-1] in ev.TERMINAL_EVENTS, f"last event is {self.types[-1]}"


def _snap_id(snapshot: Any) -> str:
    return snapshot["id"] if isinstance(snapshot, dict) else snapshot.id


def reset_recorders() -> None:
    SleepNode.log.clear()
    SleepNode.signals.clear()
    LogNode.seen.clear()
    GroupNode.ran.clear()


class EngineTestCase(unittest.TestCase):
    def setUp(self) -> None:
        reset_recorders()


# -- ordering and events -----------------------------------------------------------------------------

class EventSequenceTests(EngineTestCase):
    @async_test
    async def test_three_node_chain_exact_sequence(self) -> None:
        flow = make_flow(
            [node("A", ValueNode, input=1), node("B", AddNode, b=2), node("C", AddNode, b=3)],
            [("A", "value", "B", "a"), ("B", "result", "C", "a")],
        )
        r = Run(flow)
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertIsNone(outcome.error)
        S, T = ev.NODE_STATUS_CHANGED, ev.EDGE_TRANSFER_COMPLETED
        self.assertEqual(r.types, [
            ev.FLOW_STARTED, S,
            S, ev.NODE_STARTED, S, ev.NODE_COMPLETED,
            S, ev.NODE_STARTED, T, S, ev.NODE_COMPLETED,
            S, ev.NODE_STARTED, T, S, ev.NODE_COMPLETED,
            ev.FLOW_COMPLETED,
        ])
        self.assertEqual(flow.nodes["C"].values["result"], 6)
        self.assertEqual(r.events[0][1], {"flowMetadata": flow.metadata()})
        statuses = [(d["nodeId"], d["oldStatus"], d["newStatus"]) for d in r.of(S)]
        self.assertEqual(statuses, [
            ("A", "idle", "initialized"), ("A", "initialized", "executing"), ("A", "executing", "completed"),
            ("B", "idle", "executing"), ("B", "executing", "completed"),
            ("C", "idle", "executing"), ("C", "executing", "completed"),
        ])
        edge = r.of(T)[0]
        self.assertEqual(edge["serializedEdge"], {
            "id": "e0", "metadata": {}, "status": "active", "sourceNodeId": "A", "sourcePortId": "value",
            "targetNodeId": "B", "targetPortId": "a"})
        self.assertIsInstance(edge["transferTime"], int)
        completed = r.of(ev.NODE_COMPLETED)
        self.assertEqual([_snap_id(d["node"]) for d in completed], ["A", "B", "C"])
        self.assertTrue(all(isinstance(d["executionTime"], int) for d in completed))
        final = r.events[-1][1]
        self.assertEqual(final["flowMetadata"], flow.metadata())
        self.assertIsInstance(final["executionTime"], int)
        self.assertEqual(r.engine.state, "completed")
        self.assertEqual(flow.nodes["B"].system["__success"], True)

    @async_test
    async def test_snapshot_carries_status(self) -> None:
        r = Run(make_flow([node("A", ValueNode, input="x")]))
        await r.run()
        started = r.of(ev.NODE_STARTED)[0]["node"]
        completed = r.of(ev.NODE_COMPLETED)[0]["node"]
        self.assertEqual((started["id"], started["status"]), ("A", "executing"))
        self.assertEqual(completed["status"], "completed")
        values = {p["config"]["key"]: p.get("value") for p in completed["ports"]}
        self.assertEqual(values["value"], "x")

    @async_test
    async def test_empty_flow_completes(self) -> None:
        r = Run(make_flow([]))
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.types, [ev.FLOW_STARTED, ev.FLOW_COMPLETED])

    @async_test
    async def test_independent_roots_start_in_flow_order(self) -> None:
        names = ["n3", "n1", "n2", "n0"]
        r = Run(make_flow([node(n, SleepNode, seconds=0.01) for n in names]))
        await r.run()
        self.assertEqual(r.started(), names)
        self.assertEqual([d["nodeId"] for d in r.of(ev.NODE_STATUS_CHANGED)[:4]], names)

    @async_test
    async def test_run_twice_raises(self) -> None:
        r = Run(make_flow([node("A", ValueNode, input=1)]))
        await r.run()
        with self.assertRaises(RuntimeError):
            await r.engine.run()


class ConcurrencyTests(EngineTestCase):
    @async_test
    async def test_max_concurrency_respected(self) -> None:
        nodes = [node(f"s{i}", SleepNode, seconds=0.04) for i in range(7)]
        r = Run(make_flow(nodes), options=ExecutionOptions(max_concurrency=3))
        await r.run()
        active = peak = 0
        for kind, _, _ in sorted(SleepNode.log, key=lambda x: (x[2], x[0] == "start")):
            active += 1 if kind == "start" else -1
            peak = max(peak, active)
        self.assertEqual(peak, 3)
        self.assertEqual(r.started(), [f"s{i}" for i in range(7)])
        # Check through the event stream too: started minus finished never exceeds 3.
        running = peak_ev = 0
        for t, _ in r.events:
            if t == ev.NODE_STARTED:
                running += 1
            elif t in (ev.NODE_COMPLETED, ev.NODE_FAILED):
                running -= 1
            peak_ev = max(peak_ev, running)
        self.assertEqual(peak_ev, 3)

    @async_test
    async def test_parallel_branches_run_together(self) -> None:
        nodes = [node(f"s{i}", SleepNode, seconds=0.1) for i in range(5)]
        r = Run(make_flow(nodes))
        t0 = time.monotonic()
        await r.run()
        self.assertLess(time.monotonic() - t0, 0.4)


class TimeoutTests(EngineTestCase):
    @async_test
    async def test_node_timeout_fails_node_not_flow(self) -> None:
        flow = make_flow([node("slow", SleepNode, seconds=2), node("after", LogNode, message="x")],
                         [("slow", "__errorMessage", "after", "message")])
        r = Run(flow, options=ExecutionOptions(node_timeout_ms=50))
        t0 = time.monotonic()
        outcome = await r.run()
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(outcome.status, "completed")
        failed = r.of(ev.NODE_FAILED)
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["error"], JSError("Error", "Node execution timed out after 50 ms"))
        self.assertEqual(flow.nodes["slow"].system["__errorMessage"], "Node execution timed out after 50 ms")
        self.assertEqual(LogNode.seen, [("after", "Node execution timed out after 50 ms")])

    @async_test
    async def test_flow_timeout_fires_while_node_sleeps(self) -> None:
        flow = make_flow([node("slow", SleepNode, seconds=5), node("next", LogNode)],
                         [("slow", "value", "next", "message")])
        r = Run(flow, options=ExecutionOptions(flow_timeout_ms=150))
        t0 = time.monotonic()
        outcome = await r.run()
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.14)
        self.assertLess(elapsed, 0.6)
        self.assertEqual(outcome.status, "failed")
        self.assertEqual(outcome.error, "Flow execution timed out after 150 ms")
        self.assertEqual(r.types[-1], ev.FLOW_FAILED)
        self.assertEqual(r.events[-1][1]["error"], JSError("Error", "Flow execution timed out after 150 ms"))
        self.assertNotIn(("end", "slow"), [(k, n) for k, n, _ in SleepNode.log])
        self.assertTrue(SleepNode.signals[0].aborted)
        self.assertEqual(r.engine.state, "failed")


# -- transfer, skip and error rules ------------------------------------------------------------------

class SkipTests(EngineTestCase):
    @async_test
    async def test_unresolved_inputs_cascade(self) -> None:
        flow = make_flow([node("F", FailNode), node("B", LogNode), node("C", LogNode)],
                         [("F", "value", "B", "message"), ("B", "__success", "C", "__execute")])
        r = Run(flow)
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.skipped(), {"B": ev.SKIP_UNRESOLVED, "C": ev.SKIP_UNRESOLVED})
        self.assertEqual(r.node_events("B"), [ev.NODE_SKIPPED])
        self.assertEqual(r.statuses("B"), ["skipped"])
        self.assertEqual(LogNode.seen, [])

    @async_test
    async def test_execute_false_from_boolean_edge(self) -> None:
        # if/else: cond → yes.__execute ; cond → not → no.__execute ; yes → after
        flow = make_flow(
            [node("cond", BoolNode, input=False), node("not", NotNode), node("yes", LogNode, message="yes"),
             node("no", LogNode, message="no"), node("after", LogNode)],
            [("cond", "result", "yes", "__execute"), ("cond", "result", "not", "input"),
             ("not", "result", "no", "__execute"), ("yes", "__success", "after", "message")],
        )
        r = Run(flow)
        await r.run()
        self.assertEqual(r.skipped(), {"yes": ev.SKIP_SHOULD_EXECUTE, "after": ev.SKIP_UNRESOLVED})
        self.assertEqual(LogNode.seen, [("no", "no")])
        self.assertEqual(r.node_events("yes"), [ev.NODE_STARTED, ev.EDGE_TRANSFER_COMPLETED, ev.NODE_SKIPPED])

    @async_test
    async def test_static_execute_false(self) -> None:
        off = node("off", LogNode, message="off")
        off.system["__execute"] = False
        revived = node("revived", LogNode, message="revived")
        revived.system["__execute"] = False
        flow = make_flow([node("t", BoolNode, input=True), off, revived, node("dep", LogNode)],
                         [("t", "result", "revived", "__execute"), ("off", "__success", "dep", "message")])
        r = Run(flow)
        await r.run()
        self.assertEqual(r.skipped(), {"off": ev.SKIP_SHOULD_EXECUTE, "dep": ev.SKIP_UNRESOLVED})
        self.assertEqual(LogNode.seen, [("revived", "revived")])
        # Transfer happened before the (re)check, so before node:started.
        self.assertEqual(r.node_events("revived"), [ev.EDGE_TRANSFER_COMPLETED, ev.NODE_STARTED,
                                                    ev.NODE_DEBUG_LOG_STRING, ev.NODE_COMPLETED])
        self.assertEqual(r.node_events("off"), [ev.NODE_SKIPPED])

    @async_test
    async def test_null_value_fails_transfer_and_skips(self) -> None:
        flow = make_flow([node("src", ValueNode, input=None), node("dst", LogNode)],
                         [("src", "value", "dst", "message")])
        r = Run(flow)
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.node_events("dst"), [ev.NODE_STARTED, ev.EDGE_TRANSFER_FAILED, ev.NODE_SKIPPED])
        failed = r.of(ev.EDGE_TRANSFER_FAILED)[0]
        self.assertEqual(failed["error"], JSError("Error", "Source port value has no data to transfer"))
        self.assertEqual(failed["serializedEdge"]["status"], "error")
        self.assertEqual(r.skipped(), {"dst": ev.SKIP_TRANSFER_FAILED})
        self.assertEqual(r.statuses("dst"), ["executing", "skipped"])
        self.assertEqual(LogNode.seen, [])


class TransferTests(EngineTestCase):
    @async_test
    async def test_first_completed_edge_wins(self) -> None:
        flow = make_flow([node("A", ValueNode, input="A"), node("B", ValueNode, input="B"), node("D", LogNode)],
                         [("A", "value", "D", "message"), ("B", "value", "D", "message")])
        r = Run(flow)
        await r.run()
        self.assertEqual(LogNode.seen, [("D", "A")])
        self.assertEqual([d["serializedEdge"]["id"] for d in r.of(ev.EDGE_TRANSFER_COMPLETED)], ["e0"])

    @async_test
    async def test_first_transferable_edge_skips_failed_source(self) -> None:
        flow = make_flow([node("F", FailNode), node("B", ValueNode, input="B"), node("D", LogNode)],
                         [("F", "value", "D", "message"), ("B", "value", "D", "message")])
        r = Run(flow)
        await r.run()
        self.assertEqual(LogNode.seen, [("D", "B")])

    @async_test
    async def test_error_ports_transfer_from_failed_node(self) -> None:
        flow = make_flow(
            [node("F", FailNode), node("logger", LogNode), node("handler", LogNode, message="handled"),
             node("ok", LogNode, message="ok")],
            [("F", "__errorMessage", "logger", "message"), ("F", "__error", "handler", "__execute"),
             ("F", "__success", "ok", "__execute")],
        )
        r = Run(flow)
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(sorted(LogNode.seen), [("handler", "handled"), ("logger", "boom")])
        self.assertEqual(r.skipped(), {"ok": ev.SKIP_UNRESOLVED})
        failed = r.of(ev.NODE_FAILED)
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["error"], JSError("Error", "boom"))
        self.assertEqual(r.statuses("F")[-1], "error")
        self.assertEqual(flow.nodes["F"].system,
                         {"__execute": True, "__success": False, "__error": True, "__errorMessage": "boom"})
        self.assertEqual(r.types[-1], ev.FLOW_COMPLETED)

    @async_test
    async def test_transfer_deep_copies_and_child_paths(self) -> None:
        payload = {"k": [1, 2], "inner": {"x": 1}}
        flow = make_flow([node("A", ValueNode, input=payload), node("B", ValueNode, input={"old": 1}),
                          node("C", ValueNode)],
                         [("A", "value", "B", "input"), ("A", "value.inner", "C", "input")])
        r = Run(flow)
        await r.run()
        self.assertEqual(flow.nodes["B"].values["value"], payload)
        self.assertEqual(flow.nodes["C"].values["value"], {"x": 1})
        self.assertIsNot(flow.nodes["B"].values["input"], flow.nodes["A"].values["value"])
        self.assertIsNot(flow.nodes["C"].values["input"], flow.nodes["A"].values["value"]["inner"])


class GroupAndListenerTests(EngineTestCase):
    @async_test
    async def test_group_runs_after_children(self) -> None:
        flow = make_flow([node("G", GroupNode), node("x", SleepNode, parent="G", seconds=0.05),
                          node("y", SleepNode, parent="G", seconds=0.02), node("z", ValueNode, input=1)])
        r = Run(flow)
        await r.run()
        self.assertEqual(GroupNode.ran, ["G"])
        order = r.types
        g_start = next(i for i, (t, d) in enumerate(r.events) if t == ev.NODE_STARTED and _snap_id(d["node"]) == "G")
        done = [i for i, (t, d) in enumerate(r.events)
                if t == ev.NODE_COMPLETED and _snap_id(d["node"]) in ("x", "y")]
        self.assertEqual(len(done), 2)
        self.assertGreater(g_start, max(done))
        self.assertEqual(order[-1], ev.FLOW_COMPLETED)
        self.assertEqual(r.started()[:3], ["x", "y", "z"])

    @async_test
    async def test_child_of_non_group_parent_is_not_run(self) -> None:
        flow = make_flow([node("tools", ToolsNode), node("tool", LogNode, parent="tools", message="x")])
        r = Run(flow)
        await r.run()
        self.assertEqual(LogNode.seen, [])
        self.assertEqual(r.statuses("tool")[-1], "completed")
        self.assertEqual(r.node_events("tool"), [ev.NODE_STARTED, ev.NODE_COMPLETED])

    def listener_flow(self) -> Flow:
        return make_flow(
            [node("text", ValueNode, input="hi"), node("L", ListenerNode, eventName="go"),
             node("Lother", ListenerNode, eventName="other"), node("use", ValueNode),
             node("mixed", AddNode)],
            [("L", "outputData", "use", "input"), ("L", "__success", "mixed", "__execute"),
             ("text", "value", "mixed", "a")],
        )

    @async_test
    async def test_listener_not_started_in_root(self) -> None:
        r = Run(self.listener_flow())
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.started(), ["text"])
        self.assertEqual([d["nodeId"] for d in r.of(ev.NODE_STATUS_CHANGED) if d["newStatus"] == "initialized"],
                         ["text"])

    @async_test
    async def test_listener_in_child_context(self) -> None:
        flow = self.listener_flow()
        r = Run(flow, event_data={"eventName": "go", "payload": {"x": 1}}, depth=1, parent_execution_id="EXparent")
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.started(), ["L", "use"])
        self.assertEqual(flow.nodes["use"].values["value"], {"x": 1})

    @async_test
    async def test_child_context_without_matching_listener(self) -> None:
        r = Run(self.listener_flow(), event_data={"eventName": "nobody", "payload": {}})
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.types, [ev.FLOW_STARTED, ev.FLOW_COMPLETED])

    @async_test
    async def test_listener_with_inputs_in_root_is_completed_without_running(self) -> None:
        flow = make_flow([node("src", ValueNode, input="go"), node("L", ListenerNode), node("after", LogNode)],
                         [("src", "value", "L", "eventName"), ("L", "__success", "after", "message")])
        r = Run(flow)
        await r.run()
        self.assertEqual(r.started(), ["src", "after"])
        self.assertEqual(r.statuses("L"), ["completed"])
        self.assertEqual(LogNode.seen, [("after", True)])


class ContextTests(EngineTestCase):
    @async_test
    async def test_emitted_events_callback(self) -> None:
        flow = make_flow([node("em", EmitterNode, eventName="ping", payload={"n": 1})])
        r = Run(flow)
        await r.run()
        self.assertEqual(r.emitted, [("ping", {"n": 1})])
        self.assertIsNot(r.emitted[0][1], flow.nodes["em"].values["payload"])
        self.assertEqual(r.types, [ev.FLOW_STARTED, ev.NODE_STATUS_CHANGED, ev.NODE_STATUS_CHANGED,
                                   ev.NODE_STARTED, ev.NODE_STATUS_CHANGED, ev.NODE_COMPLETED, ev.FLOW_COMPLETED])

    @async_test
    async def test_emit_without_callback_fails_node(self) -> None:
        r = Run(make_flow([node("em", EmitterNode, eventName="ping")]), on_emitted_event=None)
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.of(ev.NODE_FAILED)[0]["error"].message, "Event emission is not supported in this context")

    @async_test
    async def test_debug_log_event(self) -> None:
        r = Run(make_flow([node("log", LogNode, message="hello")]))
        await r.run()
        self.assertEqual(r.of(ev.NODE_DEBUG_LOG_STRING), [{"nodeId": "log", "log": "log: hello"}])
        self.assertEqual(r.node_events("log"), [ev.NODE_STARTED, ev.NODE_DEBUG_LOG_STRING, ev.NODE_COMPLETED])

    @async_test
    async def test_context_fields(self) -> None:
        seen: dict[str, Any] = {}

        class Probe(NodeType):
            type_name = "TestProbe"

            async def execute(self, ctx: Any) -> None:
                seen.update(node_id=ctx.node_id, execution_id=ctx.execution_id, flow_id=ctx.flow_id,
                            depth=ctx.depth, parent=ctx.parent_execution_id, event_data=ctx.event_data,
                            aborted=ctx.signal.aborted)

        r = Run(make_flow([node("L", ListenerNode, eventName="e"), node("p", Probe)],
                          [("L", "__success", "p", "__execute")]),
                depth=2, parent_execution_id="EXp", event_data={"eventName": "e", "payload": None})
        await r.run()
        self.assertEqual(seen, {"node_id": "p", "execution_id": "EXtest", "flow_id": "V2testflow", "depth": 2,
                                "parent": "EXp", "event_data": {"eventName": "e", "payload": None},
                                "aborted": False})

    @async_test
    async def test_internal_error_fails_flow(self) -> None:
        def on_event(run: Run, type_: str, data: dict[str, Any]) -> None:
            if type_ == ev.NODE_COMPLETED:
                raise RuntimeError("sink broke")

        r = Run(make_flow([node("A", ValueNode, input=1), node("B", SleepNode, seconds=5)]), on_event=on_event)
        t0 = time.monotonic()
        with self.assertLogs("chaingraph_gw.engine.engine", level="ERROR"):
            outcome = await r.run()
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(outcome, Outcome("failed", "sink broke", outcome.execution_time_ms))
        self.assertEqual(r.events[-1][1]["error"], JSError("Error", "sink broke"))


# -- controls ----------------------------------------------------------------------------------------

def pause_on_start(run: Run, type_: str, data: dict[str, Any]) -> None:
    if type_ == ev.FLOW_STARTED:
        assert run.engine.pause("hold") is True


class ControlTests(EngineTestCase):
    @async_test
    async def test_pause_and_resume(self) -> None:
        flow = make_flow([node("A", SleepNode, seconds=0.05), node("B", LogNode)],
                         [("A", "value", "B", "message")])
        r = Run(flow)
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: SleepNode.log, what="A started")
        self.assertTrue(r.engine.pause("user pause"))
        self.assertEqual(r.engine.state, "paused")
        self.assertEqual(r.types[-1], ev.FLOW_PAUSED)
        self.assertEqual(r.events[-1][1], {"flowMetadata": flow.metadata(), "reason": "user pause"})
        self.assertFalse(r.engine.pause())
        await wait_for(lambda: r.of(ev.NODE_COMPLETED), what="A completed while paused")
        await asyncio.sleep(0.15)
        self.assertEqual(r.started(), ["A"])  # B never started while paused
        self.assertFalse(task.done())
        self.assertTrue(r.engine.resume())
        self.assertEqual(r.engine.state, "running")
        outcome = await task
        self.assertEqual(outcome.status, "completed")
        t = r.types
        self.assertLess(t.index(ev.FLOW_PAUSED), t.index(ev.NODE_COMPLETED))
        self.assertLess(t.index(ev.FLOW_RESUMED), [i for i, x in enumerate(t) if x == ev.NODE_STARTED][1])
        self.assertEqual(r.of(ev.FLOW_RESUMED), [{"flowMetadata": flow.metadata()}])
        self.assertEqual(LogNode.seen, [("B", "A")])

    @async_test
    async def test_step_runs_exactly_one_node(self) -> None:
        flow = make_flow([node(n, SleepNode, seconds=0.02) for n in ("n1", "n2", "n3")])
        r = Run(flow, on_event=pause_on_start)
        task = asyncio.ensure_future(r.run())
        await asyncio.sleep(0.05)
        self.assertEqual(r.started(), [])
        self.assertEqual(r.engine.state, "paused")
        self.assertTrue(r.engine.step())
        self.assertEqual(r.started(), ["n1"])
        await wait_for(lambda: len(r.of(ev.NODE_COMPLETED)) == 1, what="n1 done")
        await asyncio.sleep(0.05)
        self.assertEqual(r.started(), ["n1"])
        self.assertEqual(r.engine.state, "paused")
        self.assertTrue(r.engine.step())
        self.assertEqual(r.started(), ["n1", "n2"])
        self.assertTrue(r.engine.resume())
        outcome = await task
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.started(), ["n1", "n2", "n3"])

    @async_test
    async def test_step_returns_false_when_nothing_ready(self) -> None:
        flow = make_flow([node("A", SleepNode, seconds=0.05), node("B", LogNode)],
                         [("A", "value", "B", "message")])
        r = Run(flow)
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: SleepNode.log, what="A started")
        self.assertTrue(r.engine.pause())
        self.assertFalse(r.engine.step())  # A is running, B is not ready yet
        await wait_for(lambda: r.of(ev.NODE_COMPLETED), what="A done")
        self.assertTrue(r.engine.step())  # B
        self.assertFalse(r.engine.step())
        outcome = await task  # the last node ran: nothing left, so the flow ends even though paused
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(LogNode.seen, [("B", "A")])

    @async_test
    async def test_breakpoint_pauses_before_node(self) -> None:
        flow = make_flow([node("A", ValueNode, input=1), node("B", ValueNode), node("C", ValueNode)],
                         [("A", "value", "B", "input"), ("B", "value", "C", "input")])
        r = Run(flow, options=ExecutionOptions(breakpoints=frozenset({"B"})))
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: r.of(ev.FLOW_PAUSED), what="breakpoint")
        await asyncio.sleep(0.05)
        self.assertEqual(r.engine.state, "paused")
        self.assertEqual(r.started(), ["A"])
        self.assertEqual(r.types[-2:], [ev.DEBUG_BREAKPOINT_HIT, ev.FLOW_PAUSED])
        self.assertEqual(_snap_id(r.events[-2][1]["node"]), "B")
        self.assertTrue(r.engine.resume())
        outcome = await task
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.started(), ["A", "B", "C"])
        self.assertEqual(len(r.of(ev.DEBUG_BREAKPOINT_HIT)), 1)
        self.assertEqual(flow.nodes["C"].values["value"], 1)

    @async_test
    async def test_step_on_breakpoint_node_runs_it(self) -> None:
        flow = make_flow([node("A", SleepNode, seconds=0.01), node("B", SleepNode, seconds=0.01),
                          node("C", ValueNode)],
                         [("A", "__success", "B", "__execute"), ("B", "__success", "C", "__execute")])
        r = Run(flow, options=ExecutionOptions(breakpoints=frozenset({"A", "B"})))
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: r.of(ev.DEBUG_BREAKPOINT_HIT), what="breakpoint A")
        self.assertEqual(r.started(), [])
        self.assertTrue(r.engine.step())  # runs A, stays paused
        self.assertEqual(r.started(), ["A"])
        await wait_for(lambda: r.of(ev.NODE_COMPLETED), what="A done")
        await asyncio.sleep(0.03)
        self.assertEqual(r.engine.state, "paused")
        self.assertEqual(r.started(), ["A"])
        self.assertTrue(r.engine.step())  # B: a breakpoint node, stepping runs it
        self.assertEqual(r.started(), ["A", "B"])
        self.assertTrue(r.engine.resume())
        outcome = await task
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.started(), ["A", "B", "C"])
        self.assertEqual([_snap_id(d["node"]) for d in r.of(ev.DEBUG_BREAKPOINT_HIT)], ["A"])

    @async_test
    async def test_breakpoint_on_skipped_node_is_not_hit(self) -> None:
        flow = make_flow([node("F", FailNode), node("B", LogNode), node("C", LogNode, message="c")],
                         [("F", "value", "B", "message")])
        r = Run(flow, options=ExecutionOptions(breakpoints=frozenset({"B"})))
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.of(ev.DEBUG_BREAKPOINT_HIT), [])
        self.assertEqual(r.skipped(), {"B": ev.SKIP_UNRESOLVED})

    @async_test
    async def test_resume_from_inside_event_callback(self) -> None:
        def on_event(run: Run, type_: str, data: dict[str, Any]) -> None:
            if type_ == ev.FLOW_PAUSED:
                assert run.engine.resume() is True

        flow = make_flow([node("A", ValueNode, input=1), node("B", ValueNode)], [("A", "value", "B", "input")])
        r = Run(flow, on_event=on_event, options=ExecutionOptions(breakpoints=frozenset({"B"})))
        outcome = await r.run()
        self.assertEqual(outcome.status, "completed")
        self.assertEqual(r.started(), ["A", "B"])
        t = r.types
        self.assertEqual(t[t.index(ev.DEBUG_BREAKPOINT_HIT):t.index(ev.DEBUG_BREAKPOINT_HIT) + 4],
                         [ev.DEBUG_BREAKPOINT_HIT, ev.FLOW_PAUSED, ev.FLOW_RESUMED, ev.NODE_STATUS_CHANGED])

    @async_test
    async def test_stop_during_long_sleep(self) -> None:
        flow = make_flow([node("slow", SleepNode, seconds=30), node("next", LogNode)],
                         [("slow", "value", "next", "message")])
        r = Run(flow)
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: SleepNode.log, what="slow started")
        t0 = time.monotonic()
        r.engine.stop("enough")
        self.assertEqual(r.types[-1], ev.FLOW_CANCELLED)  # emitted at once
        outcome = await task
        self.assertLess(time.monotonic() - t0, 0.5)
        self.assertEqual(outcome.status, "cancelled")
        self.assertEqual(outcome.error, "enough")
        self.assertEqual(r.events[-1][1]["reason"], "enough")
        self.assertIsInstance(r.events[-1][1]["executionTime"], int)
        self.assertTrue(SleepNode.signals[0].aborted)
        self.assertEqual(SleepNode.signals[0].reason, "enough")
        await asyncio.sleep(0.02)
        r.check_terminal()
        r.engine.stop("again")
        self.assertEqual(len(r.of(ev.FLOW_CANCELLED)), 1)
        self.assertEqual(r.engine.state, "cancelled")

    @async_test
    async def test_stop_while_paused(self) -> None:
        r = Run(make_flow([node("A", SleepNode)]), on_event=pause_on_start)
        task = asyncio.ensure_future(r.run())
        await asyncio.sleep(0.02)
        self.assertEqual(r.engine.state, "paused")
        r.engine.stop()
        outcome = await task
        self.assertEqual(outcome.status, "cancelled")
        self.assertEqual(r.events[-1][1]["reason"], "Execution stopped by user")
        self.assertEqual(r.types, [ev.FLOW_STARTED, ev.FLOW_PAUSED, ev.NODE_STATUS_CHANGED, ev.FLOW_CANCELLED])

    @async_test
    async def test_stop_before_run(self) -> None:
        r = Run(make_flow([node("A", ValueNode, input=1)]))
        r.engine.stop("never mind")
        outcome = await r.run()
        self.assertEqual(outcome, Outcome("cancelled", "never mind", 0))
        self.assertEqual(r.types, [ev.FLOW_CANCELLED])

    @async_test
    async def test_cancelling_run_task_cancels_execution(self) -> None:
        r = Run(make_flow([node("slow", SleepNode, seconds=30)]))
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: SleepNode.log, what="started")
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        self.assertEqual(r.types[-1], ev.FLOW_CANCELLED)
        self.assertEqual(r.engine.state, "cancelled")

    @async_test
    async def test_controls_return_false_in_wrong_states(self) -> None:
        r = Run(make_flow([node("A", SleepNode, seconds=0.03)]))
        e = r.engine
        self.assertEqual(e.state, "created")
        self.assertEqual((e.pause(), e.resume(), e.step()), (False, False, False))
        task = asyncio.ensure_future(r.run())
        await wait_for(lambda: SleepNode.log, what="started")
        self.assertEqual(e.state, "running")
        self.assertEqual((e.resume(), e.step()), (False, False))
        await task
        self.assertEqual(e.state, "completed")
        n = len(r.events)
        self.assertEqual((e.pause(), e.resume(), e.step()), (False, False, False))
        e.stop()
        self.assertEqual(len(r.events), n)
        self.assertEqual(e.state, "completed")


class OptionsTests(unittest.TestCase):
    def test_defaults(self) -> None:
        o = ExecutionOptions.from_wire(None)
        self.assertEqual((o.max_concurrency, o.node_timeout_ms, o.flow_timeout_ms, o.debug, o.breakpoints),
                         (50, 3_600_000, 10_800_000, False, frozenset()))
        self.assertEqual(ExecutionOptions.from_wire({}), ExecutionOptions())

    def test_from_wire(self) -> None:
        o = ExecutionOptions.from_wire({"execution": {"maxConcurrency": 10, "nodeTimeoutMs": 300000.0,
                                                      "flowTimeoutMs": 900000}, "debug": True,
                                        "breakpoints": ["NOa", "NOb"]})
        self.assertEqual(o, ExecutionOptions(10, 300000, 900000, True, frozenset({"NOa", "NOb"})))
        self.assertEqual(ExecutionOptions.from_wire(o.to_wire()), o)

    def test_invalid_values_fall_back(self) -> None:
        o = ExecutionOptions.from_wire({"execution": {"maxConcurrency": 0, "nodeTimeoutMs": "5",
                                                      "flowTimeoutMs": True}, "debug": "yes",
                                        "breakpoints": "NOa"})
        self.assertEqual(o, ExecutionOptions())
