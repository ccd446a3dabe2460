"""utilities: logging, templates, regular expressions, serializers, array access, server time."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from ..jsbridge import (
    JSONParseError,
    JSRegExp,
    JSRegExpError,
    is_js_number,
    js_json_parse,
    js_json_stringify,
    js_number,
    js_string,
    js_truthy,
    js_typeof,
)
from ..sdk import (
    UNSET,
    NodeContext,
    NodeError,
    NodeType,
    any_port,
    array,
    boolean,
    enum,
    number,
    obj,
    register,
    string,
)
from ._util import JSError, deep, get, js_error_repr, nullish
from .handlebars import HandlebarsError, render
from .yaml_style import yaml_parse, yaml_stringify

# -- DebugLogNode ---------------------------------------------------------------------------------------

@register
class DebugLogNode(NodeType):
    type_name = "DebugLogNode"
    title = "Debug Log"
    category = "utilities"
    description = "Sends its message to the execution's debug log"
    tags = ("debug", "log", "print")
    ports = (string("message", default="", title="Message", ui={"isTextArea": True}),)

    async def execute(self, ctx: NodeContext) -> None:
        msg = get(ctx, "message")
        ctx.debug_log(msg if isinstance(msg, str) else ("" if nullish(msg) else js_string(msg)))


# -- HandlebarsTemplateNode -------------------------------------------------------------------------

DEFAULT_HANDLEBARS_TEMPLATE = """Hello, {{user.name}}!
{{#if user.isAdmin}}
You have administrator access.
{{else}}
You have standard access.
{{/if}}
Your roles:
{{#each user.roles}}
- {{this}}
{{/each}}"""


def _log_text(args: list[Any]) -> str:
    return " ".join("" if nullish(a) else js_string(a) for a in args)


@register
class HandlebarsTemplateNode(NodeType):
    type_name = "HandlebarsTemplateNode"
    title = "Handlebars Template"
    category = "utilities"
    description = "Renders a Handlebars template with the given variables (no HTML escaping)"
    tags = ("template", "handlebars", "text", "render")
    ports = (
        string("template", default=DEFAULT_HANDLEBARS_TEMPLATE, title="Template", ui={"isTextArea": True}),
        obj("variables", default={}, schema=(), is_schema_mutable=True, title="Variables",
            ui={"keyDeletable": True}),
        string("renderedText", direction="output", default="", title="Rendered Text"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        template = get(ctx, "template")
        if not js_truthy(template):
            raise NodeError("Handlebars template rendering failed: Error: Template string is required")
        variables = get(ctx, "variables")
        variables = variables if not nullish(variables) else {}

        def log(level: str, args: list[Any]) -> None:
            ctx.debug_log(f"[Handlebars] [{level}] {_log_text(args)}")

        try:
            ctx.values["renderedText"] = render(js_string(template), variables, log=log)
        except HandlebarsError as exc:
            raise NodeError(f"Handlebars template rendering failed: {exc.js_name}: {exc}") from None
        except Exception as exc:  # e.g. a circular value in {{json}}
            raise NodeError(f"Handlebars template rendering failed: {js_error_repr(exc)}") from None


# -- LangchainTemplateNode --------------------------------------------------------------------------

def _fstring_parts(template: str) -> list[tuple[str, str]]:
    """Parse an f-string template into ('text', s) / ('var', name) parts (``{{``/``}}`` are escapes)."""
    parts: list[tuple[str, str]] = []
    buf: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "{":
            if template.startswith("{{", i):
                buf.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            if end < 0:
                raise ValueError("unmatched '{' in template")
            if buf:
                parts.append(("text", "".join(buf)))
                buf = []
            parts.append(("var", template[i + 1:end].strip()))
            i = end + 1
        elif c == "}":
            if template.startswith("}}", i):
                buf.append("}")
                i += 2
                continue
            raise ValueError("single '}' in template")
        else:
            buf.append(c)
            i += 1
    if buf:
        parts.append(("text", "".join(buf)))
    return parts


@register
class LangchainTemplateNode(NodeType):
    type_name = "LangchainTemplateNode"
    title = "Langchain Template"
    category = "utilities"
    description = "Renders an f-string style template ({variable}; {{ and }} are literal braces)"
    tags = ("template", "langchain", "prompt", "text")
    ports = (
        obj("variables", default={}, schema=(), is_schema_mutable=True, title="Variables",
            ui={"keyDeletable": True}),
        string("template", default="Tell me a joke about {topic}", title="Template", ui={"isTextArea": True}),
        string("renderedText", direction="output", default="", title="Rendered Text"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        template = get(ctx, "template")
        if not js_truthy(template):
            raise NodeError("Template rendering failed: Template string is required")
        variables = get(ctx, "variables")
        variables = variables if isinstance(variables, dict) else {}
        try:
            parts = _fstring_parts(js_string(template))
        except ValueError as exc:
            raise NodeError(f"Template rendering failed: Invalid template: {exc}") from None
        missing: list[str] = []
        for kind, name in parts:
            if kind == "var" and variables.get(name, UNSET) is UNSET and name not in missing:
                missing.append(name)
        if missing:
            raise NodeError(f"Template rendering failed: Missing required variables: {', '.join(missing)}")
        out = []
        for kind, s in parts:
            if kind == "text":
                out.append(s)
            else:
                v = variables[s]
                out.append(v if isinstance(v, str) else (js_json_stringify(v) or ""))
        ctx.values["renderedText"] = "".join(out)


# -- RegExpNode ---------------------------------------------------------------------------------------

REGEXP_FLAG_KEYS = (("global", "g"), ("caseInsensitive", "i"), ("multiline", "m"), ("dotAll", "s"),
                    ("unicode", "u"))
REGEXP_MODES = ("match", "replace", "test", "extract")


@register
class RegExpNode(NodeType):
    type_name = "RegExpNode"
    title = "Regular Expression Processor"
    category = "utilities"
    description = "Match, replace, test or extract with a JavaScript regular expression"
    tags = ("regex", "text", "pattern", "match", "replace", "extract", "validation", "parsing")
    ports = (
        string("sourceText", default="", required=True, title="Source Text", ui={"isTextArea": True}),
        string("pattern", default="", required=True, title="RegExp Pattern"),
        obj("flags", title="Flags", default={"global": True, "caseInsensitive": False, "multiline": False,
                                            "dotAll": False, "unicode": False},
            schema=(boolean("global", default=True, title="Global (g)"),
                    boolean("caseInsensitive", default=False, title="Case-insensitive (i)"),
                    boolean("multiline", default=False, title="Multi-line (m)"),
                    boolean("dotAll", default=False, title="Dot-all (s)"),
                    boolean("unicode", default=False, title="Unicode (u)"))),
        enum("mode", REGEXP_MODES, default="match", title="Operation Mode"),
        string("replacementText", default="", title="Replacement Text", ui={"isTextArea": True}),
        string("joinDelimiter", default=" ", title="Join Delimiter"),
        string("result", direction="output", default="", title="Result Text"),
        number("matchCount", direction="output", default=0, title="Match Count"),
        boolean("hasMatches", direction="output", default=False, title="Has Matches"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        try:
            self._run(ctx)
        except JSError as exc:
            raise NodeError(f"RegExpNode execution failed: {exc.message}") from None

    @staticmethod
    def _run(ctx: NodeContext) -> None:
        pattern, source = get(ctx, "pattern"), get(ctx, "sourceText")
        if not js_truthy(pattern):
            raise JSError("RegExp pattern is required.")
        if not js_truthy(source):
            raise JSError("Source text is empty.")
        flags_v = get(ctx, "flags")
        flags_v = flags_v if isinstance(flags_v, dict) else {}
        flags = "".join(f for key, f in REGEXP_FLAG_KEYS if js_truthy(flags_v.get(key)))
        pattern, source = js_string(pattern), js_string(source)
        try:
            rx = JSRegExp(pattern, flags)
        except JSRegExpError as exc:
            raise JSError(f"Invalid regular expression: {exc}", "TypeError") from None
        mode = get(ctx, "mode")
        delim = get(ctx, "joinDelimiter")
        delim = "," if delim is UNSET else js_string(delim)  # Array.join(undefined) uses ','
        if mode == "match":
            found = rx.match(source) or []
            ctx.values["result"] = delim.join("" if m is None else m for m in found)
            ctx.values["matchCount"] = len(found)
            ctx.values["hasMatches"] = bool(found)
        elif mode == "replace":
            repl = get(ctx, "replacementText")
            ctx.values["result"] = rx.replace(source, js_string(repl))
            count = sum(1 for _ in (rx if rx.global_ else JSRegExp(pattern, flags + "g")).iter_all(source))
            ctx.values["matchCount"] = count
            ctx.values["hasMatches"] = count > 0
        elif mode == "test":
            ok = rx.test(source)
            ctx.values["result"] = "true" if ok else "false"
            ctx.values["matchCount"] = 1 if ok else 0
            ctx.values["hasMatches"] = ok
        elif mode == "extract":
            groups: list[str] = []
            for m in rx.iter_all(source):  # advances past empty matches: no infinite loop
                groups.extend(g for g in m.groups() if g is not None)
            ctx.values["result"] = delim.join(groups)
            ctx.values["matchCount"] = len(groups)
            ctx.values["hasMatches"] = bool(groups)
        else:
            raise JSError(f"Unsupported operation mode: {js_string(mode)}")


# -- serializers ------------------------------------------------------------------------------------

@register
class JSONSerializerNode(NodeType):
    type_name = "JSONSerializerNode"
    title = "JSON Serializer"
    category = "utilities"
    description = "Serializes any value to a JSON string"
    tags = ("json", "serialize", "stringify")
    ports = (
        any_port("data", required=False, title="Data"),
        boolean("pretty", default=True, title="Pretty Print"),
        string("json", direction="output", default="", title="JSON", ui={"isTextArea": True}),
    )

    async def execute(self, ctx: NodeContext) -> None:
        data = get(ctx, "data")
        if nullish(data):
            ctx.values["json"] = "null"
            return
        try:
            out = js_json_stringify(data, 2 if js_truthy(get(ctx, "pretty")) else None)
        except TypeError as exc:
            raise NodeError(str(exc)) from None
        ctx.values["json"] = "null" if out is None else out


@register
class YAMLSerializerNode(NodeType):
    type_name = "YAMLSerializerNode"
    title = "YAML Serializer"
    category = "utilities"
    description = "Serializes any value to a YAML string"
    tags = ("yaml", "serialize", "stringify")
    ports = (
        any_port("data", title="Data"),
        boolean("includeDirectives", default=False, title="Include Directives"),
        boolean("quotingStrings", default=False, title="Quote Strings"),
        string("yaml", direction="output", title="YAML", ui={"isTextArea": True}),  # no default
    )

    async def execute(self, ctx: NodeContext) -> None:
        data = get(ctx, "data")
        if nullish(data):
            ctx.values["yaml"] = "null"
            return
        ctx.values["yaml"] = yaml_stringify(data, directives=js_truthy(get(ctx, "includeDirectives")))


SUPPORTED_SCHEMA_TYPES = ("number", "boolean", "string", "object", "array")
DEFAULT_MAX_DEPTH = 6


def _unwrap(cfg: Any) -> dict[str, Any] | None:
    """Follow ``any`` ports to their underlying type."""
    seen = 0
    while isinstance(cfg, dict) and cfg.get("type") == "any" and isinstance(cfg.get("underlyingType"), dict):
        cfg = cfg["underlyingType"]
        seen += 1
        if seen > 32:
            break
    return cfg if isinstance(cfg, dict) else None


def _port_config(ctx: NodeContext, key: str) -> tuple[bool, dict[str, Any] | None]:
    """(supported, config): the node instance's port config (ChainGraph shape, as in the flow JSON) if the
    context exposes it: ``ctx.port_config(key)``, ``ctx.port_configs[key]`` or ``ctx.node.spec(key)``."""
    fn = getattr(ctx, "port_config", None)
    if callable(fn):
        cfg = fn(key)
        return True, cfg if isinstance(cfg, dict) else None
    cfgs = getattr(ctx, "port_configs", None)
    if isinstance(cfgs, dict):
        cfg = cfgs.get(key)
        return True, cfg if isinstance(cfg, dict) else None
    node = getattr(ctx, "node", None)  # the engine's NodeInstance: spec(key) → PortSpec (with overrides)
    spec_fn = getattr(node, "spec", None)
    if callable(spec_fn):
        spec = spec_fn(key)
        to_config = getattr(spec, "to_config", None)
        return True, to_config() if callable(to_config) else None
    return False, None


def _filter(value: Any, schema: dict[str, Any], depth: int, ignore_missing: bool) -> Any:
    if nullish(value):
        return None
    t = schema.get("type")
    if t == "any":
        return value
    if t not in SUPPORTED_SCHEMA_TYPES:
        raise JSError(f"Schema property {js_string(schema.get('name', UNSET))} has unsupported type: "
                      f"{js_string(t if t is not None else UNSET)}. Supported types are: "
                      f"{', '.join(SUPPORTED_SCHEMA_TYPES)}.")
    if t in ("string", "number", "boolean"):
        vt = js_typeof(value)
        if vt == t:
            return value
        raise JSError(f"Types mismatch: expected {t} but got {vt}")
    if t == "array":
        if not isinstance(value, list):
            raise JSError(f"Types mismatch: Expected array but got {js_typeof(value)}", "TypeError")
        item = schema.get("itemConfig")
        if not isinstance(item, dict) or depth <= 0:
            return value
        out = []
        for it in value:
            try:
                out.append(_filter(it, item, depth - 1, ignore_missing))
            except JSError as exc:
                raise JSError(f"Error adding array item to the output: {exc.js_repr()}") from None
        return out
    # object
    if not isinstance(value, dict):
        raise JSError(f"Expected object but got {'array' if isinstance(value, list) else js_typeof(value)}",
                      "TypeError")
    props = (schema.get("schema") or {}).get("properties") if isinstance(schema.get("schema"), dict) else None
    if depth <= 0 or not isinstance(props, dict) or not props:
        return value
    result: dict[str, Any] = {}
    for key, prop in props.items():
        if key in value:
            try:
                result[key] = _filter(value[key], prop if isinstance(prop, dict) else {}, depth - 1, ignore_missing)
            except JSError:
                if ignore_missing:
                    result[key] = None
                else:
                    raise
        elif ignore_missing:
            result[key] = None
        else:
            raise JSError(f"Required field '{key}' is missing in the input data")
    return result


@register
class JsonYamlDeserializerNode(NodeType):
    type_name = "JsonYamlDeserializerNode"
    title = "JSON/YAML Deserializer"
    category = "utilities"
    description = "Parses a JSON or YAML string and keeps the parts described by the output schema"
    tags = ("json", "yaml", "deserialize", "parse", "convert", "object")
    ports = (
        any_port("outputSchema", direction="passthrough", title="Output Schema"),
        string("inputString", direction="passthrough", default="", title="JSON or YAML", ui={"isTextArea": True}),
        enum("inputFormat", ("auto", "json", "yaml"), direction="passthrough", default="auto", title="Input Format"),
        boolean("ignoreMissingFields", direction="passthrough", default=False, title="Ignore Missing Fields"),
        number("maxDepth", direction="passthrough", default=0, title="Max Depth"),
        any_port("deserializedObject", direction="output", default=None, title="Deserialized Value",
                 ui={"hideEditor": True}),
    )

    async def execute(self, ctx: NodeContext) -> None:
        try:
            self._run(ctx)
        except JSError as exc:
            raise NodeError(f"Failed to execute: {exc.js_repr()}") from None

    @staticmethod
    def _parse(text: str, fmt: Any) -> Any:
        # @960 quirk kept: JSON is always tried first; YAML only in auto mode.
        try:
            return js_json_parse(text)
        except JSONParseError:
            if fmt == "auto":
                try:
                    return yaml_parse(text)
                except ValueError:
                    raise JSError("Format error: Input must be valid JSON or YAML") from None
        raise JSError(f"Unsupported input format: {js_string(fmt)}")

    def _run(self, ctx: NodeContext) -> None:
        text = get(ctx, "inputString")
        text = "" if nullish(text) else js_string(text)
        if text.strip() == "":
            parsed: Any = None
        else:
            try:
                parsed = self._parse(text, get(ctx, "inputFormat"))
            except JSError as exc:
                raise JSError(f"Failed to parse input string: {exc.js_repr()}") from None
        supported, cfg = _port_config(ctx, "deserializedObject")
        if not supported:
            # The engine gives no access to the port's underlying type: pass the value through unfiltered.
            ctx.values["deserializedObject"] = parsed
            return
        schema = _unwrap((cfg or {}).get("underlyingType"))
        if schema is None or schema.get("type") not in SUPPORTED_SCHEMA_TYPES:
            raise JSError("Output port has no schema assigned. Make sure that you've provided a valid schema of "
                          f"one of these types: {', '.join(SUPPORTED_SCHEMA_TYPES)}.")
        md = get(ctx, "maxDepth")
        depth = DEFAULT_MAX_DEPTH if (not js_truthy(md) or not is_js_number(md)) else md
        try:
            value = _filter(parsed, schema, depth, js_truthy(get(ctx, "ignoreMissingFields")))
        except JSError as exc:
            raise JSError(f"Error applying value to provided schema: {exc.js_repr()}") from None
        ctx.values["deserializedObject"] = value


# -- ArrayElementNode ---------------------------------------------------------------------------------

@register
class ArrayElementNode(NodeType):
    type_name = "ArrayElementNode"
    title = "Array Element"
    category = "utilities"
    description = "The element at an index of an array"
    tags = ("array", "element", "index")
    ports = (
        array("array", direction="passthrough", default=[], item=any_port("item"), is_mutable=True, title="Array"),
        number("index", direction="passthrough", default=0, integer=True, title="Index"),
        any_port("element", direction="output", default=None, title="Element"),
    )

    async def execute(self, ctx: NodeContext) -> None:
        ctx.values["element"] = None
        arr = get(ctx, "array")
        if not isinstance(arr, list):
            raise NodeError('The "array" is empty or not an array')
        raw = get(ctx, "index")
        idx = js_number(raw)
        if idx < 0 or idx >= len(arr):
            raise NodeError(f"Index {js_string(raw)} is out of bounds for array of length {len(arr)}")
        if math.isnan(idx) or idx != int(idx):
            ctx.values.pop("element", None)  # JS: array[1.5] is undefined, no error
            return
        ctx.values["element"] = deep(arr[int(idx)])


# -- ServerTimeNode -----------------------------------------------------------------------------------

TIMEZONES = ("UTC", "America/New_York", "America/Los_Angeles", "America/Chicago", "Europe/London",
             "Europe/Paris", "Europe/Berlin", "Asia/Tokyo", "Asia/Shanghai", "Asia/Kolkata", "Australia/Sydney")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


def _iso_utc(now: _dt.datetime) -> str:
    u = now.astimezone(_dt.UTC)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def _offset_parts(local: _dt.datetime) -> tuple[str, int, int]:
    off = local.utcoffset() or _dt.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return sign, abs(minutes) // 60, abs(minutes) % 60


def _gmt_long(local: _dt.datetime) -> str:
    sign, h, m = _offset_parts(local)
    return "GMT" if (h, m) == (0, 0) else f"GMT{sign}{h:02d}:{m:02d}"


def _tz_short(local: _dt.datetime, zone: str) -> str:
    if zone == "UTC":
        return "UTC"
    if zone.startswith("America/"):
        name = local.tzname()
        if name and name.isalpha():
            return name
    sign, h, m = _offset_parts(local)
    if (h, m) == (0, 0):
        return "GMT"
    return f"GMT{sign}{h}" + (f":{m:02d}" if m else "")


def format_server_time(now: _dt.datetime, fmt: Any, custom: Any, zone: Any) -> str:
    """ServerTimeNode's formattedTime (catalog §1.6); any failure falls back to toISOString()."""
    try:
        from zoneinfo import ZoneInfo

        zone_s = js_string(zone) if not nullish(zone) else "UTC"
        local = now.astimezone(ZoneInfo(zone_s))
        if fmt == "ISO" or nullish(fmt):
            if zone_s == "UTC":
                return _iso_utc(now)
            return local.strftime("%Y-%m-%dT%H:%M:%S") + _gmt_long(local)
        if fmt == "Locale":
            h12 = local.hour % 12 or 12
            ampm = "AM" if local.hour < 12 else "PM"
            return (f"{_MONTHS[local.month - 1]} {local.day}, {local.year} at "
                    f"{h12:02d}:{local.minute:02d}:{local.second:02d} {ampm} {_tz_short(local, zone_s)}")
        if fmt == "Custom":
            s = js_string(custom) if not nullish(custom) else ""
            if not s.strip():
                s = "YYYY-MM-DD HH:mm:ss"
            s = s.replace("MMM", _MONTHS[local.month - 1][:3])
            s = s.replace("YYYY", f"{local.year:04d}").replace("MM", f"{local.month:02d}")
            s = s.replace("DD", f"{local.day:02d}").replace("HH", f"{local.hour:02d}")
            s = s.replace("mm", f"{local.minute:02d}").replace("ss", f"{local.second:02d}")
            if "h:" in s or "h " in s:
                s = s.replace("h", str(local.hour % 12 or 12)).replace("a", "AM" if local.hour < 12 else "PM")
            return s
        return _iso_utc(now)
    except Exception:  # any failure falls back to toISOString()
        return _iso_utc(now)


@register
class ServerTimeNode(NodeType):
    type_name = "ServerTimeNode"
    title = "Server Time"
    category = "utilities"
    description = "The server's current time, formatted, plus Unix timestamps"
    tags = ("time", "date", "clock", "timestamp")
    ports = (
        enum("timeFormat", ("ISO", "Locale", "Custom"), default="ISO", title="Time Format"),
        string("customFormat", default="YYYY-MM-DD HH:mm:ss", title="Custom Format"),
        enum("timezone", TIMEZONES, default="UTC", title="Timezone"),
        string("formattedTime", direction="output", title="Formatted Time"),
        number("timestampSeconds", direction="output", integer=True, title="Timestamp (s)"),
        number("timestampMilliseconds", direction="output", integer=True, title="Timestamp (ms)"),
    )

    clock = staticmethod(lambda: _dt.datetime.now(_dt.UTC))

    async def execute(self, ctx: NodeContext) -> None:
        now = self.clock()
        ms = int(now.timestamp() * 1000)
        ctx.values["timestampMilliseconds"] = ms
        ctx.values["timestampSeconds"] = ms // 1000
        ctx.values["formattedTime"] = format_server_time(now, get(ctx, "timeFormat"), get(ctx, "customFormat"),
                                                         get(ctx, "timezone"))
