"""CEL evaluation behind one small interface: compile once, evaluate many.

The rules (``risk_gates``, ``constraint_alignment``) only use :func:`compile_expression` and
:meth:`CompiledExpression.evaluate`, so a faster evaluator can replace cel-python's interpreter here
without touching them.

Numbers inside gates are exact decimals (spec §4 Rule 4: no rounding heuristics):

* every number in the activation is a ``Decimal`` (integers too);
* every numeric literal in an expression is rewritten to an exact ``Decimal`` at compile time,
  so ``0.1`` in a gate means the decimal 0.1, never the binary float;
* arithmetic runs in :data:`engine.numbers.EXACT`: an inexact result (``1 / 3``) is an evaluation
  error, which the rules turn into FAILED_SAFE, never a pass.
"""

from __future__ import annotations

import decimal
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError

from .numbers import EXACT, DecimalParseError, parse_decimal

__all__ = [
    "CelCompileError",
    "CelEvaluationError",
    "CompiledExpression",
    "FieldSpec",
    "HELPER_FUNCTIONS",
    "compile_expression",
    "from_cel",
    "to_cel",
]

# cel-python logs every evaluation error at WARNING/ERROR; ep4 reports them itself.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

_ENV = celpy.Environment()
_NUMERIC_TOKENS = {"INT_LIT", "FLOAT_LIT", "UINT_LIT"}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
_BOOL_METHODS = {"all", "exists", "exists_one", "contains", "startsWith", "endsWith", "matches"}
_LITERAL_FUNCTION = "__ep4_decimal"


class CelCompileError(ValueError):
    """An expression that cannot be used: syntax, unknown name, or not a boolean."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line  # 1-based, within the expression text
        self.column = column  # 1-based


class CelEvaluationError(RuntimeError):
    """Evaluation failed (missing field, type error, inexact arithmetic). Never a pass."""


# --- exact decimal helpers registered in the CEL environment (documented in docs/bundles.md) ---


def _dec(value: Any) -> Decimal:
    if isinstance(value, celtypes.DoubleType):
        raise DecimalParseError("dec() refuses doubles; write the number as a string or literal")
    try:
        return parse_decimal(value if not isinstance(value, celtypes.StringType) else str(value))
    except DecimalParseError as exc:
        raise ValueError(str(exc)) from None


def _need_decimal(name: str, *values: Any) -> None:
    for v in values:
        if not isinstance(v, Decimal) or isinstance(v, bool):
            raise TypeError(f"{name}() expects decimals, got {type(v).__name__}")


def _is_multiple(value: Any, step: Any) -> celtypes.BoolType:
    """``value`` is an exact whole multiple of ``step`` (step must be > 0)."""
    _need_decimal("is_multiple", value, step)
    if step <= 0:
        raise ValueError("is_multiple(): step must be > 0")
    return celtypes.BoolType(EXACT.remainder(value, step) == 0)


def _aligned(value: Any, base: Any, step: Any) -> celtypes.BoolType:
    """Binance filter alignment: ``(value - base) % step == 0``; a zero step disables the rule."""
    _need_decimal("aligned", value, base, step)
    if step == 0:
        return celtypes.BoolType(True)
    if step < 0:
        raise ValueError("aligned(): step must be >= 0")
    return celtypes.BoolType(EXACT.remainder(EXACT.subtract(value, base), step) == 0)


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


def _minute_of_day(ts_ms: Any) -> Decimal:
    """UTC minute of the day (0..1439) of a millisecond timestamp."""
    _need_decimal("minute_of_day", ts_ms)
    return Decimal(int(ts_ms) // 60000 % 1440)


def _in_windows(ts_ms: Any, windows: Any) -> celtypes.BoolType:
    """Whether the UTC time of ``ts_ms`` falls in one of ``windows``: ``[{start, end}]`` minutes of
    the day, start inclusive, end exclusive; ``start > end`` wraps past midnight."""
    _need_decimal("in_windows", ts_ms)
    minute = int(ts_ms) // 60000 % 1440
    for w in windows:
        start, end = int(w[celtypes.StringType("start")]), int(w[celtypes.StringType("end")])
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)
        if inside:
            return celtypes.BoolType(True)
    return celtypes.BoolType(False)


def _recent_count(records: Any, since_ms: Any, match: Any) -> Decimal:
    """Number of ``records`` (state.recent) with ``timestamp > since_ms`` whose fields equal every
    entry of ``match``: a counter computed in Python rather than by a CEL filter over the list."""
    _need_decimal("recent_count", since_ms)
    wanted = list(match.items())
    n = 0
    for r in records:
        if r[_TIMESTAMP] > since_ms and all(r.get(k) == v for k, v in wanted):
            n += 1
    return Decimal(n)


_TIMESTAMP = celtypes.StringType("timestamp")


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

_FUNCTIONS: dict[str, Callable[..., Any]] = {name: h.function for name, h in HELPER_FUNCTIONS.items()}


def _literal_decimal(text: Any) -> Decimal:
    return Decimal(str(text))


_FUNCTIONS[_LITERAL_FUNCTION] = _literal_decimal
_BUILTIN_FUNCTIONS = {"has", "contains", "startsWith", "endsWith", "matches", "string", "type", "bool"}
_KNOWN_FUNCTIONS = set(HELPER_FUNCTIONS) | _BUILTIN_FUNCTIONS


# --- schema of the variables an expression may read ---


@dataclass(frozen=True)
class FieldSpec:
    """Shape of one variable: ``kind`` is bool|decimal|string|list|map|object|any;
    ``fields`` lists the members of an ``object`` (checked at load time); ``item`` describes list
    elements or map values."""

    kind: str
    doc: str = ""
    fields: Mapping[str, "FieldSpec"] | None = None
    item: "FieldSpec | None" = None
    nullable: bool = False


# --- conversion of Python data into CEL values ---


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


def to_cel(value: Any) -> Any:
    """Python data -> CEL values; every number becomes an exact ``Decimal``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
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


