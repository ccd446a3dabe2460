"""Autobahn adapter: one port serves tRPC over WebSocket (any path) and plain HTTP endpoints.

The protocol class implements :class:`chaingraph_gw.trpc.session.Transport` and hands every
text frame to a :class:`TRPCSession`. Requests without an ``Upgrade`` header never reach
Autobahn's handshake: they are answered by :class:`HttpEndpoints` and the socket is closed.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol, parseHttpHeader
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from ..trpc.session import ConnectionInfo, TRPCServer, TRPCSession
from .http import HttpEndpoints, HttpResponse

log = Logger(namespace="chaingraph_gw.ws")

STATE_OPEN = WebSocketProtocol.STATE_OPEN
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
FLUSH_BYTES = 4096

# Cap on an HTTP request head (health probes and metrics scrapes are tiny).
MAX_HTTP_HEAD = 16 * 1024


def client_address(headers: dict[str, str], peer_host: str, trust_forwarded: bool) -> str:
    """The address of the real client: the first X-Forwarded-For hop (or X-Real-IP) behind a proxy."""
    if trust_forwarded:
        fwd = headers.get("x-forwarded-for")
        if fwd:
            first = fwd.split(",")[0].strip()
            if first:
                return first
        real = headers.get("x-real-ip")
        if real:
            return real.strip()
    return peer_host


def _peer_host(peer: str) -> str:
    # Autobahn peers look like "tcp:127.0.0.1:5555" / "tcp6:[::1]:5555".
    if peer.startswith("tcp"):
        rest = peer.split(":", 1)[1]
        host, _, _port = rest.rpartition(":")
        return host.strip("[]") or rest
    return peer


@implementer(IPushProducer)
class TRPCWebSocketProtocol(WebSocketServerProtocol):
    factory: TRPCWebSocketFactory

    def __init__(self) -> None:
        super().__init__()
        self.session: TRPCSession | None = None
        self._info: ConnectionInfo | None = None
        self._http_handled = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._unflushed = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        # Autobahn applies its tcpNoDelay option before it has copied the factory's options, so it
        # never takes effect; without it Nagle holds bursts of frames until the peer's delayed ACK
        # (~40 ms on Linux).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass  # not a TCP socket (e.g. a UNIX socket in tests)

    # -- plain HTTP on the same port -------------------------------------------------------------
    def processHandshake(self) -> None:  # Autobahn's name
        if self._http_handled:
            return
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            if len(self.data) > MAX_HTTP_HEAD:
                self.failHandshake("HTTP request head too large", 431)
            return
        head = self.data[: end + 4]
        if b"upgrade:" not in head.lower():
            self._http_handled = True
            self._serve_http(head)
            return
        super().processHandshake()

    def _serve_http(self, head: bytes) -> None:
        try:
            status_line, headers, _ = parseHttpHeader(head)
            method, target, _version = status_line.split(" ", 2)
        except Exception:  # garbage in, 400 out
            self._write_http(HttpResponse.json(400, {"error": "Bad Request"}), head_only=False)
            return
        # An asyncio task: readiness checks await asyncio libraries (psycopg, confluent-kafka).
        d = Deferred.fromFuture(asyncio.ensure_future(
            self.factory.http.handle(method, target, headers, self.transport.getPeer())))
        d.addCallback(self._write_http, head_only=(method == "HEAD"))
        d.addErrback(self._http_failed)

    def _http_failed(self, failure: Any) -> None:
        log.failure("HTTP handler failed", failure)
        self._write_http(HttpResponse.json(500, {"error": "Internal Server Error"}), head_only=False)

    def _write_http(self, resp: HttpResponse, head_only: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(resp.encode(head_only=head_only))
        self.transport.loseConnection()

    # -- WebSocket lifecycle -----------------------------------------------------------------------
    def onConnect(self, request: ConnectionRequest) -> None:
        server = self.factory.trpc
        if server.draining:
            raise ConnectionDeny(503, "Server is shutting down; reconnect to another instance")
        limit = self.factory.max_connections
        if limit and len(server.sessions) >= limit:
            raise ConnectionDeny(503, "Too many connections")
        headers = {k.lower(): v for k, v in request.headers.items()}
        peer = client_address(headers, _peer_host(request.peer), self.factory.trust_forwarded)
        self._info = ConnectionInfo(
            path=request.path or "/", query=dict(request.params), headers=headers, peer=peer
        )

    def onOpen(self) -> None:
        assert self._info is not None
        try:
            self.transport.registerProducer(self, True)
        except RuntimeError:
            pass  # another producer owns the transport (e.g. TLS wrapper); fall back to polling
        self.session = self.factory.trpc.session(self, self._info)
        self.session.opened()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            return
        if isBinary:
            # The official client decodes text only; say so instead of guessing an encoding.
            session.receive_binary()
            return
        session.receive(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.closed()
        self._release_waiters()

    # -- Transport (for TRPCSession) ----------------------------------------------------------------
    def send_frame(self, data: bytes) -> None:
        # A server text frame is a 2-10 byte header plus the unmasked payload. Writing it directly
        # skips Autobahn's per-message bookkeeping (and its outbound size limit, which is meant for
        # inbound messages here); no extension that would change the framing is ever negotiated.
        if self.state != STATE_OPEN:
            return
        n = len(data)
        t = self.transport
        if n < 126:
            t.write(bytes((0x81, n)) + data)
        elif n < 65536:
            t.write(_pack_16(0x81, 126, n) + data)
        else:
            t.writeSequence((_pack_64(0x81, 127, n), data))
        # Twisted writes on the next loop turn; while a long batch is being answered, push what
        # is queued once it reaches FLUSH_BYTES so the client can start on it (client and
        # server then work in parallel instead of taking turns).
        self._unflushed += n
        if self._unflushed >= FLUSH_BYTES:
            self._unflushed = 0
            do_write = getattr(t, "doWrite", None)
            if do_write is not None and t.connected and not t.disconnecting:
                do_write()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is None or code == 1000 or 3000 <= code <= 4999:
            self.sendClose(code, reason)
        else:
            # Autobahn's sendClose only allows 1000 and 3000-4999; 1001/1012 are legitimate
            # server codes ("going away", "service restart"), so send the frame directly.
            self.sendCloseFrame(code=code, reasonUtf8=(reason or "").encode("utf-8")[:120], isReply=False)

    def terminate(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def outbound_buffered(self) -> int:
        t = self.transport
        try:
            return len(t.dataBuffer) - t.offset + t._tempDataLen  # type: ignore[union-attr]
        except AttributeError:
            return 0

    def wait_writable(self) -> asyncio.Future[None] | None:
        if not self._paused:
            return None
        fut: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        self._drain_waiters.append(fut)
        return fut

    # -- IPushProducer: Twisted tells us when the kernel buffer is full -----------------------------
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._release_waiters()

    def stopProducing(self) -> None:
        self._paused = False
        self._release_waiters()

    def _release_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class TRPCWebSocketFactory(WebSocketServerFactory):
    protocol = TRPCWebSocketProtocol

    def __init__(
        self,
        trpc: TRPCServer,
        http: HttpEndpoints,
        *,
        max_frame_bytes: int,
        max_connections: int = 0,
        trust_forwarded: bool = True,
        server_header: str = "chaingraph-gw",
    ) -> None:
        super().__init__(server=server_header)
        self.trpc = trpc
        self.http = http
        self.max_connections = max_connections
        self.trust_forwarded = trust_forwarded
        self.setProtocolOptions(
            maxFramePayloadSize=max_frame_bytes,
            maxMessagePayloadSize=max_frame_bytes,
            # tRPC keep-alive is text PING/PONG (session level); no protocol-level auto ping.
            autoPingInterval=0,
            # Protocol violations (e.g. an oversized frame → 1009) are closed with a close frame,
            # not by dropping TCP, so clients see the reason.
            failByDrop=False,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
            # Frames are small JSON: send them at once rather than waiting for Nagle.
            tcpNoDelay=True,
            # Accept any Origin: browsers connect from editor pages on other hosts.
            allowedOrigins=["*"],
        )

