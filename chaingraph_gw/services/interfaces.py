"""Backend-neutral service interfaces: flow/execution stores, event log, event bus, task queue,
command bus (spec §1.4, §2, §3).

Every I/O method is ``async`` and must be awaited on the reactor's asyncio loop.  The embedded
implementations are :mod:`.sqlite_store` (stores + log) and :mod:`.memory_bus` (bus, queue,
commands); PostgreSQL/Kafka implementations provide the same interfaces.

Design rules (what went wrong in ChainGraph @960, spec §4/§5, and how these contracts avoid it)
-----------------------------------------------------------------------------------------------
* **The event log is the source of truth; the bus is only a doorbell.**  Events are appended to
  :class:`IEventLog` (exactly once per ``(execution_id, index)``) *before* being published on
  :class:`IEventBus`.  A subscriber never needs a topic replay: it subscribes to the bus first,
  then reads the log from its ``fromIndex``, then takes live events, skipping indexes it already
  has.  That closes the subscribe/publish race without any per-subscription consumer groups or
  full-topic scans.
* **Bounded fan-out.**  A slow subscriber does not grow memory: its queue is bounded and on
  overflow the subscription is marked ``overflowed`` and raises :class:`SubscriptionOverflow`;
  the reader re-subscribes and catches up from the log.  Subscriptions never die silently.
* **Leases, not claim rows that block retries.**  ``claim`` succeeds when nobody holds an
  unexpired lease; ``release`` frees the lease so a retry can claim again (the @960 ``released``
  row blocked every retry and left rows stuck in ``running``).  Terminal executions can't be
  claimed, so a redelivered task for a finished execution is a no-op.
* **Compare-and-set status.**  ``update_status(..., expected=...)`` is atomic, so two actors
  (API stop vs worker completion) can't overwrite each other's terminal status.
* **Duplicate events are refused, never overwritten** (:class:`DuplicateEvent`): a re-run engine
  must continue from ``last_index() + 1`` instead of re-emitting from 0.

Errors common to all services: :class:`StoreUnavailable` when the backend is closed or not
reachable (the original exception is chained as ``__cause__``).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = [
    "AlreadyExists",
    "DuplicateEvent",
    "ICommandBus",
    "IEventBus",
    "IEventLog",
    "IExecutionStore",
    "IFlowStore",
    "IService",
    "ISubscription",
    "ITaskQueue",
    "NotFound",
    "ServiceError",
    "StoreUnavailable",
    "SubscriptionClosed",
    "SubscriptionOverflow",
    "VersionConflict",
]


# ---------------------------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------------------------


class ServiceError(Exception):
    """Base class of every service error."""


class StoreUnavailable(ServiceError):
    """The backend is closed, failed to open, or can't be reached (I/O error, lock timeout…)."""

    # The wire layer answers this with SERVICE_UNAVAILABLE instead of a generic 500.
    trpc_code = "SERVICE_UNAVAILABLE"


