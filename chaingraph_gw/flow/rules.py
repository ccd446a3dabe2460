"""Connect-time port compatibility (ChainGraph's default transfer rules, node catalog §3.1).

These checks run when a flow document is loaded (ChainGraph runs them when a connection is made in the
editor). At runtime values move between ports without any conversion.

Rules, after unwrapping ``any`` ports that have an underlying type:

* the source must be an ``output`` or ``passthrough`` port, the target an ``input`` or ``passthrough`` port;
* anything → ``any`` (without underlying type) is allowed;
* ``any`` (without underlying type) → a typed port is refused;
* string→string, number→number, boolean→boolean, enum→enum, secret→secret, stream→stream are allowed;
* object→object: allowed when the target is schema-mutable or has no schema, when the source is
  schema-mutable (its properties are not known before it runs), or when every target property exists
  in the source with a compatible type (the source may have extra properties);
* array→array: allowed when the target is mutable, its item type is missing/``any``, the source is
  mutable or the item types are compatible;
* anything else (number→string, enum→string, object→array, …) is refused with
  ``Incompatible port types: <source> -> <target>``.
"""

from __future__ import annotations

from ..nodes.sdk import PortSpec

_OUT = ("output", "passthrough")
_IN = ("input", "passthrough")


def can_connect(source: PortSpec, target: PortSpec, *, source_label: str | None = None,
                target_label: str | None = None) -> str | None:
    """``None`` if ``source`` may feed ``target``; otherwise the reason, e.g.
    ``'Incompatible port types: number -> string'`` or
    ``'Source port a.text is not an output or passthrough port.'``.

    The labels (default: the port keys) name the ports in direction errors.
    """
    if source.direction not in _OUT:
        return f"Source port {source_label or source.key} is not an output or passthrough port."
    if target.direction not in _IN:
        return f"Target port {target_label or target.key} is not an input or passthrough port."
    reason = type_mismatch(source, target)
    return None if reason is None else f"Incompatible port types: {reason}"


def type_mismatch(source: PortSpec, target: PortSpec) -> str | None:
    """Direction-free type check: ``None`` when compatible, else a short reason such as
    ``'number -> string'`` or ``"object -> object (source has no property 'age')"``."""
    s = source.effective()
    t = target.effective()
    if t.type == "any":
        return None
    if s.type != t.type:
        return f"{s.type} -> {t.type}"
    if s.type == "object":
        return _object_mismatch(s, t)
    if s.type == "array":
        return _array_mismatch(s, t)
    return None


def _object_mismatch(s: PortSpec, t: PortSpec) -> str | None:
    if t.is_schema_mutable or not t.schema or s.is_schema_mutable:
        return None
    for tp in t.schema:
        sp = s.property(tp.key)
        if sp is None:
            return f"object -> object (source has no property '{tp.key}')"
        inner = type_mismatch(sp, tp)
        if inner is not None:
            return f"object -> object (property '{tp.key}': {inner})"
    return None


def _array_mismatch(s: PortSpec, t: PortSpec) -> str | None:
    if t.is_mutable or t.is_schema_mutable or t.item is None or t.item.effective().type == "any":
        return None
    if s.is_mutable or s.is_schema_mutable:
        return None
    inner = type_mismatch(s.item or PortSpec("item", "any"), t.item)
    return None if inner is None else f"array -> array (items: {inner})"


__all__ = ["can_connect", "type_mismatch"]
