"""Tests for chaingraph_gw.trpc.router: declaration, invocation, validation, tracked(), resolve()."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel, Field
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chaingraph_gw.trpc.errors import TRPCError, error_shape
from chaingraph_gw.trpc.router import (
    AbortSignal,
    Call,
    Router,
    Tracked,
    as_async_iterator,
    invoke,
    is_awaitable,
    resolve,
    tracked,
    validate_input,
)
from chaingraph_gw.trpc.superjson import UNDEFINED

from .helpers import async_test, ticks


def make_call(proc: Any, raw: Any = None, ctx: Any = None) -> Call:
    return Call(ctx, proc.path, proc.kind, raw, AbortSignal())


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)


class Inner(BaseModel):
    x: int


class Outer(BaseModel):
    inner: Inner
    tag: str


# -- declaration --------------------------------------------------------------------------------


class DeclarationTests(SynchronousTestCase):
    def test_nested_include_gives_dotted_paths(self):
        leaf = Router()

        @leaf.query("byId")
        def by_id(call):
            return 1

        mid = Router()
        mid.include("post", leaf)

        @mid.mutation("add")
        def add(call):
            return 2

        root = Router()
        root.include("blog", mid)

        @root.subscription("ticks")
        async def ticks_(call):
            yield 1

        flat = root.flatten()
        self.assertEqual(sorted(flat), ["blog.add", "blog.post.byId", "ticks"])
        self.assertEqual(flat["blog.post.byId"].path, "blog.post.byId")
        self.assertEqual(flat["blog.post.byId"].kind, "query")
        self.assertIs(flat["blog.post.byId"].handler, by_id)
        self.assertEqual(flat["blog.add"].kind, "mutation")
        self.assertEqual(flat["ticks"].kind, "subscription")

    def test_decorator_returns_the_function_and_keeps_docstring(self):
        r = Router()

        def handler(call):
            """Says hello."""
            return "hi"

        self.assertIs(r.query("hello")(handler), handler)
        self.assertEqual(r.flatten()["hello"].description, "Says hello.")

    def test_explicit_description_wins(self):
        r = Router()

        @r.query("a", description="explicit")
        def a(call):
            """Docstring."""

        self.assertEqual(r.flatten()["a"].description, "explicit")

    def test_input_schema_is_kept(self):
        r = Router()
        r.query("p", input=Person)(lambda call: None)
        self.assertIs(r.flatten()["p"].input_schema, Person)

    def test_merge_mounts_procedures_and_namespaces_at_root(self):
        api = Router()
        api.query("list")(lambda call: "list")
        nested = Router()
        nested.mutation("create")(lambda call: "created")
        api.include("exec", nested)

        root = Router()
        root.merge(api)
        root.include("system", Router())
        flat = root.flatten()
        self.assertIn("list", flat)
        self.assertIn("exec.create", flat)
        self.assertEqual(flat["list"].path, "list")
        self.assertEqual(flat["exec.create"].kind, "mutation")

    def test_merged_router_middlewares_apply_to_its_procedures(self):
        log: list[str] = []

        def guard(call, proceed):
            log.append("guard")
            return proceed()

        api = Router(middlewares=[guard])
        api.query("list")(lambda call: "ok")
        root = Router()
        root.merge(api)
        proc = root.flatten()["list"]
        self.assertEqual(invoke(proc, make_call(proc)), "ok")
        self.assertEqual(log, ["guard"])

    def test_merged_router_middlewares_apply_to_its_nested_namespaces(self):
        # include() propagates a router's middlewares to its children (flatten passes them down);
        # merge() must not silently drop a guard for the merged router's namespaces.
        log: list[str] = []

        def guard(call, proceed):
            log.append("guard")
            return proceed()

        child = Router()
        child.query("secret")(lambda call: "secret")
        api = Router(middlewares=[guard])
        api.include("admin", child)

        root = Router()
        root.merge(api)
        proc = root.flatten()["admin.secret"]
        self.assertEqual(invoke(proc, make_call(proc)), "secret")
        self.assertEqual(log, ["guard"], "the merged router's guard was bypassed for admin.secret")

    def test_duplicate_procedure_rejected(self):
        r = Router()
        r.query("a")(lambda call: 1)
        self.assertRaises(ValueError, r.query("a"), lambda call: 2)
        self.assertRaises(ValueError, r.mutation("a"), lambda call: 2)
        # the first registration is untouched
        proc = r.flatten()["a"]
        self.assertEqual(invoke(proc, make_call(proc)), 1)

    def test_procedure_and_namespace_names_clash(self):
        r = Router()
        r.include("ns", Router())
        self.assertRaises(ValueError, r.query("ns"), lambda call: 1)
        r.query("p")(lambda call: 1)
        self.assertRaises(ValueError, r.include, "p", Router())
        self.assertRaises(ValueError, r.include, "ns", Router())

    def test_merge_conflicts_rejected(self):
        root = Router()
        root.query("a")(lambda call: 1)
        other = Router()
        other.query("a")(lambda call: 2)
        self.assertRaises(ValueError, root.merge, other)

        root2 = Router()
        root2.include("ns", Router())
        other2 = Router()
        other2.include("ns", Router())
        self.assertRaises(ValueError, root2.merge, other2)

    def test_bad_names_rejected(self):
        r = Router()
        for bad in ("", "a.b", ".a", "a."):
            self.assertRaises(ValueError, r.query, bad)
            self.assertRaises(ValueError, r.subscription, bad)
            self.assertRaises(ValueError, r.include, bad, Router())
        self.assertEqual(r.flatten(), {})


# -- invocation -----------------------------------------------------------------------------------


class InvokeSyncTests(SynchronousTestCase):
    def test_middleware_order_root_router_procedure_handler(self):
        log: list[str] = []

        def mw(name):
            def middleware(call, proceed):
                log.append(f"{name}:before")
                result = proceed()
                log.append(f"{name}:after")
                return result

            return middleware

        child = Router(middlewares=[mw("child")])

        @child.query("q", middlewares=[mw("proc1"), mw("proc2")])
        def q(call):
            log.append("handler")
            return "done"

        root = Router(middlewares=[mw("root")])
        root.include("c", child)
        proc = root.flatten()["c.q"]
        self.assertEqual(invoke(proc, make_call(proc)), "done")
        self.assertEqual(log, [
            "root:before", "child:before", "proc1:before", "proc2:before", "handler",
            "proc2:after", "proc1:after", "child:after", "root:after",
        ])

    def test_fully_sync_chain_returns_plain_value(self):
        r = Router(middlewares=[lambda call, proceed: proceed()])
        r.query("q")(lambda call: 41)
        proc = r.flatten()["q"]
        result = invoke(proc, make_call(proc))
        self.assertEqual(result, 41)
        self.assertFalse(is_awaitable(result))

    def test_middleware_sees_raw_input_before_validation(self):
        seen: list[tuple[Any, Any]] = []

        def spy(call, proceed):
            seen.append((call.raw_input, call.input))
            return proceed()

        r = Router()

        @r.query("q", input=Person, middlewares=[spy])
        def q(call):
            return call.input

        proc = r.flatten()["q"]
        call = make_call(proc, {"name": "ann", "age": 3, "extra": True})
        result = invoke(proc, call)
        self.assertEqual(seen, [({"name": "ann", "age": 3, "extra": True}, None)])
        self.assertIsInstance(result, Person)
        self.assertEqual(result, Person(name="ann", age=3))
        self.assertIs(call.input, result)

    def test_raising_middleware_short_circuits_validation(self):
        handled: list[Any] = []

        def deny(call, proceed):
            raise TRPCError("UNAUTHORIZED", "who are you")

        r = Router()

        @r.query("q", input=Person, middlewares=[deny])
        def q(call):
            handled.append(call)

        proc = r.flatten()["q"]
        # The input is invalid too; the guard must win (no BAD_REQUEST, handler never runs).
        exc = self.assertRaises(TRPCError, invoke, proc, make_call(proc, {"name": 5}))
        self.assertEqual(exc.code, "UNAUTHORIZED")
        self.assertEqual(exc.message, "who are you")
        self.assertEqual(handled, [])

    def test_middleware_may_answer_without_proceeding(self):
        handled: list[Any] = []
        r = Router()

        @r.query("q", middlewares=[lambda call, proceed: "cached"])
        def q(call):
            handled.append(1)
            return "fresh"

        proc = r.flatten()["q"]
        self.assertEqual(invoke(proc, make_call(proc)), "cached")
        self.assertEqual(handled, [])

    def test_middleware_can_pass_state_and_read_context(self):
        def load(call, proceed):
            call.state["user"] = call.ctx["user"].upper()
            return proceed()

        r = Router(middlewares=[load])
        r.query("me")(lambda call: call.state["user"])
        proc = r.flatten()["me"]
        self.assertEqual(invoke(proc, make_call(proc, ctx={"user": "bob"})), "BOB")

    def test_handler_exception_propagates(self):
        r = Router()

        @r.query("q")
        def q(call):
            raise ValueError("kaboom")

        proc = r.flatten()["q"]
        exc = self.assertRaises(ValueError, invoke, proc, make_call(proc))
        self.assertEqual(str(exc), "kaboom")

    def test_no_schema_passes_raw_input_through(self):
        r = Router()
        r.query("q")(lambda call: call.input)
        proc = r.flatten()["q"]
        self.assertEqual(invoke(proc, make_call(proc, [1, "a"])), [1, "a"])
        self.assertIs(invoke(proc, make_call(proc, UNDEFINED)), UNDEFINED)


class InvokeAsyncTests(TestCase):
    timeout = 5

    @async_test
    async def test_async_middlewares_and_handler(self):
        log: list[str] = []

        async def amw(call, proceed):
            log.append("amw:before")
            await asyncio.sleep(0)
            result = await resolve(proceed())
            log.append("amw:after")
            return result + 1

        def smw(call, proceed):
            log.append("smw")
            return proceed()

        r = Router(middlewares=[amw, smw])

        @r.query("q", input=int)
        async def q(call):
            log.append("handler")
            await asyncio.sleep(0)
            return call.input * 10

        proc = r.flatten()["q"]
        pending = invoke(proc, make_call(proc, 4))
        self.assertTrue(is_awaitable(pending))
        self.assertEqual(log, [])  # an async middleware starts only when awaited
        self.assertEqual(await resolve(pending), 41)
        self.assertEqual(log, ["amw:before", "smw", "handler", "amw:after"])

    @async_test
    async def test_async_middleware_rejection_skips_validation_and_handler(self):
        handled: list[Any] = []

        async def deny(call, proceed):
            await asyncio.sleep(0)
            raise TRPCError("FORBIDDEN", "nope")

        r = Router(middlewares=[deny])

        @r.query("q", input=Person)
        def q(call):
            handled.append(1)

        proc = r.flatten()["q"]
        with self.assertRaises(TRPCError) as cm:
            await resolve(invoke(proc, make_call(proc, "not a person")))
        self.assertEqual(cm.exception.code, "FORBIDDEN")
        self.assertEqual(handled, [])

    @async_test
    async def test_sync_middleware_around_async_handler(self):
        def mw(call, proceed):
            return proceed()

        r = Router(middlewares=[mw])

        @r.mutation("m")
        async def m(call):
            await asyncio.sleep(0)
            return {"ok": call.raw_input}

        proc = r.flatten()["m"]
        self.assertEqual(await resolve(invoke(proc, make_call(proc, 7))), {"ok": 7})

    @async_test
    async def test_validation_inside_async_chain(self):
        async def amw(call, proceed):
            return await resolve(proceed())

        r = Router(middlewares=[amw])
        r.query("q", input=Person)(lambda call: call.input.name)
        proc = r.flatten()["q"]
        self.assertEqual(await resolve(invoke(proc, make_call(proc, {"name": "z", "age": 1}))), "z")
        with self.assertRaises(TRPCError) as cm:
            await resolve(invoke(proc, make_call(proc, {"name": "z", "age": -1})))
        self.assertEqual(cm.exception.code, "BAD_REQUEST")


# -- validation -----------------------------------------------------------------------------------


class ValidationTests(SynchronousTestCase):
    def proc(self, schema):
        r = Router()
        r.query("v", input=schema)(lambda call: call.input)
        return r.flatten()["v"]

    def test_field_errors(self):
        proc = self.proc(Person)
        exc = self.assertRaises(TRPCError, validate_input, proc, {"age": "x"})
        self.assertEqual(exc.code, "BAD_REQUEST")
        self.assertEqual(exc.http_status, 400)
        zod = exc.extra_data["zodError"]
        self.assertEqual(zod["formErrors"], [])
        self.assertEqual(sorted(zod["fieldErrors"]), ["age", "name"])
        self.assertEqual(len(zod["fieldErrors"]["name"]), 1)
        self.assertIn("required", zod["fieldErrors"]["name"][0].lower())
        self.assertTrue(all(isinstance(m, str) and m for m in zod["fieldErrors"]["age"]))

    def test_message_is_a_json_array_of_issues(self):
        proc = self.proc(Person)
        exc = self.assertRaises(TRPCError, validate_input, proc, {"name": "a", "age": -1})
        issues = json.loads(exc.message)
        self.assertIsInstance(issues, list)
        self.assertEqual(len(issues), 1)
        self.assertEqual(issues[0]["path"], ["age"])
        self.assertIsInstance(issues[0]["code"], str)
        self.assertIsInstance(issues[0]["message"], str)
        # zod 4 pretty-prints (indented), which makes the message multi-line
        self.assertIn("\n", exc.message)
        self.assertEqual(exc.extra_data["zodError"]["fieldErrors"], {"age": [issues[0]["message"]]})

    def test_form_errors_for_root_level_failure(self):
        proc = self.proc(Person)
        exc = self.assertRaises(TRPCError, validate_input, proc, "not an object")
        zod = exc.extra_data["zodError"]
        self.assertEqual(zod["fieldErrors"], {})
        self.assertEqual(len(zod["formErrors"]), 1)
        self.assertEqual(json.loads(exc.message)[0]["path"], [])

    def test_nested_errors_grouped_by_first_segment(self):
        proc = self.proc(Outer)
        exc = self.assertRaises(TRPCError, validate_input, proc, {"inner": {"x": "bad"}, "tag": 1})
        zod = exc.extra_data["zodError"]
        self.assertEqual(sorted(zod["fieldErrors"]), ["inner", "tag"])
        paths = [i["path"] for i in json.loads(exc.message)]
        self.assertIn(["inner", "x"], paths)
        self.assertIn(["tag"], paths)

    def test_non_model_schema_uses_type_adapter(self):
        proc = self.proc(list[int])
        self.assertEqual(validate_input(proc, [1, "2"]), [1, 2])
        exc = self.assertRaises(TRPCError, validate_input, proc, [1, "x"])
        self.assertEqual(exc.code, "BAD_REQUEST")
        self.assertEqual(exc.extra_data["zodError"]["fieldErrors"], {"1": exc.extra_data["zodError"]["fieldErrors"]["1"]})

    def test_undefined_input_validated_as_none(self):
        self.assertIsNone(validate_input(self.proc(int | None), UNDEFINED))
        exc = self.assertRaises(TRPCError, validate_input, self.proc(int), UNDEFINED)
        self.assertEqual(exc.code, "BAD_REQUEST")

    def test_no_schema_returns_raw(self):
        r = Router()
        r.query("v")(lambda call: None)
        raw = {"anything": [1]}
        self.assertIs(validate_input(r.flatten()["v"], raw), raw)

    def test_error_shape_of_validation_failure_carries_zod_error(self):
        proc = self.proc(Person)
        exc = self.assertRaises(TRPCError, validate_input, proc, {"age": 1})
        shape = error_shape(exc, path="v", include_stack=False)
        self.assertEqual(shape["code"], -32600)
        self.assertEqual(shape["data"]["code"], "BAD_REQUEST")
        self.assertEqual(shape["data"]["httpStatus"], 400)
        self.assertEqual(shape["data"]["path"], "v")
        self.assertEqual(shape["data"]["zodError"]["formErrors"], [])
        self.assertEqual(sorted(shape["data"]["zodError"]["fieldErrors"]), ["name"])

    def test_handler_receives_validated_model(self):
        proc = self.proc(Person)
        result = invoke(proc, make_call(proc, {"name": "n", "age": "5"}))
        self.assertEqual(result, Person(name="n", age=5))


# -- tracked / iterators / signals ---------------------------------------------------------------------


class TrackedTests(SynchronousTestCase):
    def test_valid(self):
        t = tracked("12", {"a": 1})
        self.assertIsInstance(t, Tracked)
        self.assertEqual((t.id, t.data), ("12", {"a": 1}))
        self.assertEqual(t, Tracked("12", {"a": 1}))

    def test_invalid_ids(self):
        for bad in ("", "a\nb", "a\rb", "a\0b", 1, None, b"1"):
            self.assertRaises(ValueError, tracked, bad, "data")

    def test_spaces_and_unicode_are_fine(self):
        self.assertEqual(tracked("a b é", None).id, "a b é")


class AbortSignalTests(SynchronousTestCase):
    def test_callbacks_fire_once_with_reason(self):
        sig = AbortSignal()
        fired: list[str] = []
        sig.add_callback(lambda: fired.append("a"))
        sig.add_callback(lambda: fired.append("b"))
        self.assertFalse(sig.aborted)
        sig.abort("stopped by client")
        sig.abort("again")
        self.assertTrue(sig.aborted)
        self.assertEqual(sig.reason, "stopped by client")
        self.assertEqual(fired, ["a", "b"])

    def test_callback_added_after_abort_runs_immediately(self):
        sig = AbortSignal()
        sig.abort()
        fired: list[int] = []
        sig.add_callback(lambda: fired.append(1))
        self.assertEqual(fired, [1])


class ResolveTests(TestCase):
    timeout = 5

    @async_test
    async def test_plain_value(self):
        self.assertEqual(await resolve(5), 5)
        self.assertIsNone(await resolve(None))

    @async_test
    async def test_coroutine(self):
        async def f():
            await asyncio.sleep(0)
            return "co"

        self.assertEqual(await resolve(f()), "co")

    @async_test
    async def test_fired_and_later_deferred(self):
        self.assertEqual(await resolve(succeed("now")), "now")
        d: Deferred[str] = Deferred()
        reactor.callLater(0.01, d.callback, "later")
        self.assertEqual(await resolve(d), "later")

    @async_test
    async def test_asyncio_future(self):
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "fut")
        self.assertEqual(await resolve(fut), "fut")

    @async_test
    async def test_nested(self):
        d: Deferred[Any] = Deferred()

        async def inner():
            return "deep"

        async def outer():
            return d  # a coroutine returning a Deferred which fires with a coroutine

        reactor.callLater(0, d.callback, inner())
        self.assertEqual(await resolve(outer()), "deep")

    @async_test
    async def test_failures_propagate(self):
        async def boom():
            raise TRPCError("CONFLICT", "x")

        with self.assertRaises(TRPCError):
            await resolve(boom())
        d: Deferred[Any] = Deferred()
        reactor.callLater(0, d.errback, ValueError("deferred failed"))
        with self.assertRaises(ValueError) as cm:
            await resolve(d)
        self.assertEqual(str(cm.exception), "deferred failed")

    @async_test
    async def test_is_awaitable(self):
        async def f():
            return 1

        co = f()
        try:
            self.assertTrue(is_awaitable(co))
        finally:
            co.close()
        self.assertTrue(is_awaitable(Deferred()))
        self.assertTrue(is_awaitable(asyncio.get_running_loop().create_future()))
        for value in (1, "s", None, [1], {"a": 1}, UNDEFINED):
            self.assertFalse(is_awaitable(value), value)
        await ticks()

    @async_test
    async def test_as_async_iterator(self):
        async def gen():
            yield 1
            yield 2

        it = as_async_iterator(gen(), "p")
        self.assertEqual([x async for x in it], [1, 2])
        for bad in (42, [1, 2], None):
            with self.assertRaises(TRPCError) as cm:
                as_async_iterator(bad, "a.sub")
            self.assertEqual(cm.exception.code, "INTERNAL_SERVER_ERROR")
            self.assertEqual(cm.exception.message,
                             "Subscription a.sub did not return an observable or a AsyncGenerator")
