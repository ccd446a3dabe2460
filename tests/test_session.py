"""Tests for chaingraph_gw.trpc.session.TRPCSession, driven through a fake transport (protocol doc §1–§7)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from chaingraph_gw.metrics import GatewayMetrics
from chaingraph_gw.trpc.errors import TRPCError
from chaingraph_gw.trpc.router import Call, Router, tracked
from chaingraph_gw.trpc.session import ConnectionInfo, SessionOptions, TRPCServer, TRPCSession
from chaingraph_gw.trpc.superjson import UNDEFINED
from chaingraph_gw.trpc.transformer import make_transformer

from .helpers import FakeTransport, async_test, dumps, ticks, wait_for

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SJ_UNDEFINED = {"json": None, "meta": {"values": ["undefined"], "v": 1}}


class TicksInput(BaseModel):
    count: int = Field(ge=0)
    lastEventId: str | None = None  # wire name


@dataclass
class Probe:
    """What the test procedures did."""

    calls: list[str] = field(default_factory=list)
    cleanups: list[str] = field(default_factory=list)
    produced: int = 0
    gate: asyncio.Future | None = None
    signals: list[Any] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)
    # set by the stop-ordering test: frames already sent when a generator's finally ran
    frames_at_cleanup: list[list[Any]] = field(default_factory=list)
    transport: FakeTransport | None = None


def make_router(probe: Probe) -> Router:
    r = Router()

    @r.query("echo")
    def echo(call: Call) -> Any:
        probe.calls.append("echo")
        return call.input

    @r.query("async")
    async def async_query(call: Call) -> Any:
        await asyncio.sleep(0)
        probe.calls.append("async")
        return {"async": call.input}

    @r.query("slow")
    async def slow(call: Call) -> Any:
        probe.signals.append(call.signal)
        probe.calls.append("slow:start")
        loop = asyncio.get_running_loop()
        if probe.gate is None:
            probe.gate = loop.create_future()
        try:
            return await probe.gate
        finally:
            probe.cleanups.append("slow")

    @r.mutation("add", input=int)
    def add(call: Call) -> int:
        probe.calls.append("add")
        return call.input + 1

    @r.query("person", input=TicksInput)
    def person(call: Call) -> Any:
        return call.input.count

    @r.query("conflict")
    def conflict(call: Call) -> Any:
        raise TRPCError("CONFLICT", "already exists")

    @r.query("kaboom")
    def kaboom(call: Call) -> Any:
        raise ValueError("kaboom")

    @r.query("nothing")
    def nothing(call: Call) -> Any:
        return UNDEFINED

    @r.query("null")
    def null(call: Call) -> Any:
        return None

    @r.query("date")
    def date(call: Call) -> Any:
        return {"at": EPOCH, "n": 1}

    @r.query("ctx")
    def ctx(call: Call) -> Any:
        probe.calls.append("ctx")
        return call.ctx

    @r.query("agen")
    def agen(call: Call) -> Any:
        async def gen():
            yield 1

        return gen()

    @r.query("unencodable")
    def unencodable(call: Call) -> Any:
        return object()

    @r.subscription("ticks", input=TicksInput)
    async def ticks_(call: Call):
        start = int(call.input.lastEventId) + 1 if call.input.lastEventId else 0
        for i in range(start, call.input.count):
            yield tracked(str(i), {"i": i})

    @r.subscription("plain")
    async def plain(call: Call):
        yield "a"
        yield UNDEFINED
        yield {"at": EPOCH}

    @r.subscription("failing")
    async def failing(call: Call):
        yield "x"
        raise TRPCError("CONFLICT", "sub failed")

    @r.subscription("crashing")
    async def crashing(call: Call):
        yield "x"
        raise ValueError("kaboom")

    @r.subscription("forever")
    async def forever(call: Call):
        probe.signals.append(call.signal)
        try:
            yield tracked("0", "first")
            await asyncio.get_running_loop().create_future()  # never resolves
            yield tracked("1", "never")
        finally:
            probe.cleanups.append(f"forever:{call.input}")
            if probe.transport is not None:
                probe.frames_at_cleanup.append(probe.transport.messages)

    @r.subscription("firehose")
    async def firehose(call: Call):
        try:
            i = 0
            while True:
                probe.produced += 1
                yield i
                i += 1
        finally:
            probe.cleanups.append("firehose")

    @r.subscription("echo_input")
    async def echo_input(call: Call):
        probe.inputs.append(call.input)
        yield call.input

    @r.subscription("not_iterable")
    def not_iterable(call: Call) -> Any:
        return 42

    @r.subscription("slow_setup")
    async def slow_setup(call: Call) -> Any:
        loop = asyncio.get_running_loop()
        if probe.gate is None:
            probe.gate = loop.create_future()
        await probe.gate

        async def gen():
            probe.calls.append("slow_setup:iterating")
            yield 1

        return gen()

    @r.subscription("unencodable_sub")
    async def unencodable_sub(call: Call):
        try:
            yield object()
            yield "after"
        finally:
            probe.cleanups.append("unencodable")

    return r


class SessionTestCase(TestCase):
    timeout = 10
    transformer = "superjson"

    def setUp(self) -> None:
        self.probe = Probe()

    def server(self, *, transformer: str | None = None, create_context: Any = None,
               metrics: Any = None, **options: Any) -> TRPCServer:
        opts = {"keepalive_enabled": False, "include_stack": False, **options}
        return TRPCServer(
            make_router(self.probe),
            transformer=make_transformer(transformer or self.transformer),
            create_context=create_context,
            options=SessionOptions(**opts),
            metrics=metrics,
        )

    def connect(self, server: TRPCServer | None = None, url: str = "/", **kw: Any) -> tuple[TRPCSession, FakeTransport]:
        server = server or self.server(**kw)
        transport = FakeTransport()
        self.probe.transport = transport
        session = server.session(transport, ConnectionInfo.from_url(url, {"host": "x"}, "10.0.0.1"))
        self.addCleanup(session.closed)
        session.opened()
        return session, transport

    @staticmethod
    def send(session: TRPCSession, obj: Any) -> None:
        session.receive(dumps(obj))

    @staticmethod
    def q(rid: Any, path: str, input: Any = ..., method: str = "query", **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"path": path}
        if input is not ...:
            params["input"] = input
        params.update(extra)
        return {"id": rid, "method": method, "params": params}

    @classmethod
    def sub(cls, rid: Any, path: str, input: Any = ..., **extra: Any) -> dict[str, Any]:
        return cls.q(rid, path, input, method="subscription", **extra)

    @staticmethod
    def err(rid: Any, message: str, code: str, rpc: int, status: int, path: str | None = None,
            wrap: bool = True, **data: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"code": code, "httpStatus": status}
        if path is not None:
            d["path"] = path
        d["zodError"] = None
        d.update(data)
        shape = {"message": message, "code": rpc, "data": d}
        return {"id": rid, "error": {"json": shape} if wrap else shape}


# -- ping / pong ----------------------------------------------------------------------------------


class PingPongTests(SessionTestCase):
    def test_ping_answered_with_pong(self):
        session, t = self.connect()
        session.receive(b"PING")
        session.receive(b"PING")
        self.assertEqual(t.frames, [b"PONG", b"PONG"])

    def test_pong_ignored(self):
        session, t = self.connect()
        session.receive(b"PONG")
        self.assertEqual(t.frames, [])

    def test_ping_answered_in_order_with_queued_frames(self):
        session, t = self.connect()
        self.send(session, self.q(1, "echo", {"json": 1}))
        session.receive(b"PING")
        self.assertEqual(t.messages, [{"id": 1, "result": {"type": "data", "data": {"json": 1}}}, "PONG"])


# -- queries and mutations ---------------------------------------------------------------------------


class QuerySuperJSONTests(SessionTestCase):
    def test_sync_query(self):
        session, t = self.connect()
        self.send(session, self.q(1, "echo", {"json": {"a": 1}}))
        self.assertEqual(t.frames, [b'{"id":1,"result":{"type":"data","data":{"json":{"a":1}}}}'])

    def test_input_with_meta_decoded_and_result_encoded(self):
        session, t = self.connect()
        self.send(session, self.q(2, "echo", {"json": {"d": "1970-01-01T00:00:00.005Z", "n": "10"},
                                              "meta": {"values": {"d": ["Date"], "n": ["bigint"]}, "v": 1}}))
        self.assertEqual(t.messages, [{"id": 2, "result": {"type": "data", "data": {
            "json": {"d": "1970-01-01T00:00:00.005Z", "n": "10"},
            "meta": {"values": {"d": ["Date"], "n": ["bigint"]}, "v": 1}}}}])

    def test_date_result(self):
        session, t = self.connect()
        self.send(session, self.q(1, "date", SJ_UNDEFINED))
        self.assertEqual(t.messages[0]["result"]["data"], {
            "json": {"at": "1970-01-01T00:00:00.000Z", "n": 1},
            "meta": {"values": {"at": ["Date"]}, "v": 1},
        })

    @async_test
    async def test_async_query(self):
        session, t = self.connect()
        self.send(session, self.q(3, "async", {"json": "x"}))
        self.assertEqual(t.frames, [])
        await wait_for(lambda: t.frames)
        self.assertEqual(t.messages, [{"id": 3, "result": {"type": "data", "data": {"json": {"async": "x"}}}}])

    def test_mutation(self):
        session, t = self.connect()
        self.send(session, self.q(4, "add", {"json": 41}, method="mutation"))
        self.assertEqual(t.messages, [{"id": 4, "result": {"type": "data", "data": {"json": 42}}}])

    def test_undefined_result(self):
        session, t = self.connect()
        self.send(session, self.q(1, "nothing", SJ_UNDEFINED))
        self.assertEqual(t.frames, [b'{"id":1,"result":{"type":"data","data":{"json":null,"meta":{"values":["undefined"],"v":1}}}}'])

    def test_null_result(self):
        session, t = self.connect()
        self.send(session, self.q(2, "null", SJ_UNDEFINED))
        self.assertEqual(t.frames, [b'{"id":2,"result":{"type":"data","data":{"json":null}}}'])

    def test_absent_input_is_undefined(self):
        session, t = self.connect()
        self.send(session, self.q(1, "echo"))
        self.assertEqual(t.messages, [{"id": 1, "result": {"type": "data", "data": SJ_UNDEFINED}}])

    def test_trpc_error(self):
        session, t = self.connect()
        self.send(session, self.q(7, "conflict", SJ_UNDEFINED))
        self.assertEqual(t.messages, [self.err(7, "already exists", "CONFLICT", -32009, 409, path="conflict")])

    def test_plain_exception_becomes_internal_server_error(self):
        session, t = self.connect()
        self.send(session, self.q(8, "kaboom", SJ_UNDEFINED))
        self.assertEqual(t.messages, [self.err(8, "kaboom", "INTERNAL_SERVER_ERROR", -32603, 500, path="kaboom")])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_stack_included_when_enabled(self):
        session, t = self.connect(include_stack=True)
        self.send(session, self.q(8, "kaboom", SJ_UNDEFINED))
        data = t.messages[0]["error"]["json"]["data"]
        self.assertIn("ValueError: kaboom", data["stack"])
        self.flushLoggedErrors(ValueError)

    def test_wrong_kind_is_not_found(self):
        session, t = self.connect()
        self.send(session, self.q(1, "echo", {"json": 1}, method="mutation"))
        self.send(session, self.q(2, "add", {"json": 1}))
        self.send(session, self.q(3, "echo", {"json": 1}, method="subscription"))
        self.send(session, self.q(4, "no.such", {"json": 1}))
        self.assertEqual(t.messages, [
            self.err(1, 'No "mutation"-procedure on path "echo"', "NOT_FOUND", -32004, 404, path="echo"),
            self.err(2, 'No "query"-procedure on path "add"', "NOT_FOUND", -32004, 404, path="add"),
            self.err(3, 'No "subscription"-procedure on path "echo"', "NOT_FOUND", -32004, 404, path="echo"),
            self.err(4, 'No "query"-procedure on path "no.such"', "NOT_FOUND", -32004, 404, path="no.such"),
        ])
        self.assertEqual(self.probe.calls, [])

    @async_test
    async def test_query_returning_async_generator(self):
        session, t = self.connect()
        self.send(session, self.q(5, "agen", SJ_UNDEFINED))
        await ticks(2)
        self.assertEqual(t.messages, [self.err(
            5, "Cannot return an async iterable or observable from a query procedure with WebSockets",
            "UNSUPPORTED_MEDIA_TYPE", -32015, 415, path="agen")])

    def test_validation_error(self):
        session, t = self.connect()
        self.send(session, self.q(6, "person", {"json": {"count": "many"}}))
        error = t.messages[0]["error"]["json"]
        self.assertEqual(error["code"], -32600)
        self.assertEqual(error["data"]["code"], "BAD_REQUEST")
        self.assertEqual(error["data"]["path"], "person")
        self.assertEqual(list(error["data"]["zodError"]["fieldErrors"]), ["count"])
        self.assertEqual(error["data"]["zodError"]["formErrors"], [])
        self.assertTrue(error["message"].startswith("["))

    def test_string_id_and_jsonrpc_echoed(self):
        session, t = self.connect()
        self.send(session, {**self.q("abc", "echo", {"json": "hi"}), "jsonrpc": "2.0"})
        self.send(session, {**self.q("e1", "conflict"), "jsonrpc": "2.0"})
        self.send(session, self.q("e2", "conflict"))
        self.assertEqual(t.messages[0], {"id": "abc", "jsonrpc": "2.0", "result": {"type": "data", "data": {"json": "hi"}}})
        self.assertEqual(t.messages[1]["id"], "e1")
        self.assertEqual(t.messages[1]["jsonrpc"], "2.0")
        self.assertNotIn("jsonrpc", t.messages[2])

    def test_unreadable_superjson_input_is_parse_error_under_request_id(self):
        session, t = self.connect()
        self.send(session, self.q(9, "echo", {"json": 1, "meta": {"values": ["nonsense"], "v": 1}}))
        self.send(session, self.q(10, "echo", 5))
        self.send(session, self.q(11, "echo", {"meta": {}}))
        for rid, msg in zip((9, 10, 11), t.messages):
            self.assertEqual(msg["id"], rid)
            error = msg["error"]["json"]
            self.assertEqual((error["code"], error["data"]["code"]), (-32700, "PARSE_ERROR"))
            self.assertTrue(error["message"].startswith("Invalid superjson input"), error["message"])
        self.assertEqual(len(t.messages), 3)
        self.assertEqual(self.probe.calls, [])

    def test_junk_json_is_parse_error_with_null_id(self):
        session, t = self.connect()
        session.receive(b'{"id":1,"method":')
        self.assertEqual(len(t.messages), 1)
        msg = t.messages[0]
        self.assertIsNone(msg["id"])
        error = msg["error"]["json"]
        self.assertEqual((error["code"], error["data"]["code"], error["data"]["httpStatus"]), (-32700, "PARSE_ERROR", 400))
        self.assertNotIn("path", error["data"])

    def test_binary_frame_is_parse_error(self):
        session, t = self.connect()
        session.receive_binary()
        self.assertEqual(t.messages, [self.err(None, "Binary frames are not supported; send JSON text",
                                               "PARSE_ERROR", -32700, 400)])

    def test_malformed_element_answered_under_readable_id(self):
        session, t = self.connect()
        self.send(session, {"id": 5, "method": "nope", "params": {"path": "echo"}})
        self.send(session, {"id": None, "method": "query", "params": {"path": "echo"}})
        self.send(session, "just a string")
        self.assertEqual(t.messages, [
            self.err(5, "Invalid procedure type", "PARSE_ERROR", -32700, 400),
            self.err(None, "`id` is required", "PARSE_ERROR", -32700, 400),
            self.err(None, "Not an object", "PARSE_ERROR", -32700, 400),
        ])

    def test_unhashable_method_answered_and_rest_of_batch_runs(self):
        # parse_request raises TypeError for a list `method`; the session must still answer it (and
        # the other batch elements) instead of letting the exception escape receive().
        session, t = self.connect()
        try:
            self.send(session, [{"id": 1, "method": ["query"], "params": {"path": "echo"}},
                                self.q(2, "echo", {"json": 2})])
        except TypeError as exc:
            self.fail(f"receive() raised {exc!r}")
        self.assertEqual(t.for_id(1), [self.err(1, "Invalid procedure type", "PARSE_ERROR", -32700, 400)])
        self.assertEqual(t.for_id(2), [{"id": 2, "result": {"type": "data", "data": {"json": 2}}}])

    def test_unencodable_result(self):
        session, t = self.connect()
        self.send(session, self.q(1, "unencodable", SJ_UNDEFINED))
        error = t.messages[0]["error"]["json"]
        self.assertEqual(error["data"]["code"], "INTERNAL_SERVER_ERROR")
        self.assertTrue(error["message"].startswith("Output could not be encoded"))
        self.flushLoggedErrors(TypeError)

    def test_nothing_processed_after_close(self):
        session, t = self.connect()
        session.closed()
        session.receive(b"PING")
        self.send(session, self.q(1, "echo", {"json": 1}))
        session.receive_binary()
        self.assertEqual(t.frames, [])
        self.assertEqual(self.probe.calls, [])


class QueryPlainTests(SessionTestCase):
    transformer = "none"

    def test_undefined_result_omits_data_key(self):
        session, t = self.connect()
        self.send(session, self.q(1, "nothing"))
        self.assertEqual(t.frames, [b'{"id":1,"result":{"type":"data"}}'])

    def test_absent_input_echo_omits_data_key(self):
        session, t = self.connect()
        self.send(session, self.q(1, "echo"))
        self.assertEqual(t.frames, [b'{"id":1,"result":{"type":"data"}}'])

    def test_null_and_values(self):
        session, t = self.connect()
        self.send(session, self.q(1, "null"))
        self.send(session, self.q(2, "echo", {"a": [1, "b"]}))
        self.send(session, self.q(3, "add", 41, method="mutation"))
        self.send(session, self.q(4, "date"))
        self.assertEqual(t.messages, [
            {"id": 1, "result": {"type": "data", "data": None}},
            {"id": 2, "result": {"type": "data", "data": {"a": [1, "b"]}}},
            {"id": 3, "result": {"type": "data", "data": 42}},
            {"id": 4, "result": {"type": "data", "data": {"at": "1970-01-01T00:00:00.000Z", "n": 1}}},
        ])

    def test_error_not_wrapped(self):
        session, t = self.connect()
        self.send(session, self.q(7, "conflict"))
        self.assertEqual(t.messages, [self.err(7, "already exists", "CONFLICT", -32009, 409, path="conflict",
                                               wrap=False)])


# -- batches ---------------------------------------------------------------------------------------


class BatchTests(SessionTestCase):
    def test_batch_answered_in_separate_frames(self):
        session, t = self.connect()
        self.send(session, [self.q(1, "echo", {"json": "a"}), self.q(2, "add", {"json": 1}, method="mutation"),
                            self.q(3, "conflict")])
        self.assertEqual(len(t.frames), 3)
        self.assertTrue(all(not f.startswith(b"[") for f in t.frames))
        self.assertEqual([m["id"] for m in t.messages], [1, 2, 3])
        self.assertEqual(t.messages[1]["result"]["data"], {"json": 2})
        self.assertIn("error", t.messages[2])

    @async_test
    async def test_batch_elements_run_concurrently_and_answer_in_completion_order(self):
        session, t = self.connect()
        self.send(session, [self.q(1, "slow"), self.q(2, "echo", {"json": "fast"})])
        await wait_for(lambda: "slow:start" in self.probe.calls)
        # the slow element is running and has not held up the fast one
        self.assertEqual(sorted(self.probe.calls), ["echo", "slow:start"])
        self.assertEqual([m["id"] for m in t.messages], [2])
        self.probe.gate.set_result("done")
        await wait_for(lambda: len(t.frames) == 2)
        self.assertEqual(t.messages[1], {"id": 1, "result": {"type": "data", "data": {"json": "done"}}})

    def test_batch_over_max_rejects_every_element_and_runs_nothing(self):
        session, t = self.connect(max_batch=2)
        self.send(session, [
            {**self.q(1, "add", {"json": 1}, method="mutation"), "jsonrpc": "2.0"},
            self.q("b", "echo", {"json": 1}),
            {"method": "query", "params": {"path": "echo"}},  # no usable id
            self.q(None, "echo"),
        ])
        self.assertEqual(self.probe.calls, [])
        self.assertEqual([m["id"] for m in t.messages], [1, "b"])
        for msg in t.messages:
            error = msg["error"]["json"]
            self.assertEqual((error["code"], error["data"]["code"]), (-32600, "BAD_REQUEST"))
            self.assertTrue(error["message"].startswith("Batch call exceeds maximum size"), error["message"])
        self.assertEqual(t.messages[0]["jsonrpc"], "2.0")
        self.assertNotIn("jsonrpc", t.messages[1])

    def test_batch_over_max_without_ids_gets_one_null_id_error(self):
        session, t = self.connect(max_batch=1)
        self.send(session, [{"method": "query"}, "x"])
        self.assertEqual(len(t.messages), 1)
        self.assertIsNone(t.messages[0]["id"])
        self.assertEqual(t.messages[0]["error"]["json"]["data"]["code"], "BAD_REQUEST")

    def test_batch_at_max_runs(self):
        session, t = self.connect(max_batch=2)
        self.send(session, [self.q(1, "echo", {"json": 1}), self.q(2, "echo", {"json": 2})])
        self.assertEqual([m["result"]["data"]["json"] for m in t.messages], [1, 2])

    def test_one_bad_element_does_not_spoil_the_batch(self):
        session, t = self.connect()
        self.send(session, [{"id": 1, "jsonrpc": "1.0", "method": "query", "params": {"path": "echo"}},
                            self.q(2, "echo", {"json": 2})])
        self.assertEqual(t.messages, [
            self.err(1, "Must be JSONRPC 2.0", "PARSE_ERROR", -32700, 400),
            {"id": 2, "result": {"type": "data", "data": {"json": 2}}},
        ])

    def test_empty_batch(self):
        session, t = self.connect()
        self.send(session, [])
        self.assertEqual(t.messages, [self.err(None, "Empty batch", "PARSE_ERROR", -32700, 400)])


# -- connection params / context ------------------------------------------------------------------------


class ContextTests(SessionTestCase):
    def recording_factory(self, result: Any = "CTX"):
        seen: list[tuple[ConnectionInfo, Any]] = []

        def factory(info, params):
            seen.append((info, params))
            return result(params) if callable(result) else result

        return factory, seen

    def test_without_connection_params_context_built_at_open(self):
        factory, seen = self.recording_factory()
        session, t = self.connect(create_context=factory, url="/trpc?connectionParams=0&x=1")
        self.assertEqual(len(seen), 1)
        info, params = seen[0]
        self.assertIsNone(params)
        self.assertEqual(info.path, "/trpc")
        self.assertEqual(info.query, {"connectionParams": ["0"], "x": ["1"]})
        self.assertEqual(info.peer, "10.0.0.1")
        self.send(session, self.q(1, "ctx"))
        self.assertEqual(t.messages, [{"id": 1, "result": {"type": "data", "data": {"json": "CTX"}}}])

    def test_params_frame_feeds_the_context_factory(self):
        factory, seen = self.recording_factory(lambda params: {"token": params["token"]})
        session, t = self.connect(create_context=factory, url="/?connectionParams=1")
        self.assertEqual(seen, [])
        self.send(session, {"method": "connectionParams", "data": {"token": "abc"}})
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0][1], {"token": "abc"})
        self.assertEqual(t.frames, [])  # no acknowledgement
        self.send(session, self.q(1, "ctx"))
        self.assertEqual(t.messages, [{"id": 1, "result": {"type": "data", "data": {"json": {"token": "abc"}}}}])

    def test_null_params(self):
        factory, seen = self.recording_factory()
        session, t = self.connect(create_context=factory, url="/?connectionParams=1")
        self.send(session, {"method": "connectionParams", "data": None})
        self.assertEqual([p for _, p in seen], [None])
        self.assertEqual(t.frames, [])

    def test_ping_does_not_consume_params_slot(self):
        factory, seen = self.recording_factory()
        session, t = self.connect(create_context=factory, url="/?connectionParams=1")
        session.receive(b"PING")
        session.receive(b"PONG")
        self.assertEqual(t.frames, [b"PONG"])
        self.assertEqual(seen, [])
        self.send(session, {"method": "connectionParams", "data": {"a": "b"}})
        self.assertEqual([p for _, p in seen], [{"a": "b"}])

    @async_test
    async def test_params_shape_errors(self):
        bad_frames = [
            dumps({"method": "connectionParams"}),  # data missing
            dumps({"method": "connectionParams", "data": ["a"]}),
            dumps({"method": "connectionParams", "data": {"a": 1}}),
            dumps({"method": "connectionParams", "data": {"a": None}}),
            dumps({"method": "connectionParams", "data": "token"}),
            dumps(self.q(1, "echo")),  # a normal request sent first
            dumps([{"method": "connectionParams", "data": {}}]),
            b"not json",
        ]
        for frame in bad_frames:
            factory, seen = self.recording_factory()
            session, t = self.connect(create_context=factory, url="/?connectionParams=1")
            session.receive(frame)
            self.assertEqual(t.messages, [self.err(None, "Invalid connection params shape", "PARSE_ERROR",
                                                   -32700, 400)], frame)
            self.assertEqual(seen, [], frame)
            self.assertEqual(t.closes, [], "closed on the next tick, not synchronously")
            await ticks(2)
            self.assertEqual(t.closes, [(None, None)], frame)
            session.closed()

    @async_test
    async def test_params_shape_error_answers_requests_arriving_before_close(self):
        # Requests that reach the server after the context failed (but before the socket is closed)
        # must get the same error under their own ids (§1.2, checklist 4), not wait forever.
        factory, seen = self.recording_factory()
        session, t = self.connect(create_context=factory, url="/?connectionParams=1")
        self.send(session, {"method": "connectionParams", "data": {"a": 1}})
        self.send(session, self.q(1, "echo"))
        self.send(session, [self.q(2, "echo"), self.q(3, "add", method="mutation")])
        expected_error = self.err(None, "Invalid connection params shape", "PARSE_ERROR", -32700, 400)["error"]
        self.assertEqual(t.messages[0], {"id": None, "error": expected_error})
        self.assertEqual(t.messages[1:], [{"id": i, "error": expected_error} for i in (1, 2, 3)])
        await ticks(2)
        self.assertEqual(t.closes, [(None, None)])
        self.assertEqual(self.probe.calls, [])

    @async_test
    async def test_context_factory_raising_unauthorized(self):
        def factory(info, params):
            raise TRPCError("UNAUTHORIZED", "bad token")

        session, t = self.connect(create_context=factory, url="/?connectionParams=1")
        self.send(session, {"method": "connectionParams", "data": {"token": "bad"}})
        self.assertEqual(t.messages, [self.err(None, "bad token", "UNAUTHORIZED", -32001, 401)])
        self.assertEqual(t.closes, [])
        await ticks(2)
        self.assertEqual(t.closes, [(None, None)])

    @async_test
    async def test_context_factory_raising_plain_exception_without_params(self):
        def factory(info, params):
            raise RuntimeError("db down")

        session, t = self.connect(create_context=factory)
        self.assertEqual(t.messages, [self.err(None, "db down", "INTERNAL_SERVER_ERROR", -32603, 500)])
        await ticks(2)
        self.assertEqual(t.closes, [(None, None)])

    @async_test
    async def test_async_context_factory_queues_requests_in_order(self):
        pending: Deferred[Any] = Deferred()
        seen: list[Any] = []

        def factory(info, params):
            seen.append(params)
            return pending

        session, t = self.connect(create_context=factory, url="/?connectionParams=1")
        self.send(session, {"method": "connectionParams", "data": {"token": "t"}})
        self.send(session, self.q(1, "ctx"))
        self.send(session, [self.q(2, "add", {"json": 1}, method="mutation"), self.q(3, "echo", {"json": 3})])
        self.send(session, self.q(4, "ticks", {"json": {"count": 1}}, method="subscription"))
        session.receive(b"PING")
        await ticks(3)
        self.assertEqual(seen, [{"token": "t"}])
        self.assertEqual(t.frames, [b"PONG"])  # PING is answered at once; requests wait
        self.assertEqual(self.probe.calls, [])
        pending.callback({"user": "u1"})
        await wait_for(lambda: any(m.get("result", {}).get("type") == "stopped"
                                   for m in t.messages if isinstance(m, dict)))
        self.assertEqual(self.probe.calls, ["ctx", "add", "echo"])
        msgs = t.messages[1:]
        self.assertEqual(msgs[:3], [
            {"id": 1, "result": {"type": "data", "data": {"json": {"user": "u1"}}}},
            {"id": 2, "result": {"type": "data", "data": {"json": 2}}},
            {"id": 3, "result": {"type": "data", "data": {"json": 3}}},
        ])
        self.assertEqual([m["result"]["type"] for m in msgs[3:]], ["started", "data", "stopped"])

    @async_test
    async def test_coroutine_context_factory(self):
        async def factory(info, params):
            await asyncio.sleep(0.01)
            return f"ctx-for-{info.path}"

        session, t = self.connect(create_context=factory, url="/ws")
        self.send(session, self.q(1, "ctx"))
        self.assertEqual(t.frames, [])
        await wait_for(lambda: t.frames)
        self.assertEqual(t.messages, [{"id": 1, "result": {"type": "data", "data": {"json": "ctx-for-/ws"}}}])

    @async_test
    async def test_async_context_failure_answers_queued_requests(self):
        pending: Deferred[Any] = Deferred()
        session, t = self.connect(create_context=lambda info, params: pending, url="/?connectionParams=1")
        self.send(session, {"method": "connectionParams", "data": {"token": "bad"}})
        self.send(session, self.q(1, "echo"))
        self.send(session, {**self.q("two", "ticks", method="subscription"), "jsonrpc": "2.0"})
        await ticks(2)
        self.assertEqual(t.frames, [])
        pending.errback(TRPCError("UNAUTHORIZED", "bad token"))
        await wait_for(lambda: t.closes)
        error = self.err(None, "bad token", "UNAUTHORIZED", -32001, 401)["error"]
        self.assertEqual(t.messages, [
            {"id": None, "error": error},
            {"id": 1, "error": error},
            {"id": "two", "jsonrpc": "2.0", "error": error},
        ])
        self.assertEqual(t.closes, [(None, None)])
        self.assertEqual(self.probe.calls, [])

    @async_test
    async def test_stop_before_context_ready_cancels_queued_subscription(self):
        # 11.25 registers the subscription id before awaiting the context, so a stop that arrives
        # while the context is being built cancels it (§6.1 notes, §6.5).
        pending: Deferred[Any] = Deferred()
        session, t = self.connect(create_context=lambda info, params: pending)
        self.send(session, self.q(5, "forever", {"json": "q"}, method="subscription"))
        self.send(session, {"id": 5, "method": "subscription.stop"})
        pending.callback("ctx")
        await ticks(5)
        types = [m["result"]["type"] for m in t.for_id(5) if "result" in m]
        self.assertNotIn("started", types)
        self.assertNotIn("data", types)
        self.assertEqual(session.subscription_count, 0)

    @async_test
    async def test_close_while_context_pending(self):
        pending: Deferred[Any] = Deferred()
        session, t = self.connect(create_context=lambda info, params: pending)
        self.send(session, self.q(1, "echo"))
        session.closed()
        pending.callback("late")
        await ticks(3)
        self.assertEqual(t.frames, [])
        self.assertEqual(self.probe.calls, [])


# -- subscriptions ------------------------------------------------------------------------------------


def result_types(messages: list[Any]) -> list[str]:
    return [m["result"]["type"] if "result" in m else "error" for m in messages if isinstance(m, dict)]


class SubscriptionTests(SessionTestCase):
    async def until_stopped(self, t: FakeTransport, rid: Any) -> None:
        await wait_for(lambda: any(m.get("result", {}).get("type") == "stopped" or "error" in m
                                   for m in t.for_id(rid)), what=f"end of subscription {rid}")

    @async_test
    async def test_lifecycle_with_tracked_events(self):
        session, t = self.connect()
        self.send(session, self.sub(3, "ticks", {"json": {"count": 2}}))
        await self.until_stopped(t, 3)
        self.assertEqual(t.frames, [
            b'{"id":3,"result":{"type":"started"}}',
            b'{"id":3,"result":{"type":"data","data":{"json":{"id":"0","data":{"i":0}}},"id":"0"}}',
            b'{"id":3,"result":{"type":"data","data":{"json":{"id":"1","data":{"i":1}}},"id":"1"}}',
            b'{"id":3,"result":{"type":"stopped"}}',
        ])
        self.assertEqual(session.subscription_count, 0)

    @async_test
    async def test_untracked_events_and_transformed_data(self):
        session, t = self.connect()
        self.send(session, self.sub("s", "plain"))
        await self.until_stopped(t, "s")
        self.assertEqual(t.messages, [
            {"id": "s", "result": {"type": "started"}},
            {"id": "s", "result": {"type": "data", "data": {"json": "a"}}},
            {"id": "s", "result": {"type": "data", "data": SJ_UNDEFINED}},
            {"id": "s", "result": {"type": "data", "data": {"json": {"at": "1970-01-01T00:00:00.000Z"},
                                                             "meta": {"values": {"at": ["Date"]}, "v": 1}}}},
            {"id": "s", "result": {"type": "stopped"}},
        ])

    @async_test
    async def test_plain_transformer_tracked_and_undefined(self):
        session, t = self.connect(transformer="none")
        self.send(session, self.sub(1, "ticks", {"count": 1}))
        self.send(session, self.sub(2, "plain"))
        await self.until_stopped(t, 1)
        await self.until_stopped(t, 2)
        self.assertEqual(t.for_id(1), [
            {"id": 1, "result": {"type": "started"}},
            {"id": 1, "result": {"type": "data", "data": {"id": "0", "data": {"i": 0}}, "id": "0"}},
            {"id": 1, "result": {"type": "stopped"}},
        ])
        self.assertEqual(t.for_id(2)[1:4], [
            {"id": 2, "result": {"type": "data", "data": "a"}},
            {"id": 2, "result": {"type": "data"}},
            {"id": 2, "result": {"type": "data", "data": {"at": "1970-01-01T00:00:00.000Z"}}},
        ])

    @async_test
    async def test_jsonrpc_echoed_on_subscription_frames(self):
        session, t = self.connect()
        self.send(session, {**self.sub(1, "ticks", {"json": {"count": 1}}), "jsonrpc": "2.0"})
        await self.until_stopped(t, 1)
        self.assertEqual([m.get("jsonrpc") for m in t.messages], ["2.0", "2.0", "2.0"])

    @async_test
    async def test_error_mid_stream_then_stopped(self):
        session, t = self.connect()
        self.send(session, self.sub(12, "failing"))
        await wait_for(lambda: len(t.frames) == 4)
        await ticks(3)
        self.assertEqual(t.messages, [
            {"id": 12, "result": {"type": "started"}},
            {"id": 12, "result": {"type": "data", "data": {"json": "x"}}},
            self.err(12, "sub failed", "CONFLICT", -32009, 409, path="failing"),
            {"id": 12, "result": {"type": "stopped"}},
        ])
        self.assertEqual(session.subscription_count, 0)

    @async_test
    async def test_plain_exception_mid_stream(self):
        session, t = self.connect()
        self.send(session, self.sub(1, "crashing"))
        await wait_for(lambda: len(t.frames) == 4)
        self.assertEqual(t.messages[2], self.err(1, "kaboom", "INTERNAL_SERVER_ERROR", -32603, 500, path="crashing"))
        self.assertEqual(result_types(t.messages), ["started", "data", "error", "stopped"])

    @async_test
    async def test_setup_validation_error_sends_error_only(self):
        session, t = self.connect()
        self.send(session, self.sub(4, "ticks", {"json": {"count": "x"}}))
        await ticks(5)
        self.assertEqual(len(t.messages), 1)
        error = t.messages[0]["error"]["json"]
        self.assertEqual(t.messages[0]["id"], 4)
        self.assertEqual(error["data"]["code"], "BAD_REQUEST")
        self.assertEqual(error["data"]["path"], "ticks")
        self.assertIn("count", error["data"]["zodError"]["fieldErrors"])
        self.assertEqual(session.subscription_count, 0)
        # the id is free again
        self.send(session, self.sub(4, "ticks", {"json": {"count": 1}}))
        await wait_for(lambda: len(t.frames) == 4)
        self.assertEqual(result_types(t.messages[1:]), ["started", "data", "stopped"])

    @async_test
    async def test_unreadable_input_is_setup_error(self):
        session, t = self.connect()
        self.send(session, self.sub(4, "ticks", 5))
        await ticks(5)
        self.assertEqual(result_types(t.messages), ["error"])
        self.assertEqual(t.messages[0]["error"]["json"]["data"]["code"], "PARSE_ERROR")

    @async_test
    async def test_not_iterable(self):
        session, t = self.connect()
        self.send(session, self.sub(1, "not_iterable"))
        await ticks(5)
        self.assertEqual(t.messages, [self.err(
            1, "Subscription not_iterable did not return an observable or a AsyncGenerator",
            "INTERNAL_SERVER_ERROR", -32603, 500, path="not_iterable")])

    @async_test
    async def test_stop(self):
        session, t = self.connect()
        self.send(session, self.sub(13, "forever", {"json": "a"}))
        await wait_for(lambda: len(t.frames) == 2)
        self.assertEqual(session.subscription_count, 1)
        self.send(session, {"id": 13, "method": "subscription.stop"})
        await wait_for(lambda: self.probe.cleanups)
        await ticks(5)
        self.assertEqual(t.messages, [
            {"id": 13, "result": {"type": "started"}},
            {"id": 13, "result": {"type": "data", "data": {"json": {"id": "0", "data": "first"}}, "id": "0"}},
            {"id": 13, "result": {"type": "stopped"}},
        ])
        self.assertEqual(self.probe.cleanups, ["forever:a"])
        self.assertTrue(self.probe.signals[0].aborted)
        self.assertEqual(session.subscription_count, 0)

    @async_test
    async def test_stop_sends_stopped_after_generator_cleanup(self):
        # §6.5: cancel, close the generator (aclose), then send `stopped` "after cleanup"
        # (the reference sends it once the iterator's disposal settled).
        session, t = self.connect()
        self.send(session, self.sub(13, "forever", {"json": "a"}))
        await wait_for(lambda: len(t.frames) == 2)
        self.send(session, {"id": 13, "method": "subscription.stop"})
        await wait_for(lambda: self.probe.frames_at_cleanup)
        await wait_for(lambda: len(t.frames) == 3)
        at_cleanup = self.probe.frames_at_cleanup[0]
        self.assertEqual(result_types(at_cleanup), ["started", "data"],
                         "`stopped` was sent before the generator's cleanup ran")

    @async_test
    async def test_stop_echoes_subscription_jsonrpc(self):
        # The reference answers a stop with {id, jsonrpc, result: {type: "stopped"}} using the
        # subscription request's jsonrpc, like every other frame of that subscription.
        session, t = self.connect()
        self.send(session, {**self.sub(2, "forever", {"json": "a"}), "jsonrpc": "2.0"})
        await wait_for(lambda: len(t.frames) == 2)
        self.send(session, {"id": 2, "jsonrpc": "2.0", "method": "subscription.stop"})
        await wait_for(lambda: len(t.frames) == 3)
        self.assertEqual(t.messages[2], {"id": 2, "jsonrpc": "2.0", "result": {"type": "stopped"}})

    @async_test
    async def test_no_data_after_stop(self):
        session, t = self.connect()
        self.send(session, self.sub(1, "firehose"))
        await wait_for(lambda: len(t.frames) >= 5)
        self.send(session, {"id": 1, "method": "subscription.stop"})
        await wait_for(lambda: {"id": 1, "result": {"type": "stopped"}} in t.messages, what="stopped")
        await wait_for(lambda: self.probe.cleanups, what="generator cleanup")
        n = len(t.frames)
        await ticks(20)
        await asyncio.sleep(0.02)
        self.assertEqual(len(t.frames), n)
        msgs = t.messages
        stopped_at = msgs.index({"id": 1, "result": {"type": "stopped"}})
        self.assertEqual(msgs[stopped_at + 1:], [], "frames after `stopped`")
        self.assertEqual(self.probe.cleanups, ["firehose"])

    @async_test
    async def test_stop_unknown_or_finished_id_sends_nothing(self):
        session, t = self.connect()
        self.send(session, {"id": 99, "method": "subscription.stop"})
        await ticks(2)
        self.assertEqual(t.frames, [])
        self.send(session, self.sub(1, "ticks", {"json": {"count": 0}}))
        await self.until_stopped(t, 1)
        n = len(t.frames)
        self.send(session, {"id": 1, "method": "subscription.stop"})  # 11.25 sends this after `stopped`
        await ticks(2)
        self.assertEqual(len(t.frames), n)

    @async_test
    async def test_stop_during_async_setup(self):
        session, t = self.connect()
        self.send(session, self.sub(1, "slow_setup"))
        await ticks(3)
        self.assertIsNotNone(self.probe.gate)
        self.send(session, {"id": 1, "method": "subscription.stop"})
        await ticks(3)
        self.assertEqual(t.messages, [{"id": 1, "result": {"type": "stopped"}}])
        self.assertNotIn("slow_setup:iterating", self.probe.calls)
        self.assertEqual(session.subscription_count, 0)

    @async_test
    async def test_duplicate_active_id(self):
        session, t = self.connect()
        self.send(session, self.sub(7, "forever", {"json": "first"}))
        await wait_for(lambda: len(t.frames) == 2)
        self.send(session, self.sub(7, "forever", {"json": "second"}))
        await ticks(3)
        self.assertEqual(t.messages[2], self.err(7, "Duplicate id 7", "BAD_REQUEST", -32600, 400, path="forever"))
        self.assertEqual(len(t.frames), 3)
        # the existing subscription keeps running
        self.assertEqual(session.subscription_count, 1)
        self.assertEqual(self.probe.cleanups, [])
        self.send(session, {"id": 7, "method": "subscription.stop"})
        await wait_for(lambda: self.probe.cleanups)
        self.assertEqual(self.probe.cleanups, ["forever:first"])

    @async_test
    async def test_duplicate_string_id(self):
        session, t = self.connect()
        self.send(session, self.sub("x", "forever", {"json": 1}))
        self.send(session, self.sub("x", "forever", {"json": 2}))
        await wait_for(lambda: len(t.frames) == 3)
        self.assertIn(self.err("x", "Duplicate id x", "BAD_REQUEST", -32600, 400, path="forever"), t.messages)

    @async_test
    async def test_max_subscriptions(self):
        session, t = self.connect(max_subscriptions=2)
        self.send(session, self.sub(1, "forever", {"json": 1}))
        self.send(session, self.sub(2, "forever", {"json": 2}))
        self.send(session, self.sub(3, "forever", {"json": 3}))
        await ticks(5)
        error = t.for_id(3)
        self.assertEqual(len(error), 1)
        self.assertEqual(error[0]["error"]["json"]["data"]["code"], "TOO_MANY_REQUESTS")
        self.assertEqual(error[0]["error"]["json"]["code"], -32029)
        self.assertEqual(error[0]["error"]["json"]["data"]["httpStatus"], 429)
        self.assertEqual(session.subscription_count, 2)
        self.send(session, {"id": 1, "method": "subscription.stop"})
        self.send(session, self.sub(3, "forever", {"json": 3}))
        await wait_for(lambda: len(t.for_id(3)) == 3)
        self.assertEqual(result_types(t.for_id(3)), ["error", "started", "data"])

    @async_test
    async def test_last_event_id_merged_into_input(self):
        session, t = self.connect()
        self.send(session, self.sub(1, "echo_input", {"json": {"a": 1}}, lastEventId="7"))
        self.send(session, self.sub(2, "echo_input", lastEventId="8"))
        self.send(session, self.sub(3, "echo_input", {"json": "str"}, lastEventId="9"))
        self.send(session, self.sub(4, "echo_input", {"json": None}, lastEventId="10"))
        self.send(session, self.sub(5, "echo_input", {"json": {"a": 1}}))
        for rid in range(1, 6):
            await self.until_stopped(t, rid)
        self.assertEqual(self.probe.inputs, [
            {"a": 1, "lastEventId": "7"}, {"lastEventId": "8"}, "str", {"lastEventId": "10"}, {"a": 1},
        ])

    @async_test
    async def test_last_event_id_plain_transformer_and_resume(self):
        session, t = self.connect(transformer="none")
        self.send(session, self.sub(1, "echo_input", lastEventId="7"))
        self.send(session, self.sub(2, "ticks", {"count": 4}, lastEventId="1"))
        await self.until_stopped(t, 1)
        await self.until_stopped(t, 2)
        self.assertEqual(self.probe.inputs, [{"lastEventId": "7"}])
        self.assertEqual([m["result"]["id"] for m in t.for_id(2) if m["result"]["type"] == "data"], ["2", "3"])

    @async_test
    async def test_close_cancels_subscriptions_and_pending_calls(self):
        session, t = self.connect()
        self.send(session, self.sub(1, "forever", {"json": "a"}))
        self.send(session, self.sub(2, "forever", {"json": "b"}))
        self.send(session, self.q(3, "slow"))
        await wait_for(lambda: len(t.frames) == 4)
        self.assertEqual(self.probe.calls, ["slow:start"])
        session.closed()
        await wait_for(lambda: len(self.probe.cleanups) == 3)
        await ticks(3)
        self.assertEqual(sorted(self.probe.cleanups), ["forever:a", "forever:b", "slow"])
        self.assertTrue(all(s.aborted for s in self.probe.signals))
        self.assertEqual(len(self.probe.signals), 3)
        self.assertEqual(len(t.frames), 4)  # nothing sent after close
        self.assertEqual(session.subscription_count, 0)

    @async_test
    async def test_unencodable_event_reports_error(self):
        # An event that cannot be encoded must end the subscription with an error frame (like an
        # exception mid-stream, §6.1), not silently kill the subscription task.
        session, t = self.connect()
        self.send(session, self.sub(1, "unencodable_sub"))
        await wait_for(lambda: self.probe.cleanups, what="generator cleanup")
        await ticks(3)
        types = result_types(t.messages)
        self.assertEqual(types[0], "started")
        self.assertIn("error", types, f"no error frame; client would wait forever (frames: {t.messages})")
        error = t.for_id(1)[types.index("error")]["error"]["json"]
        self.assertEqual(error["data"]["code"], "INTERNAL_SERVER_ERROR")
        self.assertEqual(session.subscription_count, 0)
        self.flushLoggedErrors(TypeError)

    @async_test
    async def test_firehose_does_not_starve_the_loop(self):
        session, t = self.connect(yield_every=8)
        self.send(session, self.sub(1, "firehose"))
        other = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(other.set_result, "ran")
        self.assertEqual(await other, "ran")
        await ticks(3)
        self.assertGreater(self.probe.produced, 0)
        self.send(session, {"id": 1, "method": "subscription.stop"})
        await wait_for(lambda: self.probe.cleanups)


# -- keep-alive --------------------------------------------------------------------------------------


class KeepAliveTests(SessionTestCase):
    def ka(self, **kw: Any) -> tuple[TRPCSession, FakeTransport]:
        return self.connect(keepalive_enabled=True, ping_ms=100, pong_wait_ms=100, **kw)

    @async_test
    async def test_ping_after_idle_then_terminate(self):
        session, t = self.ka()
        opened = time.monotonic()
        await asyncio.sleep(0.05)
        self.assertEqual(t.frames, [])
        await wait_for(lambda: t.frames, what="PING")
        ping_at = time.monotonic()
        self.assertGreaterEqual(ping_at - opened, 0.09)
        self.assertEqual(t.frames, [b"PING"])
        self.assertEqual(t.terminated, 0)
        await wait_for(lambda: t.terminated, what="terminate")
        self.assertGreaterEqual(time.monotonic() - ping_at, 0.09)
        self.assertEqual(t.terminated, 1)
        self.assertFalse(session.open)
        self.assertEqual(t.frames, [b"PING"])
        self.assertEqual(t.closes, [])

    @async_test
    async def test_any_inbound_frame_keeps_it_alive(self):
        session, t = self.ka()
        await wait_for(lambda: t.frames == [b"PING"], what="PING")
        # answer with a request instead of PONG: still counts as life
        self.send(session, self.q(1, "echo", {"json": 1}))
        await asyncio.sleep(0.15)
        self.assertEqual(t.terminated, 0)
        self.assertTrue(session.open)

    @async_test
    async def test_pong_replies_keep_connection_open(self):
        session, t = self.ka()
        deadline = time.monotonic() + 0.6
        answered = 0
        while time.monotonic() < deadline:
            pings = t.frames.count(b"PING")
            if pings > answered:
                session.receive(b"PONG")
                answered = pings
            await asyncio.sleep(0.01)
        self.assertGreaterEqual(answered, 2)
        self.assertEqual(t.terminated, 0)
        self.assertTrue(session.open)

    @async_test
    async def test_busy_client_is_never_pinged(self):
        session, t = self.ka()
        for _ in range(12):
            session.receive(b"PONG")
            await asyncio.sleep(0.02)
        self.assertEqual(t.frames, [])

    @async_test
    async def test_disabled(self):
        session, t = self.connect(keepalive_enabled=False, ping_ms=50, pong_wait_ms=50)
        await asyncio.sleep(0.2)
        self.assertEqual((t.frames, t.terminated), ([], 0))

    @async_test
    async def test_timer_stops_on_close(self):
        session, t = self.ka()
        session.closed()
        await asyncio.sleep(0.25)
        self.assertEqual((t.frames, t.terminated), ([], 0))


# -- slow readers and backpressure ------------------------------------------------------------------------


class FlowControlTests(SessionTestCase):
    @async_test
    async def test_outbound_over_limit_terminates(self):
        metrics = GatewayMetrics()
        session, t = self.connect(self.server(max_outbound_bytes=300, metrics=metrics))
        t.grow_buffer = True
        self.send(session, self.sub(1, "firehose"))
        await wait_for(lambda: t.terminated, what="terminate")
        await wait_for(lambda: self.probe.cleanups, what="generator cleanup")
        n = len(t.frames)
        self.assertEqual(t.terminated, 1)
        self.assertFalse(session.open)
        self.assertGreater(t.buffered, 300)
        self.assertLess(t.buffered, 300 + 100)
        await ticks(5)
        self.assertEqual(len(t.frames), n)
        self.assertEqual(metrics.registry.get_sample_value("chaingraph_ws_closed_slow_reader_total"), 1.0)
        self.assertEqual(metrics.registry.get_sample_value("chaingraph_ws_connections"), 0.0)

    def test_single_huge_response_terminates(self):
        session, t = self.connect(max_outbound_bytes=10)
        t.buffered = 11
        self.send(session, self.q(1, "echo", {"json": 1}))
        self.assertEqual(t.terminated, 1)
        self.assertFalse(session.open)
        self.send(session, self.q(2, "echo", {"json": 1}))
        self.assertEqual(len(t.frames), 1)

    @async_test
    async def test_backpressure_pauses_and_resumes_subscription(self):
        session, t = self.connect()
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        t.writable = lambda: gate if not gate.done() else None
        self.send(session, self.sub(1, "firehose"))
        await wait_for(lambda: len(t.frames) >= 2)
        await ticks(20)
        await asyncio.sleep(0.02)
        self.assertEqual(result_types(t.messages), ["started", "data"])
        self.assertEqual(self.probe.produced, 1)  # the generator is not even asked for the next value
        gate.set_result(None)
        await wait_for(lambda: len(t.frames) >= 10, what="more events after the drain")
        datas = [m["result"]["data"]["json"] for m in t.messages if m["result"]["type"] == "data"]
        self.assertEqual(datas, list(range(len(datas))))
        self.send(session, {"id": 1, "method": "subscription.stop"})
        await wait_for(lambda: self.probe.cleanups)

    @async_test
    async def test_close_while_waiting_for_drain_cleans_up(self):
        session, t = self.connect()
        gate = asyncio.get_running_loop().create_future()
        t.writable = lambda: gate
        self.send(session, self.sub(1, "firehose"))
        await wait_for(lambda: len(t.frames) >= 2)
        session.closed()
        await wait_for(lambda: self.probe.cleanups, what="generator cleanup")
        self.assertEqual(self.probe.cleanups, ["firehose"])


# -- server-wide ----------------------------------------------------------------------------------------


class ServerTests(SessionTestCase):
    def test_broadcast_reconnect(self):
        server = self.server()
        s1, t1 = self.connect(server)
        s2, t2 = self.connect(server)
        s3, t3 = self.connect(server)
        s3.closed()
        self.assertFalse(server.draining)
        self.assertEqual(server.broadcast_reconnect(), 2)
        self.assertTrue(server.draining)
        self.assertEqual(t1.frames, [b'{"id":null,"method":"reconnect"}'])
        self.assertEqual(t2.frames, [b'{"id":null,"method":"reconnect"}'])
        self.assertEqual(t3.frames, [])
        # old sockets keep serving (§7.3)
        self.assertTrue(s1.open)
        self.assertEqual(t1.closes, [])
        self.send(s1, self.q(1, "echo", {"json": 1}))
        s1.receive(b"PING")
        self.assertEqual(t1.messages[1:], [{"id": 1, "result": {"type": "data", "data": {"json": 1}}}, "PONG"])

    def test_sessions_registry(self):
        server = self.server()
        s1, _ = self.connect(server)
        s2, _ = self.connect(server)
        self.assertEqual(server.sessions, {s1, s2})
        self.assertNotEqual(s1.info.connection_id, s2.info.connection_id)
        s1.closed()
        s1.closed()  # idempotent
        self.assertEqual(server.sessions, {s2})

    def test_metrics(self):
        metrics = GatewayMetrics()
        server = self.server(metrics=metrics)
        s1, _ = self.connect(server)
        s2, _ = self.connect(server)
        get = metrics.registry.get_sample_value
        self.assertEqual(get("chaingraph_ws_connections"), 2.0)
        self.assertEqual(get("chaingraph_ws_connections_opened_total"), 2.0)
        self.send(s1, self.q(1, "nope"))
        self.send(s1, self.q(2, "echo", {"json": 1}))
        self.assertEqual(get("chaingraph_errors_total", {"code": "NOT_FOUND"}), 1.0)
        self.assertEqual(get("chaingraph_request_duration_seconds_count", {"type": "query", "path": "echo"}), 1.0)
        s1.closed()
        self.assertEqual(get("chaingraph_ws_connections"), 1.0)
        metrics.render()
        self.assertEqual(get("chaingraph_messages_in_total"), 2.0)
        self.assertEqual(get("chaingraph_messages_out_total"), 2.0)

    @async_test
    async def test_subscription_gauge(self):
        metrics = GatewayMetrics()
        session, t = self.connect(self.server(metrics=metrics))
        self.send(session, self.q(1, "forever", {"json": 1}, method="subscription"))
        self.send(session, self.q(2, "ticks", {"json": {"count": 1}}, method="subscription"))
        await wait_for(lambda: len(t.for_id(2)) == 3)
        self.assertEqual(metrics.registry.get_sample_value("chaingraph_subscriptions"), 1.0)
        session.closed()
        self.assertEqual(metrics.registry.get_sample_value("chaingraph_subscriptions"), 0.0)
