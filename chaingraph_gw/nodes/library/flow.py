"""flow: branching helpers, gates, events, timing."""

from __future__ import annotations

import json
import math
import time
from typing import Any, ClassVar

from ..jsbridge import js_compare_strings, js_number, js_string, js_truthy, num_out
from ..sdk import NodeContext, NodeError, NodeType, any_port, boolean, enum, number, obj, register, string
from ._util import deep, get, nullish

BRANCH_OPERATORS = ("equals", "notEquals", "greaterThan", "lessThan", "greaterThanOrEquals", "lessThanOrEquals",
                    "contains", "notContains", "startsWith", "endsWith")


def _strict_equal(a: Any, b: Any) -> bool:
    """JS ``===`` on plain values (dicts and lists compare by identity)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b  # NaN !== NaN
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is b


def branch_compare(left: Any, op: Any, right: Any) -> bool:
    """BranchNode's comparison (catalog §1.5, incl. the JS ``Number()`` quirks)."""
    ls = left if isinstance(left, str) else js_string("" if nullish(left) else left)
    rs = right if isinstance(right, str) else js_string("" if nullish(right) else right)
    ln, rn = js_number(left), js_number(right)
    numeric = not math.isnan(ln) and not math.isnan(rn)

    def equals() -> bool:
        if nullish(left) and nullish(right):
            return True
        if nullish(left) or nullish(right):
            return False
        if numeric:
            return ln == rn
        return _strict_equal(left, right)

    def order() -> int:
        if numeric:
            return (ln > rn) - (ln < rn)
        return js_compare_strings(ls, rs)

    if op == "equals":
        return equals()
    if op == "notEquals":
        return not equals()
    if op in ("greaterThan", "lessThan", "greaterThanOrEquals", "lessThanOrEquals"):
        c = order()
        if numeric and (math.isnan(ln) or math.isnan(rn)):  # pragma: no cover - numeric excludes NaN
            return False
        return {"greaterThan": c > 0, "lessThan": c < 0, "greaterThanOrEquals": c >= 0,
                "lessThanOrEquals": c <= 0}[op]
    if op == "contains":
        return rs in ls
    if op == "notContains":
        return rs not in ls
    if op == "startsWith":
        return ls.startswith(rs)
    if op == "endsWith":
        return ls.endswith(rs)
    return False


