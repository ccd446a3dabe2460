"""Faithful re-implementations of the JavaScript behaviour that ChainGraph nodes rely on.

ChainGraph nodes are TypeScript; their observable results depend on JS coercions (``Number(x)``,
``String(x)``, ``Number.isFinite``), on ``JSON.stringify``, on decimal.js formatting and on JS regular
expressions. Everything here is written from the ECMAScript / decimal.js behaviour descriptions (catalog
§5), not from any JS source.

Conventions: JS ``undefined`` is :data:`chaingraph_gw.nodes.sdk.UNSET` (a port with no value); JS ``null``
is ``None``; JSON objects are dicts, arrays are lists; numbers are ``int``/``float`` (``bool`` is never a
number here).
"""

from __future__ import annotations

import json
import math
import re
import secrets
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from .sdk import UNSET

__all__ = [
    "DEC_CTX",
    "JS_WHITESPACE",
    "DecimalArgumentError",
    "JSONParseError",
    "JSRegExp",
    "JSRegExpError",
    "dec_is_integer",
    "decimal_to_exponential",
    "decimal_to_fixed",
    "decimal_to_js_string",
    "expand_js_replacement",
    "is_js_number",
    "is_undefined",
    "js_compare_strings",
    "js_is_finite",
    "js_json_parse",
    "js_json_stringify",
    "js_loose_equal",
    "js_number",
    "js_number_to_string",
    "js_string",
    "js_trim",
    "js_truthy",
    "js_typeof",
    "num_out",
    "to_decimal",
    "translate_js_regex",
    "utf16_len",
]

# -- basic predicates -------------------------------------------------------------------------------

# ECMAScript WhiteSpace + LineTerminator (what String.prototype.trim and Number() strip).
JS_WHITESPACE = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                 "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
_LINE_TERMINATORS = "\n\r\u2028\u2029"


def is_undefined(x: Any) -> bool:
    return x is UNSET


def is_js_number(x: Any) -> bool:
    """``typeof x === 'number'`` (bools are not numbers)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def js_typeof(x: Any) -> str:
    if x is UNSET:
        return "undefined"
    if x is None:
        return "object"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, str):
        return "string"
    if callable(x):
        return "function"
    return "object"


def js_truthy(x: Any) -> bool:
    """JS ToBoolean: false, 0, -0, NaN, '', null and undefined are falsy; [] and {} are truthy."""
    if x is UNSET or x is None:
        return False
    if isinstance(x, bool):
        return x
    if isinstance(x, (int, float)):
        return not (x == 0 or (isinstance(x, float) and math.isnan(x)))
    if isinstance(x, str):
        return x != ""
    return True


def _to_primitive(x: Any) -> Any:
    """ToPrimitive for our values: lists and dicts become their String() form."""
    return js_string(x) if isinstance(x, (list, tuple, dict)) else x


def js_loose_equal(a: Any, b: Any) -> bool:
    """JS ``a == b`` (Abstract Equality) on plain values; dicts and lists are equal only to themselves
    (or, against a primitive, through their string form: ``[3] == 3``)."""
    if a is b:
        return True
    a_null, b_null = a is None or a is UNSET, b is None or b is UNSET
    if a_null or b_null:
        return a_null and b_null
    a_obj, b_obj = isinstance(a, (list, tuple, dict)), isinstance(b, (list, tuple, dict))
    if a_obj and b_obj:
        return False
    if a_obj:
        a = _to_primitive(a)
    if b_obj:
        b = _to_primitive(b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    return js_number(a) == js_number(b)  # number/string/bool mixes compare as numbers (NaN never equal)


def js_trim(s: str) -> str:
    return s.strip(JS_WHITESPACE)


def js_is_finite(x: Any) -> bool:
    """``Number.isFinite(x)``: no coercion; only real finite numbers pass (bools do not)."""
    if not is_js_number(x):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond the float range is Infinity as a JS number
        return False


def utf16_len(s: str) -> int:
    """``s.length`` in JS: UTF-16 code units (astral characters count 2)."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def js_compare_strings(a: str, b: str) -> int:
    """JS relational comparison of two strings: code-unit (UTF-16) order. Returns -1/0/1."""
    ka, kb = a.encode("utf-16-be", "surrogatepass"), b.encode("utf-16-be", "surrogatepass")
    return (ka > kb) - (ka < kb)


def num_out(x: float) -> float | int:
    """A number for an output port: integral finite values within the safe range become ``int`` (what a
    JS number like ``3`` looks like after a JSON round trip); everything else stays a float."""
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    if math.isfinite(x) and x == int(x) and abs(x) <= 2**53:
        return int(x)
    return x


