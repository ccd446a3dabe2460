"""YAML in the style of the eemeli ``yaml`` 2.x package (``YAML.stringify`` defaults), and a YAML 1.2
core-schema parser on top of PyYAML.

Output style (written from the library's documented behaviour, default options: indent 2, indentSeq true,
lineWidth 80, minContentWidth 20, PLAIN strings, double quotes preferred):

- block mappings and sequences; sequences are indented under their key (``d:\\n  - 1``);
- empty collections are flow ``{}`` / ``[]``;
- a string is plain unless it would read back as something else (``"true"``, ``"1"``, ``"null"``,
  ``"0x1F"``), starts with an indicator, contains ``: `` or `` #``, or has leading/trailing spaces — then
  it is double-quoted (single-quoted if it contains ``"`` but no ``'``);
- multi-line strings use a literal block (``|-``/``|``/``|+``), folded (``>-``) when a line is longer
  than the line width; long plain strings fold at spaces;
- numbers print like JS, NaN/±Infinity as ``.nan``/``.inf``/``-.inf``; a trailing newline.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml as pyyaml

from ..jsbridge import js_json_stringify, js_number_to_string
from ..sdk import UNSET

__all__ = ["yaml_parse", "yaml_stringify"]

LINE_WIDTH = 80
MIN_CONTENT_WIDTH = 20
INDENT_STEP = "  "

FOLD_FLOW, FOLD_BLOCK, FOLD_QUOTED = "flow", "block", "quoted"

# Core-schema scalars that a plain string must not look like (YAML 1.2 core + the yaml package's tags).
_CORE_SCALAR = re.compile(
    r"(?:~|[Nn]ull|NULL)?\Z"
    r"|(?:[Tt]rue|TRUE|[Ff]alse|FALSE)\Z"
    r"|0o[0-7]+\Z"
    r"|[-+]?[0-9]+\Z"
    r"|0x[0-9a-fA-F]+\Z"
    r"|[-+]?\.(?:inf|Inf|INF)\Z|\.(?:nan|NaN|NAN)\Z"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+\Z"
    r"|[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)\Z"
)
_NEEDS_QUOTES = re.compile(
    r"^[\n\t ,\[\]{}#&*!|>'\"%@`]|^[?-]\Z|^[?-][ \t]|[\n:][ \t]|[ \t]\n|[\n\t ]#|[\n\t :]\Z")
_DOC_MARKER = re.compile(r"^(?:%|---|\.\.\.)", re.MULTILINE)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class _Ctx:
    __slots__ = ("force_block_indent", "implicit_key", "in_flow", "indent", "indent_at_start")

    def __init__(self, indent: str = "", implicit_key: bool = False, indent_at_start: int | None = None):
        self.indent = indent
        self.implicit_key = implicit_key
        self.in_flow = False
        self.indent_at_start = indent_at_start
        self.force_block_indent = False


# -- line folding ------------------------------------------------------------------------------------

def _consume_more_indented(text: str, i: int, indent_len: int) -> int:
    end = i
    start = i + 1
    ch = text[start] if start < len(text) else ""
    while ch == " " or ch == "\t":
        if i < start + indent_len:
            i += 1
            ch = text[i] if i < len(text) else ""
        else:
            while True:
                i += 1
                ch = text[i] if i < len(text) else ""
                if not ch or ch == "\n":
                    break
            end = i
            start = i + 1
            ch = text[start] if start < len(text) else ""
    return end


def _fold(text: str, indent: str, mode: str, indent_at_start: int | None,
          overflow_flag: list[bool] | None = None) -> str:
    line_width, min_content = LINE_WIDTH, MIN_CONTENT_WIDTH
    end_step = max(1 + min_content, 1 + line_width - len(indent))
    if len(text) <= end_step:
        return text
    folds: list[int] = []
    escaped_folds: set[int] = set()
    end = line_width - len(indent)
    if indent_at_start is not None:
        if indent_at_start > line_width - max(2, min_content):
            folds.append(0)
        else:
            end = line_width - indent_at_start
    split: int | None = None
    overflow = False
    prev = ""
    i = -1
    esc_start = esc_end = -1
    if mode == FOLD_BLOCK:
        i = _consume_more_indented(text, i, len(indent))
        if i != -1:
            end = i + end_step
    n = len(text)
    while True:
        i += 1
        if i >= n:
            break
        ch = text[i]
        if mode == FOLD_QUOTED and ch == "\\":
            esc_start = i
            nxt = text[i + 1] if i + 1 < n else ""
            i += {"x": 3, "u": 5, "U": 9}.get(nxt, 1)
            esc_end = i
        if ch == "\n":
            if mode == FOLD_BLOCK:
                i = _consume_more_indented(text, i, len(indent))
            end = i + len(indent) + end_step
            split = None
        else:
            if ch == " " and prev and prev not in " \n\t":
                nxt = text[i + 1] if i + 1 < n else ""
                if nxt and nxt not in " \n\t":
                    split = i
            if i >= end:
                if split is not None:
                    folds.append(split)
                    end = split + end_step
                    split = None
                elif mode == FOLD_QUOTED:
                    while prev in (" ", "\t"):
                        prev = ch
                        i += 1
                        ch = text[i] if i < n else ""
                        overflow = True
                    j = i - 2 if i > esc_end + 1 else esc_start - 1
                    if j in escaped_folds:
                        return text
                    folds.append(j)
                    escaped_folds.add(j)
                    end = j + end_step
                    split = None
                else:
                    overflow = True
        prev = ch
    if overflow and overflow_flag is not None:
        overflow_flag.append(True)
    if not folds:
        return text
    res = text[:folds[0]]
    for k, fold in enumerate(folds):
        stop = folds[k + 1] if k + 1 < len(folds) else len(text)
        if fold == 0:
            res = "\n" + indent + text[:stop]
        else:
            if mode == FOLD_QUOTED and fold in escaped_folds:
                res += text[fold] + "\\"
            res += "\n" + indent + text[fold + 1:stop]
    return res


def _line_over_limit(s: str, indent_len: int) -> bool:
    limit = LINE_WIDTH - indent_len
    if len(s) <= limit:
        return False
    start = 0
    for i, ch in enumerate(s):
        if ch == "\n":
            if i - start > limit:
                return True
            start = i + 1
            if len(s) - start <= limit:
                return False
    return True


# -- strings ---------------------------------------------------------------------------------------

def _double_quoted(value: str, ctx: _Ctx) -> str:
    json = js_json_stringify(value) or '""'
    indent = ctx.indent or ("  " if _DOC_MARKER.search(value) else "")
    out: list[str] = []
    start = 0
    i = 0
    n = len(json)
    while i < n:
        ch = json[i]
        if ch == " " and json[i + 1:i + 3] == "\\n":
            out.append(json[start:i] + "\\ ")
            i += 1
            start = i
            ch = "\\"
        if ch == "\\":
            nxt = json[i + 1] if i + 1 < n else ""
            if nxt == "u":
                out.append(json[start:i])
                code = json[i + 2:i + 6]
                special = {"0000": "\\0", "0007": "\\a", "000b": "\\v", "001b": "\\e", "0085": "\\N",
                           "00a0": "\\_", "2028": "\\L", "2029": "\\P"}.get(code)
                if special:
                    out.append(special)
                elif code.startswith("00"):
                    out.append("\\x" + code[2:])
                else:
                    out.append(json[i:i + 6])
                i += 5
                start = i + 1
            elif nxt == "n":
                if ctx.implicit_key or json[i + 2:i + 3] == '"' or n < 40:
                    i += 1
                else:
                    out.append(json[start:i] + "\n\n")
                    while json[i + 2:i + 4] == "\\n" and json[i + 4:i + 5] != '"':
                        out.append("\n")
                        i += 2
                    out.append(indent)
                    if json[i + 2:i + 3] == " ":
                        out.append("\\")
                    i += 1
                    start = i + 1
            else:
                i += 1
        i += 1
    s = "".join(out) + json[start:] if start else json
    if ctx.implicit_key:
        return s
    return _fold(s, indent, FOLD_QUOTED, ctx.indent_at_start)


def _single_quoted(value: str, ctx: _Ctx) -> str:
    if (ctx.implicit_key and "\n" in value) or re.search(r"[ \t]\n|\n[ \t]", value):
        return _double_quoted(value, ctx)
    indent = ctx.indent or ("  " if _DOC_MARKER.search(value) else "")
    res = "'" + re.sub(r"\n+", lambda m: m.group(0) + "\n" + indent, value.replace("'", "''")) + "'"
    if ctx.implicit_key:
        return res
    return _fold(res, indent, FOLD_FLOW, ctx.indent_at_start)


def _quoted(value: str, ctx: _Ctx) -> str:
    has_double, has_single = '"' in value, "'" in value
    if has_double and not has_single:
        return _single_quoted(value, ctx)
    return _double_quoted(value, ctx)


def _block_string(value: str, ctx: _Ctx) -> str:
    if re.search(r"\n[\t ]+\Z", value) or re.fullmatch(r"\s*", value):
        return _quoted(value, ctx)
    indent = ctx.indent or ("  " if (ctx.force_block_indent or _DOC_MARKER.search(value)) else "")
    literal = not _line_over_limit(value, len(indent))
    # chomping indicator from the trailing whitespace
    end_start = len(value)
    while end_start > 0 and value[end_start - 1] in "\n\t ":
        end_start -= 1
    end = value[end_start:]
    end_nl = end.find("\n")
    if end_nl == -1:
        chomp = "-"
    elif value == end or end_nl != len(end) - 1:
        chomp = "+"
    else:
        chomp = ""
    if end:
        value = value[: len(value) - len(end)]
        end = end.removesuffix("\n")
        end = re.sub(r"\n+(?!\n|\Z)", lambda m: m.group(0) + indent, end)
    # leading blank lines / spaces
    start_with_space = False
    start_nl = -1
    start_end = 0
    while start_end < len(value):
        ch = value[start_end]
        if ch == " ":
            start_with_space = True
        elif ch == "\n":
            start_nl = start_end
        else:
            break
        start_end += 1
    start = value[: start_nl + 1 if start_nl < start_end else start_end]
    if start:
        value = value[len(start):]
        start = re.sub(r"\n+", lambda m: m.group(0) + indent, start)
    header = ("2" if indent else "1") if start_with_space else ""
    header += chomp
    if literal:
        body = re.sub(r"\n+", lambda m: m.group(0) + indent, value)
        return f"|{header}\n{indent}{start}{body}{end}"
    body = re.sub(r"\n+", lambda m: "\n" + m.group(0), value)
    body = re.sub(r"(?:^|\n)([\t ].*)(?:([\n\t ]*)\n(?![\n\t ]))?",
                  lambda m: m.group(1) + (m.group(2) or ""), body)
    body = re.sub(r"\n+", lambda m: m.group(0) + indent, body)
    overflow: list[bool] = []
    folded = _fold(f"{start}{body}{end}", indent, FOLD_BLOCK, len(ctx.indent), overflow)
    if not overflow:
        return f">{header}\n{indent}{folded}"
    # a line that cannot be folded under the width: keep the literal style instead
    body = re.sub(r"\n+", lambda m: m.group(0) + indent, value)
    return f"|{header}\n{indent}{start}{body}{end}"


def _plain_string(value: str, ctx: _Ctx) -> str:
    implicit_key, in_flow, indent = ctx.implicit_key, ctx.in_flow, ctx.indent
    if implicit_key and "\n" in value:
        return _quoted(value, ctx)
    if not value or _NEEDS_QUOTES.search(value):
        if implicit_key or in_flow or "\n" not in value:
            return _quoted(value, ctx)
        return _block_string(value, ctx)
    if not implicit_key and not in_flow and "\n" in value:
        return _block_string(value, ctx)
    if _DOC_MARKER.search(value):
        if indent == "":
            ctx.force_block_indent = True
            return _block_string(value, ctx)
        if implicit_key and indent == INDENT_STEP:
            return _quoted(value, ctx)
    s = re.sub(r"\n+", lambda m: m.group(0) + "\n" + indent, value)
    if _CORE_SCALAR.match(s):
        return _quoted(value, ctx)
    if implicit_key:
        return s
    return _fold(s, indent, FOLD_FLOW, ctx.indent_at_start)


def _string(value: str, ctx: _Ctx) -> str:
    if _CONTROL.search(value):
        return _double_quoted(value, ctx)
    return _plain_string(value, ctx)


# -- nodes -------------------------------------------------------------------------------------------

def _scalar(value: Any, ctx: _Ctx) -> str:
    if value is None or value is UNSET:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        return js_number_to_string(value)
    if isinstance(value, str):
        return _string(value, ctx)
    return _string(str(value), ctx)


def _is_collection(v: Any) -> bool:
    return isinstance(v, (dict, list, tuple))


def _node(value: Any, ctx: _Ctx) -> str:
    if isinstance(value, dict):
        return _mapping(value, ctx) if value else "{}"
    if isinstance(value, (list, tuple)):
        return _sequence(value, ctx) if value else "[]"
    return _scalar(value, ctx)


def _pair(key: Any, value: Any, indent: str) -> str:
    """One ``key: value`` entry; ``indent`` is the mapping's own indent."""
    inner = indent + INDENT_STEP
    kstr = _scalar(key, _Ctx(inner, implicit_key=True))
    head = kstr + ":"
    if _is_collection(value) and value:
        if isinstance(value, dict):
            body = _mapping(value, _Ctx(inner))
        else:
            body = _sequence(value, _Ctx(inner))
        return f"{head}\n{inner}{body}"
    vctx = _Ctx(inner, indent_at_start=len(head) + 1)
    vs = _node(value, vctx)
    return f"{head} {vs}"