@register
class BranchNode(NodeType):
    type_name = "BranchNode"
    title = "Branch"
    category = "flow"
    description = "Compares two values; wire result into __execute (and a Not node for the else path)"
    tags = ("branch", "if", "condition", "compare")
    ports = (
        any_port("leftValue", default=None, title="Left Value"),
        enum("operator", BRANCH_OPERATORS, default="equals", title="Operator"),
        any_port("rightValue", default=None, title="Right Value"),
        boolean("result", direction="output", default=False, title="Result"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["result"] = branch_compare(get(ctx, "leftValue"), get(ctx, "operator"), get(ctx, "rightValue"))


@register
class SwitchNode(NodeType):
    type_name = "SwitchNode"
    title = "Switch"
    category = "flow"
    description = "Sets the boolean case output whose key equals the input, else default"
    tags = ("switch", "case", "condition")
    ports = (
        string("input", default="", title="Input"),
        obj("caseObject", direction="output", default={}, schema=(), is_schema_mutable=True, title="Cases",
            ui={"allowedTypes": ["boolean"], "hidePort": True}),
        boolean("default", direction="output", default=False, title="Default"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        inp = get(ctx, "input")
        cases = get(ctx, "caseObject")
        cases = cases if isinstance(cases, dict) else {}
        out = {k: isinstance(inp, str) and inp == k for k in cases}
        ctx.values["caseObject"] = out
        ctx.values["default"] = not any(out.values())


@register
class GateNode(NodeType):
    type_name = "GateNode"
    title = "Gate"
    category = "flow"
    description = "Copies connected inputs to outputs (v1, hidden; use GateNodeV2)"
    tags = ("gate", "junction")
    ui: ClassVar[dict[str, Any]] = {"state": {"isHidden": True}}
    ports = (
        obj("inputObject", default={}, schema=(), is_schema_mutable=True, title="Inputs"),
        obj("outputObject", direction="output", default={}, schema=(), is_schema_mutable=True, title="Outputs"),
        string("connectionsMap", default="{}", title="Connections Map", ui={"hidden": True}),
    )

    async def execute(self, ctx: NodeContext) -> None:
        try:
            mapping = json.loads(get(ctx, "connectionsMap", "{}") or "{}")
            inputs = get(ctx, "inputObject")
            outputs = get(ctx, "outputObject")
            outputs = deep(outputs) if isinstance(outputs, dict) else {}
            if isinstance(mapping, dict) and isinstance(inputs, dict):
                for in_key, out_key in mapping.items():
                    v = inputs.get(in_key)
                    if not js_truthy(v):
                        continue
                    out_key = js_string(out_key)
                    if isinstance(v, dict):
                        target = outputs.get(out_key)
                        target = target if isinstance(target, dict) else {}
                        target.update(deep(v))
                        outputs[out_key] = target
                    elif isinstance(v, list):
                        target = outputs.get(out_key)
                        target = list(target) if isinstance(target, list) else []
                        for i, item in enumerate(v):
                            if i < len(target):
                                target[i] = deep(item)
                            else:
                                target.append(deep(item))
                        outputs[out_key] = target
                    else:
                        outputs[out_key] = deep(v)
            ctx.values["outputObject"] = outputs
        except Exception as exc:  # errors are logged and swallowed (catalog §1.5)
            import logging

            logging.getLogger(__name__).warning("GateNode: %s", exc)


@register
class GateNodeV2(NodeType):
    type_name = "GateNodeV2"
    title = "Gate"
    category = "flow"
    description = "A junction: values written into its child ports are read by outgoing edges"
    tags = ("gate", "junction")
    ports = (
        obj("gate", direction="passthrough", default={}, schema=(), is_schema_mutable=True, is_mutable=True,
            title="Gate", ui={"collapsed": True, "keyDeletable": True}),
    )

    async def execute(self, ctx: NodeContext) -> None:
        return None


@register
class EventEmitterNode(NodeType):
    type_name = "EventEmitterNode"
    title = "Event Emitter"
    category = "flow"
    description = "Emits a flow event; each event starts a child execution"
    tags = ("event", "emit", "trigger")
    ports = (
        string("eventName", default="", title="Event Name"),
        obj("payload", default={}, schema=(), is_schema_mutable=True, title="Payload",
            ui={"hidePropertyEditor": True}),
    )

    async def execute(self, ctx: NodeContext) -> None:
        name = get(ctx, "eventName")
        if not js_truthy(name):
            raise NodeError("Event name is required to emit an event")
        emit = getattr(ctx, "emit_event", None)
        if not callable(emit):
            raise NodeError("Event emission is not supported in this context")
        payload = get(ctx, "payload")
        emit(js_string(name), deep(payload) if isinstance(payload, dict) else {})


@register
class EventListenerNode(NodeType):
    type_name = "EventListenerNode"
    title = "Event Listener"
    category = "flow"
    description = "Starts a branch of a child execution when the named event is emitted"
    tags = ("event", "listener", "trigger")
    flow_ports: ClassVar[dict[str, Any]] = {"disabledAutoExecution": True}
    ports = (
        string("eventName", default="", title="Event Name"),
        number("processedEventsOffset", default=0, title="Processed Events Offset", ui={"hidden": True}),
        obj("outputData", direction="output", default={}, schema=(), is_schema_mutable=True, title="Event Data"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        event = getattr(ctx, "event_data", None)
        if not isinstance(event, dict) or event.get("eventName") != get(ctx, "eventName"):
            return
        payload = event.get("payload")
        ctx.values["outputData"] = deep(payload) if isinstance(payload, dict) else {}


@register
class SleepNode(NodeType):
    type_name = "SleepNode"
    title = "Sleep"
    category = "flow"
    description = "Waits for the given number of milliseconds"
    tags = ("sleep", "delay", "wait", "timer")
    ports = (
        number("duration", default=1000, min=0, title="Duration (ms)"),
        number("actualDuration", direction="output", default=0, title="Actual Duration (ms)"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        d = js_number(get(ctx, "duration"))
        if not math.isfinite(d) or d < 0:
            d = 0.0
        signal = getattr(ctx, "signal", None)
        if signal is not None and getattr(signal, "aborted", False):
            raise NodeError("Sleep aborted")
        start = time.monotonic()
        await ctx.sleep(d / 1000.0)  # stop cancels this (asyncio.CancelledError)
        ctx.values["actualDuration"] = num_out(round((time.monotonic() - start) * 1000))


@register
class IsRootExecutionNode(NodeType):
    type_name = "IsRootExecutionNode"
    title = "Is Root Execution"
    category = "flow"
    description = "True in a root execution, false in a child execution started by an event"
    tags = ("execution", "root", "event")
    ports = (boolean("isRoot", direction="output", default=False, title="Is Root"),)

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["isRoot"] = (getattr(ctx, "depth", 0) or 0) == 0 and not getattr(ctx, "parent_execution_id", None)
