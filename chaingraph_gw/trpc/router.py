"""Declarative tRPC routers: procedures, nested namespaces, middlewares, input validation.

A procedure is a plain function taking a :class:`Call`. It may return a value, an awaitable
(coroutine, asyncio future or Twisted Deferred); a subscription returns an async iterator
(usually it *is* an async generator function). Middlewares see the call before input
validation (ChainGraph's guards read the raw input), and call ``proceed()`` to continue::

    router = Router()

    @router.query("echo")
    def echo(call: Call) -> Any:
        return call.input

    def require_user(call: Call, proceed: Callable[[], Any]) -> Any:
        if call.ctx.user is None:
            raise TRPCError("UNAUTHORIZED")
        return proceed()

Sync handlers and sync middlewares complete without scheduling a task, which keeps simple
queries cheap; anything awaitable is awaited by the session.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from twisted.internet.defer import Deferred as _Deferred

from ..signals import AbortSignal
from .errors import TRPCError

ProcedureKind = Literal["query", "mutation", "subscription"]
Handler = Callable[["Call"], Any]
Middleware = Callable[["Call", Callable[[], Any]], Any]


@dataclass(slots=True)
class Call:
    """One invocation: the connection context, the procedure, its raw and validated input."""

    ctx: Any
    path: str
    kind: ProcedureKind
    raw_input: Any
    signal: AbortSignal
    input: Any = None
    # Free-form slot for middlewares to hand data to handlers (e.g. a loaded execution row).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Procedure:
    path: str
    kind: ProcedureKind
    handler: Handler
    input_schema: Any = None  # pydantic model class, any type for TypeAdapter, or None (no validation)
    middlewares: tuple[Middleware, ...] = ()
    description: str = ""


class Router:
    """A namespace of procedures and sub-routers. ``flatten()`` yields dotted paths."""

    def __init__(self, *, middlewares: Iterable[Middleware] = ()) -> None:
        self._middlewares: tuple[Middleware, ...] = tuple(middlewares)
        self._procedures: dict[str, Procedure] = {}
        # namespace → (router, middlewares inherited from a merged router)
        self._children: dict[str, tuple[Router, tuple[Middleware, ...]]] = {}

    # -- declaration -------------------------------------------------------------------------
    def procedure(
        self,
        kind: ProcedureKind,
        name: str,
        *,
        input: Any = None,
        middlewares: Iterable[Middleware] = (),
        description: str = "",
    ) -> Callable[[Handler], Handler]:
        if not name or "." in name:
            raise ValueError(f"procedure name must be a non-empty segment without dots: {name!r}")

        def register(fn: Handler) -> Handler:
            if name in self._procedures or name in self._children:
                raise ValueError(f"duplicate procedure or namespace {name!r}")
            self._procedures[name] = Procedure(
                name, kind, fn, input, tuple(middlewares), description or (fn.__doc__ or "").strip()
            )
            return fn

        return register

    def query(self, name: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.procedure("query", name, **kw)

    def mutation(self, name: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.procedure("mutation", name, **kw)

    def subscription(self, name: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.procedure("subscription", name, **kw)

    def include(self, prefix: str, router: Router) -> None:
        """Mount ``router`` under ``prefix`` (``system`` → ``system.info``)."""
        if not prefix or "." in prefix:
            raise ValueError(f"namespace must be a non-empty segment without dots: {prefix!r}")
        self._include(prefix, router, ())

    def _include(self, prefix: str, router: Router, extra: tuple[Middleware, ...]) -> None:
        if prefix in self._procedures or prefix in self._children:
            raise ValueError(f"duplicate procedure or namespace {prefix!r}")
        self._children[prefix] = (router, extra)

    def merge(self, router: Router) -> None:
        """Mount ``router``'s procedures at this level (ChainGraph's execution API sits at the root)."""
        for name, proc in router._procedures.items():
            if name in self._procedures or name in self._children:
                raise ValueError(f"duplicate procedure {name!r}")
            mws = router._middlewares + proc.middlewares
            self._procedures[name] = Procedure(
                proc.path, proc.kind, proc.handler, proc.input_schema, mws, proc.description
            )
        for name, (child, extra) in router._children.items():
            self._include(name, child, router._middlewares + extra)

    # -- lookup ------------------------------------------------------------------------------
    def flatten(self, prefix: str = "", inherited: tuple[Middleware, ...] = ()) -> dict[str, Procedure]:
        out: dict[str, Procedure] = {}
        mws = inherited + self._middlewares
        for name, proc in self._procedures.items():
            path = f"{prefix}{name}"
            out[path] = Procedure(path, proc.kind, proc.handler, proc.input_schema,
                                  mws + proc.middlewares, proc.description)
        for name, (child, extra) in self._children.items():
            out.update(child.flatten(f"{prefix}{name}.", mws + extra))
        return out


# -- input validation ---------------------------------------------------------------------------

_adapters: dict[Any, TypeAdapter[Any]] = {}


def _validator(schema: Any) -> Callable[[Any], Any]:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_validate
    adapter = _adapters.get(schema)
    if adapter is None:
        adapter = _adapters[schema] = TypeAdapter(schema)
    return adapter.validate_python


def _loc_key(loc: tuple[Any, ...]) -> str:
    return str(loc[0])


def validation_error(exc: ValidationError) -> TRPCError:
    """BAD_REQUEST with a zod-like message and ChainGraph's `zodError = {formErrors, fieldErrors}`."""
    issues = []
    form_errors: list[str] = []
    field_errors: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        msg = err.get("msg", "Invalid input")
        issues.append({"code": err.get("type", "invalid"), "path": list(loc), "message": msg})
        if loc:
            field_errors.setdefault(_loc_key(loc), []).append(msg)
        else:
            form_errors.append(msg)
    message = json.dumps(issues, indent=2, default=str)
    return TRPCError(
        "BAD_REQUEST",
        message,
        cause=exc,
        data={"zodError": {"formErrors": form_errors, "fieldErrors": field_errors}},
    )