# -- Number() -----------------------------------------------------------------------------------------

_DEC_LITERAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)\Z")
_RADIX_LITERAL = re.compile(r"0(?:[xX](?P<hex>[0-9a-fA-F]+)|[oO](?P<oct>[0-7]+)|[bB](?P<bin>[01]+))\Z")


def _string_to_number(s: str) -> float:
    t = js_trim(s)
    if t == "":
        return 0.0
    m = _RADIX_LITERAL.match(t)
    if m:
        if m.group("hex"):
            return float(int(m.group("hex"), 16))
        if m.group("oct"):
            return float(int(m.group("oct"), 8))
        return float(int(m.group("bin"), 2))
    if t in ("Infinity", "+Infinity"):
        return math.inf
    if t == "-Infinity":
        return -math.inf
    if _DEC_LITERAL.match(t):
        try:
            return float(t)
        except (OverflowError, ValueError):  # pragma: no cover - float() saturates to inf instead
            return math.nan
    return math.nan


def js_number(x: Any) -> float:
    """``Number(x)``: null→0, undefined→NaN, bool→1/0, ''/whitespace→0, numeric strings (also hex, octal,
    binary, ``Infinity``; not ``1_000`` or ``inf``)→number, []→0, [x]→Number(String(x)), other lists and
    dicts→NaN."""
    if x is UNSET:
        return math.nan
    if x is None:
        return 0.0
    if isinstance(x, bool):
        return 1.0 if x else 0.0
    if isinstance(x, int):
        try:
            return float(x)
        except OverflowError:
            return math.inf if x > 0 else -math.inf
    if isinstance(x, float):
        return x
    if isinstance(x, str):
        return _string_to_number(x)
    if isinstance(x, (list, tuple)):
        return _string_to_number(js_string(x))
    return math.nan  # dicts ("[object Object]") and everything else


# -- String() -----------------------------------------------------------------------------------------

def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of a positive finite float as (digits, n) with value = 0.d1d2… × 10^n."""
    _sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).lstrip("0") or "0"
    # repr() may carry trailing zeros (e.g. '100.0'); strip them, adjusting the exponent.
    stripped = ds.rstrip("0") or "0"
    exp = int(exp) + (len(ds) - len(stripped))
    return stripped, exp + len(stripped)


def js_number_to_string(f: float) -> str:
    """ECMAScript Number::toString(10): shortest round-trip digits, exponent form below 1e-6 / from 1e21."""
    if isinstance(f, bool):
        return "true" if f else "false"
    if isinstance(f, int):
        if abs(f) < 10**21:
            return str(f)
        try:
            f = float(f)
        except OverflowError:
            return "Infinity" if f > 0 else "-Infinity"
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    if f == 0:
        return "0"  # also -0
    if f < 0:
        return "-" + js_number_to_string(-f)
    digits, n = _shortest_digits(f)
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    exp = ("+" if e >= 0 else "-") + str(abs(e))
    if k == 1:
        return digits + "e" + exp
    return digits[0] + "." + digits[1:] + "e" + exp


def js_string(x: Any) -> str:
    """``String(x)``."""
    if x is UNSET:
        return "undefined"
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return js_number_to_string(x)
    if isinstance(x, str):
        return x
    if isinstance(x, (list, tuple)):
        return ",".join("" if (el is None or el is UNSET) else js_string(el) for el in x)
    if isinstance(x, dict):
        return "[object Object]"
    return str(x)


# -- JSON.stringify ---------------------------------------------------------------------------------

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\u{o:04x}"))
        elif 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")  # well-formed JSON.stringify escapes lone surrogates
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_value(value: Any, indent: str, cur: str, seen: set[int]) -> str | None:
    """Serialize one value; None means 'undefined' (dropped from objects, null in arrays)."""
    if value is UNSET or callable(value):
        return None
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "null"
        return js_number_to_string(value)
    if isinstance(value, str):
        return _json_quote(value)
    if isinstance(value, (list, tuple, dict)):
        if id(value) in seen:
            raise TypeError("Converting circular structure to JSON")
        seen.add(id(value))
        try:
            inner = cur + indent
            if isinstance(value, dict):
                parts = []
                for k, v in value.items():
                    sv = _json_value(v, indent, inner, seen)
                    if sv is None:
                        continue
                    key = _json_quote(k if isinstance(k, str) else js_string(k))
                    parts.append(key + (": " if indent else ":") + sv)
                open_, close = "{", "}"
            else:
                parts = [_json_value(v, indent, inner, seen) or "null" for v in value]
                open_, close = "[", "]"
            if not parts:
                return open_ + close
            if indent:
                return open_ + "\n" + inner + (",\n" + inner).join(parts) + "\n" + cur + close
            return open_ + ",".join(parts) + close
        finally:
            seen.discard(id(value))
    return _json_quote(str(value))


def _json_prepare(value: Any, specials: list[float], nonce: str, seen: set[int]) -> Any:
    """A json.dumps-ready copy: floats that JS prints differently become marker strings (indexes into
    ``specials``), NaN/±Infinity null, integral floats ints; UNSET dropped from dicts / null in lists."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == int(value) and abs(value) < 1e21:
            return int(value)
        if abs(value) < 1e-4 or abs(value) >= 1e21:
            specials.append(value)
            return f"\x00{nonce}:{len(specials) - 1}\x00"
        return value
    if isinstance(value, (str, int)) or value is None:
        return value
    if isinstance(value, (list, tuple, dict)):
        if id(value) in seen:
            raise TypeError("Converting circular structure to JSON")
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                return {(k if isinstance(k, str) else js_string(k)): _json_prepare(v, specials, nonce, seen)
                        for k, v in value.items() if v is not UNSET and not callable(v)}
            return [None if (v is UNSET or callable(v)) else _json_prepare(v, specials, nonce, seen)
                    for v in value]
        finally:
            seen.discard(id(value))
    if value is UNSET or callable(value):
        return None
    return str(value)


