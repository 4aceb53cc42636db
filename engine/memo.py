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

from itertools import islice
from operator import is_ as _is
from typing import Any, Callable, Sequence

__all__ = ["KeptById", "Sliding", "continued", "frozen_builder", "memo", "memo_of"]

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


def frozen_builder(cls: type) -> Callable[..., Any]:
    """``build(*values)``: ``cls(*values)`` for a frozen dataclass without ``__post_init__``, every
    field given in order, without the per-field ``object.__setattr__`` of its generated
    ``__init__``: the same class, the same fields in the same order. For ep4's own values on a hot
    path (tests/test_performance.py compares the instances with the dataclass's own)."""
    from dataclasses import fields

    names, new = tuple(f.name for f in fields(cls)), object.__new__

    def build(*values: Any) -> Any:
        obj = new(cls)
        obj.__dict__.update(zip(names, values))
        return obj

    return build


def continued(old: Sequence[Any], new: Sequence[Any]) -> tuple[int, int] | None:
    """Where ``new`` continues ``old``: ``(k, m)`` when ``new[:m]`` are the very objects ``old[k:k + m]``,
    ``k`` the first place in ``old`` holding ``new[0]`` and ``m = min(len(old) - k, len(new))`` (a
    sequence of records slid by the ones that left a window and extended by new ones); None when
    ``new`` is empty, ``new[0]`` is not in ``old``, or the two differ from there."""
    if not new:
        return None
    first = new[0]
    for k in range(len(old)):  # a few steps when the sequence slid
        if old[k] is first:
            m = min(len(old) - k, len(new))
            return (k, m) if all(map(_is, islice(old, k, k + m), new)) else None  # the first m of new
    return None


class Sliding:
    """``build(item)`` for each item of a sequence, reusing what was built for the previous sequence
    when the new one continues it: a state view's records are the last view's, minus the oldest
    that left the lookback, plus the newest. Items are matched by identity (the ledger and the
    dry-run state hand out one immutable object per unchanged record), so a reused value is the
    value of that very object; anything else (another order, a changed record) is built afresh.

    Only the last sequence is kept, as one tuple replaced whole, so threads sharing an instance see
    either the old or the new one and at worst build again."""

    __slots__ = ("_build", "_last")

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self._build = build
        self._last: tuple[tuple[Any, ...], list[Any]] | None = None

    def values(self, items: Any) -> list[Any]:
        """``[build(x) for x in items]`` (a new list, the caller's to keep)."""
        items = tuple(items)  # kept as it is now (a tuple is kept as is)
        last, build = self._last, self._build
        found = continued(last[0], items) if last is not None else None
        if found is not None:
            k, m = found
            values = last[1][k:k + m] + [build(x) for x in items[m:]]
        else:
            values = [build(x) for x in items]
        self._last = (items, values)
        return list(values)


class KeptById:
    """``build(item)`` once per immutable object, for a few thousand of them: trace entries, most of
    which are a gate's own shared entry (``Gate.passed`` / ``Gate.refused``). Unlike :func:`memo_of`,
    nothing is written into the object; each kept object is held here, so its id names it for as
    long as it is kept. ``keep(item)`` says whether an item is worth keeping (one made per
    evaluation is not); at most ``size`` are kept, and past that values are built each time."""

    __slots__ = ("_build", "_keep", "_size", "_kept")

    def __init__(self, build: Callable[[Any], Any], keep: Callable[[Any], bool], size: int = 4096) -> None:
        self._build, self._keep, self._size = build, keep, size
        self._kept: dict[int, tuple[Any, Any]] = {}

    def values(self, items: Any) -> list[Any]:
        """``[build(x) for x in items]``, each from what is kept where it can be."""
        kept, out = self._kept, []
        for item in items:
            hit = kept.get(id(item))
            if hit is None or hit[0] is not item:
                hit = (item, self._build(item))
                if len(kept) < self._size and self._keep(item):
                    kept[id(item)] = hit
            out.append(hit[1])
        return out
