"""Tests for chaingraph_gw.logs."""

from __future__ import annotations

import io
import json
import re
import sys
import types
import warnings
from datetime import UTC, datetime

from twisted.logger import ILogObserver, LogBeginner, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw import logs
from chaingraph_gw.config import Settings
from chaingraph_gw.logs import (
    configure_twistd_logger,
    format_event_json,
    format_event_text,
    format_time,
    make_observer,
    observer_factory,
    parse_level,
    start_logging,
    twistd_logger,
)

T0 = datetime(2026, 12, 3, 16, 0, 0, 123456, tzinfo=UTC).timestamp()
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _failure() -> Failure:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        return Failure()


def _event(level=LogLevel.info, fmt="hello {who}", namespace="gw.test", **fields):
    event = {"log_level": level, "log_namespace": namespace, "log_format": fmt, "log_time": T0}
    event.update(fields)
    return event


class _Unrepresentable:
    def __repr__(self):
        raise RuntimeError("no repr")


class _Capture:
    def __init__(self, level="debug", fmt="json"):
        self.stream = io.StringIO()
        self.publisher = LogPublisher()
        self.observer = make_observer(level=level, fmt=fmt, stream=self.stream)
        self.publisher.addObserver(self.observer)
        self.log = Logger(namespace="gw.test", observer=self.publisher)

    def lines(self):
        return self.stream.getvalue().splitlines()

    def records(self):
        return [json.loads(line) for line in self.lines()]


class LevelTests(SynchronousTestCase):
    def test_parse_level(self):
        self.assertIs(parse_level("debug"), LogLevel.debug)
        self.assertIs(parse_level("info"), LogLevel.info)
        self.assertIs(parse_level("warn"), LogLevel.warn)
        self.assertIs(parse_level("warning"), LogLevel.warn)
        self.assertIs(parse_level("WARNING"), LogLevel.warn)
        self.assertIs(parse_level("error"), LogLevel.error)
        self.assertIs(parse_level(LogLevel.error), LogLevel.error)
        self.assertRaises(ValueError, parse_level, "verbose")
        self.assertRaises(ValueError, parse_level, 3)

    def test_make_observer_validates(self):
        self.assertRaises(ValueError, make_observer, level="loud", fmt="text", stream=io.StringIO())
        self.assertRaises(ValueError, make_observer, level="info", fmt="xml", stream=io.StringIO())

    def test_provides_interface(self):
        for fmt in ("json", "text"):
            observer = make_observer(level="info", fmt=fmt, stream=io.StringIO())
            self.assertTrue(ILogObserver.providedBy(observer))

    def test_filters_below_level(self):
        for fmt in ("json", "text"):
            cap = _Capture(level="warn", fmt=fmt)
            cap.log.debug("d")
            cap.log.info("i")
            cap.log.emit(LogLevel.warn, "w")
            cap.log.error("e")
            cap.log.critical("c")
            lines = cap.lines()
            self.assertEqual(len(lines), 3, lines)
            self.assertIn("w", lines[0])

    def test_levels(self):
        for name, shown in [("debug", 5), ("info", 4), ("warn", 3), ("warning", 3), ("error", 2)]:
            cap = _Capture(level=name)
            for method in ("debug", "info", "warn", "error", "critical"):
                getattr(cap.log, method)(method)
            self.assertEqual(len(cap.lines()), shown, name)

    def test_event_without_level_counts_as_info(self):
        stream = io.StringIO()
        observer = make_observer(level="info", fmt="json", stream=stream)
        observer({"log_format": "plain", "log_time": T0})
        record = json.loads(stream.getvalue())
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "-")
        stream = io.StringIO()
        make_observer(level="warn", fmt="json", stream=stream)({"log_format": "plain"})
        self.assertEqual(stream.getvalue(), "")


