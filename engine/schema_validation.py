"""Spec §4 Rule 2 — Schema Validation: every §3.2 constraint and forbidden combination.

Nothing is fixed: the first problem decides the reason code (which names the field), and every
problem is listed in the result's ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .models import ExecutionContext, PolicyDecision
from .reason_codes import schema_code_for_field

__all__ = ["SchemaFailure", "schema_validation"]

_ACTION_TAGS = {
    "ACTION_OPEN_POSITION",
    "ACTION_CLOSE_POSITION",
    "ACTION_ADJUST_POSITION",
    "ACTION_CANCEL_OPEN_ORDERS",
    "ACTION_NOOP",
}


@dataclass(frozen=True)
class SchemaFailure:
    reason_code: str
    message: str
    errors: tuple[dict[str, str], ...]


def _path(loc: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(p) for p in loc if p not in _ACTION_TAGS)


def _code(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "ep4":
        return err["ctx"]["reason_code"]
    if kind == "extra_forbidden":
        return "UNKNOWN_FIELD"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return "INVALID_ACTION_TYPE"
    path = _path(err["loc"])
    return schema_code_for_field(path[-1] if path else None)


def schema_validation(data: dict[str, Any], context: ExecutionContext) -> PolicyDecision | SchemaFailure:
    """Rule 2: validate against the §3.2 schema, then the cross-input combination (symbol)."""
    try:
        # PolicyDecision.model_validate(data), without its keyword handling: the model's own validator
        decision = PolicyDecision.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        raw = exc.errors(include_url=False)
        errors = tuple(
            {"field": ".".join(_path(e["loc"])) or "(decision)", "reason_code": _code(e), "message": e["msg"]} for e in raw
        )
        first = errors[0]
        return SchemaFailure(first["reason_code"], f"{first['field']}: {first['message']}", errors)
    symbol = getattr(decision.action, "symbol", None)
    if symbol is not None and symbol != context.symbol:
        msg = f"action.symbol {symbol} differs from context.symbol {context.symbol}"
        return SchemaFailure("SYMBOL_MISMATCH", msg, ({"field": "action.symbol", "reason_code": "SYMBOL_MISMATCH", "message": msg},))
    return decision