# --- compilation ---


@dataclass(frozen=True)
class CompiledExpression:
    """A checked, compiled CEL expression. ``evaluate`` is pure and deterministic."""

    text: str
    _program: Any
    roots: frozenset[str]
    paths: tuple[str, ...] = ()  # dotted variable paths the expression reads (for `ep4 explain`)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate against CEL values (see :func:`to_cel`); raise CelEvaluationError on any error."""
        try:
            with decimal.localcontext(EXACT):
                value = self._program.evaluate(activation)
        except celpy.CELEvalError as exc:
            raise CelEvaluationError(_eval_message(exc)) from None
        except (ArithmeticError, TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            raise CelEvaluationError(f"{type(exc).__name__}: {exc}") from None
        if isinstance(value, celpy.CELEvalError):
            raise CelEvaluationError(_eval_message(value))
        return from_cel(value)


def _eval_message(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], str):
        text = args[0]
        if len(args) > 2 and isinstance(args[2], tuple) and args[2]:
            text += f" ({args[2][0]})"
        if "InvalidOperation" in text or "Inexact" in text:
            text += " — inexact decimal arithmetic"
        return text
    return str(exc)


def compile_expression(
    text: str, variables: Mapping[str, FieldSpec], *, require_bool: bool = True
) -> CompiledExpression:
    """Parse, check and compile ``text``.

    Checks made here, all reported with the line/column inside ``text``:
    syntax; every root variable is one of ``variables``; every member read from a variable whose
    shape is known exists; every function is known; and (``require_bool``) the expression is
    boolean by construction.
    """
    if not isinstance(text, str) or not text.strip():
        raise CelCompileError("expression is empty", 1, 1)
    try:
        tree = _ENV.compile(text)
    except CELParseError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise CelCompileError(f"syntax error: {msg}", exc.line or 1, exc.column or 1) from None
    except Exception as exc:  # lark may raise other parse errors on odd input
        raise CelCompileError(f"syntax error: {exc}", 1, 1) from None
    bound = _macro_variables(tree)
    roots = _check_names(tree, variables, bound)
    if require_bool:
        kind = _kind(tree, variables, bound)
        if kind != "bool":
            raise CelCompileError(
                "a gate must evaluate to a boolean (true = pass); this expression "
                f"gives {kind if kind != 'unknown' else 'a value of unknown type'} — "
                "compare it (==, <, ...) or use a boolean helper",
                1,
                1,
            )
    paths = _read_paths(tree, bound)
    _rewrite_numeric_literals(tree)
    program = _ENV.program(tree, functions=_FUNCTIONS)
    return CompiledExpression(text=text, _program=program, roots=frozenset(roots), paths=paths)


