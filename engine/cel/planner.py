"""Plan a checked CEL tree into Python, once, at bundle load (cel-go's planner, as Python source).

cel-python parses (its lark tree is the AST) and stays the reference evaluator. This module turns the
same tree into the source of one Python function per gate, whose every operation is a call into
:mod:`engine.cel.runtime` — the interpreter's own rule for that node, with the tree walk taken out.
The source is kept, so ``ep4 explain --compiled GATE`` can print exactly what runs.

Anything the planner does not know is refused with a line and column (:class:`PlanError`), never
guessed: a gate either compiles to the same meaning or is refused at ``ep4 check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping

import lark
from celpy import celtypes
from celpy.evaluation import base_functions, celstr

from . import runtime
from .errors import PositionedError

__all__ = ["LITERAL_FUNCTION", "MACROS", "PlanError", "Plan", "plan", "restore"]

from .functions import LITERAL_FUNCTION
MACROS = ("all", "exists", "exists_one", "map", "filter")

_RELATIONS = {
    "relation_lt": "lt", "relation_le": "le", "relation_gt": "gt", "relation_ge": "ge",
    "relation_eq": "eq", "relation_ne": "ne", "relation_in": "in_",
}
_ARITHMETIC = {
    "addition_add": "add", "addition_sub": "sub",
    "multiplication_mul": "mul", "multiplication_div": "div", "multiplication_mod": "mod",
}
_SINGLE = {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member"}


class PlanError(PositionedError):
    """A construct the planner does not compile."""


@dataclass
class Plan:
    """The generated function, its fast path alone (None when the expression has none), and the
    source of both (for printing)."""

    function: Callable[[Mapping[str, Any]], Any]
    source: str
    fast: Callable[[Mapping[str, Any]], Any] | None = None
    code: Any = None  # the compiled source
    # the generated module's own names: constants (k, m), the tree nodes its errors name (n), and
    # the helpers it calls (f_, x_; kept as None, bound again by name on restore)
    kept: Mapping[str, Any] | None = None
    # the module namespace the functions run in (a restored plan's tree nodes are added to it later)
    namespace: dict[str, Any] | None = field(default=None, repr=False)


def _pos(item: Any) -> tuple[int, int]:
    meta = getattr(item, "meta", None)
    if meta is not None and not getattr(meta, "empty", True) and getattr(meta, "line", None):
        return meta.line, meta.column or 1
    return (getattr(item, "line", None) or 1, getattr(item, "column", None) or 1)


@dataclass
class _Function:
    """One Python function being written: the gate itself, or a macro body nested in it."""

    params: list[str]
    lines: list[str] = field(default_factory=list)


class _Planner:
    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = functions
        self.namespace: dict[str, Any] = {name: getattr(runtime, name) for name in dir(runtime) if not name.startswith("__")}
        self.namespace["OR"] = functions["_||_"]
        self.namespace["AND"] = functions["_&&_"]
        self.namespace["COND"] = functions["_?_:_"]
        self.constants: list[str] = []
        self._ids: dict[str, int] = {}
        self._const_ids: dict[tuple[type, str], str] = {}
        self.roots: dict[str, str] = {}
        self.stack: list[_Function] = []

    # --- names in the generated module ---

    def _new(self, prefix: str) -> str:
        n = self._ids.get(prefix, 0) + 1
        self._ids[prefix] = n
        return f"{prefix}{n}"

    def site(self, node: Any) -> str:
        """A tree node (or token) the interpreter would attach to an error built here."""
        name = self._new("n")
        self.namespace[name] = node
        return name

    def constant(self, value: Any, text: str) -> str:
        key = (type(value), str(value))  # by text: Decimal('1.0') and Decimal('1.00') are distinct literals
        if key in self._const_ids:
            return self._const_ids[key]
        name = self._new("k")
        self.namespace[name] = value
        self.constants.append(f"# {name} = {text}")
        self._const_ids[key] = name
        return name

    def function(self, name: str) -> str:
        fn = self.functions.get(name, base_functions.get(name))
        py = "f_" + name
        self.namespace[py] = fn
        return py

    # --- walking the tree ---

    def expr(self, node: Any, scope: dict[str, str]) -> str:
        while isinstance(node, lark.Tree) and node.data in _SINGLE and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
            node = node.children[0]
        if not isinstance(node, lark.Tree):  # pragma: no cover - the grammar puts tokens only in known places
            raise PlanError(f"unexpected token {node!r}", *_pos(node))
        method = getattr(self, "p_" + node.data, None)
        if method is None:
            raise PlanError(f"'{node.data}' is not supported in gates", *_pos(node))
        return method(node, scope)

    def p_expr(self, node: lark.Tree, scope: dict[str, str]) -> str:
        cond, then, other = (self.expr(c, scope) for c in node.children)
        return f"ternary({cond}, lambda: {then}, lambda: {other}, {self.site(node)}, COND)"

    def p_conditionalor(self, node: lark.Tree, scope: dict[str, str]) -> str:
        left, right = (self.expr(c, scope) for c in node.children)
        return f"or_({left}, {right}, {self.site(node)}, OR)"

    def p_conditionaland(self, node: lark.Tree, scope: dict[str, str]) -> str:
        left, right = (self.expr(c, scope) for c in node.children)
        return f"and_({left}, {right}, {self.site(node)}, AND)"

    def p_relation(self, node: lark.Tree, scope: dict[str, str]) -> str:
        op, right = node.children
        left = self.expr(op.children[0], scope)
        return f"{_RELATIONS[op.data]}({left}, {self.expr(right, scope)}, {self.site(node)})"

    def p_addition(self, node: lark.Tree, scope: dict[str, str]) -> str:
        op, right = node.children
        left = self.expr(op.children[0], scope)
        return f"{_ARITHMETIC[op.data]}({left}, {self.expr(right, scope)}, {self.site(node)})"

    p_multiplication = p_addition

    def p_unary(self, node: lark.Tree, scope: dict[str, str]) -> str:
        op, operand = node.children
        inner = self.expr(operand, scope)
        return f"{'not_' if op.data == 'unary_not' else 'neg'}({inner}, {self.site(node)})"

    def p_member_dot(self, node: lark.Tree, scope: dict[str, str]) -> str:
        member, name = node.children
        return f"dot({self.expr(member, scope)}, {str(name)!r}, {self.site(node)})"

    def p_member_index(self, node: lark.Tree, scope: dict[str, str]) -> str:
        member, key = node.children
        return f"index({self.expr(member, scope)}, {self.expr(key, scope)}, {self.site(node)})"

    def p_member_dot_arg(self, node: lark.Tree, scope: dict[str, str]) -> str:
        member, name = node.children[:2]
        args = list(node.children[2].children) if len(node.children) > 2 else []
        if str(name) in MACROS:
            return self.macro(str(name), member, args, node, scope)
        target = self.expr(member, scope)
        parts = [self.function(str(name)), self.site(name), target] + [self.expr(a, scope) for a in args]
        return f"method({', '.join(parts)})"

    def macro(self, name: str, member: Any, args: list[Any], node: lark.Tree, scope: dict[str, str]) -> str:
        ident = macro_variable(args)
        if ident is None:
            raise PlanError(f"{name}() takes a variable name and an expression, e.g. list.{name}(x, x > 0)", *_pos(node.children[1]))
        target = self.expr(member, scope)
        param = f"v_{ident}"
        body_name = self._new("body")
        inner = dict(scope)
        inner[ident] = param
        body = _Function([param])
        self.stack.append(body)
        value = self.expr(args[1], inner)
        self.stack.pop()
        outer = self.stack[-1]
        outer.lines.append(f"def {body_name}({param}):")
        outer.lines.extend("    " + line for line in body.lines)
        outer.lines.append(f"    return {value}")
        return f"m_{name}({target}, {body_name})"

    def p_member_object(self, node: lark.Tree, scope: dict[str, str]) -> str:
        raise PlanError("message construction (Type{field: value}) is not supported in gates", *_pos(node))

    def p_primary(self, node: lark.Tree, scope: dict[str, str]) -> str:
        child = node.children[0]
        kind = child.data
        if kind == "literal":
            return self.literal(child)
        if kind == "paren_expr":
            return self.expr(child.children[0], scope)
        if kind == "ident":
            ident = str(child.children[0])
            if ident in scope:
                return scope[ident]
            if ident not in self.roots:
                self.roots[ident] = f"r_{ident}"
                self.stack[0].lines.insert(len(self.roots) - 1, f"r_{ident} = var(act, {ident!r}, {self.site(node)})")
            return self.roots[ident]
        if kind == "ident_arg":
            return self.call(child, node, scope)
        if kind == "list_lit":
            items = [self.expr(e, scope) for e in (child.children[0].children if child.children else [])]
            return f"list_lit({', '.join(items)})"
        if kind == "map_lit":
            flat = [self.expr(e, scope) for e in (child.children[0].children if child.children else [])]
            inside = ", ".join(flat) + ("," if len(flat) == 1 else "")
            return f"map_lit(lambda: ({inside}), {self.site(node)})"
        raise PlanError(f"'{kind}' (a leading-dot name) is not supported in gates", *_pos(child))

    def call(self, child: lark.Tree, primary: lark.Tree, scope: dict[str, str]) -> str:
        token = child.children[0]
        name = str(token)
        args = list(child.children[1].children) if len(child.children) > 1 else []
        if name == LITERAL_FUNCTION:
            text = str(celstr(next(args[0].find_data("literal")).children[0]))
            return self.constant(Decimal(text), f"Decimal({text!r})")
        if name == "has":
            if len(args) != 1:
                raise PlanError("has() takes exactly one field selection, e.g. has(intent.price)", *_pos(token))
            return f"has({self.expr(args[0], scope)})"
        parts = [self.function(name), self.site(token)] + [self.expr(a, scope) for a in args]
        return f"call({', '.join(parts)})"

    def literal(self, node: lark.Tree) -> str:
        token = node.children[0]
        kind = token.type
        if kind == "BOOL_LIT":
            return "T" if token.value.lower() == "true" else "F"
        if kind == "NULL_LIT":
            return "NULL"  # a name, not the keyword: `None[x]` would be a SyntaxWarning
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            try:
                value = celstr(token)
            except ValueError as exc:
                raise PlanError(f"invalid string literal: {exc}", *_pos(token)) from None
            return self.constant(value, f"StringType({str(value)!r})")
        raise PlanError(f"{kind} literals are not supported in gates", *_pos(token))


def macro_variable(args: list[Any]) -> str | None:
    """The variable a macro binds: its first argument, which must be a bare identifier."""
    if len(args) != 2:
        return None
    node = args[0]
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if node.data == "ident":
            return str(node.children[0])
        node = node.children[0]
    return None


def plan(tree: lark.Tree, functions: Mapping[str, Callable[..., Any]], label: str = "gate") -> Plan:
    """Compile a checked tree (numeric literals already rewritten) into a Python function.

    The function tries the fast path (native Python for the typed case) and, on any exception
    there, runs the reference path (the interpreter's rules, errors and all)."""
    planner = _Planner(functions)
    top = _Function(["act"])
    planner.stack.append(top)
    value = planner.expr(tree, {})
    lines = [f"def {label}_reference(act):"]
    lines += ["    " + line for line in top.lines]
    lines.append(f"    return result({value})")
    fast = _Fast(planner)
    try:
        fast_value, _ = fast.expr(tree, {})
    except _NoFast:
        lines += ["", f"{label} = {label}_reference  # no fast path for this expression"]
    else:
        lines += ["", "", f"def {label}_fast(act):"]
        lines += ["    " + line for line in fast.lines]
        lines.append(f"    return {fast_value}")
        lines += [
            "", "",
            f"def {label}(act):",
            "    try:",
            f"        return {label}_fast(act)",
            "    except Exception:  # outside the typed case: the reference path decides, errors and all",
            f"        return {label}_reference(act)",
        ]
    source = "\n".join(planner.constants + lines) + "\n"
    try:
        code = compile(source, f"<ep4 gate {label}>", "exec")
    except (SyntaxError, RecursionError, MemoryError) as exc:  # a limit of CPython's own parser
        raise PlanError(f"expression too complex to compile ({type(exc).__name__}); split it into simpler gates", 1, 1) from None
    base = _base_namespace(functions)
    kept = {k: v for k, v in planner.namespace.items() if k not in base}
    return _run(source, code, kept, functions, label)


def _base_namespace(functions: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    """What every generated module sees: the runtime, ep4's logical operators, a few builtins (a new
    dict each time, copied from the one made for these logical operators: a restored bundle's 26
    gates would otherwise walk the runtime module 26 times)."""
    key = (functions["_||_"], functions["_&&_"], functions["_?_:_"])  # all it takes from the table
    base = _BASES.get(key)
    if base is None:
        base = _BASES[key] = _new_base_namespace(functions)
    return base.copy()


# the base namespace per (||, &&, ?:) functions: what it holds besides the runtime module's names
_BASES: dict[tuple[Callable[..., Any], ...], dict[str, Any]] = {}


def _new_base_namespace(functions: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    namespace: dict[str, Any] = {name: getattr(runtime, name) for name in dir(runtime) if not name.startswith("__")}
    namespace["OR"] = functions["_||_"]
    namespace["AND"] = functions["_&&_"]
    namespace["COND"] = functions["_?_:_"]
    namespace["LIST"] = runtime._ListType
    namespace["NULL"] = None
    namespace["DGET"] = dict.__getitem__
    namespace["STR_EQ"] = str.__eq__
    return namespace


def _bound_function(name: str, functions: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
    """``f_NAME``: the function as the reference path calls it; ``x_NAME``: as the fast path does
    (without its error-value wrapper). The same lookups as :meth:`_Planner.function` and
    :meth:`_Fast.function`."""
    fn = functions.get(name[2:], base_functions.get(name[2:]))
    return getattr(fn, "__wrapped__", fn) if name.startswith("x_") else fn


def _run(source: str, code: Any, kept: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]], label: str) -> Plan:
    namespace = _base_namespace(functions)
    for name, value in kept.items():
        namespace[name] = _bound_function(name, functions) if name.startswith(("f_", "x_")) else value
    exec(code, namespace)
    return Plan(function=namespace[label], source=source, fast=namespace.get(f"{label}_fast"), code=code,
                kept={k: (None if k.startswith(("f_", "x_")) else v) for k, v in kept.items()}, namespace=namespace)


def restore(source: str, code: Any, kept: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]], label: str = "gate") -> Plan:
    """A plan made before, from what it kept (:attr:`Plan.code`, :attr:`Plan.kept`): its constants
    and the tree nodes its errors name, with the functions bound again by name (engine.bundle_cache).
    The tree nodes may come later, into :attr:`Plan.namespace`, before the reference path first runs
    (engine.cel._Deferred)."""
    return _run(source, code, kept, functions, label)