def js_json_stringify(value: Any, indent: int | str | None = None) -> str | None:
    """``JSON.stringify(value, null, indent)``. Returns None where JS returns undefined (top-level
    undefined). Non-ASCII stays raw, NaN/±Infinity become null, compact output has no spaces, integral
    floats print without ``.0``; a circular structure raises TypeError."""
    if isinstance(indent, int) and not isinstance(indent, bool):
        ind = " " * max(0, min(10, indent))
    elif isinstance(indent, str):
        ind = indent[:10]
    else:
        ind = ""
    if value is UNSET or callable(value):
        return None
    if not isinstance(value, (list, tuple, dict)):
        return _json_value(value, ind, "", set())
    # Containers: the C encoder on a prepared copy (fast for large payloads), JS number forms patched in.
    specials: list[float] = []
    nonce = secrets.token_hex(6)
    prepared = _json_prepare(value, specials, nonce, set())
    out = json.dumps(prepared, ensure_ascii=False, indent=ind or None,
                     separators=(",", ": ") if ind else (",", ":"), allow_nan=False)
    if specials:
        out = re.sub(r'"\\u0000' + nonce + r':(\d+)\\u0000"',
                     lambda m: js_number_to_string(specials[int(m.group(1))]), out)
    if _LONE_SURROGATE.search(out):
        out = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", out)
    return out


# -- JSON.parse --------------------------------------------------------------------------------------

class JSONParseError(ValueError):
    """A ``SyntaxError`` from ``JSON.parse`` (V8-style message)."""