def _read_paths(tree: lark.Tree, bound: set[str]) -> tuple[str, ...]:
    """Longest ``a.b.c`` chains rooted at a free variable, in order of first appearance."""
    found: list[str] = []
    inner: set[int] = set()
    for node in tree.iter_subtrees_topdown():
        if id(node) in inner:
            continue
        if node.data in ("member_dot", "primary"):
            path = _member_path(node)
            if path is None or str(path[0]) in bound:
                continue
            for sub in node.iter_subtrees():
                inner.add(id(sub))
            dotted = ".".join(str(t) for t in path)
            if dotted not in found:
                found.append(dotted)
    return tuple(found)


def _pos(token: Any) -> tuple[int, int]:
    return (getattr(token, "line", None) or 1, getattr(token, "column", None) or 1)


def _macro_variables(tree: lark.Tree) -> set[str]:
    names: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) >= 3:
            method = node.children[1]
            if str(method) in _MACROS and isinstance(node.children[2], lark.Tree):
                first = node.children[2].children[0]
                ident = _single_ident(first)
                if ident is not None:
                    names.add(ident)
    return names


def _single_ident(expr: Any) -> str | None:
    node = expr
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if node.data == "ident":
            return str(node.children[0])
        node = node.children[0]
    return None


def _member_path(node: lark.Tree) -> list[lark.Token] | None:
    """``a.b.c`` as the tokens [a, b, c]; None if the chain has calls or indexes."""
    if node.data == "member" and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
        return _member_path(node.children[0])
    if node.data == "member_dot":
        inner = _member_path(node.children[0])
        return None if inner is None else inner + [node.children[1]]
    if node.data == "primary" and isinstance(node.children[0], lark.Tree) and node.children[0].data == "ident":
        return [node.children[0].children[0]]
    return None


def _resolve(path: list[lark.Token], variables: Mapping[str, FieldSpec]) -> FieldSpec | None:
    spec = variables.get(str(path[0]))
    for token in path[1:]:
        if spec is None:
            return None
        if spec.kind == "object" and spec.fields is not None:
            if str(token) not in spec.fields:
                known = ", ".join(sorted(spec.fields))
                line, col = _pos(token)
                prefix = ".".join(str(t) for t in path[: path.index(token)])
                raise CelCompileError(f"unknown field '{token}' of '{prefix}' (known: {known})", line, col)
            spec = spec.fields[str(token)]
        elif spec.kind == "map":
            spec = spec.item
        else:
            return None
    return spec


def _check_names(tree: lark.Tree, variables: Mapping[str, FieldSpec], bound: set[str]) -> set[str]:
    roots: set[str] = set()
    for node in tree.iter_subtrees_topdown():
        if node.data == "ident":
            token = node.children[0]
            name = str(token)
            if name in bound:
                continue
            if name not in variables:
                line, col = _pos(token)
                known = ", ".join(sorted(variables))
                raise CelCompileError(f"unknown variable '{name}' (known: {known})", line, col)
            roots.add(name)
        elif node.data == "ident_arg":
            token = node.children[0]
            if str(token) not in _KNOWN_FUNCTIONS:
                line, col = _pos(token)
                raise CelCompileError(
                    f"unknown function '{token}' (known: {', '.join(sorted(_KNOWN_FUNCTIONS))})", line, col
                )
        elif node.data == "member_dot_arg":
            token = node.children[1]
            if str(token) not in _MACROS | _BOOL_METHODS | {"size"}:
                line, col = _pos(token)
                raise CelCompileError(f"unknown method '{token}'", line, col)
        elif node.data in ("member_dot",):
            path = _member_path(node)
            if path is not None and str(path[0]) not in bound:
                _resolve(path, variables)
        elif node.data == "literal" and node.children[0].type in ("BYTES_LIT",):
            line, col = _pos(node.children[0])
            raise CelCompileError("bytes literals are not supported in gates", line, col)
    return roots


