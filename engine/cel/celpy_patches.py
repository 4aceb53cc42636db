"""Two changes to cel-python, applied before either evaluator runs.

1. (docs/cel.md, "cel-python deviations") ``celtypes.logical_or`` / ``logical_and`` given two non-boolean operands raise
``TypeError(f"{type(x)} {x!r} or {type(y)} {y!r}")``, which the macros ``exists`` / ``all`` wrap into
a new error value. When both operands are errors, the new error's message quotes both, escaped, so
in a macro over a list whose elements all give errors the message doubles with every element:
24 elements take 3.5 s, 40 would never finish (found by ``make fuzz``). The semantics stay exactly
cel-python's (which operand absorbs, which error results); only the quoted text of an error operand
is replaced by ``CELEvalError(…)``, bounded, and the same for both evaluators because both call
these functions (the interpreter looks them up on ``celpy.celtypes`` at each call).

2. (issue 6, no change of meaning) ``celtypes.StringType`` defines ``__eq__``, ``__ne__`` and
``__hash__`` in Python as ``super().__eq__(other)`` and so on: each does exactly what ``str``'s own
does, but through a Python call, on every comparison of a CEL string and every dict lookup keyed by
one (a third of a gate like ``intent.margin_mode == params.required_margin_mode``). They are removed,
so ``str``'s C slots answer: the same results, ``NotImplemented`` for a non-string alike, the same
hash. Only definitions that are those delegations are removed (their code is checked first), so a
cel-python that changes them keeps its own; tests/test_numbers_and_cel.py compares both.
"""

from __future__ import annotations

from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError

__all__ = ["applied"]

MAX_QUOTED = 200


def _quoted(v: Any) -> str:
    if isinstance(v, CELEvalError):
        return "CELEvalError(…)"
    text = repr(v)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"


def _bounded(stock: Any, word: str) -> Any:
    def logical(x: Any, y: Any) -> Any:
        if not isinstance(x, celtypes.BoolType) and not isinstance(y, celtypes.BoolType):
            raise TypeError(f"{type(x)} {_quoted(x)} {word} {type(y)} {_quoted(y)}")
        return stock(x, y)

    logical.__name__ = stock.__name__
    logical.__doc__ = stock.__doc__
    logical.ep4_bounded = True  # type: ignore[attr-defined]
    return logical


if not getattr(celtypes.logical_or, "ep4_bounded", False):
    celtypes.logical_or = _bounded(celtypes.logical_or, "or")
    celtypes.logical_and = _bounded(celtypes.logical_and, "and")

_DELEGATIONS = {
    "__eq__": "return super().__eq__(other)",
    "__ne__": "return super().__ne__(other)",
    "__hash__": "return super().__hash__()",
}


def _reference_class(base: type = str) -> type:
    """A ``base`` subclass with the three delegations as cel-python writes them, compiled here."""
    source = "class StringType(base):\n" + "".join(
        f"    def {n}(self{', other' if 'other' in s else ''}):\n        {s}\n" for n, s in _DELEGATIONS.items())
    namespace: dict[str, Any] = {"base": base}
    exec(compile(source, "<ep4 StringType reference>", "exec"), namespace)
    return namespace["StringType"]


def _reference() -> dict[str, Any]:
    """The delegations' functions: what cel-python's own must equal."""
    cls = _reference_class()
    return {n: cls.__dict__[n] for n in _DELEGATIONS}


def _is_delegation(function: Any, reference: Any) -> bool:
    """``function`` compiles to the very code of ``reference``: the same bytecode, names, constants
    and arguments (annotations aside), so it does what the reference does and nothing else."""
    code, ref = getattr(function, "__code__", None), reference.__code__
    return code is not None and all(getattr(code, a) == getattr(ref, a) for a in (
        "co_code", "co_names", "co_consts", "co_varnames", "co_argcount", "co_kwonlyargcount", "co_freevars"))


def _plain_strings() -> bool:
    """Remove StringType's Python delegations to ``str`` (change 2 above); False if any is not one."""
    own, reference = celtypes.StringType.__dict__, _reference()
    if not all(n in own and _is_delegation(own[n], reference[n]) for n in _DELEGATIONS):
        return all(n not in own for n in _DELEGATIONS)  # already removed (a reload), or not cel-python's
    for n in _DELEGATIONS:
        delattr(celtypes.StringType, n)
    return True


STRINGS_PLAIN = _plain_strings()
applied = True