_JSON_WS = " \t\n\r"
_JSON_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class _JSONParser:
    """A strict JSON parser whose errors carry V8's JSON.parse messages."""

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)
        self.i = 0

    # errors
    def _context(self, pos: int) -> str:
        s, n, k = self.s, self.n, 10
        if n < 2 * k + 1:
            return f'"{s}" is not valid JSON'
        if pos < k:
            return f'"{s[:pos + k]}"... is not valid JSON'
        if pos >= n - k:
            return f'..."{s[pos - k:]}" is not valid JSON'
        return f'..."{s[pos - k:pos + k]}"... is not valid JSON'

    def unexpected(self, pos: int | None = None) -> JSONParseError:
        pos = self.i if pos is None else pos
        if pos >= self.n:
            return JSONParseError("Unexpected end of JSON input")
        return JSONParseError(f"Unexpected token '{self.s[pos]}', {self._context(pos)}")

    def at(self, msg: str, pos: int | None = None) -> JSONParseError:
        return JSONParseError(f"{msg} in JSON at position {self.i if pos is None else pos}")

    # scanning
    def ws(self) -> None:
        while self.i < self.n and self.s[self.i] in _JSON_WS:
            self.i += 1

    def parse(self) -> Any:
        self.ws()
        v = self.value()
        self.ws()
        if self.i < self.n:
            raise JSONParseError(f"Unexpected non-whitespace character after JSON at position {self.i}")
        return v

    def value(self) -> Any:
        if self.i >= self.n:
            raise self.unexpected()
        c = self.s[self.i]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c == '"':
            return self.string()
        if c == "-" or (c.isdigit() and c.isascii()):
            return self.number()
        for lit, val in (("true", True), ("false", False), ("null", None)):
            if c == lit[0]:
                for k, ch in enumerate(lit):
                    if self.i + k >= self.n:
                        raise self.unexpected(self.n)
                    if self.s[self.i + k] != ch:
                        raise self.unexpected(self.i + k)
                self.i += len(lit)
                return val
        raise self.unexpected()

    def obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.i += 1
        self.ws()
        if self.i < self.n and self.s[self.i] == "}":
            self.i += 1
            return out
        first = True
        while True:
            if self.i >= self.n or self.s[self.i] != '"':
                raise self.at("Expected property name or '}'" if first else "Expected double-quoted property name")
            key = self.string()
            self.ws()
            if self.i >= self.n or self.s[self.i] != ":":
                raise self.at("Expected ':' after property name")
            self.i += 1
            self.ws()
            out[key] = self.value()
            self.ws()
            if self.i < self.n and self.s[self.i] == ",":
                self.i += 1
                self.ws()
                first = False
                continue
            if self.i < self.n and self.s[self.i] == "}":
                self.i += 1
                return out
            raise self.at("Expected ',' or '}' after property value")

    def arr(self) -> list[Any]:
        out: list[Any] = []
        self.i += 1
        self.ws()
        if self.i < self.n and self.s[self.i] == "]":
            self.i += 1
            return out
        while True:
            out.append(self.value())
            self.ws()
            if self.i < self.n and self.s[self.i] == ",":
                self.i += 1
                self.ws()
                continue
            if self.i < self.n and self.s[self.i] == "]":
                self.i += 1
                return out
            raise self.at("Expected ',' or ']' after array element")

    def string(self) -> str:
        s, n = self.s, self.n
        self.i += 1
        buf: list[str] = []
        while True:
            if self.i >= n:
                raise self.at("Unterminated string", n)
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(buf)
            if c == "\\":
                if self.i + 1 >= n:
                    raise self.unexpected(n)
                e = s[self.i + 1]
                if e in _JSON_ESCAPES:
                    buf.append(_JSON_ESCAPES[e])
                    self.i += 2
                elif e == "u":
                    hx = s[self.i + 2:self.i + 6]
                    if len(hx) < 4 or not all(h in "0123456789abcdefABCDEF" for h in hx):
                        bad = next((k for k, h in enumerate(hx) if h not in "0123456789abcdefABCDEF"), len(hx))
                        if self.i + 2 + bad >= n:
                            raise self.unexpected(n)
                        raise self.at("Bad Unicode escape", self.i + 2 + bad)
                    buf.append(chr(int(hx, 16)))
                    self.i += 6
                else:
                    raise self.at("Bad escaped character", self.i + 1)
                continue
            if ord(c) < 0x20:
                raise self.at("Bad control character in string literal")
            buf.append(c)
            self.i += 1

    def number(self) -> int | float:
        s, start = self.s, self.i
        i = start
        if s[i] == "-":
            i += 1
            if i >= self.n or not (s[i].isascii() and s[i].isdigit()):
                raise self.at("No number after minus sign", i)
        if s[i] == "0":
            i += 1
            if i < self.n and s[i].isascii() and s[i].isdigit():
                raise self.at("Unexpected number", i)
        else:
            while i < self.n and s[i].isascii() and s[i].isdigit():
                i += 1
        is_int = True
        if i < self.n and s[i] == ".":
            is_int = False
            i += 1
            if i >= self.n or not (s[i].isascii() and s[i].isdigit()):
                raise self.at("Unterminated fractional number", i)
            while i < self.n and s[i].isascii() and s[i].isdigit():
                i += 1
        if i < self.n and s[i] in "eE":
            is_int = False
            i += 1
            if i < self.n and s[i] in "+-":
                i += 1
            if i >= self.n or not (s[i].isascii() and s[i].isdigit()):
                raise self.at("Exponent part is missing a number", i)
            while i < self.n and s[i].isascii() and s[i].isdigit():
                i += 1
        self.i = i
        text = s[start:i]
        if is_int:
            v = int(text)
            if abs(v) >= 2**1024:  # beyond the double range: JS gives ±Infinity
                return math.inf if v > 0 else -math.inf
            return v
        return float(text)


