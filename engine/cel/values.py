"""Python data <-> CEL values. Every number in a gate is an exact ``Decimal``; never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from celpy import celtypes

__all__ = ["from_cel", "to_cel"]


class _List(celtypes.ListType):
    """cel-python 0.5 raises on ``list != null`` (while ``list == null`` works); CEL says true."""

    def __ne__(self, other: Any) -> bool:
        return True if other is None else super().__ne__(other)

    __hash__ = None  # type: ignore[assignment]


class _Map(celtypes.MapType):
    """Same ``!= null`` repair as :class:`_List`."""

    def __ne__(self, other: Any) -> bool:
        return True if other is None else super().__ne__(other)

    __hash__ = None  # type: ignore[assignment]


_TRUE = celtypes.BoolType(True)
_FALSE = celtypes.BoolType(False)


def to_cel(value: Any) -> Any:
    """Python data -> CEL values; every number becomes an exact ``Decimal``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in a CEL activation; use Decimal")
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, Mapping):
        return _Map({celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return _List([to_cel(v) for v in value])
    raise TypeError(f"cannot pass {type(value).__name__} to CEL")


def from_cel(value: Any) -> Any:
    """CEL values -> plain Python data (the inverse of :func:`to_cel`)."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.MapType):
        return {str(k): from_cel(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType):
        return [from_cel(v) for v in value]
    return value
