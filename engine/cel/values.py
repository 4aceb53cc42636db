"""Python data <-> CEL values. Every number in a gate is an exact ``Decimal``; never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from celpy import celtypes

__all__ = ["FALSE", "TRUE", "from_cel", "to_cel"]


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
    # built by to_cel from dicts only: a plain dict copy (MapType.__init__ walks the items in Python)
    __init__ = dict.__init__  # type: ignore[assignment]


class _RecentList(_List):
    """``state.recent`` as the activation builds it. ``ascending`` is the records' timestamps (plain
    ints, in order) when the view lists them oldest first, as the ledger and the dry-run state do; it
    is set on this one object after it is built (a list derived from it, by any operation, has None),
    and lets recent_count start at the first record newer than its ``since_ms`` instead of reading
    every older one (which the count skips without reading any other field)."""

    ascending: list[int] | None = None


# The two booleans every ep4 value uses (to_cel, helpers, compiled gates), so a test is an identity check.
TRUE = celtypes.BoolType(True)
FALSE = celtypes.BoolType(False)


_STRINGS: dict[str, celtypes.StringType] = {}


def _string(text: str) -> celtypes.StringType:
    """One StringType per short text (they are immutable): symbols, sides, kinds recur."""
    found = _STRINGS.get(text)
    if found is None:
        found = celtypes.StringType(text)
        if len(text) <= 64 and len(_STRINGS) < 4096:
            _STRINGS[text] = found
    return found


def to_cel(value: Any) -> Any:
    """Python data -> CEL values; every number becomes an exact ``Decimal``."""
    kind = type(value)
    if kind is Decimal:
        if not value.is_finite():  # ep4 never lets NaN or infinity in; a gate never sees one
            raise TypeError(f"{value} is not a finite decimal")
        return value
    if kind is str:
        return _string(value)
    if kind is bool:
        return TRUE if value else FALSE
    if value is None:
        return None
    if kind is dict:
        # keys stay plain str: StringType hashes and compares in Python, str in C (a field read is a
        # dict lookup; CEL sees no difference, and both evaluators get the same objects)
        return _Map({str(k): to_cel(v) for k, v in value.items()})
    if kind is list or kind is tuple:
        return _List([to_cel(v) for v in value])
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, Decimal):
        return to_cel(Decimal(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in a CEL activation; use Decimal")
    if isinstance(value, str):
        return _string(str(value))
    if isinstance(value, Mapping):
        return _Map({str(k): to_cel(v) for k, v in value.items()})
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
