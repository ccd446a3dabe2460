"""tRPC error codes and the error shape sent on the wire (protocol doc §4)."""

from __future__ import annotations

import traceback
from typing import Any

# TRPC code key -> (JSON-RPC code, HTTP status). Five keys share -32603.
ERROR_CODES: dict[str, tuple[int, int]] = {
    "PARSE_ERROR": (-32700, 400),
    "BAD_REQUEST": (-32600, 400),
    "UNAUTHORIZED": (-32001, 401),
    "PAYMENT_REQUIRED": (-32002, 402),
    "FORBIDDEN": (-32003, 403),
    "NOT_FOUND": (-32004, 404),
    "METHOD_NOT_SUPPORTED": (-32005, 405),
    "TIMEOUT": (-32008, 408),
    "CONFLICT": (-32009, 409),
    "PRECONDITION_FAILED": (-32012, 412),
    "PAYLOAD_TOO_LARGE": (-32013, 413),
    "UNSUPPORTED_MEDIA_TYPE": (-32015, 415),
    "UNPROCESSABLE_CONTENT": (-32022, 422),
    "PRECONDITION_REQUIRED": (-32028, 428),
    "TOO_MANY_REQUESTS": (-32029, 429),
    "CLIENT_CLOSED_REQUEST": (-32099, 499),
    "INTERNAL_SERVER_ERROR": (-32603, 500),
    "NOT_IMPLEMENTED": (-32603, 501),
    "BAD_GATEWAY": (-32603, 502),
    "SERVICE_UNAVAILABLE": (-32603, 503),
    "GATEWAY_TIMEOUT": (-32603, 504),
}


class TRPCError(Exception):
    """An error with a tRPC code. Anything else raised by a handler becomes INTERNAL_SERVER_ERROR."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        cause: BaseException | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown tRPC error code {code!r}")
        if message is None:
            # Like the reference: a missing message falls back to the cause's, then to the code.
            message = str(cause) if cause is not None and str(cause) else code
        super().__init__(message)
        self.code = code
        self.message = message
        self.cause = cause
        # Extra keys merged into `error.data` (e.g. zodError for validation failures).
        self.extra_data = data or {}

    @property
    def json_rpc_code(self) -> int:
        return ERROR_CODES[self.code][0]

    @property
    def http_status(self) -> int:
        return ERROR_CODES[self.code][1]


def to_trpc_error(exc: BaseException) -> TRPCError:
    """Wrap any exception; a plain exception keeps its message (reference behaviour)."""
    if isinstance(exc, TRPCError):
        return exc
    message = str(exc) or type(exc).__name__
    # Application exceptions may name their tRPC code (e.g. a backend outage → SERVICE_UNAVAILABLE).
    code = getattr(exc, "trpc_code", None)
    if code not in ERROR_CODES:
        code = "INTERNAL_SERVER_ERROR"
    return TRPCError(code, message, cause=exc)


def error_shape(err: TRPCError, *, path: str | None, include_stack: bool) -> dict[str, Any]:
    """The default formatter's shape plus ChainGraph's `zodError` (null unless a validation failure)."""
    data: dict[str, Any] = {"code": err.code, "httpStatus": err.http_status}
    if include_stack:
        source = err.cause if err.cause is not None else err
        data["stack"] = "".join(
            traceback.format_exception(type(source), source, source.__traceback__)
        ).rstrip() or f"TRPCError: {err.message}"
    if path is not None:
        data["path"] = path
    data["zodError"] = None
    data.update(err.extra_data)
    return {"message": err.message, "code": err.json_rpc_code, "data": data}