class JsonTests(SynchronousTestCase):
    def test_line_shape(self):
        cap = _Capture()
        cap.log.info("hello {who}", who="world", count=3, nested={"a": [1, 2.5, None, True]})
        [line] = cap.lines()
        self.assertTrue(cap.stream.getvalue().endswith("\n"))
        record = json.loads(line)
        self.assertRegex(record["time"], TIME_RE)
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "gw.test")
        self.assertEqual(record["message"], "hello world")
        self.assertEqual(record["who"], "world")
        self.assertEqual(record["count"], 3)
        self.assertEqual(record["nested"], {"a": [1, 2.5, None, True]})
        self.assertFalse([k for k in record if k.startswith(("log_", "_"))])
        self.assertNotIn("error", record)
        self.assertEqual(list(record)[:4], ["time", "level", "namespace", "message"])

    def test_time_and_levels(self):
        record = json.loads(format_event_json(_event(who="x")))
        self.assertEqual(record["time"], "2026-12-03T16:00:00.123Z")
        for level in (LogLevel.debug, LogLevel.warn, LogLevel.error, LogLevel.critical):
            self.assertEqual(json.loads(format_event_json(_event(level=level, who="x")))["level"], level.name)

    def test_underscore_and_reserved_keys(self):
        event = _event(who="x", _private=1, message="mine", time=5, error="e")
        event.update(level="custom", namespace="n")  # not through _event(): those are its parameters
        record = json.loads(format_event_json(event))
        self.assertNotIn("_private", record)
        self.assertEqual(record["message"], "hello x")
        self.assertEqual(record["message_"], "mine")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["level_"], "custom")
        self.assertEqual(record["time_"], 5)
        self.assertEqual(record["error_"], "e")
        self.assertEqual(record["namespace_"], "n")

    def test_non_serialisable_values(self):
        obj = object()
        event = _event(
            who="x",
            obj=obj,
            things={1, 2},
            big=2**70,
            keys={(1, 2): "tuple key"},
            broken=_Unrepresentable(),
            when=datetime(2026, 1, 2, tzinfo=UTC),
            raw=b"bytes",
        )
        cyclic: list = []
        cyclic.append(cyclic)
        event["cyclic"] = cyclic
        line = format_event_json(event)
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(record["obj"], repr(obj))
        self.assertEqual(record["things"], repr({1, 2}))
        self.assertEqual(record["big"], repr(2**70))
        self.assertEqual(record["keys"], repr({(1, 2): "tuple key"}))
        self.assertEqual(record["broken"], "<unrepresentable _Unrepresentable>")
        self.assertEqual(record["cyclic"], "[[...]]")
        self.assertEqual(record["when"], "2026-01-02T00:00:00+00:00")
        self.assertEqual(record["raw"], repr(b"bytes"))
        self.assertEqual(record["who"], "x")

    def test_simple_non_serialisable_value_keeps_other_fields_native(self):
        record = json.loads(format_event_json(_event(who="x", obj=object(), n=1, d={"k": 1}, t=(1, 2))))
        self.assertEqual(record["n"], 1)
        self.assertEqual(record["d"], {"k": 1})
        self.assertEqual(record["t"], [1, 2])
        self.assertTrue(record["obj"].startswith("<object object"))

    def test_int_keys_allowed(self):
        record = json.loads(format_event_json(_event(who="x", counts={1: "a"})))
        self.assertEqual(record["counts"], {"1": "a"})

    def test_failure_traceback(self):
        cap = _Capture()
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            cap.log.failure("boom in {where}", where="handler")
        [record] = cap.records()
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["message"], "boom in handler")
        self.assertIn("Traceback", record["error"])
        self.assertIn("ZeroDivisionError", record["error"])
        self.assertIn("test_failure_traceback", record["error"])
        self.assertEqual(record["where"], "handler")

    def test_failure_without_format(self):
        event = _event(fmt=None, log_failure=_failure())
        del event["log_format"]
        record = json.loads(format_event_json(event))
        self.assertEqual(record["message"], "ZeroDivisionError: division by zero")
        self.assertIn("ZeroDivisionError", record["error"])

    def test_failure_with_unserialisable_fields(self):
        record = json.loads(format_event_json(_event(who="x", log_failure=_failure(), big=2**80)))
        self.assertIn("ZeroDivisionError", record["error"])
        self.assertEqual(record["big"], repr(2**80))

    def test_bad_format_string_does_not_raise(self):
        record = json.loads(format_event_json(_event(fmt="{missing} {", who="x")))
        self.assertIn("Unable to format event", record["message"])

    def test_multiline_message_stays_one_line(self):
        line = format_event_json(_event(fmt="a\nb"))
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(json.loads(line)["message"], "a\nb")

    def test_legacy_event_keys_dropped(self):
        event = _event(
            fmt="{log_text}",
            namespace="log_legacy",
            log_text="legacy text",
            message=("legacy text",),
            isError=0,
            system="-",
            time=T0,
            format=None,
            extra="kept",
        )
        record = json.loads(format_event_json(event))
        self.assertEqual(record["message"], "legacy text")
        self.assertEqual(record["extra"], "kept")
        for key in ("message_", "isError", "system", "time_", "format"):
            self.assertNotIn(key, record)

    def test_legacy_error_without_level(self):
        event = {"log_format": "oops", "isError": 1, "log_time": T0}
        self.assertEqual(json.loads(format_event_json(event))["level"], "error")


