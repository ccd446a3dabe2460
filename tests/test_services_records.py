"""Tests for chaingraph_gw.services.records (run with trial --reactor=asyncio)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from twisted.trial import unittest

from chaingraph_gw.services import records as R
from chaingraph_gw.services.records import ExecutionRecord, FlowRecord, StoredEvent
from chaingraph_gw.trpc import superjson

WIRE_960 = [
    "id", "flowId", "ownerId", "rootExecutionId", "parentExecutionId", "status", "createdAt", "updatedAt",
    "startedAt", "completedAt", "errorMessage", "errorNodeId", "executionDepth", "options", "integration",
    "externalEvents",
]  # fmt: skip
WIRE_HEAD_EXTRA = [
    "failureCount",
    "lastFailureReason",
    "lastFailureAt",
    "processingStartedAt",
    "processingWorkerId",
]


class StatusTests(unittest.TestCase):
    def test_constants(self) -> None:
        self.assertEqual(R.ALL_STATUSES, {"created", "running", "paused", "completed", "failed", "stopped"})
        self.assertEqual(R.TERMINAL, {"completed", "failed", "stopped"})
        self.assertEqual((R.CREATED, R.RUNNING, R.PAUSED), ("created", "running", "paused"))
        self.assertEqual((R.COMPLETED, R.FAILED, R.STOPPED), ("completed", "failed", "stopped"))


class TimeTests(unittest.TestCase):
    def test_ms_round_trip_and_truncation(self) -> None:
        dt = datetime(2025, 9, 15, 12, 30, 45, 123999, tzinfo=UTC)
        self.assertEqual(R.to_ms(dt), 1757939445123)
        self.assertEqual(R.from_ms(1757939445123), datetime(2025, 9, 15, 12, 30, 45, 123000, tzinfo=UTC))
        self.assertEqual(R.to_utc_ms(dt), datetime(2025, 9, 15, 12, 30, 45, 123000, tzinfo=UTC))
        self.assertIs(R.from_ms(0).tzinfo, UTC)

    def test_naive_is_utc_and_offsets_are_converted(self) -> None:
        naive = datetime(2024, 1, 2, 3, 4, 5)
        self.assertEqual(R.to_ms(naive), R.to_ms(naive.replace(tzinfo=UTC)))
        plus2 = datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
        self.assertEqual(R.to_utc_ms(plus2), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))

    def test_pre_epoch(self) -> None:
        dt = datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)
        self.assertEqual(R.to_ms(dt), -1)  # floor, like truncating a JS Date
        self.assertEqual(R.from_ms(-1), datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))

    def test_utcnow(self) -> None:
        now = R.utcnow()
        self.assertIs(now.tzinfo, UTC)
        self.assertEqual(now.microsecond % 1000, 0)


class RecordTests(unittest.TestCase):
    def test_slots(self) -> None:
        now = R.utcnow()
        flow = FlowRecord("V2x", "n", "u", 1, {}, now, now)
        self.assertIsNone(flow.parent_id)
        ev = StoredEvent("EX1", 0, "flow:started", now, {})
        ex = ExecutionRecord.new_root("EX1", "V2x", "u")
        for obj in (flow, ev, ex):
            self.assertFalse(hasattr(obj, "__dict__"))

    def test_new_root(self) -> None:
        at = datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
        ex = ExecutionRecord.new_root("EX1", "V2f", "owner", options={"debug": True}, now=at)
        self.assertEqual(ex.root_execution_id, "EX1")
        self.assertIsNone(ex.parent_execution_id)
        self.assertEqual(ex.status, R.CREATED)
        self.assertEqual(ex.execution_depth, 0)
        self.assertEqual(ex.created_at, datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=UTC))
        self.assertEqual(ex.updated_at, ex.created_at)
        self.assertEqual((ex.options, ex.integration, ex.external_events), ({"debug": True}, {}, []))
        self.assertEqual(ex.failure_count, 0)
        self.assertTrue(ex.is_root)
        self.assertFalse(ex.is_terminal)

    def test_new_child(self) -> None:
        parent = ExecutionRecord.new_root("EX1", "V2f", "owner", integration={"archai": {"chatID": "c"}})
        child = ExecutionRecord.new_child(parent, "EX2", external_events=[{"eventName": "e", "payload": 1}])
        grand = ExecutionRecord.new_child(child, "EX3", external_events=[])
        self.assertEqual(
            (child.root_execution_id, child.parent_execution_id, child.execution_depth), ("EX1", "EX1", 1)
        )
        self.assertEqual(
            (grand.root_execution_id, grand.parent_execution_id, grand.execution_depth), ("EX1", "EX2", 2)
        )
        self.assertEqual(child.flow_id, "V2f")
        self.assertEqual(child.owner_id, "owner")
        self.assertEqual(child.integration, parent.integration)
        self.assertIsNot(child.integration, parent.integration)  # deep copy
        child.integration["archai"]["chatID"] = None
        self.assertEqual(parent.integration["archai"]["chatID"], "c")
        self.assertFalse(child.is_root)

    def test_to_wire(self) -> None:
        ex = ExecutionRecord.new_root("EX1", "V2f", "owner")
        ex.status = R.COMPLETED
        ex.completed_at = R.utcnow()
        wire = ex.to_wire()
        self.assertEqual(list(wire), WIRE_960 + WIRE_HEAD_EXTRA)
        self.assertEqual(list(ex.to_wire(legacy=True)), WIRE_960)
        self.assertIsInstance(wire["createdAt"], datetime)
        self.assertIsNone(wire["startedAt"])
        self.assertIsNone(wire["parentExecutionId"])
        self.assertEqual(wire["rootExecutionId"], "EX1")
        self.assertEqual(wire["failureCount"], 0)
        self.assertNotIn("leaseExpiresAt", wire)
        self.assertTrue(ex.is_terminal)
        # on the wire the datetimes are superjson Dates and the nulls stay null
        payload = superjson.serialize(wire)
        self.assertEqual(payload["meta"]["values"]["createdAt"], ["Date"])
        self.assertEqual(payload["meta"]["values"]["completedAt"], ["Date"])
        self.assertNotIn("startedAt", payload["meta"]["values"])
        self.assertIsNone(payload["json"]["startedAt"])