def _mapping(d: dict, ctx: _Ctx) -> str:
    lines = [_pair(k, v, ctx.indent) for k, v in d.items() if v is not UNSET]
    return ("\n" + ctx.indent).join(lines) if lines else "{}"


def _sequence(items: list | tuple, ctx: _Ctx) -> str:
    item_indent = ctx.indent + INDENT_STEP
    out = []
    for it in items:
        if isinstance(it, dict) and it:
            body = _mapping(it, _Ctx(item_indent))
        elif isinstance(it, (list, tuple)) and it:
            body = _sequence(it, _Ctx(item_indent))
        else:
            body = _node(None if it is UNSET else it, _Ctx(item_indent))
        out.append("- " + body)
    return ("\n" + ctx.indent).join(out)


def yaml_stringify(value: Any, directives: bool = False) -> str:
    """``YAML.stringify(value)`` (eemeli yaml 2.x defaults); ``directives`` adds the ``---`` marker."""
    ctx = _Ctx("")
    body = _node(value, ctx)
    if directives:
        if body[:1] in ("|", ">"):
            return f"--- {body}\n"
        return f"---\n{body}\n"
    return body + "\n"


# -- parsing (YAML 1.2 core schema) ----------------------------------------------------------------

MAX_ALIASES = 100  # like the yaml package's maxAliasCount: refuse alias bombs