class TextTests(SynchronousTestCase):
    def test_line(self):
        self.assertEqual(
            format_event_text(_event(who="world")), "2026-12-03T16:00:00.123Z [info] [gw.test] hello world\n"
        )
        self.assertEqual(
            format_event_text(_event(level=LogLevel.warn, fmt="careful", namespace="")),
            "2026-12-03T16:00:00.123Z [warn] [-] careful\n",
        )

    def test_through_observer(self):
        cap = _Capture(fmt="text")
        cap.log.error("failed {n} times", n=2)
        [line] = cap.lines()
        stamp, rest = line.split(" ", 1)
        self.assertRegex(stamp, TIME_RE)
        self.assertEqual(rest, "[error] [gw.test] failed 2 times")

    def test_failure_traceback(self):
        text = format_event_text(_event(level=LogLevel.critical, fmt="boom", log_failure=_failure()))
        lines = text.splitlines()
        self.assertEqual(lines[0], "2026-12-03T16:00:00.123Z [critical] [gw.test] boom")
        self.assertTrue(lines[1].startswith("Traceback"))
        self.assertIn("ZeroDivisionError: division by zero", text)
        self.assertTrue(text.endswith("\n"))

    def test_text_ignores_fields(self):
        self.assertNotIn("obj", format_event_text(_event(who="x", obj=object())))


