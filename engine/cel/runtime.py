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

from . import celpy_patches  # noqa: F401  (before anything binds celtypes.logical_or / logical_and)

import operator
from decimal import Decimal
from typing import Any, Callable

from celpy import celtypes
from celpy.evaluation import CELEvalError, NameContainer, eval_error

from .functions import FUNCTIONS
from .values import FALSE, TRUE, _List, _Map, _RecentList

__all__ = ["T", "F"]  # the rest is reached through the generated code's namespace

T = TRUE
F = FALSE
_E = CELEvalError
_Bool = celtypes.BoolType
_MapType = celtypes.MapType
_MessageType = celtypes.MessageType
_ListType = celtypes.ListType
_Str = celtypes.StringType
_str_eq = str.__eq__
_PLAIN_MAPS = frozenset({_MapType, _Map})  # MapType subclasses that add nothing to item lookup


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


def var(activation: Any, name: str, tree: Any) -> Any:
    """``ident``: a root variable; the interpreter falls back to the function table, then errors."""
    try:
        return activation[name]
    except KeyError as ex:
        value = _E(f"undeclared reference to '{name}' (in activation)", ex.__class__, ex.args, tree=tree)
        value.__cause__ = ex
        return value


# --- logic (ep4's _||_, _&&_, _?_:_ from engine.cel.functions, wrapped as the interpreter wraps them) ---


def or_(a: Any, b: Any, tree: Any, _op: Callable[[Any, Any], Any]) -> Any:
    if type(a) is _Bool and type(b) is _Bool:  # what logical_or does with two booleans
        return T if (a or b) else F
    try:
        return _op(a, b)
    except TypeError as ex:
        return _overload("_||_", ex, tree, a, b)


def and_(a: Any, b: Any, tree: Any, _op: Callable[[Any, Any], Any]) -> Any:
    if type(a) is _Bool and type(b) is _Bool:
        return T if (a and b) else F
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


