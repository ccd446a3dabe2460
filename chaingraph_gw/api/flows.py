"""``flows.*`` (flow CRUD) and ``nodes.list`` (the node registry for editors)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..flow import ids
from ..flow.chaingraph_import import import_chaingraph, is_chaingraph_document
from ..flow.document import FlowValidationError, validate_document
from ..services.interfaces import NotFound, VersionConflict
from ..services.records import FlowRecord
from ..trpc.errors import TRPCError
from ..trpc.router import Call, Router
from .auth import RequestContext
from .execution import authed


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateFlowInput(_Input):
    flow: Any


class FlowIdInput(_Input):
    flowId: str


class ListFlowsInput(_Input):
    limit: int = Field(default=50, ge=1, le=500)
    after: str | None = None


class UpdateFlowInput(_Input):
    flowId: str
    flow: Any
    expectedVersion: int | None = Field(default=None, ge=1)


def normalise_document(raw: Any, registry: Any) -> dict[str, Any]:
    """Canonical document from a canonical or ChainGraph document; BAD_REQUEST listing every problem."""
    if isinstance(raw, str):
        from ..flow.document import parse_flow_text

        try:
            raw = parse_flow_text(raw)
        except FlowValidationError as exc:
            raise _bad(exc) from None
    if not isinstance(raw, dict):
        raise TRPCError("BAD_REQUEST", "flow must be a flow document object (or its JSON/YAML text)")
    try:
        if is_chaingraph_document(raw):
            raw = import_chaingraph(raw, registry)
        return validate_document(raw, registry)
    except FlowValidationError as exc:
        raise _bad(exc) from None


def _bad(exc: FlowValidationError) -> TRPCError:
    return TRPCError("BAD_REQUEST", f"Invalid flow: {exc}", cause=exc,
                     data={"flowErrors": list(getattr(exc, "errors", []))})


def flow_summary(rec: FlowRecord) -> dict[str, Any]:
    return {"id": rec.id, "name": rec.name, "ownerId": rec.owner_id, "version": rec.version,
            "createdAt": rec.created_at, "updatedAt": rec.updated_at}


async def _owned(ctx: RequestContext, flow_id: str) -> FlowRecord:
    rec = await ctx.services.flows.get(flow_id)
    if rec is None:
        raise TRPCError("NOT_FOUND", f"Flow with id {flow_id} not found")
    if not ctx.user.is_admin and rec.owner_id != ctx.user.id:
        raise TRPCError("FORBIDDEN", "User does not own the flow")
    return rec


def flows_router() -> Router:
    r = Router(middlewares=(authed,))

    @r.mutation("create", input=CreateFlowInput)
    async def create(call: Call) -> dict[str, Any]:
        ctx: RequestContext = call.ctx
        doc = normalise_document(call.input.flow, ctx.services.registry)
        now = datetime.now(UTC)
        rec = FlowRecord(id=ids.flow_id(), name=doc["name"], owner_id=ctx.user.id, version=1, document=doc,
                         created_at=now, updated_at=now)
        await ctx.services.flows.create(rec)
        return flow_summary(rec)

    @r.query("get", input=FlowIdInput)
    async def get(call: Call) -> dict[str, Any]:
        rec = await _owned(call.ctx, call.input.flowId)
        return {**flow_summary(rec), "flow": rec.document}

    @r.query("list", input=ListFlowsInput)
    async def list_(call: Call) -> dict[str, Any]:
        ctx: RequestContext = call.ctx
        owner = None if ctx.user.is_admin else ctx.user.id
        try:
            rows = await ctx.services.flows.list(owner, call.input.limit + 1, call.input.after)
        except NotFound:
            raise TRPCError("BAD_REQUEST", f"Unknown cursor {call.input.after!r} (the flow no longer exists?); "
                                           "list again from the start") from None
        page = rows[: call.input.limit]
        return {"items": [flow_summary(r) for r in page],
                "nextCursor": page[-1].id if len(rows) > call.input.limit else None}

    @r.mutation("update", input=UpdateFlowInput)
    async def update(call: Call) -> dict[str, Any]:
        ctx: RequestContext = call.ctx
        await _owned(ctx, call.input.flowId)
        doc = normalise_document(call.input.flow, ctx.services.registry)
        try:
            rec = await ctx.services.flows.update(call.input.flowId, doc, doc["name"], call.input.expectedVersion)
        except VersionConflict as exc:
            raise TRPCError("CONFLICT", str(exc) or "Flow was changed by someone else; reload it") from None
        return flow_summary(rec)

    @r.mutation("delete", input=FlowIdInput)
    async def delete(call: Call) -> dict[str, Any]:
        ctx: RequestContext = call.ctx
        await _owned(ctx, call.input.flowId)
        await ctx.services.flows.delete(call.input.flowId)
        return {"success": True}

    return r


def nodes_router() -> Router:
    r = Router()

    @r.query("list")
    def list_nodes(call: Call) -> list[dict[str, Any]]:
        """Categories (sorted by order) with their node types and port schemas."""
        return call.ctx.services.registry.categorized()

    return r
