"""Structured logging through ``twisted.logger``.

Two output formats, one line per event (plus a traceback for failures):

* ``text``: ``2026-12-03T16:00:00.123Z [info] [namespace] message``, followed by the traceback lines of
  ``log_failure`` when present.
* ``json``: one JSON object per line with ``time`` (ISO-8601 UTC, milliseconds, ``Z``), ``level``,
  ``namespace``, ``message`` (the formatted text), the event's own fields (keys not starting with ``_`` or
  ``log_``; values that JSON cannot carry are written as their ``repr``) and ``error`` (the traceback)
  when the event carries a failure. An event field whose name collides with one of those keys is
  written with a trailing underscore (``message_``).

Use :func:`make_observer` to build an observer, :func:`start_logging` outside twistd, and
``twistd --logger chaingraph_gw.logs.twistd_logger`` under twistd (reads ``LOG_LEVEL``/``LOG_FORMAT``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson
from twisted.logger import (
    ILogObserver,
    LogBeginner,
    LogLevel,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

if TYPE_CHECKING:
    from chaingraph_gw.config import Settings

__all__ = [
    "FORMATS",
    "LEVELS",
    "TWISTD_LOGGER_NAME",
    "configure_twistd_logger",
    "format_event_json",
    "format_event_text",
    "format_time",
    "make_observer",
    "observer_factory",
    "parse_level",
    "start_logging",
    "twistd_logger",
]

LEVELS: dict[str, LogLevel] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}
FORMATS = ("text", "json")

_RESERVED = frozenset({"time", "level", "namespace", "message", "error"})
# Keys that twisted.python.log (legacy) events carry; they duplicate the log_* keys.
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "time", "why", "failure", "printed"})
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def parse_level(level: str | LogLevel) -> LogLevel:
    """``"debug" | "info" | "warn" | "warning" | "error" | "critical"`` (any case) or a LogLevel."""
    if isinstance(level, str):
        try:
            return LEVELS[level.strip().lower()]
        except KeyError:
            raise ValueError(
                f"unknown log level {level!r}; expected one of debug, info, warn, error"
            ) from None
    if level in LogLevel.iterconstants():
        return level
    raise ValueError(f"unknown log level {level!r}")


def _parse_format(fmt: str) -> str:
    word = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if word not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of text, json")
    return word


def format_time(timestamp: float) -> str:
    """``2026-12-03T16:00:00.123Z`` (UTC, milliseconds truncated)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not break logging
        return f"<unrepresentable {type(value).__name__}>"


def _event_time(event: Mapping[str, Any]) -> float:
    value = event.get("log_time")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else time.time()


def _event_level(event: Mapping[str, Any]) -> LogLevel:
    level = event.get("log_level")
    if level in LogLevel.iterconstants():
        return level
    return LogLevel.error if event.get("isError") else LogLevel.info


def _traceback(event: Mapping[str, Any]) -> str | None:
    failure = event.get("log_failure")
    if failure is None:
        return None
    try:
        return failure.getTraceback()
    except Exception:
        return _safe_repr(failure)


def _message(event: Mapping[str, Any]) -> str:
    text = formatEvent(event)
    if not text and event.get("log_failure") is not None:
        failure = event["log_failure"]
        try:
            text = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        except Exception:
            text = _safe_repr(failure)
    return text


def _fields(event: Mapping[str, Any]) -> dict[str, Any]:
    legacy = "isError" in event  # a twisted.python.log event (or one adapted to look like it)
    fields: dict[str, Any] = {}
    for key, value in event.items():
        if not isinstance(key, str) or key.startswith(("_", "log_")):
            continue
        if legacy and key in _LEGACY_KEYS:
            continue
        fields[key + "_" if key in _RESERVED else key] = value
    return fields


def format_event_text(event: Mapping[str, Any]) -> str:
    """One text line (newline-terminated), followed by the failure's traceback if any."""
    namespace = event.get("log_namespace") or "-"
    line = f"{format_time(_event_time(event))} [{_event_level(event).name}] [{namespace}] {_message(event)}\n"
    tb = _traceback(event)
    if tb:
        line += tb if tb.endswith("\n") else tb + "\n"
    return line


def format_event_json(event: Mapping[str, Any]) -> str:
    """One JSON object followed by a newline."""
    record: dict[str, Any] = {
        "time": format_time(_event_time(event)),
        "level": _event_level(event).name,
        "namespace": event.get("log_namespace") or "-",
        "message": _message(event),
    }
    fields = _fields(event)
    tb = _traceback(event)
    try:
        body = orjson.dumps(
            {**record, **fields, **({"error": tb} if tb else {})}, default=repr, option=_JSON_OPTIONS
        )
    except (TypeError, ValueError, RecursionError):
        # Something orjson cannot carry even through repr (a >64-bit int, non-string dict keys, a cycle,
        # a __repr__ that raises): check each field on its own and fall back to a safe repr.
        for key, value in fields.items():
            try:
                orjson.dumps(value, default=repr, option=_JSON_OPTIONS)
            except (TypeError, ValueError, RecursionError):
                value = _safe_repr(value)
            record[key] = value
        if tb:
            record["error"] = tb
        body = orjson.dumps(record, default=_safe_repr, option=_JSON_OPTIONS)
    return body.decode("utf-8") + "\n"


