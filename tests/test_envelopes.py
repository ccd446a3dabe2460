"""Tests for chaingraph_gw.trpc.envelopes and chaingraph_gw.trpc.errors (protocol doc §2.4, §4, §6.3)."""

from __future__ import annotations

import math
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.trpc.envelopes import (
    METHODS,
    RECONNECT_FRAME,
    EnvelopeError,
    Request,
    merge_last_event_id,
    parse_request,
)
from chaingraph_gw.trpc.errors import ERROR_CODES, TRPCError, error_shape, to_trpc_error
from chaingraph_gw.trpc.superjson import UNDEFINED
from chaingraph_gw.trpc.transformer import MISSING

QUERY = {"id": 1, "method": "query", "params": {"path": "a.b", "input": {"x": 1}}}


class ParseRequestValidTests(SynchronousTestCase):
    def test_query(self):
        req = parse_request(QUERY)
        self.assertIsInstance(req, Request)
        self.assertEqual(req.id, 1)
        self.assertEqual(req.method, "query")
        self.assertEqual(req.path, "a.b")
        self.assertEqual(req.raw_input, {"x": 1})
        self.assertIsNone(req.last_event_id)
        self.assertIsNone(req.jsonrpc)

    def test_all_methods(self):
        self.assertEqual(METHODS, {"query", "mutation", "subscription", "subscription.stop"})
        for method in ("query", "mutation", "subscription"):
            req = parse_request({"id": 2, "method": method, "params": {"path": "p"}})
            self.assertEqual(req.method, method)

    def test_absent_input_is_missing_and_null_input_is_none(self):
        self.assertIs(parse_request({"id": 1, "method": "query", "params": {"path": "p"}}).raw_input, MISSING)
        self.assertIsNone(parse_request({"id": 1, "method": "query", "params": {"path": "p", "input": None}}).raw_input)

    def test_string_id_and_jsonrpc(self):
        req = parse_request({"id": "abc", "jsonrpc": "2.0", "method": "mutation", "params": {"path": "m", "input": 41}})
        self.assertEqual((req.id, req.jsonrpc, req.raw_input), ("abc", "2.0", 41))

    def test_integral_float_id_becomes_int(self):
        req = parse_request({"id": 3.0, "method": "query", "params": {"path": "p"}})
        self.assertEqual(req.id, 3)
        self.assertIs(type(req.id), int)
        self.assertEqual(parse_request({"id": 1.5, "method": "query", "params": {"path": "p"}}).id, 1.5)

    def test_zero_and_negative_and_empty_string_ids_are_readable(self):
        for rid in (0, -7, ""):
            self.assertEqual(parse_request({"id": rid, "method": "query", "params": {"path": "p"}}).id, rid)

    def test_subscription_with_last_event_id(self):
        req = parse_request({"id": 1, "method": "subscription", "params": {"path": "ticks", "lastEventId": "12"}})
        self.assertEqual(req.last_event_id, "12")
        self.assertIs(req.raw_input, MISSING)

    def test_null_last_event_id_is_absent(self):
        req = parse_request({"id": 1, "method": "subscription", "params": {"path": "t", "lastEventId": None}})
        self.assertIsNone(req.last_event_id)

    def test_subscription_stop_needs_no_params(self):
        req = parse_request({"id": 13, "method": "subscription.stop"})
        self.assertEqual((req.id, req.method, req.path, req.raw_input), (13, "subscription.stop", "", MISSING))
        req = parse_request({"id": 13, "jsonrpc": "2.0", "method": "subscription.stop", "params": "ignored"})
        self.assertEqual(req.jsonrpc, "2.0")

    def test_unknown_keys_ignored(self):
        req = parse_request({**QUERY, "extra": 1, "params": {**QUERY["params"], "more": True}})
        self.assertEqual(req.path, "a.b")


