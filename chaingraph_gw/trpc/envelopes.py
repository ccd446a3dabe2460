"""Parsing client envelopes and building server envelopes (protocol doc §2, §3).

Unlike the reference server, a malformed element is answered under its own id whenever that
id can be read, so the official client (which has no request timeout) never hangs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import TRPCError
from .transformer import MISSING

METHODS = frozenset(("query", "mutation", "subscription", "subscription.stop"))


@dataclass(slots=True)
class Request:
    id: int | str
    method: str
    path: str
    raw_input: Any  # params.input as parsed JSON, or MISSING
    last_event_id: str | None
    jsonrpc: str | None


class EnvelopeError(Exception):
    """A request element that cannot be run; ``id`` is the readable id or None."""

    def __init__(self, id: int | str | None, error: TRPCError, jsonrpc: str | None = None) -> None:
        super().__init__(error.message)
        self.id = id
        self.error = error
        self.jsonrpc = jsonrpc


def _readable_id(value: Any) -> int | str | None:
    t = type(value)
    if t is int or t is str:
        return value
    if t is float and math.isfinite(value):
        return int(value) if value.is_integer() else value
    return None


def parse_request(obj: Any) -> Request:
    if type(obj) is not dict:
        raise EnvelopeError(None, TRPCError("PARSE_ERROR", "Not an object"))
    raw_id = obj.get("id", MISSING)
    rid = _readable_id(raw_id) if raw_id is not MISSING else None
    jsonrpc = obj.get("jsonrpc")
    if raw_id is None:
        raise EnvelopeError(None, TRPCError("PARSE_ERROR", "`id` is required"))
    if rid is None:
        raise EnvelopeError(None, TRPCError("PARSE_ERROR", "Invalid request id"))
    if jsonrpc is not None and jsonrpc != "2.0":
        raise EnvelopeError(rid, TRPCError("PARSE_ERROR", "Must be JSONRPC 2.0"))
    echo_jsonrpc = jsonrpc if jsonrpc is not None else None
    method = obj.get("method")
    if type(method) is not str or method not in METHODS:
        raise EnvelopeError(rid, TRPCError("PARSE_ERROR", "Invalid procedure type"), echo_jsonrpc)
    if method == "subscription.stop":
        return Request(rid, method, "", MISSING, None, echo_jsonrpc)
    params = obj.get("params")
    if type(params) is not dict:
        raise EnvelopeError(rid, TRPCError("PARSE_ERROR", "`params` must be an object"), echo_jsonrpc)
    path = params.get("path")
    if type(path) is not str:
        raise EnvelopeError(rid, TRPCError("PARSE_ERROR", "`params.path` must be a string"), echo_jsonrpc)
    last_event_id = params.get("lastEventId")
    if last_event_id is not None and type(last_event_id) is not str:
        raise EnvelopeError(rid, TRPCError("PARSE_ERROR", "`params.lastEventId` must be a string"), echo_jsonrpc)
    return Request(rid, method, path, params.get("input", MISSING), last_event_id, echo_jsonrpc)


def merge_last_event_id(value: Any, last_event_id: str | None) -> Any:
    """Reference semantics (§6.3): objects get the key, null/undefined become ``{lastEventId}``."""
    if last_event_id is None:
        return value
    from .superjson import UNDEFINED

    if type(value) is dict:
        return {**value, "lastEventId": last_event_id}
    if value is None or value is UNDEFINED:
        return {"lastEventId": last_event_id}
    return value


RECONNECT_FRAME = b'{"id":null,"method":"reconnect"}'
