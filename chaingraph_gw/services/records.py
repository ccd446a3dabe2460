"""Plain records exchanged with the storage and messaging services (spec §2, §3).

These are backend-neutral value objects: the SQLite store here and the PostgreSQL/Kafka
implementations of the same interfaces all return them.  A record returned by a store is a
fresh object owned by the caller; mutating it changes nothing in the store.

Time handling
-------------
Every datetime is an *aware UTC* ``datetime`` with **millisecond** precision, because that is
what a JavaScript ``Date`` (and so a superjson ``Date`` on the wire) can hold.  Stores truncate
incoming datetimes to the millisecond (naive datetimes are taken as UTC), so a value read back
compares equal to what a client saw on the wire; a ``getRootExecutions`` ``after`` cursor
built from a returned ``createdAt`` therefore hits exactly.  :func:`utcnow` gives such a value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "ALL_STATUSES",
    "COMPLETED",
    "CREATED",
    "FAILED",
    "PAUSED",
    "RUNNING",
    "STOPPED",
    "TERMINAL",
    "ExecutionRecord",
    "FlowRecord",
    "StoredEvent",
    "from_ms",
    "to_ms",
    "to_utc_ms",
    "utcnow",
]

# -- execution status (the DB enum of spec §2; ``idle``/``creating`` are client-only) ----------

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
STOPPED = "stopped"

ALL_STATUSES: frozenset[str] = frozenset({CREATED, RUNNING, PAUSED, COMPLETED, FAILED, STOPPED})
TERMINAL: frozenset[str] = frozenset({COMPLETED, FAILED, STOPPED})

# -- time helpers --------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of ``dt`` (naive = UTC), truncated towards the past."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime for epoch milliseconds ``ms`` (exact, no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_utc_ms(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime truncated to the millisecond (naive = UTC)."""
    return from_ms(to_ms(dt))


def utcnow() -> datetime:
    """Now, as an aware UTC datetime with millisecond precision."""
    return to_utc_ms(datetime.now(UTC))


# -- records ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class FlowRecord:
    """One stored flow (table ``chaingraph_flows``).

    ``document`` is the canonical flow document (plain JSON: dicts, lists, str, numbers,
    bools, None); the store keeps it verbatim and never edits it (in particular it does not
    write ``version`` into ``document["metadata"]``).  ``version`` starts at 1 and is bumped by
    every :meth:`IFlowStore.update`.
    """

    id: str
    name: str
    owner_id: str
    version: int
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    parent_id: str | None = None


# (python attribute, wire name) for ExecutionRow; the first 16 are the @960 row, the rest @HEAD.
_WIRE_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("flow_id", "flowId"),
    ("owner_id", "ownerId"),
    ("root_execution_id", "rootExecutionId"),
    ("parent_execution_id", "parentExecutionId"),
    ("status", "status"),
    ("created_at", "createdAt"),
    ("updated_at", "updatedAt"),
    ("started_at", "startedAt"),
    ("completed_at", "completedAt"),
    ("error_message", "errorMessage"),
    ("error_node_id", "errorNodeId"),
    ("execution_depth", "executionDepth"),
    ("options", "options"),
    ("integration", "integration"),
    ("external_events", "externalEvents"),
    ("failure_count", "failureCount"),
    ("last_failure_reason", "lastFailureReason"),
    ("last_failure_at", "lastFailureAt"),
    ("processing_started_at", "processingStartedAt"),
    ("processing_worker_id", "processingWorkerId"),
)
_LEGACY_WIRE_COUNT = 16


