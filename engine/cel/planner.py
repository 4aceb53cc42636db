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

__all__ = ["LITERAL_FUNCTION", "MACROS", "PlanError", "Plan", "plan"]

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


class PlanError(ValueError):
    """A construct the planner does not compile; carries the position inside the expression."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass
class Plan:
    """The generated function and its source (for printing)."""

    function: Callable[[Mapping[str, Any]], Any]
    source: str


def _pos(item: Any) -> tuple[int, int]:
    meta = getattr(item, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.line, meta.column
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
            return "None"
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
    """Compile a checked tree (numeric literals already rewritten) into a Python function."""
    planner = _Planner(functions)
    top = _Function(["act"])
    planner.stack.append(top)
    value = planner.expr(tree, {})
    lines = [f"def {label}(act):"]
    lines += ["    " + line for line in top.lines]
    lines.append(f"    return result({value})")
    source = "\n".join(planner.constants + lines) + "\n"
    namespace = planner.namespace
    exec(compile(source, f"<ep4 gate {label}>", "exec"), namespace)
    return Plan(function=namespace[label], source=source)