class ParseRequestMalformedTests(SynchronousTestCase):
    def fail_with(self, obj: Any, message: str, rid: Any = None, jsonrpc: Any = None) -> EnvelopeError:
        exc = self.assertRaises(EnvelopeError, parse_request, obj)
        self.assertIsInstance(exc.error, TRPCError)
        self.assertEqual(exc.error.code, "PARSE_ERROR")
        self.assertEqual(exc.error.json_rpc_code, -32700)
        self.assertEqual(exc.error.message, message)
        self.assertEqual(str(exc), message)
        self.assertEqual(exc.id, rid)
        self.assertIs(type(exc.id), type(rid))
        self.assertEqual(exc.jsonrpc, jsonrpc)
        return exc

    def test_not_an_object(self):
        for obj in ([QUERY], "query", 1, None, True, 1.5):
            self.fail_with(obj, "Not an object")

    def test_id_missing(self):
        self.fail_with({"method": "query", "params": {"path": "p"}}, "Invalid request id")

    def test_id_null(self):
        self.fail_with({"id": None, "method": "query", "params": {"path": "p"}}, "`id` is required")

    def test_id_not_number_or_string(self):
        for rid in (True, False, {}, {"a": 1}, [1], []):
            self.fail_with({"id": rid, "method": "query", "params": {"path": "p"}}, "Invalid request id")

    def test_id_nan_or_infinite(self):
        for rid in (math.nan, math.inf, -math.inf):
            self.fail_with({"id": rid, "method": "query", "params": {"path": "p"}}, "Invalid request id")

    def test_jsonrpc_wrong_keeps_readable_id(self):
        for bad in ("1.0", 2, "2", True):
            self.fail_with({"id": 5, "jsonrpc": bad, "method": "query", "params": {"path": "p"}},
                           "Must be JSONRPC 2.0", rid=5)

    def test_unknown_method_keeps_id_and_jsonrpc(self):
        self.fail_with({"id": "x", "jsonrpc": "2.0", "method": "call", "params": {"path": "p"}},
                       "Invalid procedure type", rid="x", jsonrpc="2.0")
        self.fail_with({"id": 7, "params": {"path": "p"}}, "Invalid procedure type", rid=7)
        self.fail_with({"id": 7, "method": None, "params": {"path": "p"}}, "Invalid procedure type", rid=7)
        self.fail_with({"id": 7, "method": 1, "params": {"path": "p"}}, "Invalid procedure type", rid=7)

    def test_unhashable_method_is_a_parse_error(self):
        # A list/object `method` must be answered like any other unknown method, not crash the parser
        # (TypeError: unhashable type from `method not in METHODS`).
        self.fail_with({"id": 7, "method": ["query"], "params": {"path": "p"}}, "Invalid procedure type", rid=7)
        self.fail_with({"id": 8, "method": {"q": 1}, "params": {"path": "p"}}, "Invalid procedure type", rid=8)

    def test_params_not_an_object(self):
        for params in (None, [], "p", 1):
            obj: dict[str, Any] = {"id": 8, "method": "query"}
            if params is not None:
                obj["params"] = params
            self.fail_with(obj, "`params` must be an object", rid=8)

    def test_path_not_a_string(self):
        for params in ({}, {"path": None}, {"path": 1}, {"path": ["a"]}):
            self.fail_with({"id": 9, "method": "subscription", "params": params},
                           "`params.path` must be a string", rid=9)

    def test_last_event_id_not_a_string(self):
        for lei in (12, True, {"id": "1"}, ["1"]):
            self.fail_with({"id": 10, "jsonrpc": "2.0", "method": "subscription",
                            "params": {"path": "t", "lastEventId": lei}},
                           "`params.lastEventId` must be a string", rid=10, jsonrpc="2.0")

    def test_error_float_id_kept_normalised(self):
        self.fail_with({"id": 4.0, "method": "nope"}, "Invalid procedure type", rid=4)


class MergeLastEventIdTests(SynchronousTestCase):
    def test_no_last_event_id_returns_value_unchanged(self):
        for value in ({"a": 1}, None, UNDEFINED, 3, "s", [1]):
            self.assertIs(merge_last_event_id(value, None), value)

    def test_object_gets_the_key_without_mutating_the_input(self):
        original = {"a": 1}
        merged = merge_last_event_id(original, "7")
        self.assertEqual(merged, {"a": 1, "lastEventId": "7"})
        self.assertEqual(original, {"a": 1})

    def test_object_key_overwritten(self):
        self.assertEqual(merge_last_event_id({"lastEventId": "1", "b": 2}, "9"), {"lastEventId": "9", "b": 2})

    def test_null_and_undefined_become_object(self):
        self.assertEqual(merge_last_event_id(None, "7"), {"lastEventId": "7"})
        self.assertEqual(merge_last_event_id(UNDEFINED, "7"), {"lastEventId": "7"})

    def test_primitives_left_unchanged(self):
        for value in ("str", 3, 0, 1.5, True, False, [1, 2]):
            self.assertEqual(merge_last_event_id(value, "7"), value)

    def test_empty_string_last_event_id_is_still_merged(self):
        self.assertEqual(merge_last_event_id({}, ""), {"lastEventId": ""})


# Protocol doc §4.2, verbatim.
CODES_TABLE = {
    "PARSE_ERROR": (-32700, 400),
    "BAD_REQUEST": (-32600, 400),
    "UNAUTHORIZED": (-32001, 401),
    "PAYMENT_REQUIRED": (-32002, 402),
    "FORBIDDEN": (-32003, 403),
    "NOT_FOUND": (-32004, 404),
    "METHOD_NOT_SUPPORTED": (-32005, 405),
    "TIMEOUT": (-32008, 408),
    "CONFLICT": (-32009, 409),
    "PRECONDITION_FAILED": (-32012, 412),
    "PAYLOAD_TOO_LARGE": (-32013, 413),
    "UNSUPPORTED_MEDIA_TYPE": (-32015, 415),
    "UNPROCESSABLE_CONTENT": (-32022, 422),
    "PRECONDITION_REQUIRED": (-32028, 428),
    "TOO_MANY_REQUESTS": (-32029, 429),
    "CLIENT_CLOSED_REQUEST": (-32099, 499),
    "INTERNAL_SERVER_ERROR": (-32603, 500),
    "NOT_IMPLEMENTED": (-32603, 501),
    "BAD_GATEWAY": (-32603, 502),
    "SERVICE_UNAVAILABLE": (-32603, 503),
    "GATEWAY_TIMEOUT": (-32603, 504),
}