# --- the fast path: the same tree as native Python for well-typed values -----------------------

# What may *raise* in the interpreter (rather than give an error value that ||, && and ?: absorb):
# only the macros — a target that is not a list, an error inside a map/filter/exists_one body.
# Arithmetic and helpers give error values (engine.cel.functions). So a short-circuit in the fast
# path may skip a sub-tree without macros: its value cannot change the result, and it cannot raise.


class _NoFast(Exception):
    """A construct the fast path does not cover: the gate runs the reference path only."""


class _Fast:
    """Writes a gate's fast function. Each method returns (Python expression, may_raise): whether
    the interpreter could raise (not return an error value) somewhere in that sub-tree."""

    def __init__(self, planner: _Planner) -> None:
        self.p = planner
        self.roots: dict[str, str] = {}
        self.lines: list[str] = []

    def tmp(self) -> str:
        return self.p._new("_t")

    def function(self, name: str) -> str:
        """A function as the fast path calls it: a helper without its error-value wrapper (any
        exception here bails to the reference path, which uses the wrapped one)."""
        fn = self.p.functions.get(name, base_functions.get(name))
        raw = getattr(fn, "__wrapped__", fn)
        py = "x_" + name
        self.p.namespace[py] = raw
        return py

    def expr(self, node: Any, scope: dict[str, str]) -> tuple[str, bool]:
        while isinstance(node, lark.Tree) and node.data in _SINGLE and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
            node = node.children[0]
        method = getattr(self, "f_" + node.data, None) if isinstance(node, lark.Tree) else None
        if method is None:
            raise _NoFast(getattr(node, "data", node))
        return method(node, scope)

    def f_expr(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        (c, cr), (x, xr), (y, yr) = (self.expr(n, scope) for n in node.children)
        t = self.tmp()
        return f"({x} if ({t} := {c}) is T else ({y} if {t} is F else bail()))", cr or xr or yr

    def f_conditionalor(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        return self._logic(node, scope, "or_full", decisive="T", otherwise="F")

    def f_conditionaland(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        return self._logic(node, scope, "and_full", decisive="F", otherwise="T")

    def _logic(self, node: lark.Tree, scope: dict[str, str], full: str, *, decisive: str, otherwise: str) -> tuple[str, bool]:
        """``a || b`` / ``a && b``: the decisive value of ``a`` is the result, the other one gives
        ``b`` (whatever it is, as logical_or/and do); ``b`` is skipped only if it cannot raise."""
        (a, ar), (b, br) = (self.expr(n, scope) for n in node.children)
        if br:
            return f"{full}({a}, {b})", True
        t = self.tmp()
        return f"({t} if ({t} := {a}) is {decisive} else ({b} if {t} is {otherwise} else bail()))", ar

    _OPS = {"relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=", "relation_eq": "==", "relation_ne": "!="}

    def f_relation(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        op, right = node.children
        (a, ar), (b, br) = self.expr(op.children[0], scope), self.expr(right, scope)
        if op.data == "relation_in":
            return f"fin({a}, {b})", ar or br
        if op.data in ("relation_eq", "relation_ne") and isinstance(self.p.namespace.get(b), celtypes.StringType):
            # against a string literal: str.__eq__ is StringType.__eq__ without two Python calls, and
            # raises (bails) when the other side is not a string
            yes, no = ("T", "F") if op.data == "relation_eq" else ("F", "T")
            return f"({yes} if STR_EQ({a}, {b}) else {no})", ar or br
        if op.data in ("relation_eq", "relation_ne") and b == "NULL":
            # against the null literal: None is null; a value of a type in NOT_NULL is not, which is
            # what comparing it would say (runtime.NOT_NULL); any other value is compared
            t = self.tmp()
            yes, no = ("T", "F") if op.data == "relation_eq" else ("F", "T")
            compared = f"(T if {t} {self._OPS[op.data]} NULL else F)"
            return f"({yes} if ({t} := {a}) is None else ({no} if type({t}) in NOT_NULL else {compared}))", ar or br
        return f"(T if {a} {self._OPS[op.data]} {b} else F)", ar or br

    _ARITH = {"addition_add": "+", "addition_sub": "-", "multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"}

    def f_addition(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        op, right = node.children
        (a, ar), (b, br) = self.expr(op.children[0], scope), self.expr(right, scope)
        x, y = self.tmp(), self.tmp()
        return f"({x} {self._ARITH[op.data]} {y} if type({x} := {a}) is DECIMAL and type({y} := {b}) is DECIMAL else bail())", ar or br

    f_multiplication = f_addition

    def f_unary(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        op, operand = node.children
        a, ar = self.expr(operand, scope)
        t = self.tmp()
        if op.data == "unary_not":
            return f"(F if ({t} := {a}) is T else (T if {t} is F else bail()))", ar
        return f"(-{t} if type({t} := {a}) is DECIMAL else bail())", ar

    def f_member_dot(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        # a map's field is member[name] in the interpreter too, and with a str name MapType.__getitem__
        # is dict.__getitem__; any other value (or a missing name) raises here: bail
        member, name = node.children
        a, ar = self.expr(member, scope)
        return f"DGET({a}, {str(name)!r})", ar

    def f_member_index(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        (a, ar), (b, br) = (self.expr(n, scope) for n in node.children)
        return f"{a}[{b}]", ar or br

    def f_member_dot_arg(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        member, name = node.children[:2]
        args = list(node.children[2].children) if len(node.children) > 2 else []
        target, tr = self.expr(member, scope)
        if str(name) in MACROS:
            var = macro_variable(args)
            if var is None:  # pragma: no cover - refused by the checker
                raise _NoFast("macro shape")
            param = f"v_{var}"
            body, bodyr = self.expr(args[1], {**scope, var: param})
            return f"fx_{name}({target}, lambda {param}: {body}, {not bodyr})", True
        compiled = [self.expr(a, scope) for a in args]
        parts = [target] + [c for c, _ in compiled]
        return f"fok({self.function(str(name))}({', '.join(parts)}))", tr or any(r for _, r in compiled)

    def f_primary(self, node: lark.Tree, scope: dict[str, str]) -> tuple[str, bool]:
        child = node.children[0]
        kind = child.data
        if kind == "literal":
            return self.p.literal(child), False
        if kind == "paren_expr":
            return self.expr(child.children[0], scope)
        if kind == "ident":
            ident = str(child.children[0])
            if ident in scope:
                return scope[ident], False
            if ident not in self.roots:
                self.roots[ident] = f"r_{ident}"
                self.lines.append(f"r_{ident} = act[{ident!r}]")
            return self.roots[ident], False
        if kind == "ident_arg":
            token = child.children[0]
            name = str(token)
            args = list(child.children[1].children) if len(child.children) > 1 else []
            if name == LITERAL_FUNCTION:
                return self.p.call(child, node, scope), False
            if name == "has":
                member = _unwrap_member(args[0])
                inner, ir = self.expr(member.children[0], scope)
                return f"fhas({inner}, {str(member.children[1])!r})", ir
            compiled = [self.expr(a, scope) for a in args]
            call = f"fok({self.function(name)}({', '.join(c for c, _ in compiled)}))"
            return call, any(r for _, r in compiled)
        if kind == "list_lit":
            items = [self.expr(e, scope) for e in (child.children[0].children if child.children else [])]
            inside = ", ".join(c for c, _ in items) + ("," if len(items) == 1 else "")
            return f"LIST(({inside}))", any(r for _, r in items)
        if kind == "map_lit":
            exprs = child.children[0].children if child.children else []
            literals = [_literal_value(e) for e in exprs]
            if all(v is not _NOT_LITERAL for v in literals):  # e.g. recent_count's {"attempted": true}
                value = runtime.map_lit(lambda: tuple(literals), None)
                if not isinstance(value, runtime.CELEvalError):  # helpers never mutate a map
                    name = self.p._new("m")
                    self.p.namespace[name] = value
                    self.p.constants.append(f"# {name} = {value!r}")
                    return name, False
            keys = literals[0::2]
            if keys and all(type(k) is celtypes.StringType for k in keys) and len(set(keys)) == len(keys):
                # distinct string-literal keys (recent_count's {"symbol": intent.symbol}): no duplicate
                # or unhashable key can occur, so the map is built without map_lit's checks; a value
                # that raises leaves the fast path as map_lit's error value would (fok)
                name = self.p._new("mk")
                self.p.namespace[name] = tuple(keys)
                self.p.constants.append(f"# {name} = {tuple(keys)!r}")
                values = [self.expr(e, scope) for e in exprs[1::2]]
                inside = ", ".join(c for c, _ in values) + ("," if len(values) == 1 else "")
                return f"map_keys({name}, ({inside}))", any(r for _, r in values)
            flat = [self.expr(e, scope) for e in exprs]
            inside = ", ".join(c for c, _ in flat) + ("," if len(flat) == 1 else "")
            return f"fok(map_lit(lambda: ({inside}), None))", any(r for _, r in flat)
        raise _NoFast(kind)


_NOT_LITERAL = object()


def _literal_value(node: Any) -> Any:
    """The value of an expression that is a string, bool or null literal (what the interpreter's
    literal rule makes of it), else _NOT_LITERAL."""
    while isinstance(node, lark.Tree) and node.data in _SINGLE and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
        node = node.children[0]
    if isinstance(node, lark.Tree) and node.data == "primary" and isinstance(node.children[0], lark.Tree):
        node = node.children[0]  # only a literal directly: not [x], not (x), not f(x)
    if not isinstance(node, lark.Tree) or node.data != "literal":
        return _NOT_LITERAL
    token = node.children[0]
    if token.type == "BOOL_LIT":
        return runtime.T if token.value.lower() == "true" else runtime.F
    if token.type == "NULL_LIT":
        return None
    if token.type in ("STRING_LIT", "MLSTRING_LIT"):
        try:
            return celstr(token)
        except ValueError:
            return _NOT_LITERAL
    return _NOT_LITERAL


def _unwrap_member(node: Any) -> lark.Tree:
    """The member_dot node inside has()'s argument (the checker guarantees there is one)."""
    while node.data != "member_dot":
        node = node.children[0]
    return node
