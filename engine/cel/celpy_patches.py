"""One change to cel-python, applied before either evaluator runs (docs/cel.md, "cel-python deviations").

``celtypes.logical_or`` / ``logical_and`` given two non-boolean operands raise
``TypeError(f"{type(x)} {x!r} or {type(y)} {y!r}")``, which the macros ``exists`` / ``all`` wrap into
a new error value. When both operands are errors, the new error's message quotes both, escaped, so
in a macro over a list whose elements all give errors the message doubles with every element:
24 elements take 3.5 s, 40 would never finish (found by ``make fuzz``). The semantics stay exactly
cel-python's (which operand absorbs, which error results); only the quoted text of an error operand
is replaced by ``CELEvalError(…)``, bounded, and the same for both evaluators because both call
these functions (the interpreter looks them up on ``celpy.celtypes`` at each call).
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

applied = True