def _kind(node: Any, variables: Mapping[str, FieldSpec], bound: set[str]) -> str:
    """Static result kind of an expression node: 'bool', a non-bool kind name, or 'unknown'."""
    if not isinstance(node, lark.Tree):
        return "unknown"
    data, children = node.data, node.children
    if data == "expr":
        if len(children) == 3 and children[1] is not None:
            a, b = _kind(children[1], variables, bound), _kind(children[2], variables, bound)
            return "bool" if a == b == "bool" else (a if a != "bool" else b)
        return _kind(children[0], variables, bound)
    if data in ("conditionalor", "conditionaland"):
        if len(children) == 2 and children[0] is not None:
            return "bool"
        return _kind(children[-1], variables, bound)
    if data == "relation":
        if len(children) == 2 and children[0] is not None:
            return "bool"
        return _kind(children[-1], variables, bound)
    if data in ("addition", "multiplication"):
        if len(children) == 2 and children[0] is not None:
            return "number or string"
        return _kind(children[-1], variables, bound)
    if data == "unary":
        if len(children) == 2:
            return "bool" if children[0].data == "unary_not" else "number"
        return _kind(children[0], variables, bound)
    if data == "member":
        return _kind(children[0], variables, bound)
    if data == "member_dot_arg":
        method = str(children[1])
        if method in _BOOL_METHODS:
            return "bool"
        return "list" if method in ("map", "filter") else "number"
    if data == "member_dot":
        path = _member_path(node)
        if path is not None and str(path[0]) not in bound:
            spec = _resolve(path, variables)
            return _spec_kind(spec)
        return "unknown"
    if data == "member_index":
        return "unknown"
    if data == "primary":
        inner = children[0]
        if inner.data == "literal":
            tok = inner.children[0].type
            return {"BOOL_LIT": "bool", "NULL_LIT": "null"}.get(tok, "string" if "STRING" in tok else "number")
        if inner.data == "ident_arg":
            name = str(inner.children[0])
            helper = HELPER_FUNCTIONS.get(name)
            if name in ("has", "bool") or (helper and helper.returns_bool):
                return "bool"
            return "number" if helper else "unknown"
        if inner.data == "ident":
            name = str(inner.children[0])
            return "unknown" if name in bound else _spec_kind(variables.get(name))
        if inner.data == "paren_expr":
            return _kind(inner.children[0], variables, bound)
        return {"list_lit": "list", "map_lit": "map"}.get(inner.data, "unknown")
    return "unknown"


def _spec_kind(spec: FieldSpec | None) -> str:
    if spec is None:
        return "unknown"
    return "bool" if spec.kind == "bool" else spec.kind


def _rewrite_numeric_literals(tree: lark.Tree) -> None:
    """Replace every numeric literal with a call that yields the exact Decimal of its text."""
    for node in tree.iter_subtrees():
        if node.data != "primary" or not isinstance(node.children[0], lark.Tree):
            continue
        lit = node.children[0]
        if lit.data != "literal" or lit.children[0].type not in _NUMERIC_TOKENS:
            continue
        token = lit.children[0]
        text = token.value.rstrip("uU")
        if text.lower().lstrip("-").startswith("0x"):
            text = str(int(text, 16))
        arg = _ENV.compile('"' + text + '"')
        tree_class = type(node)  # keep the runner's own tree class
        node.children = [tree_class("ident_arg", [lark.Token("IDENT", _LITERAL_FUNCTION), tree_class("exprlist", [arg])])]