class ErrorShapeTests(SynchronousTestCase):
    def test_code_table_has_all_21_codes(self):
        self.assertEqual(len(CODES_TABLE), 21)
        self.assertEqual(ERROR_CODES, CODES_TABLE)

    def test_every_code_shape(self):
        for key, (rpc, status) in CODES_TABLE.items():
            err = TRPCError(key, "msg " + key)
            self.assertEqual((err.json_rpc_code, err.http_status), (rpc, status), key)
            shape = error_shape(err, path=None, include_stack=False)
            self.assertEqual(shape, {
                "message": "msg " + key,
                "code": rpc,
                "data": {"code": key, "httpStatus": status, "zodError": None},
            }, key)

    def test_path_only_when_given(self):
        err = TRPCError("NOT_FOUND", "nope")
        self.assertNotIn("path", error_shape(err, path=None, include_stack=False)["data"])
        self.assertEqual(error_shape(err, path="a.b", include_stack=False)["data"]["path"], "a.b")
        self.assertEqual(error_shape(err, path="", include_stack=False)["data"]["path"], "")

    def test_stack_only_when_requested(self):
        try:
            raise TRPCError("CONFLICT", "dup")
        except TRPCError as exc:
            err = exc
        self.assertNotIn("stack", error_shape(err, path="p", include_stack=False)["data"])
        stack = error_shape(err, path="p", include_stack=True)["data"]["stack"]
        self.assertIsInstance(stack, str)
        self.assertIn("dup", stack)
        self.assertIn("test_stack_only_when_requested", stack)

    def test_stack_of_never_raised_error_is_not_empty(self):
        stack = error_shape(TRPCError("TIMEOUT", "slow"), path=None, include_stack=True)["data"]["stack"]
        self.assertTrue(stack)
        self.assertIn("slow", stack)

    def test_stack_uses_the_cause(self):
        try:
            raise KeyError("inner problem")
        except KeyError as exc:
            err = to_trpc_error(exc)
        stack = error_shape(err, path=None, include_stack=True)["data"]["stack"]
        self.assertIn("KeyError", stack)
        self.assertIn("inner problem", stack)

    def test_key_order_and_zod_error_default_null(self):
        shape = error_shape(TRPCError("FORBIDDEN", "x"), path="p", include_stack=True)
        self.assertEqual(list(shape), ["message", "code", "data"])
        self.assertEqual(list(shape["data"]), ["code", "httpStatus", "stack", "path", "zodError"])
        self.assertIsNone(shape["data"]["zodError"])

    def test_extra_data_merged_and_overrides_zod_error(self):
        zod = {"formErrors": [], "fieldErrors": {"a": ["Required"]}}
        shape = error_shape(TRPCError("BAD_REQUEST", "bad", data={"zodError": zod, "hint": 1}),
                            path="p", include_stack=False)
        self.assertEqual(shape["data"]["zodError"], zod)
        self.assertEqual(shape["data"]["hint"], 1)

    def test_unknown_code_rejected(self):
        self.assertRaises(ValueError, TRPCError, "TEAPOT", "x")

    def test_message_fallbacks(self):
        self.assertEqual(TRPCError("CONFLICT").message, "CONFLICT")
        self.assertEqual(TRPCError("CONFLICT", cause=ValueError("because")).message, "because")
        self.assertEqual(TRPCError("CONFLICT", cause=ValueError("")).message, "CONFLICT")
        self.assertEqual(TRPCError("CONFLICT", "explicit", cause=ValueError("because")).message, "explicit")

    def test_to_trpc_error(self):
        err = TRPCError("UNAUTHORIZED", "no")
        self.assertIs(to_trpc_error(err), err)
        cause = ValueError("kaboom")
        wrapped = to_trpc_error(cause)
        self.assertEqual((wrapped.code, wrapped.message, wrapped.http_status), ("INTERNAL_SERVER_ERROR", "kaboom", 500))
        self.assertIs(wrapped.cause, cause)
        self.assertEqual(to_trpc_error(RuntimeError()).message, "RuntimeError")


class ReconnectFrameTests(SynchronousTestCase):
    def test_exact_bytes(self):
        self.assertEqual(RECONNECT_FRAME, b'{"id":null,"method":"reconnect"}')
