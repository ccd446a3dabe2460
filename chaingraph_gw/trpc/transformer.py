"""Input/output transformers: SuperJSON (ChainGraph's clients) or plain JSON (protocol doc §5.1)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Protocol

from . import superjson as sj
from .errors import TRPCError

_MISSING = object()


class Transformer(Protocol):
    name: str

    def decode_input(self, raw: Any) -> Any:
        """``raw`` is ``params.input`` as parsed JSON, or the module's ``MISSING`` when absent."""

    def encode(self, value: Any) -> Any:
        """JSON-able form of a result, a tracked ``{id, data}`` pair or a whole error shape."""


class SuperJSONTransformer:
    name = "superjson"

    def __init__(self, codec: sj.SuperJSON | None = None) -> None:
        self.codec = codec or sj.default

    def decode_input(self, raw: Any) -> Any:
        if raw is MISSING:
            # The reference answers PARSE_ERROR here and the client hangs; absent means undefined.
            return sj.UNDEFINED
        try:
            return self.codec.deserialize(raw)
        except sj.SuperJSONError as exc:
            raise TRPCError("PARSE_ERROR", f"Invalid superjson input: {exc}", cause=exc) from None

    def encode(self, value: Any) -> Any:
        return self.codec.serialize(value)


def _plain(value: Any) -> Any:
    """Best-effort JSON.stringify semantics for transformer-less deployments."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else None
    if t is dict:
        return {k: _plain(v) for k, v in value.items() if v is not sj.UNDEFINED}
    if t is list or t is tuple:
        return [None if v is sj.UNDEFINED else _plain(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        v = value.astimezone(UTC)
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(value, (set, frozenset, sj.JSSet, sj.JSMap)):
        return {}
    if isinstance(value, (BaseException, sj.JSError, sj.JSRegExp)):
        return {}  # JSON.stringify(new Error()) / of a RegExp is {}
    if isinstance(value, (sj.JSURL, sj.BigInt)):
        return str(value) if isinstance(value, sj.JSURL) else int(value)
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="python", by_alias=True))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return _plain(dict(value))
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class PlainJSONTransformer:
    name = "none"

    def decode_input(self, raw: Any) -> Any:
        return sj.UNDEFINED if raw is MISSING else raw

    def encode(self, value: Any) -> Any:
        return _plain(value)


MISSING: Any = _MISSING


def make_transformer(name: str) -> Transformer:
    if name == "superjson":
        return SuperJSONTransformer()
    if name == "none":
        return PlainJSONTransformer()
    raise ValueError(f"unknown transformer {name!r} (expected superjson or none)")
