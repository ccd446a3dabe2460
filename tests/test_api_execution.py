"""The execution API end to end: a real gateway (embedded backend) and a tRPC WebSocket client.

Covers ChainGraph's nine root procedures plus ``step`` and ``executionEvents``: lifecycle and
status guards, event streams (replay, live, resume, filters), controls (pause, resume, step,
breakpoints, stop), child executions, tree/roots queries and recovery after a restart.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta

from chaingraph_gw.api.wire_types import ExecutionEventImpl
from chaingraph_gw.trpc.superjson import UNDEFINED, JSError

from .api_helpers import (
    POSTGRES_SKIP,
    TERMINAL,
    ApiTestCase,
    check_event_sequence,
    collect_events,
    create_execution,
    create_flow,
    details,
    emitter_flow,
    nested_emitter_flow,
    next_batch,
    node_of,
    parallel_sleeps_flow,
    run_flow,
    sleep_chain_flow,
    started_nodes,
    stored_events,
    text_log_flow,
    wait_status,
)
from .helpers import async_test

EXEC_ID_RE = re.compile(r"^EX[346789ABCDEFGHJKLMNPQRTUVWXYabcdefghijkmnpqrtwxyz]{24}$")
WIRE_FIELDS = {
    "id", "flowId", "ownerId", "rootExecutionId", "parentExecutionId", "status", "createdAt", "updatedAt",
    "startedAt", "completedAt", "errorMessage", "errorNodeId", "executionDepth", "options", "integration",
    "externalEvents",
}
DATE_FIELDS = ("createdAt", "updatedAt", "startedAt", "completedAt")
MISSING_ID = "Parameter executionId is required for this procedure"


def fan_out_flow(ms_first: int = 100, ms_rest: int = 100) -> dict:
    """``s1`` then three independent SleepNodes ``a``, ``b``, ``c`` that all wait for ``s1``."""
    return {
        "name": "Fan out",
        "nodes": [{"id": "s1", "type": "SleepNode", "values": {"duration": ms_first}}]
        + [{"id": n, "type": "SleepNode", "values": {"duration": ms_rest}} for n in ("a", "b", "c")],
        "edges": [{"from": "s1.__success", "to": f"{n}.__execute"} for n in ("a", "b", "c")],
    }


# =====================================================================================================
# lifecycle and guards
# =====================================================================================================

class ExecutionLifecycleTests(ApiTestCase):

    @async_test
    async def test_create_returns_execution_id_and_a_created_row(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id = await create_flow(c, text_log_flow())
        out = await c.mutation("create", {"flowId": flow_id})
        self.assertEqual(set(out), {"executionId"})
        eid = out["executionId"]
        self.assertRegex(eid, EXEC_ID_RE)

        row = await details(c, eid)
        self.assertTrue(WIRE_FIELDS <= set(row), f"missing ExecutionRow fields: {WIRE_FIELDS - set(row)}")
        self.assertEqual(row["id"], eid)
        self.assertEqual(row["flowId"], flow_id)
        self.assertEqual(row["ownerId"], "dev:admin")  # the flow's owner (auth off: everyone is dev:admin)
        self.assertEqual(row["rootExecutionId"], eid)
        self.assertIsNone(row["parentExecutionId"])
        self.assertEqual(row["status"], "created")
        self.assertEqual(row["executionDepth"], 0)
        self.assertEqual(row["options"], {})
        self.assertEqual(row["integration"], {})
        self.assertEqual(row["externalEvents"], [])
        self.assertIsNone(row["startedAt"])
        self.assertIsNone(row["completedAt"])
        self.assertIsNone(row["errorMessage"])
        self.assertIsInstance(row["createdAt"], datetime)
        self.assertIsInstance(row["updatedAt"], datetime)
        self.assertIsNotNone(row["createdAt"].tzinfo)
        self.assertLess(abs(datetime.now(row["createdAt"].tzinfo) - row["createdAt"]), timedelta(seconds=30))

        # On the wire the dates are superjson Dates (ISO strings annotated ["Date"]).
        frame = c.frames[-1]
        annotations = frame["result"]["data"]["meta"]["values"]
        self.assertEqual(annotations["createdAt"], ["Date"])
        self.assertEqual(annotations["updatedAt"], ["Date"])
        self.assertRegex(frame["result"]["data"]["json"]["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    @async_test
    async def test_create_keeps_options_integration_and_external_events(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id = await create_flow(c, text_log_flow())
        options = {"execution": {"maxConcurrency": 4, "nodeTimeoutMs": 5000, "flowTimeoutMs": 60000},
                   "debug": True, "breakpoints": ["log"]}
        integration = {"archai": {"agentID": "agent-1", "chatID": "chat-1", "messageID": 3},
                       "external": {"k": "v"}}
        events = [{"eventName": "order", "payload": {"n": 1}}]
        eid = await create_execution(c, flow_id, options=options, integration=integration, events=events)
        row = await details(c, eid)
        self.assertEqual(row["options"], options)
        self.assertEqual(row["integration"], integration)
        self.assertEqual(row["externalEvents"], events)

    @async_test
    async def test_create_for_an_unknown_flow_is_not_found(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        await self.assert_trpc_error(c.mutation("create", {"flowId": "V2nope"}), "NOT_FOUND",
                                     "Flow with id V2nope not found")

    @async_test
    async def test_create_without_flow_id_is_bad_request(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        err = await self.assert_trpc_error(c.mutation("create", {}), "BAD_REQUEST")
        self.assertIn("flowId", err.data["zodError"]["fieldErrors"])

    @async_test
    async def test_start_runs_the_flow_to_completion(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id = await create_flow(c, text_log_flow("hi there"))
        eid = await create_execution(c, flow_id)
        self.assertEqual(await c.mutation("start", {"executionId": eid}), {"success": True})
        events = [item["data"] for item in await collect_events(c, eid)]
        self.assertEqual(events[-1]["type"], "flow:completed")
        logs = [e["data"]["log"] for e in events if e["type"] == "node:debug-log-string"]
        self.assertEqual(logs, ["hi there"])

        row = await details(c, eid)
        self.assertEqual(row["status"], "completed")
        self.assertIsInstance(row["startedAt"], datetime)
        self.assertIsInstance(row["completedAt"], datetime)
        self.assertLessEqual(row["createdAt"], row["startedAt"])
        self.assertLessEqual(row["startedAt"], row["completedAt"])
        self.assertIsNone(row["errorMessage"])

    @async_test
    async def test_a_failing_node_does_not_fail_the_flow(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        doc = {"name": "Fails", "nodes": [{"id": "bad", "type": "EventEmitterNode", "values": {"eventName": ""}}]}
        _, eid = await run_flow(c, doc)
        events = [item["data"] for item in await collect_events(c, eid)]
        failed = [e for e in events if e["type"] == "node:failed"]
        self.assertEqual(len(failed), 1)
        self.assertEqual(node_of(failed[0]), "bad")
        self.assertIsInstance(failed[0]["data"]["error"], JSError)
        self.assertIn("Event name is required", failed[0]["data"]["error"].message)
        self.assertEqual(events[-1]["type"], "flow:completed")
        self.assertEqual((await details(c, eid))["status"], "completed")

    @async_test
    async def test_execution_options_are_applied(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        # maxConcurrency 1: independent nodes run one after another.
        _, eid = await run_flow(c, parallel_sleeps_flow(["a", "b", "c"], 40),
                                options={"execution": {"maxConcurrency": 1}})
        events = [i["data"] for i in await collect_events(c, eid)]
        order = [(e["type"], node_of(e)) for e in events if e["type"] in ("node:started", "node:completed")]
        self.assertEqual(order, [("node:started", "a"), ("node:completed", "a"), ("node:started", "b"),
                                 ("node:completed", "b"), ("node:started", "c"), ("node:completed", "c")])
        # nodeTimeoutMs fails the node (not the flow).
        _, eid = await run_flow(c, sleep_chain_flow(1, 2000), options={"execution": {"nodeTimeoutMs": 50}})
        events = [i["data"] for i in await collect_events(c, eid)]
        failed = [e for e in events if e["type"] == "node:failed"]
        self.assertEqual([node_of(e) for e in failed], ["s1"])
        self.assertEqual(failed[0]["data"]["error"].message, "Node execution timed out after 50 ms")
        self.assertEqual(events[-1]["type"], "flow:completed")
        # flowTimeoutMs fails the flow.
        _, eid = await run_flow(c, sleep_chain_flow(1, 2000), options={"execution": {"flowTimeoutMs": 100}})
        events = [i["data"] for i in await collect_events(c, eid)]
        check_event_sequence(self, events)
        self.assertEqual(events[-1]["type"], "flow:failed")
        self.assertEqual(events[-1]["data"]["error"].message, "Flow execution timed out after 100 ms")
        row = await details(c, eid)
        self.assertEqual(row["status"], "failed")
        self.assertEqual(row["errorMessage"], "Flow execution timed out after 100 ms")

    @async_test
    async def test_start_is_only_allowed_from_created(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(1, 300))
        await self.assert_trpc_error(
            c.mutation("start", {"executionId": eid}), "BAD_REQUEST",
            "Cannot start execution in status running. Execution must be in 'created' status.")
        await wait_status(c, eid, "completed")
        await self.assert_trpc_error(
            c.mutation("start", {"executionId": eid}), "BAD_REQUEST",
            "Cannot start execution in status completed. Execution must be in 'created' status.")
        # The second start did not run the flow again.
        events = await stored_events(h, eid)
        self.assertEqual([e.type for e in events].count("flow:started"), 1)

    @async_test
    async def test_stop_of_a_created_execution_ends_it(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        eid = await create_execution(c, await create_flow(c, text_log_flow()))
        self.assertEqual(await c.mutation("stop", {"executionId": eid, "reason": "not needed"}),
                         {"success": True})
        row = await wait_status(c, eid, "stopped")
        self.assertIsInstance(row["completedAt"], datetime)
        events = [item["data"] for item in await collect_events(c, eid)]
        check_event_sequence(self, events)
        self.assertEqual(events[-1]["type"], "flow:cancelled")
        self.assertEqual(events[-1]["data"]["reason"], "not needed")
        await self.assert_trpc_error(
            c.mutation("start", {"executionId": eid}), "BAD_REQUEST",
            "Cannot start execution in status stopped. Execution must be in 'created' status.")

    @async_test
    async def test_controls_check_the_status_with_chaingraph_messages(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id = await create_flow(c, sleep_chain_flow(2, 150))
        created = await create_execution(c, flow_id)
        # created: pause / resume / step refused
        await self.assert_trpc_error(c.mutation("pause", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot pause execution in status created")
        await self.assert_trpc_error(c.mutation("resume", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot resume execution in status created")
        await self.assert_trpc_error(c.mutation("step", {"executionId": created}), "BAD_REQUEST")

        # running: resume / step refused
        await c.mutation("start", {"executionId": created})
        await self.assert_trpc_error(c.mutation("resume", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot resume execution in status running")
        await self.assert_trpc_error(c.mutation("step", {"executionId": created}), "BAD_REQUEST")
        # paused: pause refused
        self.assertEqual(await c.mutation("pause", {"executionId": created}), {"success": True})
        await self.assert_trpc_error(c.mutation("pause", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot pause execution in status paused")
        # stopped: everything refused
        await c.mutation("stop", {"executionId": created})
        await wait_status(c, created, "stopped")
        await self.assert_trpc_error(c.mutation("stop", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot stop execution in status stopped")
        await self.assert_trpc_error(c.mutation("pause", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot pause execution in status stopped")
        await self.assert_trpc_error(c.mutation("resume", {"executionId": created}), "BAD_REQUEST",
                                     "Cannot resume execution in status stopped")

        # completed: stop / pause / resume refused
        _, done = await run_flow(c, text_log_flow())
        await wait_status(c, done, "completed")
        await self.assert_trpc_error(c.mutation("stop", {"executionId": done}), "BAD_REQUEST",
                                     "Cannot stop execution in status completed")
        await self.assert_trpc_error(c.mutation("pause", {"executionId": done}), "BAD_REQUEST",
                                     "Cannot pause execution in status completed")
        await self.assert_trpc_error(c.mutation("resume", {"executionId": done}), "BAD_REQUEST",
                                     "Cannot resume execution in status completed")
        await self.assert_trpc_error(c.mutation("step", {"executionId": done}), "BAD_REQUEST")

    @async_test
    async def test_missing_or_non_string_execution_id_is_bad_request(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        calls = [("mutation", p) for p in ("start", "stop", "pause", "resume", "step")]
        calls += [("query", p) for p in ("getExecutionDetails", "getExecutionsTree")]
        for kind, path in calls:
            for bad in ({}, {"executionId": 42}, {"executionId": None}):
                with self.subTest(path=path, input=bad):
                    await self.assert_trpc_error(getattr(c, kind)(path, bad), "BAD_REQUEST", MISSING_ID)
        await self.assert_trpc_error(c.query("getExecutionDetails"), "BAD_REQUEST", MISSING_ID)
        for path in ("subscribeToExecutionEvents", "executionEvents"):
            with self.subTest(path=path):
                await self.assert_trpc_error(next_batch(c.subscribe(path, {"fromIndex": 0})), "BAD_REQUEST",
                                             MISSING_ID)

    @async_test
    async def test_unknown_execution(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        x = "EXdoesnotexist"
        await self.assert_trpc_error(c.query("getExecutionDetails", {"executionId": x}), "NOT_FOUND",
                                     contains=x)
        await self.assert_trpc_error(c.query("getExecutionsTree", {"executionId": x}), "NOT_FOUND", contains=x)
        await self.assert_trpc_error(c.mutation("start", {"executionId": x}), "NOT_FOUND",
                                     f"Execution with id {x} not found, create it first")
        for path in ("stop", "pause", "resume"):
            with self.subTest(path=path):
                await self.assert_trpc_error(c.mutation(path, {"executionId": x}), "BAD_REQUEST",
                                             f"Execution with id {x} not found")
        await self.assert_trpc_error(c.mutation("step", {"executionId": x}), "BAD_REQUEST",
                                     f"Execution with id {x} not found")
        for path in ("subscribeToExecutionEvents", "executionEvents"):
            with self.subTest(path=path):
                await self.assert_trpc_error(next_batch(c.subscribe(path, {"executionId": x})), "NOT_FOUND",
                                             contains=x)


# =====================================================================================================
# event streams
# =====================================================================================================

class ExecutionEventsTests(ApiTestCase):

    @async_test
    async def test_execution_events_are_indexed_tracked_and_end_after_the_terminal_event(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id, eid = await run_flow(c, text_log_flow("hello"))
        items = await collect_events(c, eid)  # returns only because the server ended the stream
        events = [i["data"] for i in items]
        check_event_sequence(self, events)
        for item in items:
            self.assertEqual(set(item), {"id", "data"})
            self.assertEqual(item["id"], str(item["data"]["index"]))
            self.assertEqual(set(item["data"]), {"index", "type", "timestamp", "data"})
            self.assertIsInstance(item["data"]["timestamp"], datetime)
        stamps = [e["timestamp"] for e in events]
        self.assertEqual(stamps, sorted(stamps))

        created = events[0]["data"]
        self.assertEqual(created["executionId"], eid)
        self.assertEqual(created["flowId"], flow_id)
        self.assertEqual(created["rootExecutionId"], eid)
        self.assertIsNone(created["parentExecutionId"])
        self.assertEqual(created["executionDepth"], 0)
        self.assertEqual(events[1]["type"], "flow:started")
        self.assertEqual(events[1]["data"]["flowMetadata"]["id"], flow_id)
        self.assertEqual(events[-1]["type"], "flow:completed")
        self.assertIsInstance(events[-1]["data"]["executionTime"], int)
        self.assertEqual(started_nodes(events), ["text", "log"])
        completed = [node_of(e) for e in events if e["type"] == "node:completed"]
        self.assertEqual(completed, ["text", "log"])
        transfers = [e["data"]["serializedEdge"] for e in events if e["type"] == "edge:transfer-completed"]
        self.assertEqual([(t["sourceNodeId"], t["targetNodeId"]) for t in transfers], [("text", "log")])

        # The wire: each item tracked (result.id == the index), then `stopped`.
        sub_frames = [f for f in c.frames if f.get("id") == c.frames[-1]["id"]]
        self.assertEqual(sub_frames[0]["result"], {"type": "started"})
        self.assertEqual([f["result"].get("id") for f in sub_frames[1:-1]],
                         [str(i) for i in range(len(events))])
        self.assertEqual(sub_frames[-1]["result"], {"type": "stopped"})
        # Plain superjson events (no custom ExecutionEventImpl type): timestamp is a superjson Date.
        payload = sub_frames[1]["result"]["data"]
        self.assertEqual(payload["json"]["id"], "0")
        self.assertEqual(payload["json"]["data"]["index"], 0)
        self.assertEqual(payload["meta"]["values"]["data.timestamp"], ["Date"])
        self.assertNotIn("custom", str(payload["meta"]))

    @async_test
    async def test_execution_events_resume_after_last_event_id(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, text_log_flow())
        full = [i["data"] for i in await collect_events(c, eid)]
        self.assertGreater(len(full), 6)

        # As the tRPC client does on reconnect: params.lastEventId.
        resumed = []
        async for item in c.subscribe("executionEvents", {"executionId": eid}, last_event_id="4"):
            resumed.append(item["data"])
        self.assertEqual(resumed, full[5:])

        # ... or in the input.
        resumed = [i["data"] for i in await collect_events(c, eid, lastEventId="2")]
        self.assertEqual(resumed, full[3:])

        # fromIndex works too.
        self.assertEqual([i["data"] for i in await collect_events(c, eid, fromIndex=3)], full[3:])

    @async_test
    async def test_execution_events_resumed_after_the_terminal_event_end_at_once(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, text_log_flow())
        full = [i["data"] for i in await collect_events(c, eid)]
        last = full[-1]["index"]
        # A client that saw the terminal event and reconnects with it as lastEventId: nothing more
        # will ever come, so the stream must end (not hang forever).
        items: list = []

        async def via_params() -> None:
            async for item in c.subscribe("executionEvents", {"executionId": eid}, last_event_id=str(last)):
                items.append(item)

        for label, stream in (("input", lambda: collect_events(c, eid, lastEventId=str(last), timeout=1)),
                              ("params", lambda: asyncio.wait_for(via_params(), 1))):
            try:
                got = await stream()
            except TimeoutError:
                self.fail(f"executionEvents resumed (via {label}) after the terminal event never ended")
            self.assertFalse(got)
        self.assertEqual(items, [])

    @async_test
    async def test_execution_events_bad_last_event_id_is_bad_request(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, text_log_flow())
        await self.assert_trpc_error(
            next_batch(c.subscribe("executionEvents", {"executionId": eid, "lastEventId": "abc"})), "BAD_REQUEST")

    @async_test
    async def test_execution_events_follow_a_run_from_before_start(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        eid = await create_execution(c, await create_flow(c, sleep_chain_flow(2, 50)))
        follower = self.follow(c, eid)
        first = await follower.until(lambda e: True)
        self.assertEqual((first["index"], first["type"]), (0, "execution:created"))
        await asyncio.sleep(0.1)
        self.assertEqual(len(follower.events), 1)  # nothing else until start
        await c.mutation("start", {"executionId": eid})
        await follower.until_ended()
        self.assertIsNone(follower.error)
        check_event_sequence(self, follower.events)
        self.assertEqual(started_nodes(follower.events), ["s1", "s2"])
        stored = await stored_events(h, eid)
        self.assertEqual([(e.index, e.type) for e in stored], [(e["index"], e["type"]) for e in follower.events])

    @async_test
    async def test_subscribe_wire_format(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, text_log_flow())
        await wait_status(c, eid, "completed")
        gen = c.subscribe("subscribeToExecutionEvents", {"executionId": eid})
        await next_batch(gen)
        await gen.aclose()
        frames = [f for f in c.frames if "result" in f and f["result"].get("type") == "data"]
        payload = frames[-1]["result"]["data"]
        self.assertNotIn("id", frames[-1]["result"])  # never tracked envelopes
        events = payload["json"]
        self.assertIsInstance(events, list)
        self.assertGreater(len(events), 0)
        for i, ev in enumerate(events):
            self.assertEqual(payload["meta"]["values"][str(i)], [["custom", "ExecutionEventImpl"]])
            self.assertEqual(set(ev), {"index", "type", "timestamp", "data"})
            self.assertRegex(ev["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIsInstance(ev["data"], dict)
            self.assertIn("json", ev["data"])  # a nested superjson payload object
        started = next(ev for ev in events if ev["type"] == "node:started")
        self.assertEqual(started["data"]["meta"]["values"]["node"], [["custom", "BaseNode"]])

    @async_test
    async def test_subscribe_yields_non_empty_event_arrays_and_stays_open_after_the_terminal_event(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(2, 50))
        follower = self.follow(c, eid, path="subscribeToExecutionEvents")
        await follower.until(lambda e: e["type"] in TERMINAL)
        await asyncio.sleep(0.3)
        self.assertFalse(follower.ended, "the stream must stay open after the terminal event")
        self.assertTrue(follower.batches)
        for batch in follower.batches:
            self.assertIsInstance(batch, list)
            self.assertGreater(len(batch), 0)
            for e in batch:
                self.assertIsInstance(e, ExecutionEventImpl)
                self.assertIsInstance(e.timestamp, datetime)
        check_event_sequence(self, follower.events)
        node_started = next(e for e in follower.events if e["type"] == "node:started")
        self.assertEqual(node_started["data"]["node"]["id"], "s1")

        # Stopping it: the server answers `stopped`.
        sub_id = next(f["id"] for f in c.frames if f.get("result", {}).get("type") == "started")
        await follower.close()
        await asyncio.wait_for(self._wait_frame(c, sub_id, "stopped"), 3)

    async def _wait_frame(self, c, rid, kind):  # type: ignore[no-untyped-def]
        while not any(f.get("id") == rid and f.get("result", {}).get("type") == kind for f in c.frames):
            await asyncio.sleep(0.01)

    @async_test
    async def test_subscribe_replays_then_follows_live_without_gap_or_duplicate(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(4, 60))
        followers = [self.follow(c, eid, path="subscribeToExecutionEvents")]
        for _ in range(3):  # more subscribers joining while it runs, each replaying from 0
            await asyncio.sleep(0.06)
            followers.append(self.follow(c, eid, path="subscribeToExecutionEvents"))
        late = self.follow(c, eid, path="subscribeToExecutionEvents", fromIndex=5)
        for f in followers + [late]:
            await f.until(lambda e: e["type"] in TERMINAL)
        stored = [(e.index, e.type) for e in await stored_events(h, eid)]
        for f in followers:
            check_event_sequence(self, f.events)
            self.assertEqual([(e["index"], e["type"]) for e in f.events], stored)
        self.assertEqual([(e["index"], e["type"]) for e in late.events], stored[5:])
        # A second client is served the same stream.
        c2 = await self.client(h)
        other = self.follow(c2, eid, path="subscribeToExecutionEvents")
        await other.until(lambda e: e["type"] in TERMINAL)
        self.assertEqual([(e["index"], e["type"]) for e in other.events], stored)

    @async_test
    async def test_subscribe_from_index_and_event_type_filter(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(3, 30))
        await wait_status(c, eid, "completed")
        stored = await stored_events(h, eid)

        f = self.follow(c, eid, path="subscribeToExecutionEvents", fromIndex=4)
        await f.until(lambda e: e["type"] in TERMINAL)
        self.assertEqual([e["index"] for e in f.events], [e.index for e in stored[4:]])

        wanted = ["node:completed", "flow:completed"]
        g = self.follow(c, eid, path="subscribeToExecutionEvents", eventTypes=wanted)
        await g.until(lambda e: e["type"] in TERMINAL)
        self.assertEqual([(e["index"], e["type"]) for e in g.events],
                         [(e.index, e.type) for e in stored if e.type in wanted])
        self.assertEqual(len([e for e in g.events if e["type"] == "node:completed"]), 3)
        for batch in g.batches:
            self.assertGreater(len(batch), 0)

    @async_test
    async def test_long_logs_replay_in_pages_and_batches(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(250, 0))
        live = self.follow(c, eid, path="subscribeToExecutionEvents")
        items = await collect_events(c, eid, timeout=15)
        events = [i["data"] for i in items]
        self.assertGreater(len(events), 1000)  # more than one page of the log
        check_event_sequence(self, events)
        self.assertEqual(len(started_nodes(events)), 250)
        await live.until(lambda e: e["type"] in TERMINAL, timeout=15)
        check_event_sequence(self, live.events)
        self.assertEqual(len(live.events), len(events))
        # A replay from scratch after the end, in batches of at most batchSize.
        again = self.follow(c, eid, path="subscribeToExecutionEvents", batchSize=50)
        await again.until(lambda e: e["type"] in TERMINAL, timeout=15)
        self.assertEqual([e["index"] for e in again.events], list(range(len(events))))
        self.assertTrue(all(0 < len(b) <= 50 for b in again.batches), [len(b) for b in again.batches])

    @async_test
    async def test_subscribe_live_batches_respect_batch_size(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        eid = await create_execution(c, await create_flow(c, parallel_sleeps_flow(["a", "b", "c", "d"], 20)))
        f = self.follow(c, eid, path="subscribeToExecutionEvents", batchSize=2)
        await f.until_type("execution:created")  # now following live
        await c.mutation("start", {"executionId": eid})
        await f.until(lambda e: e["type"] in TERMINAL)
        check_event_sequence(self, f.events)
        sizes = [len(b) for b in f.batches]
        self.assertTrue(all(0 < n <= 2 for n in sizes), f"batchSize 2 exceeded: batch sizes {sizes}")

    @async_test
    async def test_subscribe_filter_live_yields_only_matching_non_empty_batches(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        eid = await create_execution(c, await create_flow(c, sleep_chain_flow(2, 50)))
        f = self.follow(c, eid, path="subscribeToExecutionEvents", eventTypes=["flow:completed"])
        await asyncio.sleep(0.05)
        await c.mutation("start", {"executionId": eid})
        await f.until_type("flow:completed")
        await asyncio.sleep(0.1)
        self.assertEqual(f.types(), ["flow:completed"])
        self.assertEqual(len(f.batches), 1)
        self.assertEqual(len(f.items), 1)


# =====================================================================================================
# controls
# =====================================================================================================

class ExecutionControlTests(ApiTestCase):

    @async_test
    async def test_pause_holds_new_nodes_and_resume_continues(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(3, 150))
        f = self.follow(c, eid)
        await f.until_type("node:started", node="s1")
        self.assertEqual(await c.mutation("pause", {"executionId": eid, "reason": "look"}), {"success": True})
        paused = await f.until_type("flow:paused")
        self.assertEqual(paused["data"]["reason"], "look")
        self.assertEqual((await details(c, eid))["status"], "paused")
        # The running node finishes; the next one does not start.
        await f.until_type("node:completed", node="s1")
        await asyncio.sleep(0.35)
        self.assertEqual(started_nodes(f.events), ["s1"])
        self.assertEqual((await details(c, eid))["status"], "paused")

        self.assertEqual(await c.mutation("resume", {"executionId": eid}), {"success": True})
        await f.until_type("flow:resumed")
        self.assertEqual((await details(c, eid))["status"], "running")
        await f.until_ended()
        check_event_sequence(self, f.events)
        self.assertEqual(started_nodes(f.events), ["s1", "s2", "s3"])
        types = f.types()
        self.assertLess(types.index("flow:paused"), types.index("flow:resumed"))
        self.assertLess(types.index("flow:resumed"), [i for i, e in enumerate(f.events)
                                                     if e["type"] == "node:started"][1])
        self.assertEqual(types[-1], "flow:completed")
        self.assertEqual((await details(c, eid))["status"], "completed")

    @async_test
    async def test_pause_right_after_start_runs_nothing(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        eid = await create_execution(c, await create_flow(c, sleep_chain_flow(2, 50)))
        f = self.follow(c, eid)
        await c.mutation("start", {"executionId": eid})
        await c.mutation("pause", {"executionId": eid})
        await f.until_type("flow:paused")
        await asyncio.sleep(0.3)
        self.assertLessEqual(len(started_nodes(f.events)), 1)  # at most the node already under way
        n = len(started_nodes(f.events))
        await c.mutation("resume", {"executionId": eid})
        await f.until_ended()
        self.assertEqual(started_nodes(f.events)[n:], ["s1", "s2"][n:])
        check_event_sequence(self, f.events)

    @async_test
    async def test_step_runs_exactly_one_ready_node_while_paused(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, fan_out_flow(150, 80))
        f = self.follow(c, eid)
        await f.until_type("node:started", node="s1")
        await c.mutation("pause", {"executionId": eid})
        await f.until_type("node:completed", node="s1")
        await asyncio.sleep(0.15)
        self.assertEqual(started_nodes(f.events), ["s1"])  # a, b, c are ready but held

        self.assertEqual(await c.mutation("step", {"executionId": eid}), {"success": True})
        await f.until_type("node:completed", node="a")
        await asyncio.sleep(0.2)
        self.assertEqual(started_nodes(f.events), ["s1", "a"])
        self.assertEqual((await details(c, eid))["status"], "paused")

        await c.mutation("step", {"executionId": eid})
        await f.until_type("node:completed", node="b")
        await asyncio.sleep(0.2)
        self.assertEqual(started_nodes(f.events), ["s1", "a", "b"])

        await c.mutation("resume", {"executionId": eid})
        await f.until_ended()
        self.assertEqual(started_nodes(f.events), ["s1", "a", "b", "c"])
        self.assertEqual(f.types()[-1], "flow:completed")
        check_event_sequence(self, f.events)
        self.assertEqual((await details(c, eid))["status"], "completed")

    @async_test
    async def test_breakpoint_pauses_before_the_node(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(3, 50), options={"breakpoints": ["s2"]})
        f = self.follow(c, eid)
        hit = await f.until_type("debug:breakpoint-hit")
        self.assertEqual(hit["data"]["node"]["id"], "s2")
        await f.until_type("flow:paused")
        await asyncio.sleep(0.25)
        self.assertEqual(started_nodes(f.events), ["s1"])
        types = f.types()
        self.assertLess(types.index("node:completed"), types.index("debug:breakpoint-hit"))
        self.assertLess(types.index("debug:breakpoint-hit"), types.index("flow:paused"))
        await c.mutation("stop", {"executionId": eid})
        await f.until_ended()

    @async_test
    async def test_breakpoint_pause_shows_as_paused_and_can_be_resumed(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(3, 50), options={"breakpoints": ["s2"]})
        f = self.follow(c, eid)
        await f.until_type("flow:paused")
        self.assertEqual((await details(c, eid))["status"], "paused",
                         "an execution halted at a breakpoint must report status paused")
        self.assertEqual(await c.mutation("resume", {"executionId": eid}), {"success": True})
        await f.until_ended()
        self.assertEqual(started_nodes(f.events), ["s1", "s2", "s3"])
        self.assertEqual(f.types()[-1], "flow:completed")
        self.assertEqual((await details(c, eid))["status"], "completed")

    @async_test
    async def test_step_from_a_breakpoint_runs_the_held_node_only(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(3, 50), options={"breakpoints": ["s2"]})
        f = self.follow(c, eid)
        await f.until_type("flow:paused")
        try:
            self.assertEqual(await c.mutation("step", {"executionId": eid}), {"success": True})
        except Exception as exc:
            self.fail(f"step at a breakpoint was refused: {exc}")
        await f.until_type("node:completed", node="s2")
        await asyncio.sleep(0.2)
        self.assertEqual(started_nodes(f.events), ["s1", "s2"])
        await c.mutation("resume", {"executionId": eid})
        await f.until_ended()
        self.assertEqual(started_nodes(f.events), ["s1", "s2", "s3"])

    @async_test
    async def test_stop_cancels_a_running_sleep_within_one_second(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(2, 5000))
        f = self.follow(c, eid)
        await f.until_type("node:started", node="s1")
        t0 = time.monotonic()
        self.assertEqual(await c.mutation("stop", {"executionId": eid, "reason": "enough"}), {"success": True})
        cancelled = await f.until_type("flow:cancelled", timeout=1.0)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(cancelled["data"]["reason"], "enough")
        await f.until_ended(timeout=1.0)
        check_event_sequence(self, f.events)
        self.assertEqual([e for e in f.events if e["type"] == "node:completed"], [])
        self.assertEqual(started_nodes(f.events), ["s1"])
        row = await details(c, eid)
        self.assertEqual(row["status"], "stopped")
        self.assertIsInstance(row["completedAt"], datetime)
        self.assertEqual(row["errorMessage"], "enough")
        await asyncio.sleep(0.2)  # nothing is appended after the terminal event
        self.assertEqual((await stored_events(h, eid))[-1].type, "flow:cancelled")

    @async_test
    async def test_stop_of_a_paused_execution_with_the_default_reason(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, eid = await run_flow(c, sleep_chain_flow(3, 100))
        f = self.follow(c, eid)
        await f.until_type("node:started", node="s1")
        await c.mutation("pause", {"executionId": eid})
        await f.until_type("flow:paused")
        t0 = time.monotonic()
        await c.mutation("stop", {"executionId": eid})
        cancelled = await f.until_type("flow:cancelled", timeout=1.0)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(cancelled["data"]["reason"], "User requested stop")
        await f.until_ended()
        check_event_sequence(self, f.events)
        self.assertEqual((await details(c, eid))["status"], "stopped")


# =====================================================================================================
# child executions, tree and roots
# =====================================================================================================

async def _tree_when(c, root_id: str, n: int, statuses: tuple[str, ...] = ("completed",),  # type: ignore[no-untyped-def]
                     timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        tree = await c.query("getExecutionsTree", {"executionId": root_id})
        if len(tree) == n and all(t["execution"]["status"] in statuses for t in tree):
            return tree
        if time.monotonic() > deadline:
            raise AssertionError(f"tree never reached {n} nodes in {statuses}: "
                                 f"{[(t['id'], t['execution']['status']) for t in tree]}")
        await asyncio.sleep(0.02)


class ChildExecutionTests(ApiTestCase):

    @async_test
    async def test_event_emitter_spawns_a_running_child_of_the_same_flow(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        options = {"execution": {"maxConcurrency": 7}}
        integration = {"archai": {"agentID": "ag", "chatID": "chat", "messageID": 9}, "external": {"k": 1}}
        flow_id, root = await run_flow(c, emitter_flow("order", {"item": "tea"}), options=options,
                                       integration=integration)
        tree = await _tree_when(c, root, 2)
        self.assertEqual([(t["level"], t["parentId"]) for t in tree], [(0, None), (1, root)])
        self.assertEqual(tree[0]["id"], root)
        child = tree[1]["execution"]
        self.assertEqual(tree[1]["id"], child["id"])
        self.assertRegex(child["id"], EXEC_ID_RE)
        self.assertEqual(child["flowId"], flow_id)
        self.assertEqual(child["parentExecutionId"], root)
        self.assertEqual(child["rootExecutionId"], root)
        self.assertEqual(child["executionDepth"], 1)
        self.assertEqual(child["ownerId"], "dev:admin")
        self.assertEqual(child["externalEvents"], [{"eventName": "order", "payload": {"item": "tea"}}])
        self.assertEqual(child["options"], options)
        self.assertEqual(child["integration"], {"archai": {"agentID": "ag"}, "external": {"k": 1}})

        # The child ran the listener branch with the event payload; the root did not.
        child_events = [i["data"] for i in await collect_events(c, child["id"])]
        check_event_sequence(self, child_events)
        self.assertEqual(child_events[0]["data"]["parentExecutionId"], root)
        self.assertEqual(child_events[0]["data"]["executionDepth"], 1)
        self.assertEqual(started_nodes(child_events), ["listen", "log"])
        self.assertEqual([e["data"]["log"] for e in child_events if e["type"] == "node:debug-log-string"], ["tea"])
        root_events = [i["data"] for i in await collect_events(c, root)]
        self.assertEqual(started_nodes(root_events), ["emit"])

        # A child is never `created`: start is refused.
        await self.assert_trpc_error(c.mutation("start", {"executionId": child["id"]}), "BAD_REQUEST")

    @async_test
    async def test_child_starts_running_by_itself(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        doc = emitter_flow()
        doc["nodes"].append({"id": "nap", "type": "SleepNode", "values": {"duration": 300}})
        doc["edges"].append({"from": "listen.__success", "to": "nap.__execute"})
        _, root = await run_flow(c, doc)
        seen: list[str] = []
        deadline = time.monotonic() + 5
        while True:
            tree = await c.query("getExecutionsTree", {"executionId": root})
            if len(tree) == 2:
                seen.append(tree[1]["execution"]["status"])
                if seen[-1] in ("completed", "failed", "stopped"):
                    break
            self.assertLess(time.monotonic(), deadline, f"child did not finish: {seen}")
            await asyncio.sleep(0.02)
        self.assertNotIn("created", seen)  # nobody has to call `start` for a child
        self.assertIn("running", seen)
        self.assertEqual(seen[-1], "completed")
        child_events = [i["data"] for i in await collect_events(c, tree[1]["id"])]
        self.assertEqual(started_nodes(child_events), ["listen", "log", "nap"])

    @async_test
    async def test_child_execution_rows_record_when_they_started(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        _, root = await run_flow(c, emitter_flow())
        tree = await _tree_when(c, root, 2)
        child = tree[1]["execution"]
        self.assertEqual(child["status"], "completed")
        self.assertIsInstance(child["completedAt"], datetime)
        # It ran (without a `start` call), so like every run it has a start time.
        self.assertIsInstance(child["startedAt"], datetime, "child execution row has startedAt = null")
        self.assertLessEqual(child["createdAt"], child["startedAt"])
        self.assertLessEqual(child["startedAt"], child["completedAt"])

    @async_test
    async def test_nested_children_in_tree_and_root_executions(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id, root = await run_flow(c, nested_emitter_flow())
        tree = await _tree_when(c, root, 3)
        self.assertEqual([t["level"] for t in tree], [0, 1, 2])
        child, grandchild = tree[1], tree[2]
        self.assertEqual(child["parentId"], root)
        self.assertEqual(grandchild["parentId"], child["id"])
        self.assertEqual(grandchild["execution"]["executionDepth"], 2)
        self.assertEqual(grandchild["execution"]["rootExecutionId"], root)
        self.assertEqual(grandchild["execution"]["externalEvents"][0]["eventName"], "b")
        for t in tree:
            self.assertEqual(t["id"], t["execution"]["id"])
            self.assertIsInstance(t["execution"]["createdAt"], datetime)

        roots = await c.query("getRootExecutions", {"flowId": flow_id})
        self.assertEqual(len(roots), 1)  # children are not roots
        self.assertEqual(set(roots[0]), {"execution", "levels", "totalNested"})
        self.assertEqual(roots[0]["execution"]["id"], root)
        self.assertEqual(roots[0]["levels"], 2)
        self.assertEqual(roots[0]["totalNested"], 3)
        gc_events = [i["data"] for i in await collect_events(c, grandchild["id"])]
        self.assertEqual([e["data"]["log"] for e in gc_events if e["type"] == "node:debug-log-string"], ["2"])

    @async_test
    async def test_root_executions_order_limit_and_cursor(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id = await create_flow(c, text_log_flow())
        other_flow = await create_flow(c, text_log_flow())
        ids = []
        for _ in range(4):
            ids.append(await create_execution(c, flow_id))
            await asyncio.sleep(0.005)  # distinct createdAt milliseconds
        await create_execution(c, other_flow)

        roots = await c.query("getRootExecutions", {"flowId": flow_id})
        self.assertEqual([r["execution"]["id"] for r in roots], ids[::-1])  # newest first
        for r in roots:
            self.assertEqual((r["levels"], r["totalNested"]), (0, 1))
            self.assertEqual(r["execution"]["status"], "created")

        page = await c.query("getRootExecutions", {"flowId": flow_id, "limit": 2})
        self.assertEqual([r["execution"]["id"] for r in page], [ids[3], ids[2]])
        cursor = page[-1]["execution"]["createdAt"]
        rest = await c.query("getRootExecutions", {"flowId": flow_id, "limit": 2, "after": cursor})
        self.assertEqual([r["execution"]["id"] for r in rest], [ids[1], ids[0]])
        self.assertEqual(await c.query("getRootExecutions", {"flowId": flow_id, "limit": 2,
                                                             "after": rest[-1]["execution"]["createdAt"]}), [])

    @async_test
    async def test_root_executions_validation(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        flow_id = await create_flow(c, text_log_flow())
        for limit in (0, 101):
            with self.subTest(limit=limit):
                await self.assert_trpc_error(c.query("getRootExecutions", {"flowId": flow_id, "limit": limit}),
                                             "BAD_REQUEST")
        await self.assert_trpc_error(c.query("getRootExecutions", {"flowId": "V2missing"}), "NOT_FOUND",
                                     "Flow with id V2missing not found")
        await self.assert_trpc_error(c.query("getRootExecutions", {}), "BAD_REQUEST")
        self.assertEqual(await c.query("getRootExecutions", {"flowId": flow_id, "limit": 100}), [])
        # As the ChainGraph frontend sends it: `after` undefined (superjson null + ["undefined"]).
        eid = await create_execution(c, flow_id)
        roots = await c.query("getRootExecutions", {"flowId": flow_id, "limit": 100, "after": UNDEFINED})
        self.assertEqual([r["execution"]["id"] for r in roots], [eid])


# =====================================================================================================
# restart recovery
# =====================================================================================================

class RestartRecoveryTests(ApiTestCase):

    @async_test
    async def test_executions_running_at_shutdown_are_failed_after_restart(self) -> None:
        data_dir = self.mktemp()
        h1 = await self.start_gateway(data_dir=data_dir)
        c1 = await self.client(h1)
        flow_id = await create_flow(c1, sleep_chain_flow(2, 5000))
        running = await create_execution(c1, flow_id)
        paused = await create_execution(c1, flow_id)
        idle = await create_execution(c1, flow_id)
        f = self.follow(c1, running)
        g = self.follow(c1, paused)
        await c1.mutation("start", {"executionId": running})
        await c1.mutation("start", {"executionId": paused})
        await f.until_type("node:started", node="s1")
        await g.until_type("node:started", node="s1")
        await c1.mutation("pause", {"executionId": paused})
        await g.until_type("flow:paused")
        before = {e.index for e in await stored_events(h1, running)}
        await f.close()
        await g.close()
        await c1.close()
        await self.stop_gateway(h1)

        h2 = await self.start_gateway(data_dir=data_dir)
        c2 = await self.client(h2)
        for eid in (running, paused):
            with self.subTest(execution=eid):
                row = await details(c2, eid)
                self.assertEqual(row["status"], "failed")
                self.assertTrue(row["errorMessage"] and "restart" in row["errorMessage"].lower(),
                                f"unclear failure reason: {row['errorMessage']!r}")
                self.assertIsInstance(row["completedAt"], datetime)
                events = [i["data"] for i in await collect_events(c2, eid)]
                check_event_sequence(self, events)
                self.assertEqual(events[-1]["type"], "flow:failed")
                self.assertIn("restart", events[-1]["data"]["error"].message.lower())
        # The stored events of the interrupted run still replay, unchanged, before the new terminal event.
        replay = [i["data"] for i in await collect_events(c2, running)]
        self.assertTrue(before <= {e["index"] for e in replay})
        self.assertIn("node:started", [e["type"] for e in replay])
        # Nothing stays running; a never-started execution is untouched and can still run.
        statuses = {r["execution"]["id"]: r["execution"]["status"]
                    for r in await c2.query("getRootExecutions", {"flowId": flow_id})}
        self.assertEqual(statuses, {running: "failed", paused: "failed", idle: "created"})
        await c2.mutation("stop", {"executionId": idle})
        await wait_status(c2, idle, "stopped")


# -- the same tests against the PostgreSQL store (local mode with DATABASE_URL) ---------------------


class PgExecutionLifecycleTests(ExecutionLifecycleTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgExecutionEventsTests(ExecutionEventsTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgExecutionControlTests(ExecutionControlTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgChildExecutionTests(ChildExecutionTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgRestartRecoveryTests(RestartRecoveryTests):
    backend = "postgres"
    skip = POSTGRES_SKIP
