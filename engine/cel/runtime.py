"""What compiled gates call: one function per rule of cel-python's ``Evaluator``, same values, same errors.

Each function here is the body of one ``celpy.evaluation.Evaluator`` method with the tree walk taken
out: it receives the already-evaluated operands (or, where the interpreter evaluates a sub-expression
inside a ``try``, a thunk) and does exactly what the interpreter does with them — the same Python
operator on the same CEL values, the same exceptions caught, the same ``CELEvalError`` built with the
same arguments and the same tree node. That is what makes the two evaluators agree byte for byte,
error messages included; ``tests/test_cel_differential.py`` checks it.

Conventions the planner (``engine/cel/planner.py``) relies on:

* an error is a *value* (a ``CELEvalError`` returned), absorbed by ``||``, ``&&``, ``?:`` and the
  ``all``/``exists`` macros exactly as the interpreter absorbs it;
* what the interpreter lets *propagate* as a Python exception (inexact decimal arithmetic, an error
  inside a ``map``/``filter``/``exists_one`` body, iterating a non-list) propagates here too, from the
  same place, so it is never absorbed where the interpreter does not absorb it;
* every operand is evaluated, left to right, even when the result is already known: the interpreter
  does, and an operand that raises must raise in both.
"""

from __future__ import annotations

import operator
from decimal import Decimal
from functools import reduce
from typing import Any, Callable

from celpy import celtypes
from celpy.evaluation import CELEvalError, NameContainer, eval_error, operator_in

__all__ = ["T", "F"]  # the rest is reached through the generated code's namespace

T = celtypes.BoolType(True)
F = celtypes.BoolType(False)
_E = CELEvalError
_Bool = celtypes.BoolType
_MapType = celtypes.MapType
_MessageType = celtypes.MessageType
_ListType = celtypes.ListType


def _overload(label: str, ex: BaseException, tree: Any, *operands: Any) -> CELEvalError:
    types = ", ".join(str(type(o)) for o in operands)
    value = _E(f"found no matching overload for {label} applied to '({types})'", ex.__class__, ex.args, tree=tree)
    value.__cause__ = ex
    return value


def _overflow(ex: BaseException, *, tree: Any = None, token: Any = None) -> CELEvalError:
    value = _E("return error for overflow", ex.__class__, ex.args, tree=tree, token=token)
    value.__cause__ = ex
    return value


# --- names ---


class Undeclared:
    """Marker for a root variable the activation does not hold (see :func:`var`)."""


def var(activation: Any, name: str, tree: Any) -> Any:
    """``ident``: a root variable; the interpreter falls back to the function table, then errors."""
    try:
        return activation[name]
    except KeyError as ex:
        value = _E(f"undeclared reference to '{name}' (in activation)", ex.__class__, ex.args, tree=tree)
        value.__cause__ = ex
        return value


# --- logic (ep4's _||_, _&&_, _?_:_ from engine.cel.operators, wrapped as the interpreter wraps them) ---


def or_(a: Any, b: Any, tree: Any, _op: Callable[[Any, Any], Any]) -> Any:
    try:
        return _op(a, b)
    except TypeError as ex:
        return _overload("_||_", ex, tree, a, b)


def and_(a: Any, b: Any, tree: Any, _op: Callable[[Any, Any], Any]) -> Any:
    try:
        return _op(a, b)
    except TypeError as ex:
        return _overload("_&&_", ex, tree, a, b)


def ternary(cond: Any, then: Callable[[], Any], other: Callable[[], Any], tree: Any, _op: Callable[..., Any]) -> Any:
    """``c ? a : b``: the branch is chosen by Python truthiness and evaluated inside the ``try``."""
    left = right = F
    try:
        if cond:
            left = then()
        else:
            right = other()
        return _op(cond, left, right)
    except TypeError as ex:
        value = _E(
            f"found no matching overload for _?_:_ applied to '({type(cond)}, {type(left)}, {type(right)})'",
            ex.__class__, ex.args, tree=tree,
        )
        value.__cause__ = ex
        return value


