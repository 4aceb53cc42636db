"""The functions a gate can call, and ep4's three repairs of cel-python's logical operators.

Both evaluators resolve every name through :data:`FUNCTIONS` (the interpreter as its function table,
the planner at compile time), so a helper has one implementation.

Helpers work on exact decimals (spec §4 Rule 4: no rounding heuristics) and are documented in
``docs/gate-variables.md`` (generated from :data:`HELPER_FUNCTIONS`).
"""

from __future__ import annotations

from . import celpy_patches  # noqa: F401  (before anything binds celtypes.logical_or / logical_and)

import bisect
import decimal
import itertools
import operator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from celpy import celtypes
from celpy.evaluation import CELEvalError

from ..memo import continued
from ..numbers import EXACT, DecimalParseError, parse_decimal
from .values import FALSE, TRUE, _List, _Map, _RecentList

__all__ = ["BUILTIN_FUNCTIONS", "FUNCTIONS", "HELPER_FUNCTIONS", "KNOWN_FUNCTIONS", "LITERAL_FUNCTION"]

LITERAL_FUNCTION = "__ep4_decimal"


def _dec(value: Any) -> Decimal:
    if isinstance(value, celtypes.DoubleType):
        raise DecimalParseError("dec() refuses doubles; write the number as a string or literal")
    try:
        return parse_decimal(value if not isinstance(value, celtypes.StringType) else str(value))
    except DecimalParseError as exc:
        raise ValueError(str(exc)) from None


def _need_decimal(name: str, *values: Any) -> None:
    for v in values:
        if type(v) is not Decimal and (not isinstance(v, Decimal) or isinstance(v, bool)):
            raise TypeError(f"{name}() expects decimals, got {type(v).__name__}")


def _is_multiple(value: Any, step: Any) -> celtypes.BoolType:
    """``value`` is an exact whole multiple of ``step`` (step must be > 0)."""
    _need_decimal("is_multiple", value, step)
    if step <= 0:
        raise ValueError("is_multiple(): step must be > 0")
    return TRUE if EXACT.remainder(value, step) == 0 else FALSE


def _aligned(value: Any, base: Any, step: Any) -> celtypes.BoolType:
    """Binance filter alignment: ``(value - base) % step == 0``; a zero step disables the rule."""
    if type(value) is not Decimal or type(base) is not Decimal or type(step) is not Decimal:  # else: decimals
        _need_decimal("aligned", value, base, step)
    if step == 0:
        return TRUE
    if step < 0:
        raise ValueError("aligned(): step must be >= 0")
    return TRUE if EXACT.remainder(EXACT.subtract(value, base), step) == 0 else FALSE


def _dabs(value: Any) -> Decimal:
    _need_decimal("abs", value)
    return abs(value)


def _dmin(a: Any, b: Any) -> Decimal:
    _need_decimal("min", a, b)
    return min(a, b)


def _dmax(a: Any, b: Any) -> Decimal:
    _need_decimal("max", a, b)
    return max(a, b)


def _size(value: Any) -> Decimal:
    return Decimal(len(value))


_MAX_MAGNITUDE = 18  # digits: int() of Decimal('1E+999999') takes 30 s, so bigger is refused first


def _whole(name: str, value: Any) -> int:
    """``int(value)`` for a decimal of at most 18 integer digits; anything larger is an error."""
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() >= _MAX_MAGNITUDE:
        raise ValueError(f"{name}(): {value} is out of range")
    return int(value)


def _minute_of_day(ts_ms: Any) -> Decimal:
    """UTC minute of the day (0..1439) of a millisecond timestamp."""
    _need_decimal("minute_of_day", ts_ms)
    return Decimal(_whole("minute_of_day", ts_ms) // 60000 % 1440)


def _in_windows(ts_ms: Any, windows: Any) -> celtypes.BoolType:
    """Whether the UTC time of ``ts_ms`` falls in one of ``windows``: ``[{start, end}]`` minutes of
    the day, start inclusive, end exclusive; ``start > end`` wraps past midnight."""
    _need_decimal("in_windows", ts_ms)
    minute = _whole("in_windows", ts_ms) // 60000 % 1440
    for w in windows:
        start, end = _whole("in_windows", w["start"]), _whole("in_windows", w["end"])
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)
        if inside:
            return TRUE
    return FALSE