def js_json_parse(text: Any) -> Any:
    """``JSON.parse(text)``: strict JSON; raises JSONParseError with V8's messages ("Unexpected end of JSON
    input", "Unexpected token 'x', "…" is not valid JSON", "Expected ',' or ']' after array element in JSON
    at position 3", …). Integer literals become ``int``, other numbers ``float``."""
    s = text if isinstance(text, str) else js_string(text)
    try:  # fast path: the C parser, with the JS-only restriction (no NaN/Infinity literals)
        return json.loads(s, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        pass
    try:  # slow path: the same grammar, for V8's error message
        return _JSONParser(s).parse()
    except RecursionError:
        raise JSONParseError("Maximum call stack size exceeded") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


# -- decimal.js ---------------------------------------------------------------------------------------

# decimal.js defaults: 20 significant digits, ROUND_HALF_UP, exponent range ±9e15, no exceptions.
DEC_CTX = Context(prec=20, rounding=ROUND_HALF_UP, Emax=9 * 10**15, Emin=-9 * 10**15, traps=[])
_WIDE_CTX = Context(prec=10**6, rounding=ROUND_HALF_UP, Emax=9 * 10**15, Emin=-9 * 10**15, traps=[])


class DecimalArgumentError(ValueError):
    """decimal.js '[DecimalError] Invalid argument: …'."""

    def __init__(self, arg: Any) -> None:
        super().__init__(f"[DecimalError] Invalid argument: {js_string(arg)}")


_DEC_STRING = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_DEC_RADIX = re.compile(r"[+-]?0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)\Z")


def to_decimal(x: Any) -> Decimal:
    """``new Decimal(x)``: numbers via their shortest repr (so 1.005 stays 1.005), numeric strings
    (decimal, hex/octal/binary, Infinity, NaN); anything else raises DecimalArgumentError."""
    if isinstance(x, bool) or x is None or x is UNSET:
        raise DecimalArgumentError(x)
    if isinstance(x, int):
        return Decimal(x)
    if isinstance(x, float):
        if math.isnan(x):
            return Decimal("NaN")
        if math.isinf(x):
            return Decimal("Infinity") if x > 0 else Decimal("-Infinity")
        return Decimal(repr(x))
    if isinstance(x, Decimal):
        return x
    if isinstance(x, str):
        t = js_trim(x)
        if _DEC_STRING.match(t):
            return Decimal(t)
        if t in ("Infinity", "+Infinity", "-Infinity", "NaN"):
            return Decimal(t)
        if _DEC_RADIX.match(t):
            neg = t.startswith("-")
            body = t.lstrip("+-")
            return Decimal(-int(body, 0) if neg else int(body, 0))
    raise DecimalArgumentError(x)


def dec_is_integer(d: Decimal) -> bool:
    return d.is_finite() and d == d.to_integral_value()


def _dec_digits(d: Decimal) -> tuple[str, int]:
    """Significant digits without trailing zeros and the decimal.js exponent (position of the first digit)."""
    _, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)).lstrip("0")
    if not ds:
        return "0", 0
    stripped = ds.rstrip("0")
    exp = int(exp) + (len(ds) - len(stripped))
    return stripped, exp + len(stripped) - 1


def _dec_special(d: Decimal) -> str | None:
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "-Infinity" if d.is_signed() else "Infinity"
    return None


def decimal_to_js_string(d: Decimal) -> str:
    """decimal.js ``toString()``: exponent notation when the exponent is ≤ -7 or ≥ 21; -0 prints as 0."""
    special = _dec_special(d)
    if special:
        return special
    if d.is_zero():
        return "0"
    digits, e = _dec_digits(d)
    if e <= -7 or e >= 21:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        s = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    elif e < 0:
        s = "0." + "0" * (-e - 1) + digits
    elif len(digits) <= e + 1:
        s = digits + "0" * (e + 1 - len(digits))
    else:
        s = digits[: e + 1] + "." + digits[e + 1:]
    return "-" + s if d.is_signed() else s


MAX_DECIMAL_PLACES = 100_000  # decimal.js allows 1e9; a bound so one node cannot build a gigabyte string


def _check_dp(dp: Any) -> int:
    if not is_js_number(dp) or not math.isfinite(dp) or dp != int(dp) or dp < 0 or dp > MAX_DECIMAL_PLACES:
        raise DecimalArgumentError(dp)
    return int(dp)


def decimal_to_fixed(d: Decimal, dp: Any) -> str:
    """decimal.js ``toFixed(dp)``: ROUND_HALF_UP, never exponent notation; a negative non-zero value keeps
    its sign even when it rounds to zero (``-0.001`` → ``-0.00``)."""
    n = _check_dp(dp)
    special = _dec_special(d)
    if special:
        return special
    q = abs(d).quantize(Decimal(1).scaleb(-n), rounding=ROUND_HALF_UP, context=_WIDE_CTX)
    s = format(q, "f")
    return "-" + s if (d.is_signed() and not d.is_zero()) else s


