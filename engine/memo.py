"""Compute-once values kept with the immutable object they derive from (a frozen model or bundle).

A context, a constraints snapshot and a bundle never change after they are built, so what ep4
derives from them (CEL values, canonical JSON) is computed on first use and kept in the object's
``__dict__`` under a key no field can have: it never reaches a dump, a comparison or a repr.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["memo", "memo_of"]

_KEY = "__ep4_memo__"
_MISSING = object()


def memo(owner: Any, key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` once per (owner, key)."""
    try:
        return owner.__dict__[_KEY][key]  # the common case: two lookups, no call
    except KeyError:
        pass
    store = owner.__dict__.get(_KEY)
    if store is None:
        store = owner.__dict__[_KEY] = {}
    value = store[key] = build()
    return value


def memo_of(owner: Any, key: Any, build: Callable[[Any], Any]) -> Any:
    """``build(owner)`` once per (owner, key): for a loop over many owners with one module-level
    ``build`` (no closure made per item)."""
    try:
        return owner.__dict__[_KEY][key]
    except KeyError:
        pass
    store = owner.__dict__.get(_KEY)
    if store is None:
        store = owner.__dict__[_KEY] = {}
    value = store[key] = build(owner)
    return value