_TIMESTAMP = "timestamp"
_NONE = Decimal(0)  # a count of no record (a Decimal is immutable: one object serves every such count)
_PLAIN_MAPS = frozenset({celtypes.MapType, _Map})  # maps whose items() is dict's own
_LIST_TYPES = frozenset({celtypes.ListType, _List, _RecentList})
_ABSENT = object()
_dict_get = dict.get


def _recent_count(records: Any, since_ms: Any, match: Any) -> Decimal:
    """Number of ``records`` (state.recent) with ``timestamp > since_ms`` whose fields equal every
    entry of ``match``: a counter computed in Python rather than by a CEL filter over the list."""
    if type(since_ms) is not Decimal:
        _need_decimal("recent_count", since_ms)
    if not records and type(records) in _LIST_TYPES and type(match) in _PLAIN_MAPS:
        return _NONE  # no record: none to count (the loop below reads none; a map's items() cannot fail)
    wanted = list(match.items())
    if not records and type(records) in _LIST_TYPES:
        return Decimal(0)
    # ep4's own record maps (type _Map, plain str keys) are read with plain dict lookups by plain str
    # keys (a StringType key hashes in Python); a key not found there (absent, or not a valid CEL
    # key type) is read the reference way, r.get(k), which gives the same value or error as before
    plain = [(str(k) if isinstance(k, str) else k, k, v) for k, v in wanted]
    n = 0
    ascending = records.ascending if type(records) is _RecentList else None
    if ascending is not None and len(ascending) == len(records):
        # the activation's state.recent, oldest first: the records at or before since_ms are the
        # ones the loop below would skip on their timestamp alone; start after them
        start = bisect.bisect_right(ascending, since_ms)
        if len(records) - start >= _COUNT_IN_C_FROM:
            records = list(itertools.islice(records, start, None))
            counted = _count_plain(records, plain)
            if counted is not None:
                return Decimal(counted)
        else:
            records = itertools.islice(records, start, None)
    for r in records:
        if type(r) is _Map:
            ts = _dict_get(r, _TIMESTAMP, _ABSENT)
            if (r[_TIMESTAMP] if ts is _ABSENT else ts) > since_ms:
                for p, k, v in plain:  # all(), in order, stopping at the first field that differs
                    a = _dict_get(r, p, _ABSENT)
                    if a is _ABSENT:
                        a = r.get(k)
                    if not (a is v or a == v):
                        break
                else:
                    n += 1
        elif r[_TIMESTAMP] > since_ms and all(r.get(k) == v for k, v in wanted):
            n += 1
    return Decimal(n)


# below this many records in the window the loop is as quick (measured on successive state views, a
# window sliding by one record, 3 keys: 16 records 9 vs 12 us, 32 about even, 64 records 25 vs 15 us,
# 220 records 85-90 vs 31 us, 600 records 215-227 vs 50 us)
_COUNT_IN_C_FROM = 32


def _count_plain(records: list[Any], plain: list[tuple[Any, Any, Any]]) -> int | None:
    """The loop of :func:`_recent_count` over records that are all ep4's own record maps (``_Map``)
    holding every wanted key, with plain str keys; None when that is not so (the loop decides).

    Each record's match is worked out in C (:func:`_matches`) and kept, per match (the wanted keys
    and the very value objects), with the sequence of records it was worked out for: the next state
    view's records are mostly the same objects, slid by the ones that left the window and extended
    by the new ones, so only the new ones are compared. A kept match is the comparison the loop
    would make on the same two objects (a record map and its values never change), and those
    comparisons raised nothing; the new records come after them, so the first comparison that
    raises, if any, is the loop's. tests/test_performance.py compares both over sliding windows."""
    if not records:
        return 0
    if any(type(p) is not str for p, _, _ in plain):
        return None
    wanted = tuple(v for _, _, v in plain)
    key = tuple((p, id(v)) for p, _, v in plain)
    held = _COUNTED.get(key)
    kept: list[bool] = []
    fresh = records
    # the same value objects: an entry keeps them alive, so no other object has their ids
    found = continued(held[1], records) if held is not None else None
    if found is not None:
        k, m = found
        kept, fresh = held[2][k:k + m], records[m:]
    matches = _matches(fresh, plain, wanted)
    if matches is None:
        return None
    flags = kept + matches
    if len(_COUNTED) >= _COUNTED_MAX:
        _COUNTED.clear()
    _COUNTED[key] = (wanted, tuple(records), flags)
    return sum(flags)