def decimal_to_exponential(d: Decimal, dp: Any = None) -> str:
    """decimal.js ``toExponential([dp])``: ``1.2345e+4``; with dp the mantissa is rounded half-up and
    padded to dp decimals (``1.00e+0``)."""
    if dp is not None:
        n = _check_dp(dp)
    special = _dec_special(d)
    if special:
        return special
    neg = d.is_signed() and not d.is_zero()
    if d.is_zero():
        digits, e = "0", 0
    else:
        digits, e = _dec_digits(abs(d))
    if dp is not None:
        if d.is_zero():
            digits = "0" * (n + 1)
        else:
            # Round |d| to n+1 significant digits, half up.
            q = Decimal(int(digits)).scaleb(-(len(digits) - 1))  # mantissa in [1, 10)
            q = q.quantize(Decimal(1).scaleb(-n), rounding=ROUND_HALF_UP, context=_WIDE_CTX)
            if q >= 10:
                q = (q / 10).quantize(Decimal(1).scaleb(-n), rounding=ROUND_HALF_UP, context=_WIDE_CTX)
                e += 1
            digits = format(q, "f").replace(".", "")
        digits = digits[: n + 1].ljust(n + 1, "0")
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    s = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    return "-" + s if neg else s


# -- regular expressions ------------------------------------------------------------------------------

class JSRegExpError(ValueError):
    """A pattern JS would reject (message in V8's 'Invalid regular expression: /p/f: reason' form)."""


_JS_WS_CLASS = "".join("\\" + c if c in "\\]^-[" else c for c in JS_WHITESPACE)
_WORD = "A-Za-z0-9_"
_WB = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_NWB = f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"
_QUANT = re.compile(r"\{\d+(?:,\d*)?\}")

_PY_ERROR_TEXT = (
    ("missing ), unterminated subpattern", "Unterminated group"),
    ("unbalanced parenthesis", "Unmatched ')'"),
    ("nothing to repeat", "Nothing to repeat"),
    ("multiple repeat", "Nothing to repeat"),
    ("unterminated character set", "Unterminated character class"),
    ("bad character range", "Range out of order in character class"),
    ("min repeat greater than max repeat", "numbers out of order in {} quantifier"),
    ("unknown group name", "Invalid named capture referenced"),
    ("redefinition of group name", "Duplicate capture group name"),
    ("bad character in group name", "Invalid capture group name"),
    ("missing group name", "Invalid capture group name"),
)


def _count_groups(src: str) -> tuple[int, list[str]]:
    n, names, i, in_class = 0, [], 0, False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if src.startswith("[^]", i) or src.startswith("[]", i):
                in_class = False
                i += 3 if src.startswith("[^]", i) else 2
                continue
            if src.startswith("[^", i):
                i += 1
        elif c == "(":
            if not src.startswith("(?", i):
                n += 1
            elif src.startswith("(?<", i) and src[i + 3:i + 4] not in ("=", "!"):
                n += 1
                end = src.find(">", i)
                if end > 0:
                    names.append(src[i + 3:end])
        i += 1
    return n, names


