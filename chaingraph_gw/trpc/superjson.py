"""SuperJSON codec compatible with the npm package ``superjson`` 2.2.x (protocol doc §5).

A SuperJSON payload is ``{"json": <plain JSON>, "meta": {"values": <annotation tree>,
"referentialEqualities": <...>, "v": 1}}``; ``meta`` is omitted when nothing needs annotating.
:meth:`SuperJSON.serialize` turns a Python value into that payload (the dict that then goes
through ``orjson.dumps``) and :meth:`SuperJSON.deserialize` turns a parsed payload back into
Python values.  Both legacy payloads (no ``meta.v``, superjson <= 2.2.2) and ``v: 1`` payloads
are decoded; the encoder always writes ``v: 1``.

Python <-> JavaScript mapping
-----------------------------
=============================  =========================  ==================================
Python (encode)                annotation                 decodes to
=============================  =========================  ==================================
None / bool / str / dict       (none)                     same
int within +-(2**53-1)         (none)                     int
int outside that range,        ``bigint``                 :class:`BigInt` (an ``int``)
:class:`BigInt`
float NaN / +-inf / -0.0       ``number``                 float
list / tuple                   (none)                     list
set / frozenset / JSSet        ``set``                    :class:`JSSet`
:class:`JSMap`                 ``map``                    :class:`JSMap`
datetime.datetime (naive=UTC)  ``Date``                   aware UTC datetime (ms precision)
:class:`JSDate`                ``Date``                   JSDate (years Python can't hold)
:data:`UNDEFINED`              ``undefined``              UNDEFINED
:class:`JSRegExp`              ``regexp``                 JSRegExp
:class:`JSError`, exceptions   ``Error``                  JSError
:class:`JSURL`                 ``URL``                    JSURL
:class:`JSTypedArray`          ``["typed-array", kind]``  JSTypedArray
registered class               ``["class", id]``          instance (props are walked)
registered custom              ``["custom", name]``       custom value (not walked)
registered symbol              ``["symbol", id]``         the registered object
pydantic model                 (its model_dump)           dict
=============================  =========================  ==================================

Notes on behaviour
------------------
* The encoder never copies plain data: a subtree without special values is returned as the
  very same object, and a container is copied (shallowly) only when one of its children
  changed.  The ``json`` part of a payload may therefore share objects with the input.
* ``referentialEqualities`` is never written for ordinary (acyclic) values, even if an object
  is referenced twice: tRPC's non-dedupe mode writes duplicates in full anyway (doc §5.3).  A
  value that contains a *cycle* cannot be written any other way, so for those (detected when
  the fast walk overflows the stack) the encoder switches to superjson's own identity-tracking
  walk: back-references become ``null`` and ``referentialEqualities`` restores them, exactly as
  superjson 2.2.7 does.
* The decoder converts the ``json`` tree **in place** (like ``superjson.parse``); pass
  ``copy=True`` to :meth:`SuperJSON.deserialize` to leave the payload untouched.  Without
  ``meta`` the ``json`` value is returned as is.
* Custom transformers are offered every value except the JSON scalars ``None``/``bool``/
  ``int``/``float``/``str`` (superjson offers those too; skipping them keeps the hot path fast).
* Annotation records are ordered like a JavaScript object orders its keys (array-index keys
  first, ascending, then insertion order), so encoded payloads are byte-identical to
  superjson's for the same value.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Self

__all__ = [
    "JSURL",
    "UNDEFINED",
    "BigInt",
    "JSDate",
    "JSError",
    "JSMap",
    "JSRegExp",
    "JSSet",
    "JSTypedArray",
    "SuperJSON",
    "SuperJSONError",
    "default",
    "deserialize",
    "serialize",
]

MAX_SAFE_INTEGER = 2**53 - 1
_UTC = UTC


# ---------------------------------------------------------------------------------------------
# Value types
# ---------------------------------------------------------------------------------------------


class _UndefinedType:
    """The type of :data:`UNDEFINED` (JavaScript ``undefined``).  There is only one instance."""

    __slots__ = ()
    _instance: _UndefinedType | None = None

    def __new__(cls) -> Self:
        inst = cls._instance
        if inst is None:
            inst = cls._instance = super().__new__(cls)
        return inst

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "undefined"

    def __reduce__(self) -> str:
        # Pickled as a reference to the module global, so unpickling gives the singleton.
        return "UNDEFINED"

    def __copy__(self) -> _UndefinedType:
        return self

    def __deepcopy__(self, memo: dict) -> _UndefinedType:
        return self


UNDEFINED = _UndefinedType()


class SuperJSONError(ValueError):
    """A malformed SuperJSON payload or meta; the message says what is wrong and where."""


class BigInt(int):
    """A JavaScript ``bigint``.  Behaves as an ``int``; always encoded with the ``bigint`` annotation."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"BigInt({int.__repr__(self)})"

    __str__ = int.__repr__


def _key_of(x: Any) -> Any:
    """A hashable key with JS SameValueZero-like semantics, or None if ``x`` is unhashable."""
    try:
        hash(x)
    except TypeError:
        return None
    if type(x) is bool:
        return (1, x)  # True/False must not collide with 1/0
    if x != x:
        return (2,)
    return (0, x)