# --- relations (celpy.evaluation.boolean(operator.xx) inside Evaluator.relation) ---


def lt(a: Any, b: Any, tree: Any) -> Any:
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    try:
        return T if a < b else F
    except TypeError as ex:
        return _overload("'relation_lt'", ex, tree, a, b)


def le(a: Any, b: Any, tree: Any) -> Any:
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    try:
        return T if a <= b else F
    except TypeError as ex:
        return _overload("'relation_le'", ex, tree, a, b)


def gt(a: Any, b: Any, tree: Any) -> Any:
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    try:
        return T if a > b else F
    except TypeError as ex:
        return _overload("'relation_gt'", ex, tree, a, b)


def ge(a: Any, b: Any, tree: Any) -> Any:
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    try:
        return T if a >= b else F
    except TypeError as ex:
        return _overload("'relation_ge'", ex, tree, a, b)


def eq(a: Any, b: Any, tree: Any) -> Any:
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    try:
        return T if a == b else F
    except TypeError as ex:
        return _overload("'relation_eq'", ex, tree, a, b)


def ne(a: Any, b: Any, tree: Any) -> Any:
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    try:
        return T if a != b else F
    except TypeError as ex:
        return _overload("'relation_ne'", ex, tree, a, b)


def in_(a: Any, b: Any, tree: Any) -> Any:
    try:
        return operator_in(a, b)
    except TypeError as ex:
        return _overload("'relation_in'", ex, tree, a, b)


# --- arithmetic (Evaluator.addition / multiplication / unary) ---


