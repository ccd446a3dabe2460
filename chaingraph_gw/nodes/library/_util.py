"""Small helpers shared by the core node modules."""

from __future__ import annotations

import copy
from typing import Any

from ..sdk import UNSET, NodeContext


def get(ctx: NodeContext, key: str, default: Any = UNSET) -> Any:
    """The current value of port ``key``; an absent port (or an UNSET value) is JS undefined → ``default``."""
    v = ctx.values.get(key, UNSET)
    return default if v is UNSET else v


def nullish(v: Any) -> bool:
    """JS ``v == null`` (null or undefined)."""
    return v is None or v is UNSET


def deep(v: Any) -> Any:
    return copy.deepcopy(v)


class JSError(Exception):
    """An error that renders like a JS Error inside template strings: ``${err}`` → ``Name: message``."""

    js_name = "Error"

    def __init__(self, message: str, js_name: str | None = None) -> None:
        super().__init__(message)
        if js_name:
            self.js_name = js_name

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def js_repr(self) -> str:
        return f"{self.js_name}: {self.message}"


def js_error_repr(exc: BaseException) -> str:
    """``String(err)`` for a caught exception (``Error: msg``; TypeError/RangeError keep their names)."""
    if isinstance(exc, JSError):
        return exc.js_repr()
    if isinstance(exc, TypeError):
        return f"TypeError: {exc}"
    return f"Error: {exc}"