@dataclass(slots=True)
class ExecutionRecord:
    """One execution (table ``chaingraph_executions``, wire type ``ExecutionRow``, spec §2).

    ``root_execution_id`` is the record's own id for a root; ``parent_execution_id`` is None
    for a root.  ``options``/``integration``/``external_events`` may hold any
    superjson-encodable values (a child's ``externalEvents[0].payload`` is whatever the
    emitting node sent, dates included) and round-trip through the stores unchanged.

    Lease state (``processing_worker_id``, ``processing_started_at``, ``lease_expires_at``) is
    written only by ``claim``/``renew``/``release``; ``lease_expires_at`` is not an
    ExecutionRow column and is never put on the wire.
    """

    id: str
    flow_id: str
    owner_id: str
    root_execution_id: str | None
    parent_execution_id: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    error_node_id: str | None
    execution_depth: int
    options: dict[str, Any]
    integration: dict[str, Any]
    external_events: list[Any]
    failure_count: int = 0
    last_failure_reason: str | None = None
    last_failure_at: datetime | None = None
    processing_started_at: datetime | None = None
    processing_worker_id: str | None = None
    lease_expires_at: datetime | None = field(default=None, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_root(self) -> bool:
        return self.parent_execution_id is None

    def to_wire(self, *, legacy: bool = False) -> dict[str, Any]:
        """The camelCase ``ExecutionRow`` as the tRPC API returns it.

        Datetimes stay ``datetime`` objects (the superjson encoder turns them into ``Date``
        values), ``None`` stays ``None`` (JSON ``null``).  By default the @HEAD shape with the
        five failure/processing fields is returned; ``legacy=True`` gives the 16 @960 fields.
        The containers are the record's own objects, not copies.
        """
        fields = _WIRE_FIELDS[:_LEGACY_WIRE_COUNT] if legacy else _WIRE_FIELDS
        return {wire: getattr(self, attr) for attr, wire in fields}

    @classmethod
    def new_root(
        cls,
        id: str,
        flow_id: str,
        owner_id: str,
        *,
        options: dict[str, Any] | None = None,
        integration: dict[str, Any] | None = None,
        external_events: list[Any] | None = None,
        now: datetime | None = None,
    ) -> ExecutionRecord:
        """A fresh root in status ``created`` (the ``create`` procedure's row, spec §1.4)."""
        now = to_utc_ms(now) if now is not None else utcnow()
        return cls(
            id=id,
            flow_id=flow_id,
            owner_id=owner_id,
            root_execution_id=id,
            parent_execution_id=None,
            status=CREATED,
            created_at=now,
            updated_at=now,
            started_at=None,
            completed_at=None,
            error_message=None,
            error_node_id=None,
            execution_depth=0,
            options={} if options is None else options,
            integration={} if integration is None else integration,
            external_events=[] if external_events is None else external_events,
        )

    @classmethod
    def new_child(
        cls,
        parent: ExecutionRecord,
        id: str,
        *,
        external_events: list[Any],
        owner_id: str | None = None,
        options: dict[str, Any] | None = None,
        integration: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> ExecutionRecord:
        """A child of ``parent`` in status ``created`` (spec §2 "Child executions").

        Same flow, same root, depth + 1.  ``options``/``integration`` default to deep copies of
        the parent's; clearing ``integration.archai.chatID``/``messageID`` is the caller's
        policy, not done here.  ``owner_id`` defaults to the parent's.
        """
        now = to_utc_ms(now) if now is not None else utcnow()
        return cls(
            id=id,
            flow_id=parent.flow_id,
            owner_id=parent.owner_id if owner_id is None else owner_id,
            root_execution_id=parent.root_execution_id or parent.id,
            parent_execution_id=parent.id,
            status=CREATED,
            created_at=now,
            updated_at=now,
            started_at=None,
            completed_at=None,
            error_message=None,
            error_node_id=None,
            execution_depth=parent.execution_depth + 1,
            options=copy.deepcopy(parent.options) if options is None else options,
            integration=copy.deepcopy(parent.integration) if integration is None else integration,
            external_events=external_events,
        )


@dataclass(slots=True)
class StoredEvent:
    """One execution event as kept in the event log (spec §3 ``ExecutionEventImpl``).

    ``index`` is the engine's per-execution sequence number (0, 1, 2, … — never negative);
    ``data`` is any superjson-encodable value.  Treat instances as immutable: the event bus
    hands the same object to every subscriber.
    """

    execution_id: str
    index: int
    type: str
    timestamp: datetime
    data: Any
