"""Compute-once values kept with the immutable object they derive from (a frozen model or bundle).

A context, a constraints snapshot, a ledger record and a bundle never change after they are built,
so what ep4 derives from them (CEL values, canonical JSON) is computed on first use and kept in the
object's ``__dict__`` under a key no field can have: it never reaches a dump, a comparison or a repr.

The store is tagged with the ``id`` of the object that made it. ``model_copy(update=...)`` (and
``copy.copy``) copies ``__dict__``, store included, into an object whose fields may differ: the copy
has another ``id`` for as long as it lives (both objects exist when it is made), so it never reads
the original's values and builds its own.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["memo", "memo_of"]

_KEY = "__ep4_memo__"


def _store(owner: Any) -> dict[Any, Any]:
    entry = owner.__dict__.get(_KEY)
    if entry is None or entry[0] != id(owner):
        entry = owner.__dict__[_KEY] = (id(owner), {})
    return entry[1]


def memo(owner: Any, key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` once per (owner, key)."""
    try:
        entry = owner.__dict__[_KEY]  # the common case: a few lookups, no call
        if entry[0] == id(owner):
            return entry[1][key]
    except KeyError:
        pass
    value = _store(owner)[key] = build()
    return value


def memo_of(owner: Any, key: Any, build: Callable[[Any], Any]) -> Any:
    """``build(owner)`` once per (owner, key): for a loop over many owners with one module-level
    ``build`` (no closure made per item)."""
    try:
        entry = owner.__dict__[_KEY]
        if entry[0] == id(owner):
            return entry[1][key]
    except KeyError:
        pass
    value = _store(owner)[key] = build(owner)
    return value