# per match (its keys and the ids of its value objects): (the value objects, the records, their matches)
_COUNTED: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[Any, ...], list[bool]]] = {}
_COUNTED_MAX = 64


def _matches(records: list[Any], plain: list[tuple[Any, Any, Any]], wanted: tuple[Any, ...]) -> list[bool] | None:
    """Whether each record matches, computed in C: one column of values per key, then each record's
    values compared with the wanted ones as a tuple, which compares element by element in the
    loop's order (``a is v or a == v``, the record's value on the left) and stops at the first that
    differs. None when a record is not a ``_Map`` or lacks a key."""
    if not records:
        return []
    if set(map(type, records)) != {_Map}:
        return None
    columns = []
    for p, _, _ in plain:
        column = list(map(_dict_get, records, itertools.repeat(p), itertools.repeat(_ABSENT)))
        if object in set(map(type, column)):  # a record without the key: the loop reads it the reference way
            return None
        columns.append(column)
    if not columns:
        return [True] * len(records)
    return list(map(operator.eq, zip(*columns), itertools.repeat(wanted)))


def _literal_decimal(text: Any) -> Decimal:
    return Decimal(str(text))


@dataclass(frozen=True)
class _Helper:
    function: Callable[..., Any]
    returns_bool: bool
    signature: str
    doc: str


HELPER_FUNCTIONS: dict[str, _Helper] = {
    "dec": _Helper(_dec, False, "dec(string|number) -> decimal", "exact decimal from text, e.g. dec(\"0.001\")"),
    "is_multiple": _Helper(_is_multiple, True, "is_multiple(value, step) -> bool", "value % step == 0, exactly; step > 0"),
    "aligned": _Helper(_aligned, True, "aligned(value, base, step) -> bool", "(value - base) % step == 0 exactly; step 0 = rule disabled (Binance filter semantics)"),
    "abs": _Helper(_dabs, False, "abs(decimal) -> decimal", "absolute value"),
    "min": _Helper(_dmin, False, "min(a, b) -> decimal", "smaller of two decimals"),
    "max": _Helper(_dmax, False, "max(a, b) -> decimal", "larger of two decimals"),
    "size": _Helper(_size, False, "size(list|map|string) -> decimal", "number of elements, as a decimal"),
    "minute_of_day": _Helper(_minute_of_day, False, "minute_of_day(ts_ms) -> decimal", "UTC minute of day 0..1439"),
    "in_windows": _Helper(_in_windows, True, "in_windows(ts_ms, windows) -> bool", "UTC time inside one of [{start, end}] minute-of-day windows"),
    "recent_count": _Helper(_recent_count, False, "recent_count(state.recent, since_ms, {field: value, ...}) -> decimal", "records newer than since_ms whose fields equal every given value (fast counter for frequency gates)"),
}


# --- ep4's logical operators (docs/cel.md "Where ep4 differs from cel-python") ---
# cel-python answers `error || error` with a new "no matching overload" error whose text quotes both
# errors' internals; the CEL spec returns an error of the operands. ep4 returns the left one, so a
# gate's message names the real cause (e.g. the null field it read).