class _CoreLoader(pyyaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit types (``yes``/``on`` stay strings, no sexagesimal
    numbers or timestamps) and a bound on alias references."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(pyyaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                raise pyyaml.composer.ComposerError(
                    None, None, "Excessive alias count indicates a resource exhaustion attack",
                    self.peek_event().start_mark)
        return super().compose_node(parent, index)


_CoreLoader.yaml_implicit_resolvers = {}
for _tag, _rx, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+.0123456789"),
    ("tag:yaml.org,2002:merge", r"^<<$", "<"),
):
    _CoreLoader.add_implicit_resolver(_tag, re.compile(_rx), list(_first))


def _construct_int(loader: pyyaml.SafeLoader, node: pyyaml.ScalarNode) -> int:
    v = loader.construct_scalar(node)
    if v.startswith(("0o", "0x")):
        return int(v, 0)
    return int(v, 10)


def _construct_float(loader: pyyaml.SafeLoader, node: pyyaml.ScalarNode) -> float | int:
    v = loader.construct_scalar(node)
    low = v.lower()
    if low.endswith(".inf"):
        return -math.inf if v.startswith("-") else math.inf
    if low == ".nan":
        return math.nan
    return float(v)


def _construct_bool(loader: pyyaml.SafeLoader, node: pyyaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


_CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_CoreLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_CoreLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def _check_acyclic(value: Any, stack: set[int]) -> None:
    if isinstance(value, (dict, list)):
        if id(value) in stack:
            raise ValueError("Recursive aliases are not supported")
        stack.add(id(value))
        for v in value.values() if isinstance(value, dict) else value:
            _check_acyclic(v, stack)
        stack.discard(id(value))


def yaml_parse(text: str) -> Any:
    """``YAML.parse(text)``: one document, YAML 1.2 core schema. Raises ValueError on bad YAML (and on
    recursive aliases, which would make a value that cannot be copied or serialized)."""
    try:
        value = pyyaml.load(text, Loader=_CoreLoader)
    except pyyaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
    _check_acyclic(value, set())
    return value
