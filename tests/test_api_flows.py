"""``flows.*`` (flow CRUD with versions and cursors) and ``nodes.list`` over a real gateway."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import ClassVar

import yaml

from .api_helpers import (
    POSTGRES_SKIP,
    ApiTestCase,
    collect_events,
    create_execution,
    create_flow,
    details,
    sleep_chain_flow,
    text_log_flow,
    wait_status,
)
from .helpers import async_test

FLOW_ID_RE = re.compile(r"^V2[346789ABCDEFGHJKLMNPQRTUVWXYabcdefghijkmnpqrtwxyz]{24}$")
SUMMARY_FIELDS = {"id", "name", "ownerId", "version", "createdAt", "updatedAt"}


class FlowCrudTests(ApiTestCase):

    @async_test
    async def test_create_returns_the_flow_summary(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        out = await c.mutation("flows.create", {"flow": text_log_flow(name="My flow")})
        self.assertEqual(set(out), SUMMARY_FIELDS)
        self.assertRegex(out["id"], FLOW_ID_RE)
        self.assertEqual(out["name"], "My flow")
        self.assertEqual(out["ownerId"], "dev:admin")
        self.assertEqual(out["version"], 1)
        self.assertIsInstance(out["createdAt"], datetime)
        self.assertEqual(out["createdAt"], out["updatedAt"])
        annotations = c.frames[-1]["result"]["data"]["meta"]["values"]
        self.assertEqual(annotations["createdAt"], ["Date"])
        self.assertEqual(annotations["updatedAt"], ["Date"])
        # Each create is a new flow.
        again = await c.mutation("flows.create", {"flow": text_log_flow(name="My flow")})
        self.assertNotEqual(again["id"], out["id"])

    @async_test
    async def test_get_returns_summary_and_document(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        doc = text_log_flow("abc", name="Doc")
        doc["description"] = "a description"
        doc["tags"] = ["t1"]
        created = await c.mutation("flows.create", {"flow": doc})
        got = await c.query("flows.get", {"flowId": created["id"]})
        self.assertEqual({k: got[k] for k in SUMMARY_FIELDS}, created)
        flow = got["flow"]
        self.assertEqual(flow["name"], "Doc")
        self.assertEqual(flow["description"], "a description")
        self.assertEqual(flow["tags"], ["t1"])
        self.assertEqual([(n["id"], n["type"]) for n in flow["nodes"]], [("text", "TextNode"), ("log", "DebugLogNode")])
        self.assertEqual(flow["nodes"][0]["values"], {"text": "abc"})
        self.assertEqual([(e["from"], e["to"]) for e in flow["edges"]], [("text.text", "log.message")])
        self.assertTrue(all(isinstance(e.get("id"), str) and e["id"] for e in flow["edges"]))

    @async_test
    async def test_create_accepts_yaml_and_json_text(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        doc = text_log_flow("from text", name="Texty")
        for text in (yaml.safe_dump(doc), __import__("json").dumps(doc)):
            out = await c.mutation("flows.create", {"flow": text})
            self.assertEqual(out["name"], "Texty")
            got = await c.query("flows.get", {"flowId": out["id"]})
            self.assertEqual(got["flow"]["nodes"][0]["values"], {"text": "from text"})

    @async_test
    async def test_get_unknown_flow_is_not_found(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        await self.assert_trpc_error(c.query("flows.get", {"flowId": "V2nothing"}), "NOT_FOUND",
                                     "Flow with id V2nothing not found")
        await self.assert_trpc_error(c.query("flows.get", {}), "BAD_REQUEST")

    @async_test
    async def test_list_pages_with_next_cursor(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        self.assertEqual(await c.query("flows.list", {}), {"items": [], "nextCursor": None})
        ids = []
        for i in range(5):
            ids.append((await c.mutation("flows.create", {"flow": text_log_flow(name=f"F{i}")}))["id"])
        everything = await c.query("flows.list", {"limit": 50})
        self.assertIsNone(everything["nextCursor"])
        self.assertEqual(sorted(f["id"] for f in everything["items"]), sorted(ids))
        for item in everything["items"]:
            self.assertEqual(set(item), SUMMARY_FIELDS)

        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            inp = {"limit": 2} if cursor is None else {"limit": 2, "after": cursor}
            page = await c.query("flows.list", inp)
            pages += 1
            self.assertLessEqual(len(page["items"]), 2)
            seen += [f["id"] for f in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
            self.assertEqual(cursor, page["items"][-1]["id"])
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [f["id"] for f in everything["items"]])  # same order, no duplicates

        exact = await c.query("flows.list", {"limit": 5})
        self.assertEqual(len(exact["items"]), 5)
        self.assertIsNone(exact["nextCursor"])  # nothing after the last item

    @async_test
    async def test_list_validation(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        for bad in ({"limit": 0}, {"limit": -1}, {"limit": "ten"}):
            with self.subTest(input=bad):
                await self.assert_trpc_error(c.query("flows.list", bad), "BAD_REQUEST")

    @async_test
    async def test_list_with_an_unknown_cursor_is_a_client_error(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        ids = [await create_flow(c, text_log_flow(name=f"F{i}")) for i in range(3)]
        page = await c.query("flows.list", {"limit": 1})
        # The flow the cursor points at is deleted between two page requests.
        await c.mutation("flows.delete", {"flowId": page["nextCursor"]})
        try:
            await asyncio.wait_for(c.query("flows.list", {"limit": 1, "after": page["nextCursor"]}), 5)
        except Exception as exc:
            code = getattr(exc, "code", None)
            self.assertIn(code, ("BAD_REQUEST", "NOT_FOUND"),
                          f"a stale/unknown cursor must be a client error, got {code}: {exc}")
        self.assertTrue(ids)
        try:
            await asyncio.wait_for(c.query("flows.list", {"after": "V2neverexisted"}), 5)
        except Exception as exc:
            self.assertIn(getattr(exc, "code", None), ("BAD_REQUEST", "NOT_FOUND"), str(exc))

    @async_test
    async def test_update_bumps_the_version_and_replaces_the_document(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        created = await c.mutation("flows.create", {"flow": text_log_flow("one", name="V1")})
        fid = created["id"]
        await asyncio.sleep(0.005)
        updated = await c.mutation("flows.update", {"flowId": fid, "flow": text_log_flow("two", name="V2 name")})
        self.assertEqual(set(updated), SUMMARY_FIELDS)
        self.assertEqual(updated["id"], fid)
        self.assertEqual(updated["version"], 2)
        self.assertEqual(updated["name"], "V2 name")
        self.assertEqual(updated["ownerId"], created["ownerId"])
        self.assertEqual(updated["createdAt"], created["createdAt"])
        self.assertGreater(updated["updatedAt"], created["updatedAt"])
        got = await c.query("flows.get", {"flowId": fid})
        self.assertEqual(got["version"], 2)
        self.assertEqual(got["flow"]["nodes"][0]["values"], {"text": "two"})

        # With the right expectedVersion it goes through; a stale one is a CONFLICT and changes nothing.
        third = await c.mutation("flows.update", {"flowId": fid, "flow": text_log_flow("three", name="V3"),
                                                  "expectedVersion": 2})
        self.assertEqual(third["version"], 3)
        await self.assert_trpc_error(
            c.mutation("flows.update", {"flowId": fid, "flow": text_log_flow("stale"), "expectedVersion": 2}),
            "CONFLICT")
        got = await c.query("flows.get", {"flowId": fid})
        self.assertEqual((got["version"], got["name"]), (3, "V3"))
        self.assertEqual(got["flow"]["nodes"][0]["values"], {"text": "three"})

        # New executions run the current document.
        eid = await create_execution(c, fid)
        await c.mutation("start", {"executionId": eid})
        events = [i["data"] for i in await collect_events(c, eid)]
        self.assertEqual([e["data"]["log"] for e in events if e["type"] == "node:debug-log-string"], ["three"])

    @async_test
    async def test_update_errors(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        fid = await create_flow(c, text_log_flow())
        await self.assert_trpc_error(c.mutation("flows.update", {"flowId": "V2gone", "flow": text_log_flow()}),
                                     "NOT_FOUND", "Flow with id V2gone not found")
        err = await self.assert_trpc_error(
            c.mutation("flows.update", {"flowId": fid, "flow": {"name": "x", "nodes": [{"id": "n", "type": "Nope"}]}}),
            "BAD_REQUEST")
        self.assertIn("nodes[0].type", str(err))
        await self.assert_trpc_error(
            c.mutation("flows.update", {"flowId": fid, "flow": text_log_flow(), "expectedVersion": 0}),
            "BAD_REQUEST")
        got = await c.query("flows.get", {"flowId": fid})
        self.assertEqual(got["version"], 1)  # failed updates changed nothing

    @async_test
    async def test_delete(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        keep = await create_flow(c, text_log_flow(name="keep"))
        fid = await create_flow(c, text_log_flow(name="drop"))
        self.assertEqual(await c.mutation("flows.delete", {"flowId": fid}), {"success": True})
        await self.assert_trpc_error(c.query("flows.get", {"flowId": fid}), "NOT_FOUND")
        self.assertEqual([f["id"] for f in (await c.query("flows.list", {}))["items"]], [keep])
        await self.assert_trpc_error(c.mutation("flows.delete", {"flowId": fid}), "NOT_FOUND",
                                     f"Flow with id {fid} not found")
        await self.assert_trpc_error(c.mutation("create", {"flowId": fid}), "NOT_FOUND",
                                     f"Flow with id {fid} not found")

    @async_test
    async def test_an_execution_whose_flow_was_deleted_fails_cleanly(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        fid = await create_flow(c, sleep_chain_flow(1, 10))
        eid = await create_execution(c, fid)
        await c.mutation("flows.delete", {"flowId": fid})
        await c.mutation("start", {"executionId": eid})
        row = await wait_status(c, eid, ("failed", "completed", "stopped"))
        self.assertEqual(row["status"], "failed")
        self.assertIn(fid, row["errorMessage"])
        events = [i["data"] for i in await collect_events(c, eid)]
        self.assertEqual(events[-1]["type"], "flow:failed")
        self.assertEqual((await details(c, eid))["status"], "failed")


class FlowValidationTests(ApiTestCase):
    """Invalid documents are BAD_REQUEST naming the node / port / edge at fault."""

    BAD_DOCS: ClassVar[list] = [
        ("unknown node type",
         {"name": "x", "nodes": [{"id": "a", "type": "NoSuchNode"}]},
         "nodes[0].type", ["'a'", "NoSuchNode"]),
        ("unknown port in values",
         {"name": "x", "nodes": [{"id": "a", "type": "TextNode", "values": {"nope": 1}}]},
         "nodes[0].values.nope", ["'a'", "nope"]),
        ("wrong value type",
         {"name": "x", "nodes": [{"id": "a", "type": "SleepNode", "values": {"duration": "slow"}}]},
         "nodes[0].values.duration", ["'a'", "duration"]),
        ("edge to a missing node",
         {"name": "x", "nodes": [{"id": "a", "type": "TextNode"}],
          "edges": [{"from": "a.text", "to": "zz.message"}]},
         "edges[0].to", ["zz"]),
        ("edge from a missing port",
         {"name": "x", "nodes": [{"id": "a", "type": "TextNode"}, {"id": "b", "type": "DebugLogNode"}],
          "edges": [{"from": "a.nope", "to": "b.message"}]},
         "edges[0].from", ["'a'", "nope"]),
        ("edge from an input port",
         {"name": "x", "nodes": [{"id": "a", "type": "DebugLogNode"}, {"id": "b", "type": "DebugLogNode"}],
          "edges": [{"from": "a.message", "to": "b.message"}]},
         "edges[0].from", ["a.message"]),
        ("duplicate node id",
         {"name": "x", "nodes": [{"id": "a", "type": "TextNode"}, {"id": "a", "type": "DebugLogNode"}]},
         "nodes[1].id", ["'a'"]),
        ("missing name", {"nodes": []}, "name", []),
    ]

    @async_test
    async def test_invalid_documents_name_the_culprit(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        for label, doc, path, words in self.BAD_DOCS:
            with self.subTest(label):
                err = await self.assert_trpc_error(c.mutation("flows.create", {"flow": doc}), "BAD_REQUEST")
                self.assertIn(path, str(err))
                for w in words:
                    self.assertIn(w, str(err))
                self.assertIn(path, [e["path"] for e in err.data["flowErrors"]])
        self.assertEqual((await c.query("flows.list", {}))["items"], [])  # nothing was stored

    @async_test
    async def test_every_problem_is_reported(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        doc = {"name": "x", "nodes": [{"id": "a", "type": "Nope"}, {"id": "b", "type": "TextNode",
                                                                     "values": {"zzz": 1}}]}
        err = await self.assert_trpc_error(c.mutation("flows.create", {"flow": doc}), "BAD_REQUEST")
        paths = [e["path"] for e in err.data["flowErrors"]]
        self.assertIn("nodes[0].type", paths)
        self.assertIn("nodes[1].values.zzz", paths)

    @async_test
    async def test_not_a_document(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        for bad in (42, None, ["a"], "name: [unclosed"):
            with self.subTest(flow=bad):
                await self.assert_trpc_error(c.mutation("flows.create", {"flow": bad}), "BAD_REQUEST")
        await self.assert_trpc_error(c.mutation("flows.create", {}), "BAD_REQUEST")


class NodesListTests(ApiTestCase):

    @async_test
    async def test_nodes_list_gives_categories_with_node_types_and_ports(self) -> None:
        h = await self.start_gateway()
        c = await self.client(h)
        cats = await c.query("nodes.list")
        self.assertIsInstance(cats, list)
        self.assertTrue(cats)
        orders = [cat["metadata"]["order"] for cat in cats]
        self.assertEqual(orders, sorted(orders))
        by_type = {}
        for cat in cats:
            self.assertEqual(set(cat) >= {"category", "metadata", "nodes"}, True)
            self.assertEqual(cat["metadata"]["id"], cat["category"])
            for node in cat["nodes"]:
                self.assertEqual(node["category"], cat["category"])
                by_type[node["type"]] = node
        for t in ("TextNode", "SleepNode", "MathNode", "EventEmitterNode", "EventListenerNode", "DebugLogNode"):
            self.assertIn(t, by_type)
        sleep_ports = {p["key"]: p for p in by_type["SleepNode"]["ports"]}
        self.assertEqual(sleep_ports["duration"]["type"], "number")
        self.assertEqual(sleep_ports["duration"]["direction"], "input")
        self.assertEqual(sleep_ports["duration"]["defaultValue"], 1000)
        self.assertEqual(sleep_ports["actualDuration"]["direction"], "output")
        self.assertEqual({p["key"] for p in by_type["DebugLogNode"]["ports"]} >= {"message"}, True)
        self.assertEqual(by_type["TextNode"]["title"], "Text Node")


# -- the same tests against the PostgreSQL store (local mode with DATABASE_URL) ---------------------


class PgFlowCrudTests(FlowCrudTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgFlowValidationTests(FlowValidationTests):
    backend = "postgres"
    skip = POSTGRES_SKIP


class PgNodesListTests(NodesListTests):
    backend = "postgres"
    skip = POSTGRES_SKIP
