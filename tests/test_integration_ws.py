"""End-to-end tests: the gateway on a real port, Autobahn WebSocket clients and treq HTTP clients."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from chaingraph_gw.config import load_settings
from chaingraph_gw.service import Gateway, make_gateway_service

from .helpers import async_test, aw, deferred_from, wait_for

RECONNECT = '{"id":null,"method":"reconnect"}'


class ClientProtocol(WebSocketClientProtocol):
    """Collects text frames; answers PING with PONG unless the factory says not to."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []
        self.opened: Deferred[ClientProtocol] = Deferred()
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()
        self.close_info: tuple[bool, int | None, str | None] | None = None
        self.closed_at: float | None = None

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.messages.append(payload)
            return
        text = payload.decode("utf-8")
        if text == "PING" and self.factory.auto_pong:
            self.sendMessage(b"PONG")
        self.messages.append(text if text in ("PING", "PONG") else json.loads(text))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_info = (wasClean, code, reason)
        self.closed_at = time.monotonic()
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"WebSocket handshake failed: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback(self.close_info)

    def send_json(self, obj: Any) -> None:
        self.sendMessage(json.dumps(obj, separators=(",", ":")).encode("utf-8"), False)

    def json_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict)]

    def for_id(self, rid: Any) -> list[dict[str, Any]]:
        return [m for m in self.json_messages() if m.get("id") == rid]


class GatewayTestCase(TestCase):
    timeout = 15

    async def start_gateway(self, gateway_kw: dict[str, Any] | None = None, **overrides: Any) -> Gateway:
        settings = load_settings(env={}, overrides={
            "port": 0, "drain_seconds": 0.5, "instance_id": "gw-test", **overrides,
        })
        # The transport alone: no embedded backend (its stores and routers are tested elsewhere).
        root, gateway = make_gateway_service(settings, with_backend=False, **(gateway_kw or {}))
        root.startService()
        self.root = root
        self.gateway = gateway
        self.addCleanup(lambda: deferred_from(self._stop_gateway()))
        listener = root.getServiceNamed("listener")
        # MultiService.stopService swallows a child's failure into a DeferredList (and the error
        # then surfaces, unattributed, in a later test): record the listener's own outcome instead.
        self.stop_failures: list[Any] = []
        original_stop = listener.stopService

        def stop_and_record() -> Deferred[None]:
            def record(failure: Any) -> None:
                self.stop_failures.append(failure)

            return original_stop().addErrback(record)

        listener.stopService = stop_and_record
        listening = getattr(listener, "listening", None)
        if listening is not None:
            await asyncio.wait_for(aw(listening), 5)
        self.port = listener.listening_port
        return gateway

    async def _stop_gateway(self) -> None:
        # Clients are closed by their own (later-registered, so earlier-run) cleanups; wait for the
        # server side to notice so that the drain has nothing left to wait for.
        deadline = time.monotonic() + 3
        while self.gateway.trpc.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.root.running:
            await aw(self.root.stopService())

    async def connect(self, path: str = "/", *, headers: dict[str, str] | None = None,
                      auto_pong: bool = True) -> ClientProtocol:
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{self.port}{path}", headers=headers or {})
        factory.protocol = ClientProtocol
        factory.auto_pong = auto_pong
        factory.setProtocolOptions(openHandshakeTimeout=5, closeHandshakeTimeout=1, autoPingInterval=0)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=5)
        proto: ClientProtocol = await aw(endpoint.connect(factory))
        self.addCleanup(lambda: deferred_from(self._close_client(proto)))
        await aw(proto.opened)
        return proto

    async def _close_client(self, proto: ClientProtocol) -> None:
        if proto.close_info is None:
            proto.dropConnection(abort=True)
        await wait_for(lambda: proto.close_info is not None, timeout=5, what="client connection lost")

    @staticmethod
    async def closed(proto: ClientProtocol, timeout: float = 3) -> tuple[bool, int | None, str | None]:
        """Wait until the client saw its connection close; returns (wasClean, code, reason)."""
        await wait_for(lambda: proto.close_info is not None, timeout=timeout, what="close")
        assert proto.close_info is not None
        return proto.close_info

    async def call(self, proto: ClientProtocol, rid: Any, path: str, input: Any = None,
                   method: str = "query") -> dict[str, Any]:
        params: dict[str, Any] = {"path": path}
        if input is not None:
            params["input"] = input
        proto.send_json({"id": rid, "method": method, "params": params})
        msgs = await wait_for(lambda: proto.for_id(rid), what=f"response to {rid}")
        return msgs[0]

    async def http(self, method: str, path: str) -> tuple[Any, bytes]:
        resp = await aw(treq.request(method, f"http://127.0.0.1:{self.port}{path}", persistent=False))
        body = await aw(resp.content())
        return resp, body

    async def sessions(self, n: int = 1) -> list[Any]:
        return await wait_for(lambda: list(self.gateway.trpc.sessions) if len(self.gateway.trpc.sessions) == n
                              else None, what=f"{n} server session(s)")


