"""HttpRequestNode: a real HTTP request with treq, cancellable, with retries and a response size cap."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..jsbridge import (
    JSONParseError,
    js_json_parse,
    js_json_stringify,
    js_number,
    js_string,
    js_trim,
)
from ..sdk import NodeContext, NodeError, NodeType, enum, number, register, string
from ._util import get, nullish

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "HEAD", "DELETE")
RESPONSE_TYPES = ("json", "text", "blob", "html-to-markdown")
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_RETRIES = 10  # not in ChainGraph (its UI suggests 0..3); a bound so a flow cannot retry forever

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")


class ResponseTooLarge(Exception):
    pass


class _Transient(Exception):
    """A network-level failure of one attempt (retried)."""


def _valid_base_uri(uri: str) -> bool:
    """Roughly WHATWG ``new URL(uri)`` succeeding: a scheme, and a host for the special schemes."""
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        return False
    if not parts.scheme or not _SCHEME.match(parts.scheme):
        return False
    if parts.scheme.lower() in ("http", "https", "ws", "wss", "ftp"):
        try:
            return bool(parts.hostname) and (parts.port is None or 0 <= parts.port <= 65535)
        except ValueError:
            return False
    return True


def parse_headers(text: Any) -> dict[str, str]:
    """One ``Key: Value`` per line; split at the first ':'; both sides trimmed; empty values dropped."""
    out: dict[str, str] = {}
    if nullish(text) or not js_trim(js_string(text)):
        return out
    for line in js_string(text).split("\n"):
        key, _, value = line.partition(":")
        value = js_trim(value)
        if js_trim(key) and value:
            out[js_trim(key)] = value
    return out


def _mime_essence(content_type: str | None) -> str:
    """The Blob type fetch would report: a parsed, serialized MIME type (lower-case, no spaces) or ''."""
    if not content_type:
        return ""
    pieces = [p.strip() for p in content_type.split(";")]
    essence = pieces[0].lower()
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+", essence):
        return ""
    params = []
    for p in pieces[1:]:
        name, eq, val = p.partition("=")
        if eq and name.strip():
            params.append(f"{name.strip().lower()}={val.strip()}")
    return ";".join([essence, *params])


_DROP_TAGS = ("script", "style", "iframe", "svg", "noscript", "canvas", "object", "embed", "template", "link",
              "meta", "nav", "header", "footer", "aside", "menu")


def html_to_markdown(html: str) -> str:
    """Turndown-like conversion: drop scripts/styles/embeds and page chrome (nav, header, footer, aside, menu),
    ATX headings, '-' bullets, fenced code; blank lines and runs of spaces collapsed."""
    from bs4 import BeautifulSoup, Comment, NavigableString
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for text in soup.find_all(string=True):  # HTML whitespace collapsing (outside pre/code/textarea)
        if isinstance(text, NavigableString) and not isinstance(text, Comment) and not any(
                p.name in ("pre", "code", "textarea") for p in text.parents):
            collapsed = re.sub(r"[ \t\r\n\f]+", " ", str(text))
            if collapsed != str(text):
                text.replace_with(NavigableString(collapsed))
    md = MarkdownConverter(heading_style="ATX", bullets="-", code_language="").convert_soup(soup)
    out: list[str] = []
    in_fence = False
    for line in md.split("\n"):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            out.append(line.rstrip())
            continue
        if in_fence:
            out.append(line)
            continue
        lead = len(line) - len(line.lstrip(" "))
        out.append(line[:lead] + re.sub(r"[ \t]{2,}", " ", line[lead:]).rstrip())
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


class _BodyReader:
    """An IProtocol collecting a response body up to ``limit`` bytes; its Deferred is cancellable
    (cancelling drops the connection)."""

    def __init__(self, limit: int) -> None:
        from twisted.internet.defer import Deferred

        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self.transport: Any = None
        self.deferred: Deferred[bytes] = Deferred(self._cancel)

    def _cancel(self, _d: Any) -> None:
        self._drop()

    def _drop(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):  # already gone
                self.transport.stopProducing()

    # IProtocol
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        if self.deferred.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.deferred.errback(ResponseTooLarge())
            self._drop()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if self.deferred.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.deferred.callback(b"".join(self.chunks))
        else:
            self.deferred.errback(reason)


def _decode_utf8(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


@register
class HttpRequestNode(NodeType):
    type_name = "HttpRequestNode"
    title = "HTTP Request"
    category = "utilities"
    description = "Makes HTTP requests to external services"
    tags = ("http", "request", "api")
    ports = (
        string("baseUri", default="", required=True, title="Base URI",
               ui={"placeholder": "https://api.example.com"}),
        string("path", default="", required=True, title="Path", ui={"placeholder": "/v1/users"}),
        enum("method", HTTP_METHODS, default="GET", required=True, title="Method"),
        string("headers", default="", title="Headers", ui={"isTextArea": True}),
        string("body", default="", title="Body", ui={"isTextArea": True}),
        enum("responseType", RESPONSE_TYPES, default="text", required=True, title="Response Type"),
        number("timeout", default=30000, required=True, title="Timeout (ms)"),
        number("retries", default=0, title="Retries"),
        number("statusCode", direction="output", default=0, title="Status Code"),
        string("response", direction="output", default="", title="Response"),
    )

    max_response_bytes = MAX_RESPONSE_BYTES
    backoff_base = 1.0  # seconds; attempt n waits backoff_base * 2**n before retrying

    # -- validation (same order and messages as ChainGraph) -----------------------------------------
    @staticmethod
    def _prepare(ctx: NodeContext) -> tuple[str, str, dict[str, str], bytes | None]:
        base = get(ctx, "baseUri")
        base = "" if nullish(base) else js_string(base)
        if not js_trim(base):
            raise NodeError("Base URI is required")
        if not _valid_base_uri(base):
            raise NodeError(f"Invalid Base URI format: {base}")
        path = get(ctx, "path")
        path = "" if nullish(path) else js_string(path)
        if not js_trim(path):
            raise NodeError("Path is required")
        if not path.startswith("/"):
            path = "/" + path
        method = get(ctx, "method")
        method = "GET" if nullish(method) else js_string(method)
        headers_text = get(ctx, "headers")
        headers_text = "" if nullish(headers_text) else js_string(headers_text)
        body = get(ctx, "body")
        body = "" if nullish(body) else js_string(body)
        if method not in ("GET", "HEAD") and js_trim(body) and "Content-Type" not in headers_text:
            raise NodeError("Content-Type header is required for requests with body")
        headers = parse_headers(headers_text)
        data: bytes | None = None
        if method not in ("GET", "HEAD"):
            content = ""
            if js_trim(body):
                ctype = (headers.get("Content-Type") or headers.get("content-type") or "").lower()
                content = body
                if "application/json" in ctype:
                    try:
                        content = js_json_stringify(js_json_parse(body)) or ""
                    except JSONParseError as exc:
                        raise NodeError(f"Invalid JSON body: {exc}") from None
            data = content.encode("utf-8")
        base_trimmed = base.removesuffix("/")
        url = urljoin(base_trimmed, path)
        return method, url, headers, data

    async def execute(self, ctx: NodeContext) -> None:
        method, url, headers, data = self._prepare(ctx)
        timeout_ms = js_number(get(ctx, "timeout"))
        if not math.isfinite(timeout_ms) or timeout_ms < 1:
            timeout_ms = 1.0  # setTimeout clamps to 1 ms
        timeout_ms = min(timeout_ms, 2**31 - 1)
        retries = js_number(get(ctx, "retries"))
        retries = min(retries, MAX_RETRIES) if not math.isnan(retries) else -1.0
        response_type = get(ctx, "responseType")
        response_type = "text" if nullish(response_type) else js_string(response_type)

        last_error: NodeError | None = None
        result: tuple[int, str | None, bytes] | None = None
        attempt = 0
        while attempt <= retries:
            try:
                result = await asyncio.wait_for(self._attempt(method, url, headers, data), timeout_ms / 1000.0)
                break
            except TimeoutError:
                last_error = NodeError("This operation was aborted")
            except _Transient:
                last_error = NodeError("fetch failed")
            if attempt < retries:
                await ctx.sleep(self.backoff_base * 2**attempt)
            attempt += 1
        if result is None:
            raise last_error or NodeError("Request failed after retries")
        status, content_type, body = result
        ctx.values["statusCode"] = status
        ctx.values["response"] = self._parse(response_type, content_type, body)

    async def _attempt(self, method: str, url: str, headers: dict[str, str],
                       data: bytes | None) -> tuple[int, str | None, bytes]:
        """One request: (status, content-type, body). Cancelling the coroutine cancels the request."""
        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        loop = asyncio.get_running_loop()
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise _Transient(f"unsupported scheme in {url}")
        hdrs = dict(headers)
        if not any(k.lower() == "accept" for k in hdrs):
            hdrs["Accept"] = "*/*"
        pool = HTTPConnectionPool(reactor, persistent=False)
        client = HTTPClient(Agent(reactor, pool=pool))
        try:
            d = client.request(method, url, headers=hdrs, data=data, unbuffered=True)
        except Exception as exc:  # bad header names, unencodable URL, …
            raise _Transient(str(exc)) from exc
        try:
            response = await d.asFuture(loop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any parse failure is reported
            raise _Transient(str(exc)) from exc
        content_type = response.headers.getRawHeaders(b"content-type", [None])[0]
        ctype = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
        length = response.length
        if isinstance(length, int) and length > self.max_response_bytes:
            reader = _BodyReader(self.max_response_bytes)
            reader.deferred.addErrback(lambda _f: None)
            response.deliverBody(reader)
            reader.deferred.cancel()  # drop the connection without reading the body
            raise NodeError(f"Response exceeds {self.max_response_bytes} bytes")
        reader = _BodyReader(self.max_response_bytes)
        response.deliverBody(reader)
        try:
            body = await reader.deferred.asFuture(loop)
        except asyncio.CancelledError:
            raise
        except ResponseTooLarge:
            raise NodeError(f"Response exceeds {self.max_response_bytes} bytes") from None
        except Exception as exc:
            raise _Transient(str(exc)) from exc
        return response.code, ctype, body

    @staticmethod
    def _parse(response_type: str, content_type: str | None, body: bytes) -> str:
        try:
            if response_type == "json":
                return js_json_stringify(js_json_parse(_decode_utf8(body))) or ""
            if response_type == "blob":
                return f"Blob: {_mime_essence(content_type)}, {len(body)} bytes"
            if response_type == "html-to-markdown":
                return html_to_markdown(_decode_utf8(body))
            return _decode_utf8(body)
        except Exception as exc:
            raise NodeError(f"Failed to parse response as {response_type}: {exc}") from None
