"""HttpRequestNode against a real local HTTP server (twisted.web on 127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from chaingraph_gw.nodes.library.http import HttpRequestNode, html_to_markdown, parse_headers

from .helpers import async_test, aw, wait_for
from .test_nodes_ctx import make_ctx, node_class, node_error, run_node

BIG = 10 * 1024 * 1024


class _Res(resource.Resource):
    isLeaf = True

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state

    def render(self, request: server.Request) -> Any:
        path = request.path.decode()
        self.state["requests"].append((request.method.decode(), path))
        if path == "/text":
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return "héllo".encode()
        if path == "/echo":
            body = request.content.read()
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({
                "method": request.method.decode(), "body": body.decode(),
                "contentType": (request.getHeader(b"content-type") or b"").decode(),
                "auth": (request.getHeader(b"authorization") or b"").decode(),
                "query": request.uri.decode(),
            }).encode()
        if path == "/missing":
            request.setResponseCode(404)
            return b"not here"
        if path == "/json":
            request.setHeader(b"content-type", b"application/json")
            return b'{ "a": 1, "b": [1, 2.50, "\xc3\xa9"] }'
        if path == "/badjson":
            return b"<html>"
        if path == "/blob":
            request.setHeader(b"content-type", b"Image/PNG; Charset=binary")
            return b"\x89PNG\r\n\x1a\n1234"
        if path == "/html":
            request.setHeader(b"content-type", b"text/html")
            return (b"<html><head><style>p{}</style><script>alert(1)</script></head><body>"
                    b"<nav>menu</nav><header>top</header><h1>Title</h1><p>Hello   <b>world</b></p>"
                    b"<ul><li>one</li><li>two</li></ul><pre><code>x = 1\n</code></pre><footer>f</footer>"
                    b"</body></html>")
        if path == "/big-declared":
            request.setHeader(b"content-length", str(BIG + 1).encode())
            request.write(b"x" * 1024)
            self.state["big_requests"].append(request)
            request.notifyFinish().addErrback(lambda _f: self.state["lost"].append(path))
            return server.NOT_DONE_YET
        if path == "/big-chunked":
            chunk = b"y" * (1024 * 1024)
            for _ in range(10):
                request.write(chunk)
            request.write(b"z")
            request.notifyFinish().addErrback(lambda _f: self.state["lost"].append(path))
            self.state["big_requests"].append(request)
            return server.NOT_DONE_YET
        if path == "/slow":
            request.notifyFinish().addErrback(lambda _f: self.state["lost"].append(path))
            return server.NOT_DONE_YET
        request.setResponseCode(500)
        return b"?"


class HttpRequestNodeTests(TestCase):
    def setUp(self) -> None:
        self.state: dict[str, Any] = {"requests": [], "lost": [], "big_requests": []}
        site = server.Site(_Res(self.state))
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.addCleanup(self._cleanup)

    async def _finish_open(self) -> None:
        for req in self.state["big_requests"]:
            if not req.finished and not req._disconnected:
                req.loseConnection()
        await asyncio.sleep(0.05)

    def _cleanup(self) -> Any:
        from .helpers import deferred_from

        d = deferred_from(self._finish_open())
        d.addCallback(lambda _: self.port.stopListening())
        return d

    def req(self, path: str, **kw: Any) -> dict[str, Any]:
        values = {"baseUri": self.base, "path": path}
        values.update(kw)
        return values

    @async_test
    async def test_get_text(self) -> None:
        ctx = await run_node("HttpRequestNode", self.req("/text"))
        self.assertEqual(ctx.values["statusCode"], 200)
        self.assertEqual(ctx.values["response"], "héllo")
        self.assertEqual(self.state["requests"], [("GET", "/text")])

    @async_test
    async def test_post_json_body_is_reencoded(self) -> None:
        ctx = await run_node("HttpRequestNode", self.req(
            "echo?x=1", method="POST", headers="Content-Type: application/json\nAuthorization:  Bearer a:b \nEmpty:",
            body='{ "a" : 1,\n  "b": [true, null] }', responseType="json"))
        self.assertEqual(ctx.values["statusCode"], 200)
        echo = json.loads(ctx.values["response"])
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(echo["body"], '{"a":1,"b":[true,null]}')
        self.assertEqual(echo["contentType"], "application/json")
        self.assertEqual(echo["auth"], "Bearer a:b")
        self.assertEqual(echo["query"], "/echo?x=1")  # the missing leading '/' is added

    @async_test
    async def test_delete_sends_body_and_absolute_path_replaces_base_path(self) -> None:
        ctx = await run_node("HttpRequestNode", {
            "baseUri": self.base + "/api/v1/", "path": "/echo", "method": "DELETE",
            "headers": "Content-Type: text/plain", "body": "bye"})
        self.assertEqual(json.loads(ctx.values["response"])["body"], "bye")
        self.assertEqual(self.state["requests"], [("DELETE", "/echo")])

    @async_test
    async def test_404_is_not_an_error(self) -> None:
        ctx = await run_node("HttpRequestNode", self.req("/missing"))
        self.assertEqual(ctx.values["statusCode"], 404)
        self.assertEqual(ctx.values["response"], "not here")

    @async_test
    async def test_json_response_is_restringified_compactly(self) -> None:
        ctx = await run_node("HttpRequestNode", self.req("/json", responseType="json"))
        self.assertEqual(ctx.values["response"], '{"a":1,"b":[1,2.5,"é"]}')

    @async_test
    async def test_bad_json_response(self) -> None:
        msg = await node_error("HttpRequestNode", self.req("/badjson", responseType="json"))
        self.assertEqual(msg, "Failed to parse response as json: Unexpected token '<', \"<html>\" is not valid JSON")

    @async_test
    async def test_blob_and_html_to_markdown(self) -> None:
        ctx = await run_node("HttpRequestNode", self.req("/blob", responseType="blob"))
        self.assertEqual(ctx.values["response"], "Blob: image/png;charset=binary, 12 bytes")
        ctx = await run_node("HttpRequestNode", self.req("/html", responseType="html-to-markdown"))
        self.assertEqual(ctx.values["response"], "# Title\n\nHello **world**\n\n- one\n- two\n\n```\nx = 1\n```")

    @async_test
    async def test_head(self) -> None:
        ctx = await run_node("HttpRequestNode", self.req("/text", method="HEAD"))
        self.assertEqual((ctx.values["statusCode"], ctx.values["response"]), (200, ""))

    @async_test
    async def test_timeout_and_retries(self) -> None:
        t0 = time.monotonic()
        ctx = make_ctx("HttpRequestNode", self.req("/slow", timeout=150, retries=1))
        with self.assertRaises(Exception) as cm:
            await node_class("HttpRequestNode")().execute(ctx)
        self.assertEqual(str(cm.exception), "This operation was aborted")
        self.assertEqual(self.state["requests"], [("GET", "/slow"), ("GET", "/slow")])
        self.assertEqual(ctx.sleeps, [1.0])  # back-off 1 s before the first retry
        self.assertGreaterEqual(time.monotonic() - t0, 1.25)
        await wait_for(lambda: len(self.state["lost"]) == 2, what="timed-out requests to be aborted")

    @async_test
    async def test_network_error_is_retried(self) -> None:
        self.patch(HttpRequestNode, "backoff_base", 0.01)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        ctx = make_ctx("HttpRequestNode", {"baseUri": f"http://127.0.0.1:{port}", "path": "/", "retries": 2})
        with self.assertRaises(Exception) as cm:
            await node_class("HttpRequestNode")().execute(ctx)
        self.assertEqual(str(cm.exception), "fetch failed")
        self.assertEqual(ctx.sleeps, [0.01, 0.02])

    @async_test
    async def test_size_cap(self) -> None:
        self.assertEqual(await node_error("HttpRequestNode", self.req("/big-declared")),
                         "Response exceeds 10485760 bytes")
        self.assertEqual(await node_error("HttpRequestNode", self.req("/big-chunked", retries=2)),
                         "Response exceeds 10485760 bytes")
        self.assertEqual(len(self.state["requests"]), 2)  # the cap is not retried
        await wait_for(lambda: len(self.state["lost"]) == 2, what="capped responses to be dropped")

    @async_test
    async def test_cancellation_cancels_the_request(self) -> None:
        ctx = make_ctx("HttpRequestNode", self.req("/slow", timeout=60000))
        task = asyncio.ensure_future(node_class("HttpRequestNode")().execute(ctx))
        await wait_for(lambda: self.state["requests"], what="the request to arrive")
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        await wait_for(lambda: self.state["lost"] == ["/slow"], what="the server to see the connection drop")

    @async_test
    async def test_validation_errors(self) -> None:
        cases = [
            ({"baseUri": "", "path": "/x"}, "Base URI is required"),
            ({"baseUri": "  ", "path": "/x"}, "Base URI is required"),
            ({"baseUri": "example.com", "path": "/x"}, "Invalid Base URI format: example.com"),
            ({"baseUri": "http://", "path": "/x"}, "Invalid Base URI format: http://"),
            ({"baseUri": "http://h", "path": ""}, "Path is required"),
            ({"baseUri": "http://h", "path": "/x", "method": "POST", "body": "{}"},
             "Content-Type header is required for requests with body"),
            ({"baseUri": "http://h", "path": "/x", "method": "PUT", "body": "{}", "headers": "content-type: a/b"},
             "Content-Type header is required for requests with body"),
        ]
        for values, msg in cases:
            self.assertEqual(await node_error("HttpRequestNode", values), msg, values)
        msg = await node_error("HttpRequestNode", {"baseUri": "http://h", "path": "/x", "method": "POST",
                                                    "body": "{bad", "headers": "Content-Type: application/json"})
        self.assertEqual(msg, "Invalid JSON body: Expected property name or '}' in JSON at position 1")
        self.assertEqual(self.state["requests"], [])

    def test_header_parsing_and_markdown(self) -> None:
        self.assertEqual(parse_headers("A: 1\r\nB : x:y \nC:\n : v\nnocolon"), {"A": "1", "B": "x:y"})
        self.assertEqual(html_to_markdown("<h2>H</h2><p>a  \n\n\n  b</p><aside>x</aside>"), "## H\n\na b")

    def test_ports(self) -> None:
        self.assertEqual(node_class("HttpRequestNode").port("method").options,
                         ("GET", "POST", "PUT", "PATCH", "HEAD", "DELETE"))

    @async_test
    async def test_server_reachable(self) -> None:
        # sanity check of the fixture itself through the shared helper
        from twisted.web.client import Agent, readBody

        resp = await aw(Agent(reactor).request(b"GET", (self.base + "/text").encode()))
        self.assertEqual(await aw(readBody(resp)), "héllo".encode())