@implementer(ILogObserver)
class LineObserver:
    """Writes events at or above ``level`` to ``stream`` using ``render``; flushes after each event."""

    def __init__(
        self, *, level: LogLevel, render: Callable[[Mapping[str, Any]], str], stream: IO[str]
    ) -> None:
        self.level = level
        self._render = render
        self._stream = stream  # captured now: twistd later replaces sys.stdout with a logging proxy
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, Any]) -> None:
        if _event_level(event) < self.level:
            return
        text = self._render(event)
        with self._lock:
            self._stream.write(text)
            flush = getattr(self._stream, "flush", None)
            if flush is not None:
                flush()


def make_observer(*, level: str | LogLevel, fmt: str, stream: IO[str]) -> ILogObserver:
    """An observer that drops events below ``level`` and writes ``fmt`` ("text" or "json") lines to
    ``stream``. Raises ValueError for an unknown level or format."""
    render = format_event_json if _parse_format(fmt) == "json" else format_event_text
    return LineObserver(level=parse_level(level), render=render, stream=stream)


def start_logging(
    settings_or_level: Settings | str | LogLevel = "info",
    fmt: str | None = None,
    *,
    stream: IO[str] | None = None,
    beginner: LogBeginner | None = None,
    redirect_stdio: bool = False,
) -> None:
    """Begin global logging (outside twistd): ``start_logging(settings)`` uses ``settings.log_level`` and
    ``settings.log_format``; ``start_logging("debug", "json")`` takes them directly (format defaults to
    text). Writes to ``stream`` (default ``sys.stdout``) through ``beginner`` (default
    ``globalLogBeginner``)."""
    if isinstance(settings_or_level, str) or settings_or_level in LogLevel.iterconstants():
        level: str | LogLevel = settings_or_level
        fmt = fmt or "text"
    else:
        level = settings_or_level.log_level
        fmt = fmt or settings_or_level.log_format
    observer = make_observer(level=level, fmt=fmt, stream=stream if stream is not None else sys.stdout)
    (beginner or globalLogBeginner).beginLoggingTo([observer], redirectStandardIO=redirect_stdio)


def observer_factory(settings: Settings, stream: IO[str] | None = None) -> Callable[[], ILogObserver]:
    """A zero-argument callable returning an observer for ``settings.log_level``/``settings.log_format``
    (writing to ``stream``, default ``sys.stdout`` as it is when the callable runs). Suits
    ``twisted.application.app.AppLogger``-style factories. Note that twistd's ``ServerOptions.postOptions``
    resolves its ``logger`` option with ``namedAny``, so there it must be a dotted *name*: use
    :func:`configure_twistd_logger` for that."""

    def factory() -> ILogObserver:
        return make_observer(
            level=settings.log_level, fmt=settings.log_format, stream=sys.stdout if stream is None else stream
        )

    return factory


_twistd_settings: Settings | None = None
TWISTD_LOGGER_NAME = f"{__name__}.twistd_logger"


def configure_twistd_logger(settings: Settings | None) -> str:
    """Make :func:`twistd_logger` (called without arguments) use ``settings`` instead of reading
    ``LOG_LEVEL``/``LOG_FORMAT``; None restores the environment behaviour. Returns the dotted name to put
    in twistd's ``logger`` option (``"chaingraph_gw.logs.twistd_logger"``)."""
    global _twistd_settings
    _twistd_settings = settings
    return TWISTD_LOGGER_NAME


def twistd_logger(environ: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> ILogObserver:
    """Observer factory for ``twistd --logger chaingraph_gw.logs.twistd_logger``.

    Reads ``LOG_LEVEL`` (default info) and ``LOG_FORMAT`` (default text) from the environment and writes
    to ``sys.stdout``. An invalid value falls back to the default and is reported as a warning through
    the observer itself (settings loading rejects it properly later). When called without ``environ``
    after :func:`configure_twistd_logger`, the configured settings are used instead."""
    out = sys.stdout if stream is None else stream
    if environ is None and _twistd_settings is not None:
        return make_observer(level=_twistd_settings.log_level, fmt=_twistd_settings.log_format, stream=out)
    environ = os.environ if environ is None else environ
    problems: list[str] = []

    level_text = environ.get("LOG_LEVEL") or "info"
    try:
        level = parse_level(level_text)
    except ValueError:
        problems.append(f'environment LOG_LEVEL: unknown level "{level_text}", using "info"')
        level = LogLevel.info

    fmt = environ.get("LOG_FORMAT") or "text"
    try:
        fmt = _parse_format(fmt)
    except ValueError:
        problems.append(f'environment LOG_FORMAT: unknown format "{fmt}", using "text"')
        fmt = "text"

    observer = make_observer(level=level, fmt=fmt, stream=out)
    for problem in problems:
        observer(
            {
                "log_level": LogLevel.warn,
                "log_namespace": __name__,
                "log_time": time.time(),
                "log_format": problem.replace("{", "{{").replace("}", "}}"),
            }
        )
    return observer