def translate_js_regex(src: str, flags: str = "") -> tuple[str, int]:
    """Translate a JS regex source (+ flags) to a Python ``re`` pattern and flags.

    Handles: ``(?<name>`` → ``(?P<name>``, ``\\k<name>``, JS ``\\d \\w \\s \\b`` (ASCII digits/word chars, JS
    whitespace set), ``.`` (no line terminators unless ``s``), ``^``/``$`` (input bounds, or line bounds
    with ``m``), ``[^]``/``[]``, ``\\cX``, ``\\u{…}``, lone ``{`` as a literal, identity escapes. ``g`` is
    handled by the caller; ``i`` → IGNORECASE; ``u`` mostly a no-op."""
    for f in flags:
        if f not in "dgimsuy" or flags.count(f) > 1:
            raise JSRegExpError(f"Invalid flags supplied to RegExp constructor '{flags}'")
    dotall, multiline, unicode_ = "s" in flags, "m" in flags, "u" in flags
    ngroups, _ = _count_groups(src)
    out: list[str] = []
    i, n, in_class = 0, len(src), False
    while i < n:
        c = src[i]
        if c == "\\":
            if i + 1 >= n:
                raise JSRegExpError("\\ at end of pattern")
            d = src[i + 1]
            i += 2
            if d == "d":
                out.append("0-9" if in_class else "[0-9]")
            elif d == "w":
                out.append(_WORD if in_class else f"[{_WORD}]")
            elif d == "s":
                out.append(_JS_WS_CLASS if in_class else f"[{_JS_WS_CLASS}]")
            elif d in "DWS":
                if in_class:
                    out.append("\\" + d)
                else:
                    out.append({"D": "[^0-9]", "W": f"[^{_WORD}]", "S": f"[^{_JS_WS_CLASS}]"}[d])
            elif d == "b":
                out.append("\\x08" if in_class else _WB)
            elif d == "B":
                out.append("B" if in_class else _NWB)
            elif d in "tnrvf":
                out.append("\\" + d)
            elif d == "0" and not (i < n and src[i].isdigit()):
                out.append("\\x00")
            elif d.isdigit():
                j = i
                while j < n and src[j].isdigit():
                    j += 1
                num = src[i - 1:j]
                if not in_class and 0 < int(num) <= ngroups:
                    out.append(f"(?:\\{int(num)})")
                    i = j
                elif unicode_:
                    raise JSRegExpError("Invalid escape")
                else:  # legacy octal escape / identity escape
                    oct_digits = re.match(r"[0-7]{1,3}", num)
                    if oct_digits and int(oct_digits.group(0), 8) <= 0o377:
                        out.append(f"\\x{int(oct_digits.group(0), 8):02x}")
                        i = i - 1 + len(oct_digits.group(0))
                    else:
                        out.append(re.escape(d))
            elif d == "k" and src.startswith("<", i):
                end = src.find(">", i)
                if end < 0:
                    raise JSRegExpError("Invalid named reference")
                out.append(f"(?P={src[i + 1:end]})")
                i = end + 1
            elif d == "c":
                if i < n and src[i].isascii() and src[i].isalpha():
                    out.append(f"\\x{ord(src[i]) % 32:02x}")
                    i += 1
                else:
                    out.append("\\\\c")
            elif d == "x":
                if re.match(r"[0-9a-fA-F]{2}", src[i:i + 2]):
                    out.append("\\x" + src[i:i + 2])
                    i += 2
                else:
                    out.append("x")
            elif d == "u":
                m = re.match(r"\{([0-9a-fA-F]+)\}", src[i:]) if unicode_ else None
                if m:
                    cp = int(m.group(1), 16)
                    if cp > 0x10FFFF:
                        raise JSRegExpError("Invalid Unicode escape")
                    out.append(f"\\U{cp:08x}")
                    i += m.end()
                elif re.match(r"[0-9a-fA-F]{4}", src[i:i + 4]):
                    out.append("\\u" + src[i:i + 4])
                    i += 4
                else:
                    out.append("u")
            elif d in "pP" and unicode_:
                raise JSRegExpError("Invalid property name")
            elif d.isascii() and d.isalnum():
                if unicode_:
                    raise JSRegExpError("Invalid escape")
                out.append(d)  # identity escape (\a is 'a', \A is 'A', …)
            elif d == "-" and in_class:
                out.append("\\-")
            else:
                out.append(re.escape(d))
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append("]")
            elif c in "[&~|":
                out.append("\\" + c)
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            if src.startswith("[^]", i):
                out.append("[\\s\\S]")
                i += 3
                continue
            if src.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            if src.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            continue
        if c == "(":
            if src.startswith("(?", i):
                rest = src[i + 2:i + 4]
                if rest[:1] in (":", "=", "!"):
                    out.append("(?" + rest[:1])
                    i += 3
                elif rest in ("<=", "<!"):
                    out.append("(?" + rest)
                    i += 4
                elif rest[:1] == "<":
                    end = src.find(">", i)
                    name = src[i + 3:end] if end > 0 else ""
                    if not name or not name.isidentifier():
                        raise JSRegExpError("Invalid capture group name")
                    out.append(f"(?P<{name}>")
                    i = end + 1
                else:
                    raise JSRegExpError("Invalid group")
            else:
                out.append("(")
                i += 1
            continue
        if c == ".":
            out.append("[\\s\\S]" if dotall else f"[^{_LINE_TERMINATORS}]")
        elif c == "$":
            out.append(f"(?=[{_LINE_TERMINATORS}]|\\Z)" if multiline else "\\Z")
        elif c == "^":
            out.append(f"(?:\\A|(?<=[{_LINE_TERMINATORS}]))" if multiline else "\\A")
        elif c == "{":
            m = _QUANT.match(src, i)
            if m:
                out.append(m.group(0))
                i = m.end()
                if i < n and src[i] == "?":
                    out.append("?")
                    i += 1
                elif i < n and src[i] == "+":  # Python would read a possessive quantifier
                    raise JSRegExpError("Nothing to repeat")
                continue
            if unicode_:
                raise JSRegExpError("Lone quantifier brackets")
            out.append("\\{")
        elif c == "}":
            if unicode_:
                raise JSRegExpError("Lone quantifier brackets")
            out.append("\\}")
        elif c in "*+?" and i + 1 < n and src[i + 1] == "+":
            raise JSRegExpError("Nothing to repeat")  # JS has no possessive quantifiers
        else:
            out.append(c)
        i += 1
    if in_class:
        raise JSRegExpError("Unterminated character class")
    return "".join(out), (re.IGNORECASE if "i" in flags else 0)