def _additive(label: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    def apply(a: Any, b: Any, tree: Any) -> Any:
        try:
            return op(a, b)
        except TypeError as ex:
            return _overload(label, ex, tree, a, b)
        except (ValueError, OverflowError) as ex:
            return _overflow(ex, tree=tree)

    apply.__name__ = label.strip("'")
    return apply


def _multiplicative(label: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    def apply(a: Any, b: Any, tree: Any) -> Any:
        try:
            return op(a, b)
        except TypeError as ex:
            return _overload(label, ex, tree, a, b)
        except ZeroDivisionError as ex:
            value = _E("modulus or divide by zero", ex.__class__, ex.args, tree=tree)
            value.__cause__ = ex
            return value
        except (ValueError, OverflowError) as ex:
            return _overflow(ex, tree=tree)

    apply.__name__ = label.strip("'")
    return apply


add = _additive("'addition_add'", operator.add)
sub = _additive("'addition_sub'", operator.sub)
mul = _multiplicative("'multiplication_mul'", operator.mul)
div = _multiplicative("'multiplication_div'", operator.truediv)
mod = _multiplicative("'multiplication_mod'", operator.mod)


def not_(a: Any, tree: Any) -> Any:
    try:
        return celtypes.logical_not(a)
    except TypeError as ex:
        return _overload("'unary_not'", ex, tree, a)
    except ValueError as ex:
        return _overflow(ex, tree=tree)


def neg(a: Any, tree: Any) -> Any:
    try:
        return -a
    except TypeError as ex:
        return _overload("'unary_neg'", ex, tree, a)
    except ValueError as ex:
        return _overflow(ex, tree=tree)


# --- members ---


def dot(member: Any, name: str, tree: Any) -> Any:
    """``member.name`` (Evaluator.member_dot): maps only; anything else is an error value."""
    if isinstance(member, _E):
        return member
    if isinstance(member, NameContainer):
        if name in member:
            return member[name].value
        return _E(f"No {name!r} in bindings {sorted(member.keys())}", KeyError, None, tree=tree)
    if isinstance(member, _MessageType):
        return member.get(name)
    if isinstance(member, _MapType):
        try:
            return member[name]
        except KeyError:
            return _E(f"no such member in mapping: {name!r}", KeyError, None, tree=tree)
    return _E(f"{member!r} with type: '{type(member)}' does not support field selection", TypeError, None, tree=tree)


def index(member: Any, key: Any, tree: Any) -> Any:
    try:
        return member[key]
    except TypeError as ex:
        return _overload("_[_]", ex, tree, member, key)
    except KeyError as ex:
        value = _E("no such key", ex.__class__, ex.args, tree=tree)
        value.__cause__ = ex
        return value
    except IndexError as ex:
        value = _E("invalid_argument", ex.__class__, ex.args, tree=tree)
        value.__cause__ = ex
        return value


def has(value: Any) -> Any:
    return F if isinstance(value, _E) else T


# --- calls (Evaluator.function_eval / method_eval) ---


def call(function: Callable[..., Any], token: Any, *args: Any) -> Any:
    for a in args:
        if isinstance(a, _E):
            return a
    try:
        return function(*args)
    except ValueError as ex:
        return _overflow(ex, token=token)
    except (TypeError, AttributeError) as ex:
        value = _E("no such overload", ex.__class__, ex.args, token=token)
        value.__cause__ = ex
        return value


def method(function: Callable[..., Any], token: Any, target: Any, *args: Any) -> Any:
    if isinstance(target, _E):
        return target
    return call(function, token, target, *args)


# --- literals ---


def list_lit(*items: Any) -> Any:
    for item in items:
        if isinstance(item, _E):
            return item
    return _ListType(items)


def map_lit(pairs: Callable[[], tuple[Any, ...]], tree: Any) -> Any:
    """``{k: v, ...}``: the interpreter evaluates keys and values inside the ``try`` that turns a
    ValueError (duplicate key) or TypeError (unhashable key) into an error value."""
    try:
        flat = pairs()
        result = _MapType()
        for key, value in zip(flat[0::2], flat[1::2]):
            if key in result:
                raise ValueError(f"Duplicate key {key!r}")
            result[key] = value
        return result
    except (ValueError, TypeError) as ex:
        return _E(ex.args[0], ex.__class__, ex.args, tree=tree)


# --- macros (Evaluator.member_dot_arg) ---

_ALL = eval_error("no such overload", TypeError)(celtypes.logical_and)
_EXISTS = eval_error("no such overload", TypeError)(celtypes.logical_or)


def _absorbing(body: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The interpreter's build_ss_macro_eval: an error raised by the body becomes its value."""

    def run(v: Any) -> Any:
        try:
            return body(v)
        except _E as ex:
            return ex

    return run


def _strict(body: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The interpreter's build_macro_eval: an error value of the body is raised."""

    def run(v: Any) -> Any:
        value = body(v)
        if isinstance(value, _E):
            raise value
        return value

    return run


def m_all(target: Any, body: Callable[[Any], Any]) -> Any:
    if isinstance(target, _E):
        return target
    return reduce(_ALL, map(_absorbing(body), target), T)


def m_exists(target: Any, body: Callable[[Any], Any]) -> Any:
    if isinstance(target, _E):
        return target
    return reduce(_EXISTS, map(_absorbing(body), target), F)


def m_exists_one(target: Any, body: Callable[[Any], Any]) -> Any:
    if isinstance(target, _E):
        return target
    strict = _strict(body)
    count = sum(1 for value in target if bool(strict(value)))
    return _Bool(count == 1)


def m_map(target: Any, body: Callable[[Any], Any]) -> Any:
    if isinstance(target, _E):
        return target
    return _ListType(map(_strict(body), target))


def m_filter(target: Any, body: Callable[[Any], Any]) -> Any:
    if isinstance(target, _E):
        return target
    return _ListType(filter(_strict(body), target))


def result(value: Any) -> Any:
    """Evaluator.evaluate: an error value at the top is raised."""
    if isinstance(value, _E):
        raise value
    return value


DECIMAL = Decimal