class TimeTests(SynchronousTestCase):
    def test_format_time(self):
        self.assertEqual(format_time(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(format_time(0.9999), "1970-01-01T00:00:00.999Z")
        self.assertEqual(format_time(T0), "2026-12-03T16:00:00.123Z")

    def test_missing_time_uses_now(self):
        record = json.loads(format_event_json({"log_format": "x", "log_level": LogLevel.info}))
        self.assertRegex(record["time"], TIME_RE)
        self.assertTrue(record["time"].startswith(str(datetime.now(UTC).year)))


class _FlushCounter(io.StringIO):
    flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


class StreamTests(SynchronousTestCase):
    def test_flushes_each_event(self):
        stream = _FlushCounter()
        observer = make_observer(level="info", fmt="text", stream=stream)
        observer(_event(who="a"))
        observer(_event(who="b"))
        self.assertEqual(stream.flushes, 2)


class StartLoggingTests(SynchronousTestCase):
    def beginner(self):
        publisher = LogPublisher()
        stdio = types.SimpleNamespace(stdout=io.StringIO(), stderr=io.StringIO())
        fake_warnings = types.SimpleNamespace(showwarning=warnings.showwarning)
        return publisher, LogBeginner(publisher, io.StringIO(), stdio, fake_warnings)

    def test_with_settings(self):
        publisher, beginner = self.beginner()
        stream = io.StringIO()
        start_logging(Settings(log_level="warn", log_format="json"), stream=stream, beginner=beginner)
        log = Logger(namespace="gw.start", observer=publisher)
        log.info("dropped")
        log.emit(LogLevel.warn, "kept {n}", n=1)
        [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertEqual(record["message"], "kept 1")
        self.assertEqual(record["namespace"], "gw.start")

    def test_with_level_and_format(self):
        publisher, beginner = self.beginner()
        stream = io.StringIO()
        start_logging("debug", stream=stream, beginner=beginner)
        Logger(namespace="gw.start", observer=publisher).debug("dbg")
        self.assertIn("[debug] [gw.start] dbg", stream.getvalue())

        publisher, beginner = self.beginner()
        stream = io.StringIO()
        start_logging(LogLevel.error, "json", stream=stream, beginner=beginner)
        log = Logger(namespace="gw.start", observer=publisher)
        log.emit(LogLevel.warn, "no")
        log.error("yes")
        self.assertEqual([json.loads(x)["message"] for x in stream.getvalue().splitlines()], ["yes"])


class TwistdLoggerTests(SynchronousTestCase):
    def test_reads_environment(self):
        stream = io.StringIO()
        observer = twistd_logger({"LOG_LEVEL": "warning", "LOG_FORMAT": "json"}, stream)
        self.assertTrue(ILogObserver.providedBy(observer))
        observer(_event(who="info"))
        observer(_event(level=LogLevel.warn, who="warn"))
        [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertEqual(record["message"], "hello warn")

    def test_defaults(self):
        stream = io.StringIO()
        observer = twistd_logger({"LOG_LEVEL": "", "LOG_FORMAT": ""}, stream)
        observer(_event(level=LogLevel.debug, who="debug"))
        observer(_event(who="info"))
        self.assertEqual(stream.getvalue(), "2026-12-03T16:00:00.123Z [info] [gw.test] hello info\n")

    def test_invalid_values_fall_back_with_warning(self):
        stream = io.StringIO()
        observer = twistd_logger({"LOG_LEVEL": "verbose", "LOG_FORMAT": "xml{}"}, stream)
        lines = stream.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('[warn] [chaingraph_gw.logs] environment LOG_LEVEL: unknown level "verbose"', lines[0])
        self.assertIn('environment LOG_FORMAT: unknown format "xml{}", using "text"', lines[1])
        observer(_event(who="x"))
        self.assertIn("[info] [gw.test] hello x", stream.getvalue())

    def test_zero_arguments_uses_os_environ_and_stdout(self):
        stream = io.StringIO()
        self.patch(sys, "stdout", stream)
        self.patch(sys.modules["os"], "environ", {"LOG_FORMAT": "json"})
        observer = twistd_logger()
        # The stream is captured at creation: twistd replaces sys.stdout later.
        self.patch(sys, "stdout", io.StringIO())
        observer(_event(who="x"))
        self.assertEqual(json.loads(stream.getvalue())["message"], "hello x")

    def test_configured_settings_take_over(self):
        self.addCleanup(configure_twistd_logger, None)
        name = configure_twistd_logger(Settings(log_level="error", log_format="json"))
        self.assertEqual(name, "chaingraph_gw.logs.twistd_logger")
        from twisted.python.reflect import namedAny

        self.assertIs(namedAny(name), twistd_logger)
        stream = io.StringIO()
        self.patch(sys, "stdout", stream)
        self.patch(sys.modules["os"], "environ", {"LOG_LEVEL": "debug", "LOG_FORMAT": "text"})
        observer = twistd_logger()
        observer(_event(level=LogLevel.warn, who="w"))
        observer(_event(level=LogLevel.error, who="e"))
        [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertEqual(record["message"], "hello e")
        configure_twistd_logger(None)
        self.assertIsNone(logs._twistd_settings)


class ObserverFactoryTests(SynchronousTestCase):
    def test_factory_uses_settings(self):
        stream = io.StringIO()
        factory = observer_factory(Settings(log_level="warn", log_format="text"), stream)
        observer = factory()
        self.assertTrue(ILogObserver.providedBy(observer))
        observer(_event(who="i"))
        observer(_event(level=LogLevel.warn, who="w"))
        self.assertEqual(stream.getvalue(), "2026-12-03T16:00:00.123Z [warn] [gw.test] hello w\n")

    def test_factory_defaults_to_stdout_at_call_time(self):
        factory = observer_factory(Settings(log_format="json"))
        stream = io.StringIO()
        self.patch(sys, "stdout", stream)
        factory()(_event(who="x"))
        self.assertEqual(json.loads(stream.getvalue())["message"], "hello x")
