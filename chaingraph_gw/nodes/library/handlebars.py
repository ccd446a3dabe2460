"""A Handlebars (4.x) template renderer for HandlebarsTemplateNode, written from the Handlebars language
documentation.

Supported: ``{{path}}`` with dotted / ``/`` / ``[literal]`` segments, ``this``, ``./``, ``../``; data
variables ``@index @key @first @last @root``; triple-stash ``{{{x}}}`` and ``{{&x}}``; comments
``{{! }}`` / ``{{!-- --}}``; literals (strings, numbers, true/false/null/undefined); helper calls with
positional and hash arguments and sub-expressions ``(helper a b)``; blocks ``{{#name}}…{{else}}…{{/name}}``,
``{{else if …}}`` chains, inverted sections ``{{^x}}``, block parameters ``as |item i|``; the built-in
helpers ``if unless each with lookup log`` (with ``includeZero``) and Handlebars' implicit block behaviour for
plain values; whitespace control ``~`` and standalone-line stripping; ``\\{{`` escapes. Output is never
HTML-escaped (``noEscape: true``); values print as JS ``String(x)`` with null/undefined as ''.

Errors carry Handlebars' texts: ``Parse error on line N:…``, ``Lexical error on line N. Unrecognized
text.…``, ``if doesn't match each - 1:0``, ``Missing helper: "x"``, ``Must pass iterator to #each``,
``#if requires exactly one argument``, ``The partial x could not be found``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..jsbridge import js_json_stringify, js_loose_equal, js_number, js_string, js_truthy, utf16_len
from ..sdk import UNSET
from .yaml_style import yaml_stringify

__all__ = ["HandlebarsError", "Template", "compile_template", "render"]


class HandlebarsError(Exception):
    """A Handlebars compile or runtime error; ``str()`` is Handlebars' own message and ``js_name`` the JS
    error class it would be (``Error``, or ``TypeError`` for calling a non-function)."""

    def __init__(self, message: str, js_name: str = "Error") -> None:
        super().__init__(message)
        self.js_name = js_name


# -- lexing -------------------------------------------------------------------------------------------

_ID_CHARS = r"[^\s!\"#%-,\.\/;->@\[-\^`\{-~]+"
_LOOKAHEAD = r"(?=[=~}\s\/.)|])"
_LITERAL_LOOKAHEAD = r"(?=[~}\s)])"
_EXPR_TOKENS = re.compile("|".join((
    r"(?P<WS>\s+)",
    r"(?P<OPEN_SEXPR>\()",
    r"(?P<CLOSE_SEXPR>\))",
    r"(?P<CLOSE_RAW_BLOCK>\}\}\}\})",
    r"(?P<CLOSE_UNESCAPED>\}~?\}\})",
    r"(?P<CLOSE>~?\}\})",
    r'(?P<STRING>"(?:\\["]|[^"])*"|' + r"'(?:\\[']|[^'])*')",
    r"(?P<DATA>@)",
    r"(?P<BOOLEAN>(?:true|false)" + _LITERAL_LOOKAHEAD + ")",
    r"(?P<UNDEFINED>undefined" + _LITERAL_LOOKAHEAD + ")",
    r"(?P<NULL>null" + _LITERAL_LOOKAHEAD + ")",
    r"(?P<NUMBER>-?[0-9]+(?:\.[0-9]+)?" + _LITERAL_LOOKAHEAD + ")",
    r"(?P<OPEN_BLOCK_PARAMS>as\s+\|)",
    r"(?P<CLOSE_BLOCK_PARAMS>\|)",
    r"(?P<EQUALS>=)",
    r"(?P<DOTDOT>\.\.)",
    r"(?P<DOT>\." + _LOOKAHEAD + ")",
    r"(?P<SEP>[\/.])",
    r"(?P<ID>" + _ID_CHARS + _LOOKAHEAD + ")",
    r"(?P<BRACKET_ID>\[(?:\\\]|[^\]])*\])",
)))


@dataclass
class _Tok:
    type: str
    value: Any
    pos: int  # offset in the template source
    text: str = ""


@dataclass
class _Tag:
    kind: str  # mustache | unescaped | comment | open | open_inverse | inverse | else_chain | close |
    #            partial | open_partial_block | decorator | open_decorator_block
    pos: int
    end: int
    strip_open: bool = False
    strip_close: bool = False
    tokens: list[_Tok] = field(default_factory=list)
    close_tok: _Tok | None = None
    raw_content: str = ""


@dataclass
class _Text:
    value: str
    original: str
    pos: int


def _line_col(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    col = pos - (src.rfind("\n", 0, pos) + 1)
    return line, col


def _show_position(src: str, pos: int, match: str) -> str:
    past = src[:pos]
    pre = ("..." if len(past) > 20 else "") + past[-20:].replace("\n", "")
    nxt = match + src[pos + len(match):pos + len(match) + max(0, 20 - len(match))]
    nxt = nxt[:20] + ("..." if len(src) - pos > 20 else "")
    nxt = nxt.replace("\n", "")
    return pre + nxt + "\n" + "-" * len(pre) + "^"


def _parse_error(src: str, pos: int, match: str, expecting: str, got: str) -> HandlebarsError:
    line = src.count("\n", 0, pos + len(match)) + 1 if got != "EOF" else src.count("\n") + 1
    return HandlebarsError(f"Parse error on line {line}:\n{_show_position(src, pos, match)}\n"
                           f"Expecting {expecting}, got '{got}'")


def _lexical_error(src: str, pos: int, past_end: int | None = None) -> HandlebarsError:
    """Jison's lexer error; ``past_end`` is how far its 'past input' reaches (it can run past ``pos`` when
    the lexer backed up, which shows part of the text twice, as Handlebars does)."""
    line = src.count("\n", 0, pos) + 1
    past = src[:pos if past_end is None else past_end]
    pre = ("..." if len(past) > 20 else "") + past[-20:].replace("\n", "")
    nxt = (src[pos:pos + 20] + ("..." if len(src) - pos > 20 else "")).replace("\n", "")
    return HandlebarsError(f"Lexical error on line {line}. Unrecognized text.\n{pre}{nxt}\n{'-' * len(pre)}^")


_EXPECT_ROOT_START = ("'EOF', 'COMMENT', 'CONTENT', 'OPEN_RAW_BLOCK', 'OPEN_BLOCK', 'OPEN_INVERSE', 'OPEN', "
                      "'OPEN_UNESCAPED', 'OPEN_PARTIAL', 'OPEN_PARTIAL_BLOCK'")
_EXPECT_BLOCK_START = ("'COMMENT', 'CONTENT', 'OPEN_RAW_BLOCK', 'OPEN_BLOCK', 'OPEN_INVERSE', 'OPEN_ENDBLOCK', 'OPEN', "
                       "'OPEN_UNESCAPED', 'OPEN_PARTIAL', 'OPEN_PARTIAL_BLOCK'")
_EXPECT_PROGRAM_START = ("'COMMENT', 'CONTENT', 'OPEN_RAW_BLOCK', 'OPEN_BLOCK', 'OPEN_INVERSE', 'OPEN_INVERSE_CHAIN', "
                         "'INVERSE', 'OPEN_ENDBLOCK', 'OPEN', 'OPEN_UNESCAPED', 'OPEN_PARTIAL', 'OPEN_PARTIAL_BLOCK'")
_EXPECT_SEXPR = "'OPEN_SEXPR', 'CLOSE_SEXPR', 'ID', 'STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL', 'DATA'"
_EXPECT_HELPER = "'ID', 'STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL', 'DATA'"
_EXPECT_PARAM = "'OPEN_SEXPR', 'ID', 'STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL', 'DATA'"
_EXPECT_AFTER = ("'CLOSE_RAW_BLOCK', 'CLOSE', 'CLOSE_UNESCAPED', 'OPEN_SEXPR', 'CLOSE_SEXPR', 'ID', "
                 "'OPEN_BLOCK_PARAMS', 'STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL', 'DATA', 'SEP'")
_OPERAND_START = ("OPEN_SEXPR", "STRING", "NUMBER", "BOOLEAN", "NULL", "UNDEFINED", "DATA", "ID")


def _lex_expr(src: str, pos: int, close_kind: str) -> tuple[list[_Tok], _Tok | None]:
    """Tokens of one mustache's inside up to its close token (``None`` when lexing stops at an INVALID
    character or at EOF; that token is then the last one in the list, for the parser to report)."""
    toks: list[_Tok] = []
    n = len(src)
    while True:
        if pos >= n:
            toks.append(_Tok("EOF", None, n, ""))
            return toks, None
        m = _EXPR_TOKENS.match(src, pos)
        if not m:
            toks.append(_Tok("INVALID", src[pos], pos, src[pos]))
            return toks, None
        kind = m.lastgroup or ""
        text = m.group(0)
        if kind == "WS":
            pos = m.end()
            continue
        if kind in ("CLOSE", "CLOSE_UNESCAPED", "CLOSE_RAW_BLOCK"):
            if kind != close_kind:
                toks.append(_Tok(kind, None, pos, text))
                return toks, None
            return toks, _Tok(kind, "~" in text, pos, text)
        if kind == "STRING":
            q = text[0]
            value: Any = text[1:-1].replace("\\" + q, q)
        elif kind == "NUMBER":
            value = float(text) if "." in text else int(text)
        elif kind == "BOOLEAN":
            value = text == "true"
        elif kind == "NULL":
            value = None
        elif kind == "UNDEFINED":
            value = UNSET
        elif kind == "BRACKET_ID":
            kind, value = "ID", ("[", text[1:-1].replace("\\]", "]"))
        elif kind in ("DOTDOT", "DOT"):
            kind, value = "ID", text
        else:
            value = text
        toks.append(_Tok(kind, value, pos, text))
        pos = m.end()


_TAG_START = re.compile(r"\{\{(?P<triple>\{)?(?P<strip>~)?")
_ELSE_TAG = re.compile(r"\s*else\s*(?P<strip>~)?\}\}")
_INVERSE_TAG = re.compile(r"\^\s*(?P<strip>~)?\}\}")
_ELSE_CHAIN = re.compile(r"\s*else(?=[\s~}(])")


def _scan(src: str) -> list[_Text | _Tag]:
    out: list[_Text | _Tag] = []
    text_buf: list[str] = []
    text_start = 0
    i, n = 0, len(src)

    def flush(upto_pos: int) -> None:
        s = "".join(text_buf)
        if s:
            out.append(_Text(s, s, text_start))
        text_buf.clear()

    while i < n:
        j = src.find("{{", i)
        if j < 0:
            if not text_buf:
                text_start = i
            text_buf.append(src[i:])
            break
        if not text_buf:
            text_start = i
        if j >= 1 and src[j - 1] == "\\" and not (j >= 2 and src[j - 2] == "\\"):
            # \{{ : the mustache is literal text up to the next {{ (or \{{)
            text_buf.append(src[i:j - 1])
            k = src.find("{{", j + 2)
            if k < 0:
                k = n
            elif src[k - 1] == "\\":
                k -= 1
                if k - 1 > j + 1 and src[k - 1] == "\\":
                    k -= 1
            text_buf.append(src[j:k])
            i = k
            continue
        if j >= 2 and src[j - 1] == "\\" and src[j - 2] == "\\":
            text_buf.append(src[i:j - 1])  # \\{{ : one literal backslash, then a real mustache
        else:
            text_buf.append(src[i:j])
        flush(j)
        if src.startswith("{{{{", j):
            toks, close = _lex_expr(src, j + 4, "CLOSE_RAW_BLOCK")
            tag = _Tag("raw", j, len(src), tokens=toks, close_tok=close)
            out.append(tag)
            if close is None:
                break
            body_start = close.pos + len(close.text)
            name = next((t.text for t in toks if t.type == "ID"), "")
            end_m = re.compile(r"\{\{\{\{/" + re.escape(name) + r"\}\}\}\}").search(src, body_start) if name else None
            if end_m is None:
                raise _lexical_error(src, body_start)
            tag.raw_content = src[body_start:end_m.start()]
            tag.end = end_m.end()
            i = tag.end
            continue
        m = _TAG_START.match(src, j)
        assert m is not None
        triple = bool(m.group("triple"))
        k = m.end()
        tag = _Tag("mustache", j, j, strip_open=bool(m.group("strip")))
        if triple:
            tag.kind = "unescaped"
        else:
            ch = src[k:k + 1]
            if ch == "!":
                if src.startswith("!--", k):
                    cm = re.compile(r"--(~)?\}\}").search(src, k + 3)
                else:
                    cm = re.compile(r"(~)?\}\}").search(src, k + 1)
                if not cm:
                    if src.startswith("!--", k):
                        raise _lexical_error(src, j, k + 2)
                    raise _parse_error(src, k, "!", _EXPECT_HELPER, "INVALID")
                tag.kind = "comment"
                tag.strip_close = bool(cm.group(1))
                tag.end = cm.end()
                out.append(tag)
                i = tag.end
                continue
            em = _ELSE_TAG.match(src, k) or _INVERSE_TAG.match(src, k)
            if em:
                tag.kind = "inverse"
                tag.strip_close = bool(em.group("strip"))
                tag.end = em.end()
                out.append(tag)
                i = tag.end
                continue
            if _ELSE_CHAIN.match(src, k):
                tag.kind = "else_chain"
                k = _ELSE_CHAIN.match(src, k).end()  # type: ignore[union-attr]
            elif src.startswith("#>", k):
                tag.kind, k = "open_partial_block", k + 2
            elif src.startswith("#*", k):
                tag.kind, k = "open_decorator_block", k + 2
            elif ch == "#":
                tag.kind, k = "open", k + 1
            elif ch == "^":
                tag.kind, k = "open_inverse", k + 1
            elif ch == "/":
                tag.kind, k = "close", k + 1
            elif ch == ">":
                tag.kind, k = "partial", k + 1
            elif ch == "&":
                tag.kind, k = "unescaped_amp", k + 1
            elif ch == "*":
                tag.kind, k = "decorator", k + 1
        toks, close = _lex_expr(src, k, "CLOSE_UNESCAPED" if triple else "CLOSE")
        tag.tokens = toks
        tag.close_tok = close
        if tag.kind == "unescaped_amp":
            tag.kind = "unescaped"
        out.append(tag)
        if close is None:  # the parser reports the bad token; nothing after it is scanned
            tag.end = len(src)
            return out
        tag.strip_close = bool(close.value)
        tag.end = close.pos + len(close.text)
        i = tag.end
    flush(n)
    return out


# -- whitespace control -------------------------------------------------------------------------------

_STANDALONE_KINDS = {"open", "open_inverse", "inverse", "else_chain", "close", "comment", "open_partial_block",
                     "open_decorator_block", "decorator"}


def _apply_whitespace(items: list[_Text | _Tag]) -> None:
    last = len(items) - 1
    for idx, it in enumerate(items):
        if not isinstance(it, _Tag):
            continue
        prev = items[idx - 1] if idx > 0 else None
        nxt = items[idx + 1] if idx < last else None
        if it.kind in _STANDALONE_KINDS:
            if prev is None:
                prev_ok = True
            elif isinstance(prev, _Text):
                rx = r"(?:^|\r?\n)\s*?\Z" if idx - 1 == 0 else r"\r?\n\s*?\Z"
                prev_ok = re.search(rx, prev.original) is not None
            else:
                prev_ok = False
            if nxt is None:
                next_ok = True
            elif isinstance(nxt, _Text):
                rx = r"\A\s*?(?:\r?\n|\Z)" if idx + 1 == last else r"\A\s*?\r?\n"
                next_ok = re.match(rx, nxt.original) is not None
            else:
                next_ok = False
            if prev_ok and next_ok:
                if isinstance(prev, _Text):
                    prev.value = re.sub(r"[ \t]+\Z", "", prev.value)
                if isinstance(nxt, _Text):
                    nxt.value = re.sub(r"\A[ \t]*\r?\n?", "", nxt.value)
        if it.strip_open and isinstance(prev, _Text):
            prev.value = re.sub(r"\s+\Z", "", prev.value)
        if it.strip_close and isinstance(nxt, _Text):
            nxt.value = re.sub(r"\A\s+", "", nxt.value)


# -- AST ----------------------------------------------------------------------------------------------

@dataclass
class Path:
    parts: list[str]
    original: str
    depth: int = 0
    data: bool = False
    scoped: bool = False  # this./ ./ prefixed: never a helper


@dataclass
class Literal:
    value: Any
    original: str


@dataclass
class SubExpr:
    path: Any  # Path | Literal | SubExpr
    params: list[Any]
    hash: dict[str, Any]
    loc: dict[str, Any] | None = None  # {"start": {line, column}, "end": {...}} of the statement


@dataclass
class TextNode:
    value: str


@dataclass
class Mustache:
    expr: SubExpr


@dataclass
class Block:
    expr: SubExpr
    program: list[Any]
    inverse: list[Any] | None
    block_params: list[str]
    inverted: bool = False
    partial_block: bool = False
    decorator: bool = False


@dataclass
class Partial:
    name: str


class _ExprParser:
    def __init__(self, src: str, tag: _Tag) -> None:
        self.src = src
        self.tag = tag
        self.toks = tag.tokens
        self.close = tag.close_tok
        self.i = 0
        self.sexpr_depth = 0

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def error(self, expecting: str) -> HandlebarsError:
        t = self.peek() or self.close
        assert t is not None
        if t.type in ("CLOSE", "CLOSE_UNESCAPED", "CLOSE_RAW_BLOCK") and expecting == _EXPECT_AFTER:
            if self.sexpr_depth:
                return _parse_error(self.src, t.pos, t.text, _EXPECT_SEXPR, t.type)
            want = "CLOSE_UNESCAPED" if self.tag.kind == "unescaped" and self.tag.pos + 2 < len(self.src) and \
                self.src[self.tag.pos + 2] == "{" else "CLOSE"
            expecting = f"'{want}', " + _EXPECT_PARAM
        return _parse_error(self.src, t.pos, t.text, expecting, t.type)

    def path(self, data: bool) -> Path:
        segs: list[tuple[str, bool]] = []  # (segment, was_bracketed)
        original = "@" if data else ""
        while True:
            t = self.peek()
            if t is None or t.type != "ID":
                raise self.error("'ID'")
            bracketed = isinstance(t.value, tuple)
            seg = t.value[1] if bracketed else t.value
            segs.append((seg, bracketed))
            original += t.text
            self.i += 1
            nt = self.peek()
            if nt is not None and nt.type == "SEP":
                original += nt.text
                self.i += 1
                continue
            break
        parts: list[str] = []
        depth = 0
        scoped = False
        for seg, bracketed in segs:
            if not bracketed and seg in ("..", ".", "this"):
                if parts:
                    raise HandlebarsError(f"Invalid path: {original}")
                if seg == "..":
                    depth += 1
                scoped = True
            else:
                parts.append(seg)
        return Path(parts, original, depth, data, scoped)

    def operand(self, expecting: str) -> Any:
        t = self.peek()
        if t is None or t.type not in _OPERAND_START:
            raise self.error(expecting)
        if t.type == "OPEN_SEXPR":
            self.i += 1
            self.sexpr_depth += 1
            sub = self.sexpr_body(in_sexpr=True)
            t2 = self.peek()
            if t2 is None or t2.type != "CLOSE_SEXPR":
                raise self.error(_EXPECT_AFTER)
            self.sexpr_depth -= 1
            self.i += 1
            return sub
        if t.type in ("STRING", "NUMBER", "BOOLEAN", "NULL", "UNDEFINED"):
            self.i += 1
            return Literal(t.value, t.text)
        if t.type == "DATA":
            self.i += 1
            return self.path(True)
        return self.path(False)

    def sexpr_body(self, in_sexpr: bool = False) -> SubExpr:
        head = self.operand(_EXPECT_PARAM if in_sexpr else _EXPECT_HELPER)
        params: list[Any] = []
        hsh: dict[str, Any] = {}
        while True:
            t = self.peek()
            if t is None or t.type in ("CLOSE_SEXPR", "OPEN_BLOCK_PARAMS"):
                break
            if t.type not in _OPERAND_START:
                raise self.error(_EXPECT_AFTER)
            nt = self.peek(1)
            if t.type == "ID" and nt is not None and nt.type == "EQUALS":
                self.i += 2
                key = t.value[1] if isinstance(t.value, tuple) else t.value
                hsh[key] = self.operand(_EXPECT_PARAM)
                continue
            if hsh:  # after a hash pair only more `key=value` pairs may follow
                if t.type == "ID":
                    self.i += 1
                    raise self.error("'EQUALS'")
                raise self.error("'ID'")
            params.append(self.operand(_EXPECT_PARAM))
        return SubExpr(head, params, hsh)

    def mustache(self, allow_block_params: bool) -> tuple[SubExpr, list[str]]:
        expr = self.sexpr_body()
        sl, sc = _line_col(self.src, self.tag.pos)
        el, ec = _line_col(self.src, self.tag.end)
        expr.loc = {"start": {"line": sl, "column": sc}, "end": {"line": el, "column": ec}}
        bparams: list[str] = []
        t = self.peek()
        if t is not None and t.type == "OPEN_BLOCK_PARAMS":
            if not allow_block_params:
                raise self.error(_EXPECT_AFTER)
            self.i += 1
            while True:
                t = self.peek()
                if t is None:
                    raise self.error("'CLOSE_BLOCK_PARAMS'")
                if t.type == "CLOSE_BLOCK_PARAMS":
                    self.i += 1
                    break
                if t.type != "ID":
                    raise self.error("'ID', 'CLOSE_BLOCK_PARAMS'")
                bparams.append(t.value[1] if isinstance(t.value, tuple) else t.value)
                self.i += 1
        if self.peek() is not None:
            raise self.error(_EXPECT_AFTER)
        return expr, bparams

    def name_pos(self) -> int:
        return self.toks[0].pos if self.toks else self.tag.pos


def _expr_name(expr: SubExpr) -> str:
    p = expr.path
    return p.original if isinstance(p, (Path, Literal)) else "sexpr"


_STRAY = {"close": "OPEN_ENDBLOCK", "inverse": "INVERSE", "else_chain": "OPEN_INVERSE_CHAIN"}


class _Parser:
    def __init__(self, src: str, items: list[_Text | _Tag]) -> None:
        self.src = src
        self.items = items
        self.i = 0

    def _tag_error(self, tag: _Tag, expecting: str, got: str) -> HandlebarsError:
        return _parse_error(self.src, tag.pos, self.src[tag.pos:tag.end], expecting, got)

    def program(self, in_block: bool, part: str = "program") -> tuple[list[Any], int]:
        """Statements up to a block terminator (or EOF at the root); also how many items were consumed."""
        nodes: list[Any] = []
        consumed = 0
        while self.i < len(self.items):
            it = self.items[self.i]
            if isinstance(it, _Text):
                if it.value:
                    nodes.append(TextNode(it.value))
                self.i += 1
                consumed += 1
                continue
            if it.kind in _STRAY:
                if not in_block:
                    raise self._tag_error(it, "'EOF'" if consumed else _EXPECT_ROOT_START, _STRAY[it.kind])
                return nodes, consumed
            self.i += 1
            consumed += 1
            if it.kind == "comment":
                continue
            ep = _ExprParser(self.src, it)
            if it.kind in ("mustache", "unescaped", "decorator"):
                expr, _ = ep.mustache(False)
                if it.kind != "decorator":
                    nodes.append(Mustache(expr))
            elif it.kind == "partial":
                expr, _ = ep.mustache(False)
                nodes.append(Partial(_expr_name(expr)))
            elif it.kind == "raw":
                expr, _ = ep.mustache(False)
                nodes.append(Block(expr, [TextNode(it.raw_content)], None, []))
            else:  # open, open_inverse, open_partial_block, open_decorator_block
                nodes.append(self.block(it, ep, ep.name_pos()))
        if in_block:
            if part == "inverse":
                expecting = "'OPEN_ENDBLOCK'" if consumed else _EXPECT_BLOCK_START
            else:
                expecting = "'OPEN_INVERSE_CHAIN', 'INVERSE', 'OPEN_ENDBLOCK'" if consumed else _EXPECT_PROGRAM_START
            raise _parse_error(self.src, len(self.src), "", expecting, "EOF")
        return nodes, consumed

    def block(self, open_tag: _Tag, ep: _ExprParser, root_pos: int, root_name: str | None = None) -> Block:
        """A block from its open tag (or an ``{{else x}}`` link of a chain) to its close tag."""
        expr, bparams = ep.mustache(True)
        if root_name is None:
            root_name = _expr_name(expr)
        program, _ = self.program(True)
        inverse: list[Any] | None = None
        tag = self.items[self.i]
        assert isinstance(tag, _Tag)
        if tag.kind == "inverse":
            self.i += 1
            inverse, consumed = self.program(True, "inverse")
            close = self.items[self.i]
            assert isinstance(close, _Tag)
            if close.kind != "close":
                raise self._tag_error(close, "'OPEN_ENDBLOCK'" if consumed else _EXPECT_BLOCK_START,
                                      _STRAY[close.kind])
        elif tag.kind == "else_chain":
            self.i += 1
            chained = self.block(tag, _ExprParser(self.src, tag), root_pos, root_name)  # shares our close
            return Block(expr, program, [chained], bparams, inverted=open_tag.kind == "open_inverse")
        close = self.items[self.i]
        assert isinstance(close, _Tag) and close.kind == "close"
        self.i += 1
        cp = _ExprParser(self.src, close)
        close_head = cp.operand(_EXPECT_HELPER)
        if cp.peek() is not None:
            raise cp.error("'CLOSE'")
        close_name = _expr_name(SubExpr(close_head, [], {}))
        if root_name != close_name:
            line, col = _line_col(self.src, root_pos)
            raise HandlebarsError(f"{root_name} doesn't match {close_name} - {line}:{col}")
        if expr.loc is not None:  # a block's loc spans it up to its close tag
            el, ec = _line_col(self.src, close.end)
            expr.loc = {"start": expr.loc["start"], "end": {"line": el, "column": ec}}
        return Block(expr, program, inverse, bparams, inverted=open_tag.kind == "open_inverse",
                     partial_block=open_tag.kind == "open_partial_block",
                     decorator=open_tag.kind == "open_decorator_block")


# -- runtime ------------------------------------------------------------------------------------------

def _is_empty(v: Any) -> bool:
    """Handlebars Utils.isEmpty: falsy (except 0) or an empty array."""
    if not js_truthy(v) and v != 0:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, list) and len(v) == 0


def _same_context(a: Any, b: Any) -> bool:
    """Handlebars pushes a new depth when ``context != depths[0]`` (JS loose equality)."""
    return js_loose_equal(a, b)


def lookup_property(obj: Any, name: str) -> Any:
    if obj is None or obj is UNSET:
        return UNSET
    if isinstance(obj, dict):
        return obj.get(name, UNSET)
    if isinstance(obj, (list, str)):
        if name == "length":
            return len(obj) if isinstance(obj, list) else utf16_len(obj)
        if name.isdigit():
            k = int(name)
            return obj[k] if k < len(obj) else UNSET
    return UNSET


def _out(v: Any) -> str:
    if v is None or v is UNSET:
        return ""
    return js_string(v)


@dataclass
class Options:
    name: str
    hash: dict[str, Any]
    context: Any
    data: dict[str, Any]
    fn: Callable[..., str]
    inverse: Callable[..., str]
    is_block: bool
    scope: _Scope
    loc: dict[str, Any] | None = None

    def js_object(self) -> dict[str, Any]:
        """What the JS options object looks like as data (functions dropped), e.g. for ``{{json}}``."""
        out: dict[str, Any] = {"name": self.name, "hash": self.hash, "data": self.data}
        if self.loc is not None:
            out["loc"] = self.loc
        return out


@dataclass
class _Scope:
    depths: list[Any]  # depths[0] is `this`
    data: dict[str, Any]
    block_params: list[dict[str, Any]]


Helper = Callable[..., Any]


class Template:
    def __init__(self, src: str, program: list[Any]) -> None:
        self.src = src
        self.program = program

    def __call__(self, context: Any, helpers: dict[str, Helper] | None = None,
                 log: Callable[[str, list[Any]], None] | None = None) -> str:
        r = _Renderer(dict(BUILTIN_HELPERS, **(helpers or {})), log)
        scope = _Scope([context], {"root": context}, [])
        return r.program(self.program, scope)


class _Renderer:
    def __init__(self, helpers: dict[str, Helper], log: Callable[[str, list[Any]], None] | None) -> None:
        self.helpers = helpers
        self.log = log

    # values
    def resolve(self, p: Path, scope: _Scope) -> Any:
        if p.data:
            frame: Any = scope.data
            for _ in range(p.depth):  # @../index: the parent data frame
                frame = frame.get("_parent") if isinstance(frame, dict) else None
            if not p.parts or not isinstance(frame, dict):
                return UNSET
            v = frame.get(p.parts[0], UNSET)
            rest = p.parts[1:]
        else:
            if p.depth == 0 and not p.scoped and p.parts:
                for frame in reversed(scope.block_params):
                    if p.parts[0] in frame:
                        v = frame[p.parts[0]]
                        for part in p.parts[1:]:
                            if v is None or v is UNSET:
                                return v
                            v = lookup_property(v, part)
                        return v
            if p.depth >= len(scope.depths):
                return UNSET
            v = scope.depths[p.depth]
            rest = p.parts
        for part in rest:
            if v is None or v is UNSET:
                return v
            v = lookup_property(v, part)
        return v

    def value(self, node: Any, scope: _Scope) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Path):
            return self.resolve(node, scope)
        if isinstance(node, SubExpr):
            return self.call(node, scope, None, None, sexpr=True)
        raise HandlebarsError("unknown expression")  # pragma: no cover

    def helper_name(self, expr: SubExpr) -> str | None:
        p = expr.path
        if isinstance(p, Path) and not p.data and p.depth == 0 and not p.scoped and len(p.parts) == 1:
            return p.parts[0]
        return None

    def missing_helper(self, expr: SubExpr, scope: _Scope) -> HandlebarsError:
        """``{{name arg}}`` where name is no helper: Handlebars' helperMissing, or a TypeError when the
        context has a (non-function) value under that name."""
        name = self.helper_name(expr)
        if name is not None and lookup_property(scope.depths[0], name) not in (None, UNSET):
            return HandlebarsError("(lookupProperty(...) || (depth0 && lookupProperty(...)) || "
                                   "container.hooks.helperMissing).call is not a function", "TypeError")
        return HandlebarsError(f'Missing helper: "{name if name is not None else _expr_name(expr)}"')

    def call(self, expr: SubExpr, scope: _Scope, program: list[Any] | None, inverse: list[Any] | None,
             sexpr: bool = False, block_params: list[str] | None = None) -> Any:
        name = self.helper_name(expr)
        helper = self.helpers.get(name) if name is not None else None
        if helper is None:
            if expr.params or expr.hash:
                raise self.missing_helper(expr, scope)
            if sexpr:
                return UNSET
            raise HandlebarsError(f'Missing helper: "{name}"')  # pragma: no cover - callers check
        args = [self.value(a, scope) for a in expr.params]
        hsh = {k: self.value(v, scope) for k, v in expr.hash.items()}
        opts = Options(name or "", hsh, scope.depths[0], scope.data,
                       self._fn(program, scope, block_params), self._fn(inverse, scope, None),
                       program is not None, scope, expr.loc)
        return helper(self, *args, opts)

    def _fn(self, program: list[Any] | None, scope: _Scope, names: list[str] | None) -> Callable[..., str]:
        def run(context: Any = UNSET, data: dict[str, Any] | None = None,
                block_params: list[Any] | None = None) -> str:
            if program is None:
                return ""
            if context is UNSET:
                context = scope.depths[0]
            depths = scope.depths if _same_context(context, scope.depths[0]) else [context, *scope.depths]
            bps = scope.block_params
            if names and block_params is not None:
                bps = [*bps, {n: (block_params[k] if k < len(block_params) else UNSET)
                              for k, n in enumerate(names)}]
            return self.program(program, _Scope(depths, data if data is not None else scope.data, bps))

        return run

    # statements
    def program(self, nodes: list[Any], scope: _Scope) -> str:
        # The compiled JS template is one `a + b + c` chain of the statements' values (null/undefined →
        # ''). With noEscape the mustache values are not stringified first, so leading numbers/booleans
        # add up (`{{n}}{{m}}` with 1 and 2 gives "3") until a string enters the chain.
        out: list[str] = []
        acc: Any = None  # a non-string primitive at the head of the chain
        for node in nodes:
            if isinstance(node, TextNode):
                value: Any = node.value
            elif isinstance(node, Mustache):
                value = self.mustache(node.expr, scope)
                if value is None or value is UNSET:
                    value = ""
            elif isinstance(node, Block):
                value = self.block(node, scope)
            elif isinstance(node, Partial):
                raise HandlebarsError(f"The partial {node.name} could not be found")
            else:  # pragma: no cover
                continue
            if not out and acc is None:
                if isinstance(value, (bool, int, float)):
                    acc = value
                else:
                    out.append(_out(value))
            elif acc is not None and isinstance(value, (bool, int, float)):
                acc = js_number(acc) + js_number(value)
            else:
                if acc is not None:
                    out.append(js_string(acc))
                    acc = None
                out.append(_out(value))
        if acc is not None:
            out.append(js_string(acc))
        return "".join(out)

    def mustache(self, expr: SubExpr, scope: _Scope) -> Any:
        name = self.helper_name(expr)
        if name is not None and name in self.helpers:
            return self.call(expr, scope, None, None)
        if expr.params or expr.hash:
            raise self.missing_helper(expr, scope)
        head = expr.path
        if isinstance(head, Literal):  # {{"a b"}} / {{1}}: a property lookup by that name
            key = _out(head.value) if head.value is not UNSET else "undefined"
            if key in self.helpers:
                return self.call(SubExpr(Path([key], key), [], {}), scope, None, None)
            return lookup_property(scope.depths[0], key)
        return self.value(head, scope)

    def block(self, b: Block, scope: _Scope) -> str:
        if b.decorator:
            return ""
        if b.partial_block:  # the partial does not exist: its block is the failover content
            return self._fn(b.program, scope, None)()
        program, inverse = (b.inverse, b.program) if b.inverted else (b.program, b.inverse)
        name = self.helper_name(b.expr)
        if name is not None and name in self.helpers:
            return _out(self.call(b.expr, scope, program if program is not None else [], inverse,
                                  block_params=b.block_params))
        if b.expr.params or b.expr.hash:
            raise self.missing_helper(b.expr, scope)
        value = self.value(b.expr.path, scope)
        fn = self._fn(program, scope, b.block_params)
        inv = self._fn(inverse, scope, None)
        # blockHelperMissing
        if value is True:
            return fn(scope.depths[0])
        if value is False or value is None or value is UNSET:
            return inv(scope.depths[0])
        if isinstance(value, list):
            if not value:
                return inv(scope.depths[0])
            return _each_list(value, fn, scope.data)
        return fn(value)


def _frame(data: dict[str, Any]) -> dict[str, Any]:
    f = {k: v for k, v in data.items() if k != "_parent"}
    f["_parent"] = data
    return f


def _each_list(items: list[Any], fn: Callable[..., str], data: dict[str, Any]) -> str:
    out = []
    n = len(items)
    for i, item in enumerate(items):
        f = _frame(data)
        f.update(key=i, index=i, first=i == 0, last=i == n - 1)
        out.append(fn(item, data=f, block_params=[item, i]))
    return "".join(out)


# -- helpers ------------------------------------------------------------------------------------------

def _h_if(r: _Renderer, *args: Any) -> str:
    opts: Options = args[-1]
    if len(args) != 2:
        raise HandlebarsError("#if requires exactly one argument")
    cond = args[0]
    if (not opts.hash.get("includeZero") and not js_truthy(cond)) or _is_empty(cond):
        return opts.inverse(opts.context)
    return opts.fn(opts.context)


def _h_unless(r: _Renderer, *args: Any) -> str:
    opts: Options = args[-1]
    if len(args) != 2:
        raise HandlebarsError("#unless requires exactly one argument")
    cond = args[0]
    if (not opts.hash.get("includeZero") and not js_truthy(cond)) or _is_empty(cond):
        return opts.fn(opts.context)
    return opts.inverse(opts.context)


def _h_with(r: _Renderer, *args: Any) -> str:
    opts: Options = args[-1]
    if len(args) != 2:
        raise HandlebarsError("#with requires exactly one argument")
    ctx = args[0]
    if _is_empty(ctx):
        return opts.inverse(opts.context)
    return opts.fn(ctx, block_params=[ctx])


def _h_each(r: _Renderer, *args: Any) -> str:
    opts: Options = args[-1]
    if len(args) < 2:
        raise HandlebarsError("Must pass iterator to #each")
    ctx = args[0]
    out: list[str] = []
    if isinstance(ctx, list):
        out.append(_each_list(ctx, opts.fn, opts.data)) if ctx else None
        count = len(ctx)
    elif isinstance(ctx, dict):
        keys = list(ctx.keys())
        n = len(keys)
        for i, k in enumerate(keys):
            f = _frame(opts.data)
            f.update(key=k, index=i, first=i == 0, last=i == n - 1)
            out.append(opts.fn(ctx[k], data=f, block_params=[ctx[k], k]))
        count = n
    else:
        count = 0
    if count == 0:
        return opts.inverse(opts.context)
    return "".join(out)


def _h_lookup(r: _Renderer, *args: Any) -> Any:
    if len(args) < 3:
        return UNSET
    obj, fld = args[0], args[1]
    if not js_truthy(obj):
        return obj
    return lookup_property(obj, fld if isinstance(fld, str) else js_string(fld))


_LEVELS = ["debug", "info", "warn", "error"]


def _h_log(r: _Renderer, *args: Any) -> str:
    opts: Options = args[-1]
    level: Any = opts.hash.get("level", opts.data.get("level", 1))
    if isinstance(level, str):
        level = _LEVELS.index(level.lower()) if level.lower() in _LEVELS else (
            int(level) if level.isdigit() else 1)
    if not isinstance(level, int) or isinstance(level, bool):
        level = 1
    name = _LEVELS[min(max(level, 0), 3)]
    if r.log is not None:
        r.log(name, list(args[:-1]))
    return ""


def _first_arg(args: tuple[Any, ...]) -> Any:
    """A one-argument JS helper called without arguments receives the options object."""
    return args[0] if len(args) >= 2 else args[-1].js_object()


def _h_json(r: _Renderer, *args: Any) -> Any:
    s = js_json_stringify(_first_arg(args), 2)
    return UNSET if s is None else s


def _h_yaml(r: _Renderer, *args: Any) -> Any:
    if len(args) < 2:  # YAML.stringify(options) meets its function members
        raise HandlebarsError("Tag not resolved for Function value")
    v = args[0]
    return UNSET if v is UNSET else yaml_stringify(v)


def _h_upper(r: _Renderer, *args: Any) -> str:
    v = _first_arg(args)
    return js_string(v).upper() if js_truthy(v) else ""


def _h_lower(r: _Renderer, *args: Any) -> str:
    v = _first_arg(args)
    return js_string(v).lower() if js_truthy(v) else ""


BUILTIN_HELPERS: dict[str, Helper] = {
    "if": _h_if, "unless": _h_unless, "with": _h_with, "each": _h_each, "lookup": _h_lookup, "log": _h_log,
    # ChainGraph's extra helpers
    "json": _h_json, "yaml": _h_yaml, "yml": _h_yaml, "uppercase": _h_upper, "lowercase": _h_lower,
}


# -- API ----------------------------------------------------------------------------------------------

def compile_template(src: str) -> Template:
    items = _scan(src)
    _apply_whitespace(items)
    return Template(src, _Parser(src, items).program(False)[0])


def render(src: str, context: Any, helpers: dict[str, Helper] | None = None,
           log: Callable[[str, list[Any]], None] | None = None) -> str:
    return compile_template(src)(context, helpers, log)