def _drop_undefined(value: Any, undefined: Any) -> Any:
    """``{a: undefined}`` means "a absent" to a JS schema: remove such keys (at any depth) before pydantic."""
    if type(value) is dict:
        if any(v is undefined or type(v) in (dict, list) for v in value.values()):
            return {k: _drop_undefined(v, undefined) for k, v in value.items() if v is not undefined}
        return value
    if type(value) is list:
        if any(v is undefined or type(v) in (dict, list) for v in value):
            return [None if v is undefined else _drop_undefined(v, undefined) for v in value]
        return value
    return value


def validate_input(proc: Procedure, raw: Any) -> Any:
    if proc.input_schema is None:
        return raw
    from .superjson import UNDEFINED  # local: avoids an import cycle at module load

    if raw is UNDEFINED:
        # No input at all: a model whose fields are all optional validates as {} (zod's .optional()).
        value: Any = {} if isinstance(proc.input_schema, type) and issubclass(proc.input_schema, BaseModel) else None
    else:
        value = _drop_undefined(raw, UNDEFINED)
    try:
        return _validator(proc.input_schema)(value)
    except ValidationError as exc:
        raise validation_error(exc) from None


# -- invocation ---------------------------------------------------------------------------------

def invoke(proc: Procedure, call: Call) -> Any:
    """Run middlewares, validation and the handler. Returns a value or an awaitable.

    Middlewares and handlers may be sync or async; the chain only becomes async when one of
    them returns an awaitable, so fully synchronous procedures never touch the event loop.
    """
    mws = proc.middlewares

    def step(i: int) -> Any:
        if i < len(mws):
            return mws[i](call, lambda: step(i + 1))
        call.input = validate_input(proc, call.raw_input)
        return proc.handler(call)

    return step(0)


_PLAIN_TYPES = frozenset((dict, list, str, int, float, bool, type(None), tuple))


def is_awaitable(value: Any) -> bool:
    if type(value) in _PLAIN_TYPES:  # the common case for query results: no introspection
        return False
    return inspect.isawaitable(value) or asyncio.isfuture(value) or isinstance(value, _Deferred)


async def resolve(value: Any) -> Any:
    """Await coroutines, futures and Deferreds (possibly nested, e.g. a coroutine returning a Deferred)."""
    from twisted.internet.defer import Deferred

    while True:
        if isinstance(value, Deferred):
            value = await value.asFuture(asyncio.get_running_loop())
        elif inspect.isawaitable(value):
            value = await value
        else:
            return value


def as_async_iterator(value: Any, path: str) -> AsyncIterator[Any]:
    if hasattr(value, "__aiter__"):
        return value.__aiter__()
    raise TRPCError(
        "INTERNAL_SERVER_ERROR",
        f"Subscription {path} did not return an observable or a AsyncGenerator",
    )


@dataclass(frozen=True, slots=True)
class Tracked:
    """An event with a resume id: sent as ``result.id`` + ``data: {id, data}`` (protocol doc §6.3)."""

    id: str
    data: Any


def tracked(event_id: str, data: Any) -> Tracked:
    if not isinstance(event_id, str) or not event_id or any(c in event_id for c in "\0\n\r"):
        raise ValueError("tracked id must be a non-empty string without NUL, CR or LF")
    return Tracked(event_id, data)


__all__ = [
    "AbortSignal",
    "Call",
    "Middleware",
    "Procedure",
    "Router",
    "Tracked",
    "as_async_iterator",
    "invoke",
    "is_awaitable",
    "resolve",
    "tracked",
    "validate_input",
    "validation_error",
]