def _logical(stock: Callable[[Any, Any], Any], name: str, absorbing: str) -> Callable[[Any, Any], Any]:
    def apply(x: Any, y: Any) -> Any:
        if isinstance(x, celtypes.BoolType) or isinstance(y, celtypes.BoolType):
            return stock(x, y)  # a boolean operand: cel-python's own absorption rules
        if isinstance(x, CELEvalError):
            return x
        if isinstance(y, CELEvalError):
            return y
        return stock(x, y)  # raises: no matching overload

    apply.__name__ = name
    apply.__doc__ = f"CEL ``{name}``: {absorbing} absorbs an error on either side; otherwise an operand error is the result."
    return apply


logical_or = _logical(celtypes.logical_or, "||", "true")
logical_and = _logical(celtypes.logical_and, "&&", "false")


def logical_condition(e: Any, x: Any, y: Any) -> Any:
    """CEL ``e ? x : y``: an error in ``e`` is the result (cel-python builds a new one)."""
    if isinstance(e, CELEvalError):
        return e
    return celtypes.logical_condition(e, x, y)


_DECIMAL_SIGNALS = {
    decimal.Inexact: "inexact decimal arithmetic: the exact result needs more than 60 digits (ep4 never rounds)",
    decimal.Rounded: "inexact decimal arithmetic: the exact result needs more than 60 digits (ep4 never rounds)",
    decimal.Overflow: "decimal overflow: the result is out of range",
}


def _exact(op: Callable[..., Any], name: str) -> Callable[..., Any]:
    """An arithmetic operator whose inexact (or out-of-range) decimal result is an error *value*.

    cel-python lets the decimal signal escape as a Python exception, past ``||``/``&&``/``?:``, so
    ``true || 1 / 3 > 0`` failed instead of being true (CEL spec: errors are values those operators
    absorb). A division by zero stays the ZeroDivisionError the interpreter already turns into
    "modulus or divide by zero"."""

    def apply(*args: Any) -> Any:
        try:
            return op(*args)
        except ZeroDivisionError:
            raise
        except decimal.DecimalException as ex:
            return CELEvalError(_DECIMAL_SIGNALS.get(ex.__class__, "invalid decimal operation"), ex.__class__, ())

    apply.__name__ = name
    return apply


def _quiet(function: Callable[..., Any]) -> Callable[..., Any]:
    """A helper whose every failure is an error value: a decimal signal or a missing record field
    becomes a ValueError, which both evaluators turn into an error the logical operators absorb."""

    def apply(*args: Any) -> Any:
        try:
            return function(*args)
        except decimal.DecimalException as ex:
            raise ValueError(f"{function.__name__.lstrip('_')}(): {_DECIMAL_SIGNALS.get(ex.__class__, 'invalid decimal operation')}") from None
        except KeyError as ex:
            raise ValueError(f"{function.__name__.lstrip('_')}(): no field {ex.args[0]!r}") from None

    apply.__name__ = function.__name__
    apply.__wrapped__ = function  # type: ignore[attr-defined]
    return apply


FUNCTIONS: dict[str, Callable[..., Any]] = {name: _quiet(h.function) for name, h in HELPER_FUNCTIONS.items()}
FUNCTIONS["_+_"] = _exact(operator.add, "add")
FUNCTIONS["_-_"] = _exact(operator.sub, "sub")
FUNCTIONS["_*_"] = _exact(operator.mul, "mul")
FUNCTIONS["_/_"] = _exact(operator.truediv, "truediv")
FUNCTIONS["_%_"] = _exact(operator.mod, "mod")
FUNCTIONS["-_"] = _exact(operator.neg, "neg")
FUNCTIONS[LITERAL_FUNCTION] = _literal_decimal
FUNCTIONS["_||_"] = logical_or
FUNCTIONS["_&&_"] = logical_and
FUNCTIONS["_?_:_"] = logical_condition

BUILTIN_FUNCTIONS = frozenset({"has", "contains", "startsWith", "endsWith", "matches", "string", "type", "bool"})
KNOWN_FUNCTIONS = frozenset(HELPER_FUNCTIONS) | BUILTIN_FUNCTIONS