def _relation(label: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """celpy.evaluation.boolean(op) inside Evaluator.relation: an error operand is the result, a
    TypeError is "no matching overload"."""

    def apply(a: Any, b: Any, tree: Any) -> Any:
        if isinstance(a, _E):
            return a
        if isinstance(b, _E):
            return b
        try:
            return T if op(a, b) else F
        except TypeError as ex:
            return _overload(label, ex, tree, a, b)

    apply.__name__ = label.strip("'")
    return apply


lt = _relation("'relation_lt'", operator.lt)
le = _relation("'relation_le'", operator.le)
gt = _relation("'relation_gt'", operator.gt)
ge = _relation("'relation_ge'", operator.ge)
_eq = _relation("'relation_eq'", operator.eq)
_ne = _relation("'relation_ne'", operator.ne)


def eq(a: Any, b: Any, tree: Any) -> Any:
    if type(a) is _Str and type(b) is _Str:  # StringType.__eq__ is str.__eq__, minus two Python calls
        return T if _str_eq(a, b) else F
    return _eq(a, b, tree)


def ne(a: Any, b: Any, tree: Any) -> Any:
    if type(a) is _Str and type(b) is _Str:
        return F if _str_eq(a, b) else T
    return _ne(a, b, tree)


def in_(a: Any, b: Any, tree: Any) -> Any:
    """celpy.evaluation.operator_in (without its per-call ``typing`` casts, which cost ~15 µs)."""
    if isinstance(a, _E):
        return a
    if isinstance(b, _E):
        return b
    found: Any = F
    try:
        for c in b:
            try:
                if c == a:
                    return T
            except TypeError as ex:
                found = _E("no such overload", ex.__class__, ex.args)
    except TypeError as ex:  # not iterable: the relation's own handler in the interpreter
        return _overload("'relation_in'", ex, tree, a, b)
    return found


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


add = _additive("'addition_add'", FUNCTIONS["_+_"])
sub = _additive("'addition_sub'", FUNCTIONS["_-_"])
mul = _multiplicative("'multiplication_mul'", FUNCTIONS["_*_"])
div = _multiplicative("'multiplication_div'", FUNCTIONS["_/_"])
mod = _multiplicative("'multiplication_mod'", FUNCTIONS["_%_"])
_neg = FUNCTIONS["-_"]


def not_(a: Any, tree: Any) -> Any:
    if type(a) is _Bool:
        return F if a else T
    try:
        return celtypes.logical_not(a)
    except TypeError as ex:
        return _overload("'unary_not'", ex, tree, a)
    except ValueError as ex:
        return _overflow(ex, tree=tree)


def neg(a: Any, tree: Any) -> Any:
    try:
        return _neg(a)
    except TypeError as ex:
        return _overload("'unary_neg'", ex, tree, a)
    except ValueError as ex:
        return _overflow(ex, tree=tree)


# --- members ---


def dot(member: Any, name: str, tree: Any) -> Any:
    """``member.name`` (Evaluator.member_dot): maps only; anything else is an error value."""
    if type(member) in _PLAIN_MAPS:  # MapType.__getitem__ with a str key is a dict lookup
        value = _dict_get(member, name, _ABSENT)
        if value is not _ABSENT:
            return value
        return _E(f"no such member in mapping: {name!r}", KeyError, None, tree=tree)
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


_ABSENT = object()
_dict_get = dict.get


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


def map_keys(keys: tuple[Any, ...], values: tuple[Any, ...]) -> Any:
    """The fast path's ``{k: v, ...}`` with distinct string-literal keys: the map map_lit builds (the
    same keys, in order), without its duplicate-key walk, which cannot find one. Made as an empty
    MapType (its ``__init__`` with no items only initialises the empty dict) filled by dict's own
    update, as the item assignments it stands for (MapType has no ``__setitem__`` of its own)."""
    result = _new_dict(_MapType)
    _dict_update(result, zip(keys, values))
    return result


_new_dict, _dict_update = dict.__new__, dict.update


# --- macros (Evaluator.member_dot_arg) ---

_ALL = eval_error("no such overload", TypeError)(celtypes.logical_and)
_EXISTS = eval_error("no such overload", TypeError)(celtypes.logical_or)


def _strict(body: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The interpreter's build_macro_eval: an error value of the body is raised."""

    def run(v: Any) -> Any:
        value = body(v)
        if isinstance(value, _E):
            raise value
        return value

    return run


def m_all(target: Any, body: Callable[[Any], Any]) -> Any:
    """``reduce(logical_and, map(ss_body, target), true)``: every element, errors kept as values
    (build_ss_macro_eval), combined by cel-python's own logical_and."""
    if isinstance(target, _E):
        return target
    acc: Any = T
    for v in target:
        try:
            r = body(v)
        except _E as ex:
            r = ex
        acc = (T if (acc and r) else F) if type(acc) is _Bool and type(r) is _Bool else _ALL(acc, r)
    return acc


def m_exists(target: Any, body: Callable[[Any], Any]) -> Any:
    if isinstance(target, _E):
        return target
    acc: Any = F
    for v in target:
        try:
            r = body(v)
        except _E as ex:
            r = ex
        acc = (T if (acc or r) else F) if type(acc) is _Bool and type(r) is _Bool else _EXISTS(acc, r)
    return acc


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


DECIMAL = Decimal  # the fast path's type test for arithmetic operands

# The fast path's ``x == null`` / ``x != null`` (planner._Fast.f_relation): the value types whose
# Python comparison with None is False / True without raising, so an identity test gives the
# comparison's own answer without running it (a Decimal asks numbers.Rational, an ABC, whether None
# is one; a StringType compares in Python). Any other type is compared as before.
# tests/test_cel_differential.py checks each against the comparison itself.
NOT_NULL = frozenset({Decimal, celtypes.StringType, celtypes.BoolType, _Map, _List, _RecentList})


# --- the fast path (planner's _Fast): native Python on well-typed values, or Bail ---
# A gate first runs its fast function; any exception there (Bail included) means "not the typed
# case", and the gate runs the functions above instead, from scratch. So the fast path only has to
# be right when it returns, and it returns only through operations whose Python meaning is the
# interpreter's meaning for those operands.


class Bail(Exception):
    """The fast path met a value outside its typed case; the reference path decides."""


def bail() -> Any:
    raise Bail


_LISTS = frozenset({_ListType, _List, _RecentList})  # _RecentList: state.recent, a _List with its timestamps
_SCALARS = frozenset({Decimal, _Str, str, _Bool})


def or_full(a: Any, b: Any) -> Any:
    """``a || b`` when ``b`` must be evaluated anyway (it may raise, as in the interpreter)."""
    if a is T:
        return a
    if a is F:
        return b
    raise Bail


def and_full(a: Any, b: Any) -> Any:
    if a is F:
        return a
    if a is T:
        return b
    raise Bail


def fin(item: Any, container: Any) -> Any:
    """``item in list`` for a scalar item: list.__contains__ compares ``element == item`` in order,
    as operator_in does; a TypeError there (a non-scalar element) bails."""
    if type(container) in _LISTS and type(item) in _SCALARS:
        return T if item in container else F
    raise Bail


def fhas(member: Any, name: str) -> Any:
    if type(member) in _PLAIN_MAPS:
        return T if name in member else F
    if isinstance(member, _E) or isinstance(member, (NameContainer, _MapType)):
        raise Bail
    return F


def fok(value: Any) -> Any:
    """A function may return an error value (matches()); the fast path never carries one."""
    if isinstance(value, _E):
        raise Bail
    return value


def _quantifier(decisive: Any, otherwise: Any) -> Callable[[Any, Callable[[Any], Any], bool], Any]:
    """all (decisive F) and exists (decisive T) on a list of booleans; ``short``: the body cannot
    raise in the interpreter, so the first decisive element ends it."""

    def run(target: Any, body: Callable[[Any], Any], short: bool) -> Any:
        if type(target) not in _LISTS:
            raise Bail
        result = otherwise
        for v in target:
            r = body(v)
            if r is decisive:
                if short:
                    return decisive
                result = decisive
            elif r is not otherwise:
                raise Bail
        return result

    return run


fx_all = _quantifier(F, T)
fx_exists = _quantifier(T, F)


def fx_exists_one(target: Any, body: Callable[[Any], Any], short: bool) -> Any:
    if type(target) not in _LISTS:
        raise Bail
    count = 0
    for v in target:
        r = body(v)
        if r is T:
            count += 1
        elif r is not F:
            raise Bail
    return T if count == 1 else F


def fx_map(target: Any, body: Callable[[Any], Any], short: bool) -> Any:
    if type(target) not in _LISTS:
        raise Bail
    return _ListType([body(v) for v in target])


def fx_filter(target: Any, body: Callable[[Any], Any], short: bool) -> Any:
    if type(target) not in _LISTS:
        raise Bail
    return _ListType([v for v in target if body(v)])