class WebSocketTests(GatewayTestCase):
    @async_test
    async def test_upgrade_on_any_path(self):
        gw = await self.start_gateway()
        for i, path in enumerate(("/", "/trpc", "/any/thing?x=1")):
            client = await self.connect(path)
            reply = await self.call(client, i, "system.echo", {"json": {"path": path}})
            self.assertEqual(reply, {"id": i, "result": {"type": "data", "data": {"json": {"path": path}}}})
        infos = sorted((s.info.path, s.info.query) for s in gw.trpc.sessions)
        self.assertEqual(infos, [("/", {}), ("/any/thing", {"x": ["1"]}), ("/trpc", {})])

    @async_test
    async def test_system_echo_and_info(self):
        await self.start_gateway()
        client = await self.connect("/trpc")
        client.sendMessage(b'{"id":1,"method":"query","params":{"path":"system.echo","input":{"json":{"a":1}}}}')
        await wait_for(lambda: client.for_id(1))
        self.assertEqual(client.for_id(1), [{"id": 1, "result": {"type": "data", "data": {"json": {"a": 1}}}}])

        reply = await self.call(client, 2, "system.echo")
        self.assertEqual(reply["result"]["data"], {"json": None, "meta": {"values": ["undefined"], "v": 1}})

        info = await self.call(client, "i", "system.info", {"json": None, "meta": {"values": ["undefined"], "v": 1}})
        data = info["result"]["data"]
        self.assertEqual(data["meta"], {"values": {"startedAt": ["Date"]}, "v": 1})
        body = data["json"]
        self.assertEqual(body["instanceId"], "gw-test")
        self.assertEqual((body["role"], body["mode"]), ("all", "local"))
        self.assertIsInstance(body["name"], str)
        self.assertIsInstance(body["version"], str)
        self.assertRegex(body["startedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertGreaterEqual(body["uptimeSeconds"], 0)

    @async_test
    async def test_errors_over_the_wire(self):
        await self.start_gateway()
        client = await self.connect()
        reply = await self.call(client, 1, "system.nope")
        err = reply["error"]["json"]
        self.assertEqual(err["message"], 'No "query"-procedure on path "system.nope"')
        self.assertEqual((err["code"], err["data"]["code"], err["data"]["httpStatus"], err["data"]["path"]),
                         (-32004, "NOT_FOUND", 404, "system.nope"))
        self.assertIn("stack", err["data"])  # development environment
        client.sendMessage(b"{oops")
        await wait_for(lambda: client.for_id(None))
        self.assertEqual(client.for_id(None)[0]["error"]["json"]["data"]["code"], "PARSE_ERROR")
        client.sendMessage(b"\x00\x01", isBinary=True)
        await wait_for(lambda: len(client.for_id(None)) == 2)
        self.assertEqual(client.for_id(None)[1]["error"]["json"]["message"],
                         "Binary frames are not supported; send JSON text")

    @async_test
    async def test_production_errors_have_no_stack(self):
        await self.start_gateway(environment="production")
        client = await self.connect()
        reply = await self.call(client, 1, "system.nope")
        self.assertNotIn("stack", reply["error"]["json"]["data"])

    @async_test
    async def test_ping_pong_and_batch(self):
        await self.start_gateway()
        client = await self.connect()
        client.sendMessage(b"PING")
        await wait_for(lambda: "PONG" in client.messages)
        client.sendMessage(b'[{"id":1,"method":"query","params":{"path":"system.echo","input":{"json":1}}},'
                           b'{"id":2,"method":"query","params":{"path":"system.echo","input":{"json":2}}}]')
        await wait_for(lambda: len(client.json_messages()) == 2)
        self.assertEqual(sorted((m["id"], m["result"]["data"]["json"]) for m in client.json_messages()),
                         [(1, 1), (2, 2)])

    @async_test
    async def test_ticks_subscription(self):
        await self.start_gateway()
        client = await self.connect()
        client.sendMessage(b'{"id":3,"method":"subscription","params":{"path":"system.ticks",'
                           b'"input":{"json":{"count":3}}}}')
        await wait_for(lambda: len(client.for_id(3)) == 5, what="started + 3 events + stopped")
        msgs = client.for_id(3)
        self.assertEqual(msgs[0], {"id": 3, "result": {"type": "started"}})
        self.assertEqual(msgs[4], {"id": 3, "result": {"type": "stopped"}})
        for i, msg in enumerate(msgs[1:4]):
            result = msg["result"]
            self.assertEqual((result["type"], result["id"]), ("data", str(i)))
            self.assertEqual(result["data"]["json"]["id"], str(i))
            self.assertEqual(result["data"]["json"]["data"]["i"], i)
            self.assertEqual(result["data"]["meta"], {"values": {"data.at": ["Date"]}, "v": 1})

        # resume after "1"
        client.sendMessage(b'{"id":4,"method":"subscription","params":{"path":"system.ticks",'
                           b'"input":{"json":{"count":3}},"lastEventId":"1"}}')
        await wait_for(lambda: len(client.for_id(4)) == 3)
        self.assertEqual([m["result"].get("id") for m in client.for_id(4)], [None, "2", None])

    @async_test
    async def test_subscription_stop_over_the_wire(self):
        await self.start_gateway()
        client = await self.connect()
        client.send_json({"id": 9, "method": "subscription",
                          "params": {"path": "system.ticks", "input": {"json": {"count": 1000, "intervalMs": 20}}}})
        await wait_for(lambda: len(client.for_id(9)) >= 3)
        client.send_json({"id": 9, "method": "subscription.stop"})
        await wait_for(lambda: client.for_id(9)[-1]["result"]["type"] == "stopped")
        n = len(client.for_id(9))
        await asyncio.sleep(0.1)
        self.assertEqual(len(client.for_id(9)), n)
        sessions = await self.sessions(1)
        self.assertEqual(sessions[0].subscription_count, 0)

    @async_test
    async def test_oversized_frame_closes_with_1009(self):
        await self.start_gateway(**{"limits.max_frame_bytes": 4096})
        client = await self.connect()
        small = await self.call(client, 1, "system.echo", {"json": "x" * 3000})
        self.assertEqual(small["result"]["data"]["json"], "x" * 3000)
        client.send_json({"id": 2, "method": "query", "params": {"path": "system.echo", "input": {"json": "y" * 5000}}})
        was_clean, code, reason = await self.closed(client, 5)
        self.assertEqual(client.for_id(2), [])
        # the server is fine: a new connection works
        again = await self.connect()
        reply = await self.call(again, 3, "system.echo", {"json": "ok"})
        self.assertEqual(reply["result"]["data"], {"json": "ok"})
        await self.sessions(1)
        # the client is told why (close frame 1009 "message too big"), not just dropped (1006)
        self.assertEqual(code, 1009, f"close was {(was_clean, code, reason)}")

    @async_test
    async def test_connection_params_accepted_and_rejected(self):
        from chaingraph_gw.trpc.errors import TRPCError

        seen: list[Any] = []

        def create_context(info, params):
            seen.append(params)
            if params != {"token": "good"}:
                raise TRPCError("UNAUTHORIZED", "bad token")
            return {"user": "u1"}

        await self.start_gateway(gateway_kw={"create_context": create_context})
        good = await self.connect("/trpc?connectionParams=1")
        good.send_json({"method": "connectionParams", "data": {"token": "good"}})
        reply = await self.call(good, 1, "system.echo", {"json": "in"})
        self.assertEqual(reply["result"]["data"], {"json": "in"})

        bad = await self.connect("/trpc?connectionParams=1")
        bad.send_json({"method": "connectionParams", "data": {"token": "bad"}})
        was_clean, code, _ = await self.closed(bad)
        self.assertEqual(bad.json_messages()[0]["id"], None)
        err = bad.json_messages()[0]["error"]["json"]
        self.assertEqual((err["message"], err["data"]["code"]), ("bad token", "UNAUTHORIZED"))
        # no status code, like the reference (a browser reports 1005; Autobahn reports None)
        self.assertIn(code, (None, 1005))
        self.assertTrue(was_clean)
        self.assertEqual(seen, [{"token": "good"}, {"token": "bad"}])
        self.assertIsNone(good.close_info)

    @async_test
    async def test_transport_close_with_service_restart_code(self):
        # ListenerService._drain closes stragglers with transport.close(1012, "Service restart");
        # the close must reach the client with that code (Autobahn's sendClose() only accepts 1000
        # and 3000-4999, so the protocol has to send other codes itself).
        await self.start_gateway()
        client = await self.connect()
        (session,) = await self.sessions(1)
        try:
            session.transport.close(1012, "Service restart")
        except Exception as exc:
            self.fail(f"transport.close(1012) raised {exc!r}")
        was_clean, code, reason = await self.closed(client)
        self.assertEqual((code, reason), (1012, "Service restart"))

    @async_test
    async def test_x_forwarded_for(self):
        gw = await self.start_gateway()
        await self.connect(headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
        sessions = await self.sessions(1)
        self.assertEqual(sessions[0].info.peer, "203.0.113.7")
        self.assertEqual(sessions[0].info.headers.get("x-forwarded-for"), "203.0.113.7, 10.0.0.1")
        await self.connect(headers={"X-Real-IP": "198.51.100.2"})
        await self.connect()
        await self.sessions(3)
        self.assertEqual(sorted(s.info.peer for s in gw.trpc.sessions),
                         ["127.0.0.1", "198.51.100.2", "203.0.113.7"])

    @async_test
    async def test_x_forwarded_for_ignored_when_untrusted(self):
        await self.start_gateway(trust_forwarded=False)
        await self.connect(headers={"X-Forwarded-For": "203.0.113.7"})
        sessions = await self.sessions(1)
        self.assertEqual(sessions[0].info.peer, "127.0.0.1")

    @async_test
    async def test_metrics_count_connections(self):
        gw = await self.start_gateway()
        a = await self.connect()
        await self.connect()
        await self.sessions(2)
        self.assertEqual(gw.metrics.registry.get_sample_value("chaingraph_ws_connections"), 2.0)
        a.sendClose()
        await self.closed(a)
        await self.sessions(1)
        self.assertEqual(gw.metrics.registry.get_sample_value("chaingraph_ws_connections"), 1.0)


class HttpOnWebSocketPortTests(GatewayTestCase):
    @async_test
    async def test_health(self):
        await self.start_gateway()
        for path in ("/health", "/healthz"):
            resp, body = await self.http("GET", path)
            self.assertEqual(resp.code, 200)
            self.assertEqual(resp.headers.getRawHeaders("content-type"), ["application/json"])
            data = json.loads(body)
            self.assertEqual(data["status"], "healthy")
            self.assertRegex(data["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIsInstance(data["uptime"], int)

    @async_test
    async def test_ready(self):
        await self.start_gateway()
        resp, body = await self.http("GET", "/ready")
        self.assertEqual(resp.code, 200)
        self.assertEqual(json.loads(body)["status"], "ready")

    @async_test
    async def test_ready_failing_check(self):
        gw = await self.start_gateway()

        async def db():
            return "no database"

        gw.http.add_readiness_check("db", db)
        resp, body = await self.http("GET", "/ready")
        self.assertEqual(resp.code, 503)
        self.assertEqual(json.loads(body)["failing"], ["db"])

    @async_test
    async def test_ready_with_asyncio_readiness_check(self):
        # Readiness checks talk to asyncio libraries (psycopg, confluent_kafka.aio). A check awaiting
        # an asyncio future must work when /ready is served on the WebSocket port.
        gw = await self.start_gateway()

        async def db():
            await asyncio.sleep(0.001)

        gw.http.add_readiness_check("db", db)
        resp, body = await self.http("GET", "/ready")
        self.assertEqual(json.loads(body)["checks"], {"db": "ok"})
        self.assertEqual(resp.code, 200)

    @async_test
    async def test_metrics(self):
        await self.start_gateway()
        await self.connect()
        await self.sessions(1)
        resp, body = await self.http("GET", "/metrics")
        self.assertEqual(resp.code, 200)
        self.assertTrue(resp.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        text = body.decode()
        self.assertIn("chaingraph_ws_connections 1.0", text)
        self.assertIn("chaingraph_ws_connections_opened_total 1.0", text)

    @async_test
    async def test_not_found_and_method_not_allowed(self):
        await self.start_gateway()
        resp, body = await self.http("GET", "/nope?x=1")
        self.assertEqual(resp.code, 404)
        self.assertEqual(json.loads(body), {"error": "Not Found", "path": "/nope"})
        resp, body = await self.http("POST", "/health")
        self.assertEqual(resp.code, 405)
        self.assertEqual(resp.headers.getRawHeaders("allow"), ["GET, HEAD"])

    @async_test
    async def test_head(self):
        await self.start_gateway()
        resp, body = await self.http("HEAD", "/health")
        self.assertEqual(resp.code, 200)
        self.assertEqual(body, b"")

    @async_test
    async def test_http_and_websocket_share_the_port(self):
        await self.start_gateway()
        client = await self.connect()
        resp, _ = await self.http("GET", "/health")
        self.assertEqual(resp.code, 200)
        reply = await self.call(client, 1, "system.echo", {"json": 1})
        self.assertEqual(reply["result"]["data"], {"json": 1})


class KeepAliveOverSocketTests(GatewayTestCase):
    @async_test
    async def test_client_answering_pong_stays_open_and_silent_client_is_dropped(self):
        await self.start_gateway(**{"keepalive.ping_ms": 200, "keepalive.pong_wait_ms": 200})
        good = await self.connect(auto_pong=True)
        opened = time.monotonic()
        bad = await self.connect(auto_pong=False)
        bad_opened = time.monotonic()
        await self.closed(bad, 3)
        self.assertGreaterEqual(bad.closed_at - bad_opened, 0.3)
        self.assertIn("PING", bad.messages)
        self.assertFalse(bad.close_info[0], "terminate() is not a clean close")
        remaining = 1.0 - (time.monotonic() - opened)
        if remaining > 0:
            await asyncio.sleep(remaining)
        self.assertIsNone(good.close_info)
        self.assertGreaterEqual(good.messages.count("PING"), 2)
        reply = await self.call(good, 1, "system.echo", {"json": "alive"})
        self.assertEqual(reply["result"]["data"], {"json": "alive"})


class DrainTests(GatewayTestCase):
    def assert_stopped_cleanly(self) -> None:
        if self.stop_failures:
            f = self.stop_failures[0]
            self.fail(f"ListenerService.stopService failed: {f.type.__name__}: {f.getErrorMessage()}\n"
                      f"{f.getTraceback()}")

    async def refused(self) -> bool:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=2)
        try:
            proto = await aw(endpoint.connect(Factory.forProtocol(Protocol)))
        except ConnectionRefusedError:
            return True
        proto.transport.abortConnection()
        return False

    @async_test
    async def test_drain_waits_for_clients_to_leave(self):
        gw = await self.start_gateway(drain_seconds=5)
        client = await self.connect()
        await self.sessions(1)
        started = time.monotonic()
        d = self.root.stopService()
        await wait_for(lambda: RECONNECT in [json.dumps(m, separators=(",", ":")) for m in client.json_messages()])
        self.assertEqual(client.json_messages(), [{"id": None, "method": "reconnect"}])
        self.assertTrue(gw.trpc.draining)
        self.assertTrue(gw.http.draining)
        self.assertTrue(await self.refused(), "new connections must be refused while draining")
        # the old socket keeps serving
        reply = await self.call(client, 1, "system.echo", {"json": "still here"})
        self.assertEqual(reply["result"]["data"], {"json": "still here"})
        self.assert_stopped_cleanly()
        self.assertFalse(d.called, "stopService() finished while a client was still connected")
        client.sendClose()
        await asyncio.wait_for(aw(d), 3)
        self.assert_stopped_cleanly()
        self.assertLess(time.monotonic() - started, 4, "drain should end as soon as the clients are gone")
        self.assertEqual(gw.trpc.sessions, set())

    @async_test
    async def test_drain_closes_stragglers_after_drain_seconds(self):
        gw = await self.start_gateway(drain_seconds=0.5)
        client = await self.connect()
        await self.sessions(1)
        started = time.monotonic()
        await asyncio.wait_for(aw(self.root.stopService()), 4)
        elapsed = time.monotonic() - started
        self.assert_stopped_cleanly()
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 0.5 + 1.2)
        self.assertEqual(client.json_messages()[0], {"id": None, "method": "reconnect"})
        was_clean, code, _reason = await self.closed(client, 3)
        # a close handshake with a proper code (the server means 1012 "service restart"), not a TCP abort
        self.assertTrue(code in (1000, 1001, 1012) or 3000 <= (code or 0) <= 4999, f"close code {code}")
        self.assertEqual(gw.trpc.sessions, set())

    @async_test
    async def test_drain_without_clients_is_immediate(self):
        await self.start_gateway(drain_seconds=5)
        started = time.monotonic()
        await asyncio.wait_for(aw(self.root.stopService()), 3)
        self.assert_stopped_cleanly()
        self.assertLess(time.monotonic() - started, 1)
        self.assertTrue(await self.refused())
