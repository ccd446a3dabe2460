"""Tests for chaingraph_gw.transport.http: health, readiness, metrics, 404/405, response encoding."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chaingraph_gw.metrics import GatewayMetrics
from chaingraph_gw.transport.http import HttpEndpoints, HttpResponse

from .helpers import async_test

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def endpoints(**kw) -> HttpEndpoints:
    metrics = kw.pop("metrics", None) or GatewayMetrics()
    return HttpEndpoints(render_metrics=metrics.render, metrics_content_type=metrics.content_type, **kw)


def body(resp: HttpResponse):
    return json.loads(resp.body)


class HealthTests(TestCase):
    timeout = 5

    @async_test
    async def test_health_and_healthz_shape(self):
        ep = endpoints(started_monotonic=time.monotonic() - 42.7)
        for path in ("/health", "/healthz", "/health/", "/healthz?probe=1"):
            resp = await ep.handle("GET", path, {}, None)
            self.assertEqual(resp.status, 200, path)
            self.assertEqual(resp.content_type, "application/json")
            data = body(resp)
            self.assertEqual(sorted(data), ["status", "timestamp", "uptime"])
            self.assertEqual(data["status"], "healthy")
            self.assertRegex(data["timestamp"], ISO_Z)
            ts = datetime.strptime(data["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            self.assertLess(abs((datetime.now(UTC) - ts).total_seconds()), 5)
            self.assertIs(type(data["uptime"]), int)
            self.assertIn(data["uptime"], (42, 43))

    @async_test
    async def test_head_allowed(self):
        resp = await endpoints().handle("HEAD", "/health", {}, None)
        self.assertEqual(resp.status, 200)

    @async_test
    async def test_uptime_starts_at_zero(self):
        data = body(await endpoints().handle("GET", "/health", {}, None))
        self.assertEqual(data["uptime"], 0)


class ReadyTests(TestCase):
    timeout = 5

    @async_test
    async def test_ready_without_checks(self):
        resp = await endpoints().handle("GET", "/ready", {}, None)
        self.assertEqual(resp.status, 200)
        data = body(resp)
        self.assertEqual(data["status"], "ready")
        self.assertEqual(data["checks"], {})
        self.assertNotIn("failing", data)
        self.assertRegex(data["timestamp"], ISO_Z)

    @async_test
    async def test_passing_checks(self):
        async def db():
            await asyncio.sleep(0)

        async def kafka():
            return ""

        ep = endpoints(readiness={"db": db})
        ep.add_readiness_check("kafka", kafka)
        resp = await ep.handle("GET", "/ready", {}, None)
        self.assertEqual(resp.status, 200)
        self.assertEqual(body(resp)["checks"], {"db": "ok", "kafka": "ok"})

    @async_test
    async def test_check_returning_a_reason(self):
        async def db():
            return "connection refused"

        async def kafka():
            return None

        resp = await endpoints(readiness={"db": db, "kafka": kafka}).handle("GET", "/ready", {}, None)
        self.assertEqual(resp.status, 503)
        data = body(resp)
        self.assertEqual(data["status"], "unavailable")
        self.assertEqual(data["failing"], ["db"])
        self.assertEqual(data["checks"], {"db": "connection refused", "kafka": "ok"})

    @async_test
    async def test_check_raising(self):
        async def db():
            raise RuntimeError("pool exhausted")

        resp = await endpoints(readiness={"db": db}).handle("GET", "/ready", {}, None)
        self.assertEqual(resp.status, 503)
        data = body(resp)
        self.assertEqual(data["failing"], ["db"])
        self.assertEqual(data["checks"]["db"], "RuntimeError: pool exhausted")

    @async_test
    async def test_draining(self):
        async def db():
            return None

        ep = endpoints(readiness={"db": db})
        ep.draining = True
        resp = await ep.handle("GET", "/ready", {}, None)
        self.assertEqual(resp.status, 503)
        data = body(resp)
        self.assertEqual(data["status"], "unavailable")
        self.assertEqual(data["failing"], ["draining"])
        self.assertEqual(data["checks"]["db"], "ok")
        self.assertIn("draining", data["checks"])
        ep.draining = False
        self.assertEqual((await ep.handle("GET", "/ready", {}, None)).status, 200)

    @async_test
    async def test_several_failures_all_named(self):
        async def a():
            return "down"

        async def b():
            raise ValueError("bad")

        ep = endpoints(readiness={"a": a, "b": b})
        ep.draining = True
        data = body(await ep.handle("GET", "/ready", {}, None))
        self.assertEqual(data["failing"], ["draining", "a", "b"])


class MetricsAndRoutingTests(TestCase):
    timeout = 5

    @async_test
    async def test_metrics_prometheus_text(self):
        metrics = GatewayMetrics()
        metrics.connections.inc()
        metrics.error("NOT_FOUND")
        metrics.pending_in += 3
        resp = await endpoints(metrics=metrics).handle("GET", "/metrics", {}, None)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.content_type, CONTENT_TYPE_LATEST)
        self.assertTrue(resp.content_type.startswith("text/plain"))
        text = resp.body.decode()
        for name in ("chaingraph_ws_connections", "chaingraph_subscriptions", "chaingraph_messages_in_total",
                     "chaingraph_errors_total", "chaingraph_request_duration_seconds"):
            self.assertIn(name, text)
        self.assertIn("# TYPE chaingraph_ws_connections gauge", text)
        self.assertIn("chaingraph_ws_connections 1.0", text)
        self.assertIn('chaingraph_errors_total{code="NOT_FOUND"} 1.0', text)
        self.assertIn("chaingraph_messages_in_total 3.0", text)

    @async_test
    async def test_404_json(self):
        ep = endpoints()
        for path in ("/", "/trpc", "/nope", "/health/deep", "/metricsx"):
            resp = await ep.handle("GET", path + "?q=1", {}, None)
            self.assertEqual(resp.status, 404, path)
            self.assertEqual(resp.content_type, "application/json")
            self.assertEqual(body(resp), {"error": "Not Found", "path": path})

    @async_test
    async def test_405_for_other_methods(self):
        ep = endpoints()
        for method, path in (("POST", "/health"), ("PUT", "/ready"), ("DELETE", "/metrics"), ("POST", "/healthz/")):
            resp = await ep.handle(method, path, {}, None)
            self.assertEqual(resp.status, 405, (method, path))
            self.assertEqual(resp.headers.get("Allow"), "GET, HEAD")
            self.assertEqual(body(resp), {"error": "Method Not Allowed"})

    @async_test
    async def test_post_to_unknown_path_is_404(self):
        self.assertEqual((await endpoints().handle("POST", "/elsewhere", {}, None)).status, 404)


class HttpResponseTests(SynchronousTestCase):
    def test_encode_full(self):
        resp = HttpResponse.json(200, {"a": 1})
        raw = resp.encode()
        head, _, payload = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK")
        self.assertIn("Content-Type: application/json", lines)
        self.assertIn("Content-Length: 7", lines)
        self.assertIn("Connection: close", lines)
        self.assertIn("Cache-Control: no-store", lines)
        self.assertEqual(payload, b'{"a":1}')

    def test_encode_head_only_keeps_length_drops_body(self):
        resp = HttpResponse.json(503, {"status": "unavailable"})
        raw = resp.encode(head_only=True)
        self.assertTrue(raw.endswith(b"\r\n\r\n"))
        self.assertTrue(raw.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"))
        self.assertIn(f"Content-Length: {len(resp.body)}".encode(), raw)
        self.assertNotIn(b"unavailable", raw)

    def test_extra_headers_and_reasons(self):
        raw = HttpResponse.json(405, {"error": "x"}, Allow="GET, HEAD").encode()
        self.assertTrue(raw.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"))
        self.assertIn(b"\r\nAllow: GET, HEAD\r\n", raw)
        self.assertTrue(HttpResponse(404, b"").encode().startswith(b"HTTP/1.1 404 Not Found\r\n"))
        self.assertTrue(HttpResponse(418, b"").encode().startswith(b"HTTP/1.1 418 Unknown\r\n"))

    def test_custom_content_type(self):
        raw = HttpResponse(200, b"x 1\n", "text/plain; version=0.0.4").encode()
        self.assertIn(b"Content-Type: text/plain; version=0.0.4\r\n", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\nx 1\n"))