class NotFound(ServiceError, KeyError):
    """The addressed record does not exist (e.g. ``IFlowStore.update`` of an unknown id)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else ""


class AlreadyExists(ServiceError):
    """``create`` of a record whose id is already stored."""


class VersionConflict(ServiceError):
    """``IFlowStore.update`` with an ``expected_version`` that is no longer current."""

    def __init__(self, flow_id: str, expected: int, actual: int) -> None:
        super().__init__(f"flow {flow_id} is at version {actual}, expected {expected}")
        self.flow_id = flow_id
        self.expected = expected
        self.actual = actual


class DuplicateEvent(AlreadyExists):
    """``IEventLog.append`` of an ``(execution_id, index)`` that is already stored."""

    def __init__(self, execution_id: str, index: int) -> None:
        super().__init__(f"event {index} of execution {execution_id} is already stored")
        self.execution_id = execution_id
        self.index = index


class SubscriptionOverflow(ServiceError):
    """The subscriber fell more than its queue bound behind; events were dropped.

    The subscription is dead: subscribe again, then re-read the log from the last index you
    delivered (in that order, so nothing falls in between).
    """

    def __init__(self, execution_id: str, maxsize: int) -> None:
        super().__init__(f"subscription to execution {execution_id} overflowed its queue of {maxsize} events")
        self.execution_id = execution_id
        self.maxsize = maxsize


class SubscriptionClosed(ServiceError):
    """``get()`` on a subscription that was closed (by its owner or by the bus shutting down)."""


# ---------------------------------------------------------------------------------------------
# Interfaces
# ---------------------------------------------------------------------------------------------


class IService(Interface):
    """Something that holds resources."""

    async def close() -> None:
        """Release the resources.  Idempotent.  Afterwards every call raises
        :class:`StoreUnavailable` (stores, queues) or is refused as documented."""


class IFlowStore(IService):
    """Flows (table ``chaingraph_flows``: id, data, name, owner_id, parent_id, version, created_at,
    updated_at)."""

    async def create(record):
        """Store a new flow; returns the stored :class:`FlowRecord` (timestamps normalised to
        UTC milliseconds).  Raises :class:`AlreadyExists` if the id is taken."""

    async def get(flow_id):
        """The :class:`FlowRecord` or None."""

    async def list(owner_id=None, limit=50, after=None):
        """Flows ordered by ``created_at`` descending, then ``id`` ascending.

        ``owner_id`` None = every owner.  ``after`` is a keyset cursor: the id of the last flow
        of the previous page; the page continues right after that flow's position
        ``(created_at, id)`` (stable under concurrent inserts).  A cursor id that does not exist
        (e.g. the flow was deleted meanwhile) raises :class:`NotFound`.  Returns at most
        ``limit`` :class:`FlowRecord` objects.
        """

    async def update(flow_id, document, name=None, expected_version=None):
        """Replace the document (and the name unless None), set ``version = version + 1`` and
        ``updated_at = now``, atomically; returns the new :class:`FlowRecord`.

        With ``expected_version`` the write happens only if the stored version equals it,
        else :class:`VersionConflict` (optimistic locking).  Unknown id: :class:`NotFound`.
        """

    async def delete(flow_id):
        """Delete the flow; True if it existed.  Executions and events are kept."""

    async def count(owner_id=None):
        """Number of flows (of ``owner_id``, or all when None)."""


class IExecutionStore(IService):
    """Executions (table ``chaingraph_executions``, ``ExecutionRow`` + failure tracking + lease)."""

    async def create(record):
        """Store a new :class:`ExecutionRecord`; returns the stored record (timestamps
        normalised).  Raises :class:`AlreadyExists` if the id is taken, ValueError for an
        unknown status."""

    async def get(execution_id):
        """The :class:`ExecutionRecord` or None."""

    async def update_status(execution_id, status, *, expected=None, error_message=None, error_node_id=None):
        """Set ``status`` atomically; returns the updated record, or None if there is no such
        execution or (with ``expected``, a set of statuses) its current status is not in
        ``expected`` — a compare-and-set: of two racing updates with the same ``expected``
        exactly one wins.

        Side effects in the same write: ``updated_at = now``; ``started_at = now`` when the new
        status is ``running`` and ``started_at`` is still unset; ``completed_at = now`` when
        the new status is terminal; ``error_message``/``error_node_id`` are written when given
        (None leaves them unchanged).  Transitions are not validated beyond ``expected``.
        """

    async def tree(root_id):
        """Every execution whose ``root_execution_id`` is ``root_id`` (the root included),
        ordered by depth then id.  Empty for unknown ids and for non-root ids."""

    async def roots(flow_id, limit=50, after=None):
        """ChainGraph ``getRootExecutions``: roots (depth 0) of ``flow_id`` created strictly
        before ``after`` (a datetime cursor, None = newest), ``created_at`` descending (id
        descending on ties), at most ``limit``.  Returns ``[(record, levels, total_nested)]``
        where ``levels`` = the maximum depth in the root's tree and ``total_nested`` = number of
        executions in the tree including the root."""

    async def children(parent_id):
        """Direct children of ``parent_id``, ordered by ``created_at`` then id."""

    async def find_by_status(statuses, limit=None):
        """Executions whose status is in ``statuses`` (a set), oldest ``created_at`` first,
        at most ``limit`` (None = all).  For recovery scans."""

    async def record_failure(execution_id, reason):
        """``failure_count += 1``, ``last_failure_reason = reason``, ``last_failure_at = now``,
        ``updated_at = now``; returns the updated record or None if unknown."""

    async def claim(execution_id, worker_id, lease_seconds):
        """Take the processing lease; True on success.

        Succeeds only if the execution exists, is not terminal, and nobody holds an unexpired
        lease — *including* ``worker_id`` itself, so a duplicate task delivered to the same
        worker is refused too (use :meth:`renew` to extend).  An expired lease is taken over.
        On success ``processing_worker_id = worker_id``, ``processing_started_at = now``,
        lease expiry = now + ``lease_seconds``.  Atomic: of concurrent claimers at most one wins.
        """

    async def renew(execution_id, worker_id, lease_seconds):
        """Extend the lease to now + ``lease_seconds``; True if ``worker_id`` still holds it.
        False once another worker took it over: the caller must stop working on the
        execution.  (A lease that expired but was not taken over can still be renewed.)"""

    async def release(execution_id, worker_id):
        """Drop the lease if ``worker_id`` holds it (clears worker, processing_started_at and
        the expiry, so any worker can claim again); True if it did.  Status is unchanged."""


class IEventLog(IService):
    """Durable, append-only per-execution event log (table ``chaingraph_execution_events``)."""

    async def append(execution_id, index, type, timestamp, data):
        """Store one event.  ``index`` must be >= 0 (ValueError otherwise).  An event is stored
        exactly once per ``(execution_id, index)``: a second append of the same index raises
        :class:`DuplicateEvent` and leaves the stored event untouched.  ``data`` is encoded
        before the coroutine first suspends, so mutating the object afterwards (e.g. while the
        write is in flight) does not change what is stored."""

    async def append_many(events):
        """Store a list of :class:`StoredEvent` in one transaction: all or nothing.  Any index
        already stored (or repeated within the batch) raises :class:`DuplicateEvent` and
        nothing of the batch is stored."""

    async def read(execution_id, from_index=0, limit=None):
        """Events with ``index >= from_index`` in index order, at most ``limit`` (None = all),
        as :class:`StoredEvent` objects with ``data`` decoded."""

    async def last_index(execution_id):
        """The highest stored index, or -1 if the execution has no events."""


class ISubscription(Interface):
    """A live feed of one execution's events from :meth:`IEventBus.subscribe`.

    Also an async iterator: ``async for event in sub`` ends when the subscription is closed
    and raises :class:`SubscriptionOverflow` after an overflow.
    """

    execution_id = Attribute("The execution this subscription follows.")
    maxsize = Attribute("The queue bound (events).")
    overflowed = Attribute("True once the bound was exceeded; the subscription is then dead.")
    closed = Attribute("True after close() (or an overflow, or the bus shutting down).")

    async def get():
        """The next event, waiting for one.  Raises :class:`SubscriptionOverflow` once
        overflowed, :class:`SubscriptionClosed` when closed (also wakes a waiting get)."""

    def drain(limit=None):
        """Events queued right now (possibly [], at most ``limit``), without waiting.  Raises
        :class:`SubscriptionOverflow` once overflowed; [] when closed."""

    def close():
        """Stop receiving and drop queued events.  Idempotent, synchronous."""


class IEventBus(IService):
    """Live fan-out of events that were already appended to the :class:`IEventLog`.

    No history: a subscriber sees only what is published after :meth:`subscribe` returned.
    Events of one execution reach each subscriber in publish order.
    """

    async def publish(execution_id, event):
        """Deliver ``event`` (a :class:`StoredEvent`) to every current subscriber of
        ``execution_id``; never blocks on slow subscribers (they overflow instead)."""

    async def subscribe(execution_id, *, maxsize=None):
        """A new :class:`ISubscription`; ``maxsize`` bounds its queue (default: the bus's,
        10000)."""


class ITaskQueue(IService):
    """Execution tasks (``ExecutionTask`` dicts, spec §2) for the workers."""

    async def submit(task):
        """Enqueue ``task`` (a dict with at least ``executionId``).  Never drops a task;
        raises :class:`StoreUnavailable` after close()."""

    async def consume(handler):
        """Start consuming: ``await handler(task)`` for every task, several concurrently (the
        implementation's concurrency).  Returns once the consumers are started.  Handler
        exceptions are logged and do not stop consumption (retries are the worker's job, via
        the execution store's failure tracking).  Only one handler per queue."""


class ICommandBus(IService):
    """Commands (STOP/PAUSE/RESUME…, ``ExecutionCommand`` dicts) to the engine running an
    execution."""

    async def send(execution_id, command):
        """Deliver ``command`` to the handler registered for ``execution_id``; True if a
        handler received it, False if none is registered here.  Handler exceptions are logged,
        not raised (the distributed bus can't report remote failures either).  Handlers must be
        quick: schedule the work, don't wait for it."""

    async def register(execution_id, handler):
        """Route commands for ``execution_id`` to ``handler`` (an async or plain callable taking
        the command dict).  One handler per execution: registering a second, different handler
        raises ValueError (two engines for one execution is a bug)."""

    async def unregister(execution_id, handler=None):
        """Stop routing ``execution_id``; with ``handler``, only if that handler is the one
        registered (so a stale engine can't remove its successor).  True if removed."""