def _py_error_text(err: re.error) -> str:
    msg = str(err.msg if hasattr(err, "msg") else err)
    for py, js in _PY_ERROR_TEXT:
        if msg.startswith(py):
            return js
    return msg[:1].upper() + msg[1:]


def expand_js_replacement(template: str, m: re.Match[str], source: str, ngroups: int,
                          has_named: bool) -> str:
    """ECMAScript GetSubstitution: ``$$``, ``$&``, ``$``` ``, ``$'``, ``$n``/``$nn``, ``$<name>``."""
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        d = template[i + 1]
        if d == "$":
            out.append("$")
            i += 2
        elif d == "&":
            out.append(m.group(0))
            i += 2
        elif d == "`":
            out.append(source[:m.start()])
            i += 2
        elif d == "'":
            out.append(source[m.end():])
            i += 2
        elif d.isdigit():
            two = template[i + 1:i + 3]
            if len(two) == 2 and two.isdigit() and 1 <= int(two) <= ngroups:
                out.append(m.group(int(two)) or "")
                i += 3
            elif 1 <= int(d) <= ngroups:
                out.append(m.group(int(d)) or "")
                i += 2
            else:
                out.append("$")
                i += 1
        elif d == "<" and has_named:
            end = template.find(">", i + 2)
            if end < 0:
                out.append("$<")
                i += 2
            else:
                name = template[i + 2:end]
                try:
                    out.append(m.group(name) or "")
                except IndexError:  # no such group name
                    out.append("")
                i = end + 1
        else:
            out.append("$")
            i += 1
    return "".join(out)


class JSRegExp:
    """A JS ``RegExp`` (source + flags) with the String methods the nodes use."""

    def __init__(self, source: str, flags: str = "") -> None:
        self.source = source
        self.flags = flags
        self.global_ = "g" in flags
        try:
            py, pyflags = translate_js_regex(source, flags)
            self._rx = re.compile(py, pyflags)
        except JSRegExpError as exc:
            raise JSRegExpError(f"Invalid regular expression: /{source}/{flags}: {exc}") from None
        except re.error as exc:
            raise JSRegExpError(
                f"Invalid regular expression: /{source}/{flags}: {_py_error_text(exc)}") from None
        except (OverflowError, RecursionError):
            raise JSRegExpError(f"Invalid regular expression: /{source}/{flags}: Regular expression too large"
                                ) from None
        self.group_count = self._rx.groups
        self.has_named = bool(self._rx.groupindex)

    def iter_all(self, s: str):
        """Every match as a global ``exec`` loop finds them; an empty match advances by one character (so
        patterns that can match '' terminate)."""
        pos, n = 0, len(s)
        while pos <= n:
            m = self._rx.search(s, pos)
            if m is None:
                return
            yield m
            pos = m.end() + 1 if m.end() == m.start() else m.end()

    def exec(self, s: str) -> re.Match[str] | None:
        return self._rx.search(s)

    def test(self, s: str) -> bool:
        return self._rx.search(s) is not None

    def match(self, s: str) -> list[str | None] | None:
        """``String.prototype.match``: all whole matches with g, else [whole, group1, …] (None = undefined)."""
        if self.global_:
            found = [m.group(0) for m in self.iter_all(s)]
            return found or None
        m = self._rx.search(s)
        if m is None:
            return None
        return [m.group(0), *m.groups()]

    def replace(self, s: str, replacement: str) -> str:
        """``String.prototype.replace`` with a string replacement (first match only without g)."""
        matches = list(self.iter_all(s)) if self.global_ else [m for m in [self._rx.search(s)] if m]
        if not matches:
            return s
        out, last = [], 0
        for m in matches:
            out.append(s[last:m.start()])
            out.append(expand_js_replacement(replacement, m, s, self.group_count, self.has_named))
            last = m.end()
        out.append(s[last:])
        return "".join(out)