def _strict_eq(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if (type(a) is bool) is not (type(b) is bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - exotic __eq__
        return False


def _multiset_equal(a: list, b: list) -> bool:
    """Order-insensitive equality of two element lists (elements may be unhashable)."""
    if len(a) != len(b):
        return False
    if all(map(_strict_eq, a, b)):
        return True
    counts: dict = {}
    rest_a = []
    for x in a:
        k = _key_of(x)
        if k is None:
            rest_a.append(x)
        else:
            counts[k] = counts.get(k, 0) + 1
    rest_b = []
    for y in b:
        k = _key_of(y)
        if k is None:
            rest_b.append(y)
            continue
        c = counts.get(k)
        if not c:
            return False
        counts[k] = c - 1
    if len(rest_a) != len(rest_b):
        return False
    pool = list(rest_b)
    for x in rest_a:
        for i, y in enumerate(pool):
            if _strict_eq(x, y):
                del pool[i]
                break
        else:
            return False
    return True


class JSMap:
    """A JavaScript ``Map``: an ordered list of ``(key, value)`` pairs.

    Keys may be any value, including unhashable ones (dicts, lists); lookups use equality.
    Iterating yields the pairs.  Equality ignores order (like two Maps with the same entries).
    Maps decoded from a payload keep every wire entry as is (a JS Map can hold two distinct
    objects that look equal); the constructor collapses equal keys, the last value winning.
    """

    __slots__ = ("pairs",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, pairs: Iterable[tuple[Any, Any]] | dict | None = None) -> None:
        self.pairs: list[tuple[Any, Any]] = []
        if pairs is None:
            return
        if isinstance(pairs, dict):
            self.pairs = list(pairs.items())
            return
        out = self.pairs
        index: dict = {}
        for k, v in pairs:
            hk = _key_of(k)
            pos = index.get(hk, -1) if hk is not None else self._find(k)
            if pos < 0:
                if hk is not None:
                    index[hk] = len(out)
                out.append((k, v))
            else:
                out[pos] = (out[pos][0], v)

    @classmethod
    def from_dict(cls, d: dict) -> JSMap:
        m = cls.__new__(cls)
        m.pairs = list(d.items())
        return m

    @classmethod
    def _trusted(cls, pairs: list) -> JSMap:
        m = cls.__new__(cls)
        m.pairs = pairs
        return m

    def _find(self, key: Any) -> int:
        for i, (k, _) in enumerate(self.pairs):
            if _strict_eq(k, key):
                return i
        return -1

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return iter(self.pairs)

    def __contains__(self, key: Any) -> bool:
        return self._find(key) >= 0

    def __getitem__(self, key: Any) -> Any:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        return self.pairs[i][1]

    def __setitem__(self, key: Any, value: Any) -> None:
        i = self._find(key)
        if i < 0:
            self.pairs.append((key, value))
        else:
            self.pairs[i] = (self.pairs[i][0], value)

    def __delitem__(self, key: Any) -> None:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        del self.pairs[i]

    def get(self, key: Any, default: Any = None) -> Any:
        i = self._find(key)
        return default if i < 0 else self.pairs[i][1]

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.pairs)

    def keys(self) -> list[Any]:
        return [k for k, _ in self.pairs]

    def values(self) -> list[Any]:
        return [v for _, v in self.pairs]

    def to_dict(self) -> dict:
        """A plain dict (raises TypeError if a key is unhashable)."""
        return dict(self.pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JSMap):
            return NotImplemented
        a, b = self.pairs, other.pairs
        if len(a) != len(b):
            return False
        if all(_strict_eq(k, k2) and v == v2 for (k, v), (k2, v2) in zip(a, b)):
            return True
        pool = list(b)
        for k, v in a:
            for i, (k2, v2) in enumerate(pool):
                if _strict_eq(k, k2) and v == v2:
                    del pool[i]
                    break
            else:
                return False
        return True

    def __repr__(self) -> str:
        return f"JSMap({self.pairs!r})"


class JSSet:
    """A JavaScript ``Set``: an ordered list of distinct elements (which may be unhashable).

    Equality ignores order and also holds against a Python ``set``/``frozenset`` with the same
    elements.  Sets decoded from a payload keep every wire element as is.
    """

    __slots__ = ("items",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, items: Iterable[Any] = ()) -> None:
        out: list = []
        index: set = set()
        unhashable: list = []
        for x in items:
            k = _key_of(x)
            if k is not None:
                if k in index:
                    continue
                index.add(k)
            else:
                if any(_strict_eq(x, y) for y in unhashable):
                    continue
                unhashable.append(x)
            out.append(x)
        self.items: list = out

    @classmethod
    def _trusted(cls, items: list) -> JSSet:
        s = cls.__new__(cls)
        s.items = items
        return s

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __contains__(self, x: Any) -> bool:
        return any(_strict_eq(x, y) for y in self.items)

    def add(self, x: Any) -> None:
        if x not in self:
            self.items.append(x)

    def discard(self, x: Any) -> None:
        for i, y in enumerate(self.items):
            if _strict_eq(x, y):
                del self.items[i]
                return

    def to_set(self) -> set:
        """A Python set (raises TypeError if an element is unhashable)."""
        return set(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JSSet):
            return _multiset_equal(self.items, other.items)
        if isinstance(other, (set, frozenset)):
            return _multiset_equal(self.items, list(other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"JSSet({self.items!r})"


@dataclasses.dataclass(frozen=True)
class JSRegExp:
    """A JavaScript ``RegExp`` (``source`` as JS writes it, e.g. ``a\\/b`` for ``/a\\/b/``)."""

    source: str
    flags: str = ""

    def __str__(self) -> str:
        return f"/{self.source}/{self.flags}"


@dataclasses.dataclass
class JSError:
    """A JavaScript ``Error``: ``{name, message, cause?, ...extra props}`` on the wire.

    ``cause`` is UNDEFINED when absent.  ``extra`` holds any other props (superjson's
    ``allowErrorProps``).  ``has_cause`` records a ``cause`` prop that is present but
    ``undefined`` (it is not part of equality).  Python exceptions are encoded as
    ``{"name": type(exc).__name__, "message": str(exc)}``.
    """

    name: str
    message: str
    cause: Any = UNDEFINED
    extra: dict = dataclasses.field(default_factory=dict)
    has_cause: bool = dataclasses.field(default=False, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> JSError:
        return cls(type(exc).__name__, str(exc))


class JSURL(str):
    """A JavaScript ``URL`` (a ``str`` holding its href)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"JSURL({str.__repr__(self)})"


_TYPED_ARRAY_KINDS = frozenset(
    {
        "Int8Array",
        "Uint8Array",
        "Uint8ClampedArray",
        "Int16Array",
        "Uint16Array",
        "Int32Array",
        "Uint32Array",
        "Float32Array",
        "Float64Array",
        "BigInt64Array",
        "BigUint64Array",
    }
)
_BIGINT_ARRAY_KINDS = frozenset({"BigInt64Array", "BigUint64Array"})


@dataclasses.dataclass
class JSTypedArray:
    """A JavaScript typed array, e.g. ``JSTypedArray("Uint8Array", [1, 2, 3])``."""

    kind: str
    values: list


# --- dates -----------------------------------------------------------------------------------

_MAX_TIME_MS = 8_640_000_000_000_000  # JS Date range: +-1e8 days around the epoch


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _epoch_ms_to_iso(ms: int) -> str:
    """``Date.prototype.toISOString`` for a time value in milliseconds."""
    days, rem = divmod(ms, 86_400_000)
    y, mo, d = _civil_from_days(days)
    hh, rem = divmod(rem, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    ss, mss = divmod(rem, 1000)
    ys = f"{y:04d}" if 0 <= y <= 9999 else f"{'-' if y < 0 else '+'}{abs(y):06d}"
    return f"{ys}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}.{mss:03d}Z"


_ISO_RE = re.compile(
    r"(?:([+-])(\d{6})|(\d{4}))-(\d{2})-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def _iso_to_epoch_ms(s: str) -> int:
    """Parse an ISO date string (including the extended ``+YYYYYY`` form); ValueError if invalid."""
    m = _ISO_RE.fullmatch(s) if type(s) is str else None
    if m is None:
        raise ValueError(f"not an ISO date string: {s!r}")
    sign, y6, y4, mo, d, hh, mi, ss, frac, off = m.groups()
    if y6 is not None:
        if sign == "-" and y6 == "000000":
            raise ValueError(f"year -000000 is not allowed: {s!r}")
        year = int(y6) * (-1 if sign == "-" else 1)
    else:
        year = int(y4)
    month, day = int(mo), int(d)
    hour = int(hh) if hh else 0
    minute = int(mi) if mi else 0
    second = int(ss) if ss else 0
    millis = int((frac + "00")[:3]) if frac else 0
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range: {s!r}")
    dim = 29 if month == 2 and _is_leap(year) else _MONTH_DAYS[month - 1]
    if not 1 <= day <= dim:
        raise ValueError(f"day out of range: {s!r}")
    if hour == 24:
        if minute or second or millis:
            raise ValueError(f"hour out of range: {s!r}")
    elif hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time out of range: {s!r}")
    ms = ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis
    if off and off != "Z":
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"offset out of range: {s!r}")
        delta = (oh * 60 + om) * 60_000
        ms = ms - delta if off[0] == "+" else ms + delta
    if abs(ms) > _MAX_TIME_MS:
        raise ValueError(f"date outside the JavaScript Date range: {s!r}")
    return ms


_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


class JSDate:
    """A JavaScript ``Date`` that :class:`datetime.datetime` cannot hold (year outside 1..9999).

    Keeps the ISO string it was decoded from (or built with) and re-encodes it unchanged.
    Two JSDates are equal when they denote the same instant.
    """

    __slots__ = ("_ms", "iso")

    def __init__(self, iso: str) -> None:
        self._ms = _iso_to_epoch_ms(iso)  # validates
        self.iso = iso

    @classmethod
    def from_epoch_ms(cls, ms: int) -> JSDate:
        return cls(_epoch_ms_to_iso(int(ms)))

    @property
    def epoch_ms(self) -> int:
        return self._ms

    def to_datetime(self) -> datetime:
        """An aware UTC datetime; OverflowError if the year is outside 1..9999."""
        return _EPOCH + timedelta(milliseconds=self._ms)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JSDate):
            return self._ms == other._ms
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("JSDate", self._ms))

    def __repr__(self) -> str:
        return f"JSDate({self.iso!r})"

    def __str__(self) -> str:
        return self.iso

    def __reduce__(self) -> tuple:
        return (JSDate, (self.iso,))


# Zero-padded field tables: formatting by lookup is ~2x faster than format specs.
_P2 = tuple(f"{i:02d}" for i in range(100))
_P3 = tuple(f"{i:03d}" for i in range(1000))
_P4 = tuple(f"{i:04d}" for i in range(10000))


def _format_datetime(v: datetime) -> str:
    """JS ``toISOString`` of a datetime (naive = UTC), truncated to milliseconds."""
    tz = v.tzinfo
    if tz is not None and tz is not _UTC:
        off = v.utcoffset()
        if off:
            try:
                v = v - off
            except OverflowError:
                naive_ms = (
                    _days_from_civil(v.year, v.month, v.day) * 86_400_000
                    + ((v.hour * 60 + v.minute) * 60 + v.second) * 1000
                    + v.microsecond // 1000
                )
                return _epoch_ms_to_iso(naive_ms - off // timedelta(milliseconds=1))
    p2 = _P2
    return (
        f"{_P4[v.year]}-{p2[v.month]}-{p2[v.day]}T{p2[v.hour]}:{p2[v.minute]}:{p2[v.second]}"
        f".{_P3[v.microsecond // 1000]}Z"
    )


def _escape_key(key: str) -> str:
    if "\\" not in key and "." not in key:
        return key
    return key.replace("\\", "\\\\").replace(".", "\\.")


def _is_array_index(k: str) -> bool:
    """Whether a JS object would order ``k`` as an integer index (before other keys)."""
    n = len(k)
    if n == 0 or n > 10 or not (k.isascii() and k.isdigit()):
        return False
    if k[0] == "0":
        return n == 1
    return n < 10 or int(k) < 4294967295


def _index_first(ann: dict) -> dict:
    """Reorder an annotation record like a JS object: integer-index keys first, ascending."""
    idx = sorted((int(k), k) for k in ann if _is_array_index(k))
    out = {k: ann[k] for _, k in idx}
    for k, t in ann.items():
        if k not in out:
            out[k] = t
    return out


def _stringify_path(path: Iterable[Any]) -> str:
    return ".".join(_escape_key(str(p)) for p in path)


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------


class _EncodeFailure(TypeError):
    """Internal: an unencodable value; ``segments`` is the path, innermost first."""

    def __init__(self, message: str, *, at_parent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.segments: list = []
        # True when raised for a dict *key*: the first segment appended is the key itself,
        # which is not part of the path of the offending container.
        self.skip_one = at_parent

    def add(self, seg: Any) -> None:
        if self.skip_one:
            self.skip_one = False
        else:
            self.segments.append(seg)

    def to_type_error(self) -> TypeError:
        segs = self.segments[::-1]
        where = f'path "{_stringify_path(segs)}"' if segs else "the root"
        return TypeError(f"superjson: {self.message} (at {where})")


def _type_name(v: Any) -> str:
    t = type(v)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


# Values whose identity is meaningless (immutable); the cycle walk does not track them.
_IMMUTABLE_LEAF_TYPES = frozenset(
    {str, int, float, bool, type(None), BigInt, JSURL, datetime, JSDate, JSRegExp}
)
_IMMUTABLE_LEAF_CLASSES = (str, int, float, date, time, JSDate, JSRegExp, _UndefinedType)
_HOT_TYPES = frozenset({str, int, float, bool, type(None), dict, list, tuple, datetime})


class _Tracker:
    """State of the identity-tracking walk used for values with cycles (superjson semantics)."""

    __slots__ = ("ancestors", "identities", "path", "seen")

    def __init__(self) -> None:
        self.path: list = []
        self.identities: dict = {}  # id -> (object, [path tuples]) in first-visit order
        self.seen: dict = {}  # id -> finished (json, annotations)
        self.ancestors: set = set()

    def referential_equalities(self) -> Any:
        result: dict = {}
        root_paths = None
        for _obj, paths in self.identities.values():
            if len(paths) <= 1:
                continue
            paths = sorted(paths, key=len)  # stable, like superjson
            rep = paths[0]
            rest = [_stringify_path(p) for p in paths[1:]]
            if not rep:
                root_paths = rest
            else:
                result[_stringify_path(rep)] = rest
        if root_paths is not None:
            return [root_paths, result] if result else [root_paths]
        return result or None


def _build_encoder(
    customs: tuple,
    classes: dict,
    symbols: dict,
    tracker: _Tracker | None = None,
) -> Callable[..., tuple[Any, Any]]:
    """Build the recursive walker ``enc(value) -> (json, annotations | None)``.

    ``annotations`` is a list (``[Type]`` / ``[Type, {...}]``) for a special node, a dict of
    flattened relative paths for a plain container with special descendants, or None.
    """
    has_customs = bool(customs)
    MAX = MAX_SAFE_INTEGER
    MIN = -MAX
    str_, int_, float_, bool_, dict_, list_, tuple_ = str, int, float, bool, dict, list, tuple
    datetime_ = datetime
    copysign = math.copysign
    fmt_date = _format_datetime
    esc = _escape_key
    is_index = _is_array_index
    Failure = _EncodeFailure
    undefined = UNDEFINED

    def enc(v: Any, seg: Any = None) -> tuple[Any, Any]:
        t = type(v)
        if t is str_ or v is None or t is bool_:
            return v, None
        if t is int_:
            if MIN <= v <= MAX:
                return v, None
            return int.__repr__(v), ["bigint"]
        if t is float_:
            if v - v == 0.0:
                if v != 0.0 or copysign(1.0, v) > 0.0:
                    return v, None
                return "-0", ["number"]
            if v != v:
                return "NaN", ["number"]
            return ("Infinity" if v > 0.0 else "-Infinity"), ["number"]
        if has_customs:
            for name, applies, ser in customs:
                if applies(v):
                    return ser(v), [["custom", name]]
        if t is dict_:
            return enc_dict(v)
        if t is list_:
            return enc_list(v, False)
        if t is datetime_:
            return fmt_date(v), ["Date"]
        if t is tuple_:
            return enc_list(v, True)
        return enc_other(v, t)

    def enc_dict(d: dict) -> tuple[Any, Any]:
        out = None
        ann = None
        reorder = False
        rekey = False
        k = None
        try:
            for k, v in d.items():
                if type(k) is not str_:
                    if isinstance(k, str_):
                        rekey = True
                    else:
                        raise Failure(
                            f"dict key {k!r} of type {_type_name(k)} is not a str "
                            "(JSON object keys must be strings)",
                            at_parent=True,
                        )
                t = type(v)
                if t is str_ or t is bool_ or v is None:
                    continue
                if t is int_:
                    if MIN <= v <= MAX:
                        continue
                elif t is float_ and v - v == 0.0 and (v != 0.0 or copysign(1.0, v) > 0.0):
                    continue
                j, a = rec(v, k)
                if j is not v or a is not None:
                    if out is None:
                        out = dict(d)
                    out[k] = j
                if a is not None:
                    if ann is None:
                        ann = {}
                    ek = esc(k)
                    if type(a) is list_:
                        ann[ek] = a
                        if "0" <= ek[:1] <= "9" and is_index(ek):
                            reorder = True
                    else:
                        for sk, st in a.items():
                            ann[ek + "." + sk] = st
        except Failure as e:
            e.add(k)
            raise
        if reorder:
            ann = _index_first(ann)
        if rekey:
            out = {(str.__str__(kk) if type(kk) is not str_ else kk): vv for kk, vv in (out or d).items()}
        return (d if out is None else out), ann

    def enc_list(seq: Any, force_copy: bool) -> tuple[Any, Any]:
        out = list(seq) if force_copy else None
        ann = None
        rest = None
        i = 0
        try:
            for i, v in enumerate(seq):
                t = type(v)
                if t is str_ or t is bool_ or v is None:
                    continue
                if t is int_:
                    if MIN <= v <= MAX:
                        continue
                elif t is float_ and v - v == 0.0 and (v != 0.0 or copysign(1.0, v) > 0.0):
                    continue
                j, a = rec(v, i)
                if j is not v or a is not None:
                    if out is None:
                        out = list(seq)
                    out[i] = j
                if a is not None:
                    if type(a) is list_:
                        if ann is None:
                            ann = {}
                        ann[str(i)] = a
                    else:
                        if rest is None:
                            rest = {}
                        si = str(i) + "."
                        for sk, st in a.items():
                            rest[si + sk] = st
        except Failure as e:
            e.add(i)
            raise
        if rest is not None:
            if ann is None:
                ann = rest
            else:
                ann.update(rest)
        return (seq if out is None else out), ann

    def enc_elements(items: Iterable[Any]) -> tuple[list, Any]:
        # Elements of a Set: always a new list; annotation keys are indices.
        out = []
        ann = None
        rest = None
        i = 0
        try:
            for i, v in enumerate(items):
                j, a = rec(v, i)
                out.append(j)
                if a is not None:
                    if type(a) is list_:
                        if ann is None:
                            ann = {}
                        ann[str(i)] = a
                    else:
                        if rest is None:
                            rest = {}
                        si = str(i) + "."
                        for sk, st in a.items():
                            rest[si + sk] = st
        except Failure as e:
            e.add(i)
            raise
        if rest is not None:
            if ann is None:
                ann = rest
            else:
                ann.update(rest)
        return out, ann

    def enc_map(m: JSMap) -> tuple[Any, Any]:
        out = []
        ann = None
        i = 0
        side = 0
        try:
            for i, (key, val) in enumerate(m.pairs):
                side = 0
                jk, ak = rec(key, (i, 0))
                side = 1
                jv, av = rec(val, (i, 1))
                out.append([jk, jv])
                if ak is not None or av is not None:
                    if ann is None:
                        ann = {}
                    # Like a JS object: the pair's index keys ("0"/"1") before flattened ones.
                    if type(ak) is list_:
                        ann[f"{i}.0"] = ak
                    if type(av) is list_:
                        ann[f"{i}.1"] = av
                    if type(ak) is dict_:
                        p = f"{i}.0."
                        for sk, st in ak.items():
                            ann[p + sk] = st
                    if type(av) is dict_:
                        p = f"{i}.1."
                        for sk, st in av.items():
                            ann[p + sk] = st
        except Failure as e:
            e.add(side)
            e.add(i)
            raise
        return out, (["map"] if ann is None else ["map", ann])

    def enc_props(tag: Any, props: dict) -> tuple[Any, Any]:
        j, a = enc_dict(props)
        return j, ([tag] if a is None else [tag, a])

    def enc_jserror(e: JSError) -> tuple[Any, Any]:
        d = {"name": e.name, "message": e.message}
        if e.cause is not undefined or e.has_cause:
            d["cause"] = e.cause
        if e.extra:
            for k, v in e.extra.items():
                if k not in d:
                    d[k] = v
        return enc_props("Error", d)

    def enc_typed(ta: JSTypedArray) -> tuple[Any, Any]:
        kind = ta.kind
        if kind not in _TYPED_ARRAY_KINDS:
            raise Failure(f"unknown typed array kind {kind!r}")
        out = []
        big = kind in _BIGINT_ARRAY_KINDS
        for x in ta.values:
            tx = type(x)
            if big:
                if not isinstance(x, int) or tx is bool:
                    raise Failure(f"{kind} element {x!r} is not an int")
                out.append(int.__repr__(x))
            elif tx is float or isinstance(x, float):
                x = float(x)
                if x != x:
                    out.append("NaN")
                elif x == math.inf:
                    out.append("Infinity")
                elif x == -math.inf:
                    out.append("-Infinity")
                elif x == 0.0 and copysign(1.0, x) < 0.0:
                    out.append("-0")
                else:
                    out.append(x)
            elif isinstance(x, int) and tx is not bool:
                out.append(int(x))
            else:
                raise Failure(f"{kind} element {x!r} is not a number")
        return out, [["typed-array", kind]]

    def enc_other(v: Any, t: type) -> tuple[Any, Any]:
        entry = classes.get(t)
        if entry is not None:
            ident, to_props = entry
            props = to_props(v)
            if not isinstance(props, dict):
                raise Failure(f"to_props of class {ident!r} returned {_type_name(props)}, expected a dict")
            return enc_props(["class", ident], props)
        if v is undefined:
            return None, ["undefined"]
        if t is BigInt:
            return int.__repr__(v), ["bigint"]
        if t is JSURL:
            return str.__str__(v), ["URL"]
        if t is JSMap:
            return enc_map(v)
        if t is JSSet:
            j, a = enc_elements(v.items)
            return j, (["set"] if a is None else ["set", a])
        if t is set or t is frozenset:
            j, a = enc_elements(v)
            return j, (["set"] if a is None else ["set", a])
        if t is JSDate:
            return v.iso, ["Date"]
        if t is JSRegExp:
            return "/" + v.source + "/" + v.flags, ["regexp"]
        if t is JSError:
            return enc_jserror(v)
        if t is JSTypedArray:
            return enc_typed(v)
        if symbols:
            sym = symbols.get(id(v))
            if sym is not None and sym[2] is v:
                return sym[1], [["symbol", sym[0]]]
        # Subclasses and other accepted types.
        if isinstance(v, BaseException):
            return enc_props("Error", {"name": t.__name__, "message": str(v)})
        if isinstance(v, datetime_):
            return fmt_date(v), ["Date"]
        if isinstance(v, (date, time)):
            raise Failure(
                f"cannot serialize {_type_name(v)}: only datetime.datetime maps to a JS Date "
                "(convert dates/times to a datetime or a str first)"
            )
        if isinstance(v, int):
            if isinstance(v, BigInt):
                return int.__repr__(v), ["bigint"]
            return enc(int.__index__(v))
        if isinstance(v, float):
            return enc(float.__float__(v))
        if isinstance(v, str_):
            if isinstance(v, JSURL):
                return str.__str__(v), ["URL"]
            return str.__str__(v), None
        if isinstance(v, dict_):
            j, a = enc_dict(v)
            return (dict(j) if j is v else j), a
        if isinstance(v, (list_, tuple_)):
            return enc_list(v, True)
        if isinstance(v, JSMap):
            return enc_map(v)
        if isinstance(v, (JSSet, set, frozenset)):
            j, a = enc_elements(v.items if isinstance(v, JSSet) else v)
            return j, (["set"] if a is None else ["set", a])
        if isinstance(v, JSError):
            return enc_jserror(v)
        if hasattr(v, "model_dump") and not isinstance(v, type):
            d = v.model_dump(mode="python", by_alias=True)
            if isinstance(d, dict):
                return enc_dict(d)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            raise Failure(
                f"cannot serialize dataclass {_type_name(v)}: register it with "
                "SuperJSON.register_class() or register_custom()"
            )
        raise Failure(
            f"cannot serialize value of type {_type_name(v)}: unsupported type "
            "(register it with SuperJSON.register_class() or register_custom())"
        )

    if tracker is None:
        rec = enc
        return enc

    # Identity-tracking walk (only used for values containing cycles).
    path = tracker.path
    identities = tracker.identities
    seen = tracker.seen
    ancestors = tracker.ancestors
    leaf_types = _IMMUTABLE_LEAF_TYPES
    leaf_classes = _IMMUTABLE_LEAF_CLASSES

    def enc_tracked(v: Any, seg: Any = None) -> tuple[Any, Any]:
        if type(v) in leaf_types or v is None or isinstance(v, leaf_classes):
            return enc(v)
        pushed = 0
        if seg is not None:
            if type(seg) is tuple_:
                path.extend(seg)
                pushed = len(seg)
            else:
                path.append(seg)
                pushed = 1
        try:
            key = id(v)
            entry = identities.get(key)
            if entry is None:
                identities[key] = (v, [tuple(path)])  # keeps v alive: ids stay unique
            else:
                entry[1].append(tuple(path))
            r = seen.get(key)
            if r is not None:
                return r
            if key in ancestors:
                return None, None  # back-reference of a cycle
            ancestors.add(key)
            try:
                r = enc(v)
            finally:
                ancestors.discard(key)
            seen[key] = r
            return r
        finally:
            if pushed:
                del path[-pushed:]

    rec = enc_tracked
    return enc_tracked


# ---------------------------------------------------------------------------------------------
# Decoder helpers
# ---------------------------------------------------------------------------------------------


class _OpaquePath(SuperJSONError):
    """A path that descends into a value the decoder cannot walk (e.g. a custom object)."""


def _loc(section: str, where: str | None) -> str:
    return f"meta.{section} (root)" if where is None else f'meta.{section} path "{_clip(where)}"'


def _clip(s: str, limit: int = 120) -> str:
    """Payload text in an error message, cut short (messages go back to clients)."""
    return s if len(s) <= limit else s[:limit] + "..."


def _short(v: Any, limit: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def _jstype(v: Any) -> str:
    if v is None:
        return "null"
    t = type(v)
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return _type_name(v)


def _parse_path(s: str, legacy: bool, section: str, where: str | None) -> list[str]:
    if "\\" not in s:
        return s.split(".")
    segs: list[str] = []
    buf: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            nxt = s[i + 1] if i + 1 < n else ""
            if nxt == ".":
                buf.append(".")
                i += 2
                continue
            if not legacy:
                if nxt == "\\":
                    buf.append("\\")
                    i += 2
                    continue
                shown = "end of path" if not nxt else f'"\\{nxt}"'
                raise SuperJSONError(
                    f"{_loc(section, where)}: invalid escape {shown} in path {_short(s)} "
                    '(meta.v >= 1 allows only "\\." and "\\\\")'
                )
            buf.append("\\")
            i += 1
            continue
        if c == ".":
            segs.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    segs.append("".join(buf))
    return segs


def _index(seg: str, size: int, container: str, section: str, where: str | None) -> int:
    if seg.isascii() and seg.isdigit() and len(seg) <= 15:
        i = int(seg)
        if i < size:
            return i
        raise SuperJSONError(
            f"{_loc(section, where)}: index {seg} out of range for {container} of length {size}"
        )
    raise SuperJSONError(f"{_loc(section, where)}: segment {_short(seg)} is not an index into {container}")


def _locate(base: Any, segs: list[str], section: str, where: str | None) -> tuple[Any, Any]:
    """Find the parent of the value at ``segs`` (relative to ``base``) and the slot in it."""
    parent = base
    n = len(segs)
    i = 0
    while i < n - 1:
        seg = segs[i]
        tp = type(parent)
        if tp is dict:
            try:
                parent = parent[seg]
            except KeyError:
                raise SuperJSONError(f"{_loc(section, where)}: key {_short(seg)} not found in json") from None
        elif tp is list:
            parent = parent[_index(seg, len(parent), "array", section, where)]
        elif tp is JSMap:
            row = _index(seg, len(parent.pairs), "Map", section, where)
            kv = segs[i + 1]
            if kv not in ("0", "1"):
                raise SuperJSONError(
                    f"{_loc(section, where)}: Map entry selector must be 0 (key) or 1 (value), got {_short(kv)}"
                )
            if i + 1 == n - 1:
                return parent, (row, int(kv))
            parent = parent.pairs[row][int(kv)]
            i += 1
        elif tp is JSSet:
            parent = parent.items[_index(seg, len(parent.items), "Set", section, where)]
        else:
            raise _OpaquePath(
                f"{_loc(section, where)}: cannot descend into {_jstype(parent)} at segment {_short(seg)}"
            )
        i += 1
    last = segs[-1]
    tp = type(parent)
    if tp is dict:
        if last not in parent:
            raise SuperJSONError(f"{_loc(section, where)}: key {_short(last)} not found in json")
        return parent, last
    if tp is list:
        return parent, _index(last, len(parent), "array", section, where)
    if tp is JSSet:
        return parent, _index(last, len(parent.items), "Set", section, where)
    if tp is JSMap:
        raise SuperJSONError(f"{_loc(section, where)}: a path into a Map needs a row and a 0/1 selector")
    raise _OpaquePath(
        f"{_loc(section, where)}: cannot descend into {_jstype(parent)} at segment {_short(last)}"
    )


def _get_slot(parent: Any, slot: Any) -> Any:
    tp = type(parent)
    if tp is dict or tp is list:
        return parent[slot]
    if tp is JSSet:
        return parent.items[slot]
    row, kv = slot
    return parent.pairs[row][kv]


def _set_slot(parent: Any, slot: Any, value: Any) -> None:
    tp = type(parent)
    if tp is dict or tp is list:
        parent[slot] = value
    elif tp is JSSet:
        parent.items[slot] = value
    else:
        row, kv = slot
        k, v = parent.pairs[row]
        parent.pairs[row] = (value, v) if kv == 0 else (k, value)


_BIGINT_RE = re.compile(r"-?[0-9]+")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*", re.ASCII)
_REGEXP_FLAGS = frozenset("dgimsuvy")
_NUMBER_STRINGS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}
_DECIMAL_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_fromiso = datetime.fromisoformat


def _err(where: str | None, msg: str) -> SuperJSONError:
    return SuperJSONError(f"{_loc('values', where)}: {msg}")


def _dec_undefined(v: Any, where: str | None) -> Any:
    return UNDEFINED


def _dec_bigint(v: Any, where: str | None) -> Any:
    if type(v) is str and _BIGINT_RE.fullmatch(v):
        try:
            return BigInt(v)
        except ValueError as e:  # more digits than int() accepts
            raise _err(where, f"bigint string too long ({len(v)} characters)") from e
    if type(v) is int:
        return BigInt(v)
    raise _err(where, f"invalid bigint {_short(v)} (expected a decimal string)")


def _dec_date(v: Any, where: str | None) -> Any:
    if type(v) is not str:
        raise _err(where, f"Date value must be an ISO string, got {_jstype(v)}")
    try:
        d = _fromiso(v)
    except ValueError:
        d = None
    if d is None:
        try:
            jd = JSDate(v)
        except ValueError:
            raise _err(where, f"invalid Date string {_short(v)}") from None
        try:
            return jd.to_datetime()
        except OverflowError:
            return jd
    tz = d.tzinfo
    if tz is not _UTC:
        if tz is None:
            d = d.replace(tzinfo=_UTC)
        else:
            try:
                d = d.astimezone(_UTC)
            except OverflowError:
                try:
                    return JSDate(v)
                except ValueError:
                    raise _err(where, f"invalid Date string {_short(v)}") from None
    us = d.microsecond
    if us % 1000:
        d = d.replace(microsecond=us - us % 1000)
    return d


def _dec_set(v: Any, where: str | None) -> Any:
    if type(v) is not list:
        raise _err(where, f"set value must be an array, got {_jstype(v)}")
    return JSSet._trusted(v)


def _dec_map(v: Any, where: str | None) -> Any:
    if type(v) is not list:
        raise _err(where, f"map value must be an array of [key, value] pairs, got {_jstype(v)}")
    pairs = []
    for i, p in enumerate(v):
        if type(p) is not list or len(p) != 2:
            raise _err(where, f"map entry {i} is not a [key, value] pair: {_short(p)}")
        pairs.append((p[0], p[1]))
    return JSMap._trusted(pairs)


def _dec_number(v: Any, where: str | None) -> Any:
    if type(v) is str:
        f = _NUMBER_STRINGS.get(v)
        if f is not None:
            return f
        if _DECIMAL_RE.fullmatch(v):
            return float(v)
    elif type(v) is int or type(v) is float:
        return float(v)
    raise _err(where, f'invalid number {_short(v)} (expected "NaN", "Infinity", "-Infinity" or "-0")')


def _dec_regexp(v: Any, where: str | None) -> Any:
    if type(v) is not str or not v.startswith("/"):
        raise _err(where, f'invalid regexp {_short(v)} (expected "/source/flags")')
    last = v.rfind("/")
    if last < 1:
        raise _err(where, f'invalid regexp {_short(v)} (no closing "/")')
    flags = v[last + 1 :]
    if not set(flags) <= _REGEXP_FLAGS or len(set(flags)) != len(flags):
        raise _err(where, f"invalid regexp flags {_short(flags)} in {_short(v)}")
    return JSRegExp(v[1:last], flags)


def _dec_error(v: Any, where: str | None) -> Any:
    if type(v) is not dict:
        raise _err(where, f"Error value must be an object, got {_jstype(v)}")
    name = v.get("name", "Error")
    message = v.get("message", "")
    if type(name) is not str or type(message) is not str:
        raise _err(where, "Error name and message must be strings")
    has_cause = "cause" in v
    extra = {k: x for k, x in v.items() if k not in ("name", "message", "cause")}
    return JSError(name, message, v["cause"] if has_cause else UNDEFINED, extra, has_cause)


def _dec_url(v: Any, where: str | None) -> Any:
    if type(v) is not str or not _URL_RE.fullmatch(v):
        raise _err(where, f"invalid URL {_short(v)}")
    return JSURL(v)


_SIMPLE_DECODERS: dict[str, Callable[[Any, str | None], Any]] = {
    "undefined": _dec_undefined,
    "bigint": _dec_bigint,
    "Date": _dec_date,
    "set": _dec_set,
    "map": _dec_map,
    "number": _dec_number,
    "regexp": _dec_regexp,
    "Error": _dec_error,
    "URL": _dec_url,
}


def _dec_typed_array(v: Any, kind: str, where: str | None) -> Any:
    if kind not in _TYPED_ARRAY_KINDS:
        raise _err(where, f'unknown typed array kind "{_clip(kind)}"')
    if type(v) is not list:
        raise _err(where, f"typed array value must be an array, got {_jstype(v)}")
    out = []
    if kind in _BIGINT_ARRAY_KINDS:
        for x in v:
            if (type(x) is str and _BIGINT_RE.fullmatch(x)) or type(x) is int:
                out.append(BigInt(x))
            else:
                raise _err(where, f"invalid {kind} element {_short(x)}")
    else:
        for x in v:
            tx = type(x)
            if tx is int or tx is float:
                out.append(x)
            elif tx is str and x in _NUMBER_STRINGS:
                out.append(_NUMBER_STRINGS[x])
            else:
                raise _err(where, f"invalid {kind} element {_short(x)}")
    return JSTypedArray(kind, out)


def _copy_json(v: Any) -> Any:
    t = type(v)
    if t is dict:
        return {k: _copy_json(x) for k, x in v.items()}
    if t is list:
        return [_copy_json(x) for x in v]
    return v


# ---------------------------------------------------------------------------------------------
# Default class props
# ---------------------------------------------------------------------------------------------


def _default_to_props(obj: Any) -> dict:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="python", by_alias=True)
    try:
        return dict(vars(obj))
    except TypeError:
        props = {}
        for klass in type(obj).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if name not in props and not name.startswith("__") and hasattr(obj, name):
                    props[name] = getattr(obj, name)
        return props


def _make_default_from_props(cls: type) -> Callable[[dict], Any]:
    if hasattr(cls, "model_validate"):
        return cls.model_validate  # type: ignore[no-any-return]

    def from_props(props: dict) -> Any:
        # Like superjson's Object.assign(Object.create(cls.prototype), props): no __init__.
        obj = cls.__new__(cls)
        setattr_ = object.__setattr__
        for k, v in props.items():
            if k.startswith("__"):
                raise ValueError(f"refusing to set attribute {k!r}")
            setattr_(obj, k, v)
        return obj

    return from_props


# ---------------------------------------------------------------------------------------------
# The registry / codec
# ---------------------------------------------------------------------------------------------


class SuperJSON:
    """A SuperJSON codec with its own registry of custom types, classes and symbols."""

    def __init__(self) -> None:
        self._customs: dict[
            str, tuple[Callable[[Any], bool], Callable[[Any], Any], Callable[[Any], Any]]
        ] = {}
        self._classes: dict[type, tuple[str, Callable[[Any], dict], Callable[[dict], Any]]] = {}
        self._classes_by_id: dict[str, tuple[type, Callable[[dict], Any]]] = {}
        self._symbols_by_id: dict[str, Any] = {}
        self._symbols: dict[int, tuple[str, str, Any]] = {}
        self._rebuild()

    # -- registration ----------------------------------------------------------------------

    def register_custom(
        self,
        name: str,
        *,
        is_applicable: Callable[[Any], bool],
        serialize: Callable[[Any], Any],
        deserialize: Callable[[Any], Any],
    ) -> None:
        """Register a custom transformer (annotation ``[["custom", name]]``).

        Customs are tried in registration order, before every built-in type (JSON scalars
        excepted).  What ``serialize`` returns is put in ``json`` as is, *not* walked further.
        Registering an existing name replaces it (keeping its position).
        """
        if not isinstance(name, str) or not name:
            raise ValueError("custom transformer name must be a non-empty str")
        self._customs[name] = (is_applicable, serialize, deserialize)
        self._rebuild()

    def register_class(
        self,
        identifier: str,
        cls: type,
        *,
        to_props: Callable[[Any], dict] | None = None,
        from_props: Callable[[dict], Any] | None = None,
    ) -> None:
        """Register a class (annotation ``[["class", identifier]]``) matched by exact type.

        ``to_props`` (default: dataclass fields / ``model_dump`` / ``vars()``) gives the props,
        which ARE walked (nested Dates etc. are annotated).  ``from_props`` (default:
        ``model_validate`` for pydantic models, else a new instance without ``__init__`` whose
        attributes are set from the props) rebuilds the instance.
        """
        if not isinstance(identifier, str) or not identifier:
            raise ValueError("class identifier must be a non-empty str")
        if not isinstance(cls, type):
            raise TypeError(f"register_class expects a class, got {cls!r}")
        if cls in _HOT_TYPES:
            raise ValueError(f"cannot register built-in JSON type {cls.__name__} as a class")
        other = self._classes_by_id.get(identifier)
        if other is not None and other[0] is not cls:
            raise ValueError(f"class identifier {identifier!r} is already registered for {other[0]!r}")
        old = self._classes.get(cls)
        if old is not None and old[0] != identifier:
            del self._classes_by_id[old[0]]
        fp = from_props or _make_default_from_props(cls)
        self._classes[cls] = (identifier, to_props or _default_to_props, fp)
        self._classes_by_id[identifier] = (cls, fp)
        self._rebuild()

    def register_symbol(self, identifier: str, value: Any, description: str | None = None) -> None:
        """Register a unique object as a JS symbol (annotation ``[["symbol", identifier]]``).

        ``value`` is matched by identity and must not be a JSON value; ``description`` (the
        JSON form, default: ``identifier``) is what superjson writes for a symbol.
        """
        if type(value) in _HOT_TYPES:
            raise ValueError("a symbol must be a unique object (e.g. object()), not a JSON value")
        self._symbols_by_id[identifier] = value
        self._symbols[id(value)] = (identifier, identifier if description is None else description, value)
        self._rebuild()

    def _rebuild(self) -> None:
        customs = tuple((name, c[0], c[1]) for name, c in self._customs.items())
        classes = {cls: (entry[0], entry[1]) for cls, entry in self._classes.items()}
        self._enc_args = (customs, classes, dict(self._symbols))
        self._enc = _build_encoder(*self._enc_args)

    # -- encode ----------------------------------------------------------------------------

    def serialize(self, value: Any) -> dict:
        """Encode ``value`` to ``{"json": ..., "meta"?: {"values": ..., "v": 1}}``.

        Raises TypeError (naming the type and the path) for values that cannot be encoded.
        """
        try:
            j, a = self._enc(value)
        except _EncodeFailure as e:
            raise e.to_type_error() from None
        except RecursionError:
            return self._serialize_tracked(value)
        if a is None:
            return {"json": j}
        return {"json": j, "meta": {"values": a, "v": 1}}

    def _serialize_tracked(self, value: Any) -> dict:
        tracker = _Tracker()
        enc = _build_encoder(*self._enc_args, tracker=tracker)
        try:
            j, a = enc(value)
        except _EncodeFailure as e:
            raise e.to_type_error() from None
        except RecursionError as e:
            raise ValueError("superjson: value is nested too deeply to serialize") from e
        # superjson shares one JSON object between repeated references; copy so every path
        # owns its object (deserializing this dict directly must not convert a value twice).
        j = _copy_json(j)
        meta: dict = {}
        if a is not None:
            meta["values"] = a
        refs = tracker.referential_equalities()
        if refs is not None:
            meta["referentialEqualities"] = refs
        if not meta:
            return {"json": j}
        meta["v"] = 1
        return {"json": j, "meta": meta}

    # -- decode ----------------------------------------------------------------------------

    def deserialize(self, payload: Any, *, copy: bool = False) -> Any:
        """Decode a parsed ``{"json", "meta"?}`` payload.

        The ``json`` tree is converted in place unless ``copy=True``.  Raises
        :class:`SuperJSONError` for anything malformed.
        """
        if type(payload) is not dict:
            raise SuperJSONError(f"superjson payload must be an object, got {_jstype(payload)}")
        try:
            value = payload["json"]
        except KeyError:
            raise SuperJSONError('superjson payload has no "json" key') from None
        meta = payload.get("meta")
        if meta is None:
            return value
        if type(meta) is not dict:
            raise SuperJSONError(f"meta must be an object, got {_jstype(meta)}")
        version = meta.get("v")
        if version is None:
            legacy = True
        elif (type(version) is int or type(version) is float) and not math.isnan(version):
            legacy = version < 1
        else:
            raise SuperJSONError(f"meta.v must be a number, got {_short(version)}")
        values = meta.get("values")
        refs = meta.get("referentialEqualities")
        if values is None and refs is None:
            return value
        if copy:
            value = _copy_json(value)
        try:
            if values is not None:
                if type(values) is list:
                    value = self._apply_node(value, values, None, legacy)
                elif type(values) is dict:
                    for key, sub in values.items():
                        self._apply_path(value, key, sub, None, legacy)
                else:
                    raise SuperJSONError(f"meta.values must be an object or an array, got {_jstype(values)}")
            if refs is not None:
                value = _apply_referential_equalities(value, refs, legacy)
        except RecursionError:
            raise SuperJSONError("meta is nested too deeply") from None
        return value

    def _apply_path(self, base: Any, key: str, sub: Any, prefix: str | None, legacy: bool) -> None:
        if type(key) is not str:
            raise _err(prefix, f"path {_short(key)} is not a string")
        where = key if prefix is None else prefix + "." + key
        segs = _parse_path(key, legacy, "values", where)
        parent, slot = _locate(base, segs, "values", where)
        tsub = type(sub)
        if tsub is list:
            child = _get_slot(parent, slot)
            new = self._apply_node(child, sub, where, legacy)
            if new is not child:
                _set_slot(parent, slot, new)
        elif tsub is dict:
            child = _get_slot(parent, slot)
            for k2, s2 in sub.items():
                self._apply_path(child, k2, s2, where, legacy)
        else:
            raise _err(where, f"annotation must be an array or an object, got {_jstype(sub)}")

    def _apply_node(self, value: Any, node: list, where: str | None, legacy: bool) -> Any:
        n = len(node)
        if n == 0 or n > 2:
            raise _err(where, f"annotation must be [type] or [type, children], got {_short(node)}")
        if n == 2:
            children = node[1]
            if children is not None:
                if type(children) is not dict:
                    raise _err(where, f"annotation children must be an object, got {_jstype(children)}")
                for key, sub in children.items():
                    self._apply_path(value, key, sub, where, legacy)
        return self._untransform(value, node[0], where)

    def _untransform(self, value: Any, type_: Any, where: str | None) -> Any:
        if type(type_) is str:
            dec = _SIMPLE_DECODERS.get(type_)
            if dec is None:
                raise _err(where, f'unknown type annotation "{_clip(type_)}"')
            return dec(value, where)
        if (
            type(type_) is not list
            or len(type_) != 2
            or type(type_[0]) is not str
            or type(type_[1]) is not str
        ):
            raise _err(where, f"malformed type annotation {_short(type_)}")
        kind, name = type_
        if kind == "custom":
            entry = self._customs.get(name)
            if entry is None:
                raise _err(where, f'unregistered custom type "{_clip(name)}"')
            try:
                return entry[2](value)
            except SuperJSONError:
                raise
            except Exception as e:
                raise _err(where, f'custom type "{name}" could not deserialize the value: {_short(e)}') from e
        if kind == "class":
            centry = self._classes_by_id.get(name)
            if centry is None:
                raise _err(where, f'unregistered class "{_clip(name)}"')
            if type(value) is not dict:
                raise _err(where, f'class "{name}" value must be an object, got {_jstype(value)}')
            try:
                return centry[1](value)
            except SuperJSONError:
                raise
            except Exception as e:
                raise _err(where, f'class "{name}" could not be rebuilt from its props: {_short(e)}') from e
        if kind == "symbol":
            if name not in self._symbols_by_id:
                raise _err(where, f'unregistered symbol "{_clip(name)}"')
            return self._symbols_by_id[name]
        if kind == "typed-array":
            return _dec_typed_array(value, name, where)
        raise _err(where, f'unknown type annotation "{_clip(kind)}"')


def _apply_referential_equalities(root: Any, refs: Any, legacy: bool) -> Any:
    section = "referentialEqualities"

    def paths_of(targets: Any, where: str | None) -> list[str]:
        if type(targets) is not list or any(type(p) is not str for p in targets):
            raise SuperJSONError(
                f"{_loc(section, where)}: expected an array of path strings, got {_short(targets)}"
            )
        return targets

    def assign(target: str, obj: Any) -> None:
        try:
            parent, slot = _locate(root, _parse_path(target, legacy, section, target), section, target)
        except _OpaquePath:
            return  # identity inside an opaque value (custom/class instance) cannot be restored
        _set_slot(parent, slot, obj)

    def apply_record(record: Any) -> None:
        if type(record) is not dict:
            raise SuperJSONError(f"meta.{section} must map paths to arrays of paths, got {_jstype(record)}")
        for src, targets in record.items():
            if type(src) is not str:
                raise SuperJSONError(f"meta.{section}: path {_short(src)} is not a string")
            targets = paths_of(targets, src)
            try:
                parent, slot = _locate(root, _parse_path(src, legacy, section, src), section, src)
            except _OpaquePath:
                continue
            obj = _get_slot(parent, slot)
            for t in targets:
                assign(t, obj)

    if type(refs) is list:
        if not 1 <= len(refs) <= 2:
            raise SuperJSONError(f"meta.{section} array form must be [rootPaths] or [rootPaths, record]")
        for t in paths_of(refs[0], None):
            assign(t, root)
        if len(refs) == 2 and refs[1] is not None:
            apply_record(refs[1])
    else:
        apply_record(refs)
    return root


default = SuperJSON()
serialize = default.serialize
deserialize = default.deserialize


def _bench(number: int = 200_000) -> dict[str, float]:
    """Micro-benchmark of the hot paths; returns microseconds per call."""
    import timeit

    at = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=_UTC)
    small = {"i": 5, "at": at}
    plain20 = {f"key{i}": (i if i % 3 == 0 else f"value{i}" if i % 3 == 1 else i % 2 == 0) for i in range(20)}
    payload_small = serialize(small)
    results = {}
    for label, fn in (
        ('serialize({"i": 5, "at": datetime})', lambda: serialize(small)),
        ("serialize(20-key plain dict)", lambda: serialize(plain20)),
        ("deserialize(plain payload)", lambda: deserialize({"json": plain20})),
        (
            'deserialize({"i": 5, "at": Date})',
            lambda: deserialize(
                {"json": {"i": 5, "at": "2024-01-02T03:04:05.678Z"}, "meta": payload_small["meta"]}
            ),
        ),
    ):
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6
        results[label] = best
    return results


if __name__ == "__main__":  # pragma: no cover
    for name, us in _bench().items():
        print(f"{name:45s} {us:7.3f} µs")
