"""Load-time checks of a parsed CEL expression, each reported with a line and column.

Names are resolved with their macro scopes (a macro variable exists only inside its macro's body),
every member read from a variable of known shape must exist, every function must be known, macros
must have the ``list.macro(x, expr)`` shape, ``has()`` takes one field selection, and an expression
may not nest deeper than :data:`MAX_DEPTH` (both evaluators must be able to run it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import lark

from .errors import PositionedError
from .functions import HELPER_FUNCTIONS, KNOWN_FUNCTIONS
from .planner import MACROS, macro_variable

__all__ = [
    "CheckError", "FieldSpec", "MAX_COST", "MAX_DEPTH", "check_depth", "check_names", "estimate_cost", "expression_kind",
    "merge_fields", "read_paths", "recent_windows", "root_fields", "sorted_fields",
]

# Deepest parse tree accepted: cel-python's interpreter needs ~3 Python frames per tree level and
# itself caps recursion at 2,500 frames; 400 levels is about 40 nested parentheses.
MAX_DEPTH = 400
# Operators nested inside each other (chains like a || b || c count one per operator): the compiled
# Python nests a few brackets per operator, and CPython's parser stops at 200.
MAX_NESTING = 32
_WRAPPERS = {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member",
             "primary", "paren_expr", "exprlist", "mapinits", "literal", "ident", "relation_lt", "relation_le",
             "relation_gt", "relation_ge", "relation_eq", "relation_ne", "relation_in", "addition_add", "addition_sub",
             "multiplication_mul", "multiplication_div", "multiplication_mod", "unary_not", "unary_neg"}
_BOOL_METHODS = {"all", "exists", "exists_one", "contains", "startsWith", "endsWith", "matches"}
_METHODS = set(MACROS) | _BOOL_METHODS | {"size"}


class CheckError(PositionedError):
    """An expression the checker refuses."""


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
    max_items: int | None = None  # for a list: the most it can hold (input limits), for cost estimates


def _pos(token: Any) -> tuple[int, int]:
    meta = getattr(token, "meta", None)
    if meta is not None and not getattr(meta, "empty", True) and getattr(meta, "line", None):
        return meta.line, meta.column or 1
    return (getattr(token, "line", None) or 1, getattr(token, "column", None) or 1)


def check_depth(tree: lark.Tree) -> None:
    """Refuse a tree deeper than MAX_DEPTH parse levels or MAX_NESTING nested operators (walked
    without recursion, so the check itself cannot run out of stack)."""
    stack = [(tree, 1, 0)]
    while stack:
        node, depth, nesting = stack.pop()
        if node.data not in _WRAPPERS or (len(node.children) > 1 and node.data in _OPERATORS):
            nesting += 1
        if depth > MAX_DEPTH or nesting > MAX_NESTING:
            line, col = _pos(node)
            raise CheckError(
                f"expression nested too deeply (more than {MAX_NESTING} operators inside each other); "
                "split it into simpler gates", line, col
            )
        stack.extend((c, depth + 1, nesting) for c in node.children if isinstance(c, lark.Tree))


_OPERATORS = {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary"}


def member_path(node: lark.Tree) -> list[lark.Token] | None:
    """``a.b.c`` as the tokens [a, b, c]; None if the chain has calls or indexes."""
    if node.data == "member" and len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
        return member_path(node.children[0])
    if node.data == "member_dot":
        inner = member_path(node.children[0])
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
                raise CheckError(f"unknown field '{token}' of '{prefix}' (known: {known})", line, col)
            spec = spec.fields[str(token)]
        elif spec.kind == "map":
            spec = spec.item
        else:
            return None
    return spec


def check_names(tree: lark.Tree, variables: Mapping[str, FieldSpec]) -> set[str]:
    """Every name, field, function, method and macro, with macro scopes; returns the roots read."""
    roots: set[str] = set()

    def walk(node: Any, scope: frozenset[str]) -> None:
        if not isinstance(node, lark.Tree):
            return
        data = node.data
        if data == "ident":
            token = node.children[0]
            name = str(token)
            if name not in scope:
                if name not in variables:
                    line, col = _pos(token)
                    raise CheckError(f"unknown variable '{name}' (known: {', '.join(sorted(variables))})", line, col)
                roots.add(name)
            return
        if data == "member_dot":
            path = member_path(node)
            if path is not None and str(path[0]) not in scope:
                _resolve(path, variables)
        elif data == "ident_arg":
            token = node.children[0]
            if str(token) not in KNOWN_FUNCTIONS:
                line, col = _pos(token)
                raise CheckError(f"unknown function '{token}' (known: {', '.join(sorted(KNOWN_FUNCTIONS))})", line, col)
            if str(token) == "matches" and len(node.children) > 1 and len(node.children[1].children) > 1:
                _check_pattern(node.children[1].children[1], token)
            if str(token) == "has":
                args = node.children[1].children if len(node.children) > 1 else []
                target = _unwrap(args[0]) if len(args) == 1 else None
                if target is None or target.data != "member" or target.children[0].data != "member_dot":
                    line, col = _pos(token)
                    raise CheckError("has() takes exactly one field selection, e.g. has(intent.price)", line, col)
        elif data == "member_dot_arg":
            token = node.children[1]
            method = str(token)
            if method == "matches" and len(node.children) > 2 and node.children[2].children:
                _check_pattern(node.children[2].children[0], token)
            if method not in _METHODS:
                line, col = _pos(token)
                raise CheckError(f"unknown method '{token}'", line, col)
            if method in MACROS:
                args = list(node.children[2].children) if len(node.children) > 2 else []
                var = macro_variable(args)
                if var is None:
                    line, col = _pos(token)
                    raise CheckError(
                        f"{method}() takes a variable name and an expression, e.g. list.{method}(x, x > 0)", line, col
                    )
                walk(node.children[0], scope)
                walk(args[1], scope | {var})
                return
        elif data == "literal" and node.children[0].type == "BYTES_LIT":
            line, col = _pos(node.children[0])
            raise CheckError("bytes literals are not supported in gates", line, col)
        elif data in ("member_object", "dot_ident", "dot_ident_arg"):
            line, col = _pos(node)
            raise CheckError(f"'{data}' is not supported in gates", line, col)
        for child in node.children:
            walk(child, scope)

    walk(tree, frozenset())
    return roots


def root_fields(tree: lark.Tree) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """For each root variable the expression reads (the roots of :func:`check_names`, with the same
    macro scopes): the fields it reads directly off it, ``R.f``, or None when it uses the root any
    other way (alone, in parentheses, indexed, as a macro or method target, passed to a function).

    A root read only as ``R.f``, ``R.g`` cannot observe any other field of R: the activation may
    leave them out (engine.activation builds only those of the context's objects). Sorted by root."""
    found: dict[str, set[str] | None] = {}

    def use(name: str, field: str | None) -> None:
        merge_fields(found, name, None if field is None else (field,))

    def walk(node: Any, scope: frozenset[str]) -> None:
        if not isinstance(node, lark.Tree):
            return
        data = node.data
        if data == "ident":
            name = str(node.children[0])
            if name not in scope:
                use(name, None)
            return
        if data == "member_dot":
            ident = _direct_ident(node.children[0])
            if ident is not None:  # R.f: the field is a token, nothing else below
                name = str(ident.children[0])
                if name not in scope:
                    use(name, str(node.children[1]))
                return
        elif data == "member_dot_arg" and str(node.children[1]) in MACROS:
            args = list(node.children[2].children) if len(node.children) > 2 else []
            var = macro_variable(args)
            if var is not None:
                walk(node.children[0], scope)
                walk(args[1], scope | {var})
                return
        for child in node.children:
            walk(child, scope)

    walk(tree, frozenset())
    return sorted_fields(found)


def merge_fields(found: dict[str, set[str] | None], root: str, fields: Any) -> None:
    """Add to ``found`` that ``root`` is read as ``root.f`` for each f in ``fields``, or, when
    ``fields`` is None, used whole (which stays so whatever else is read off it)."""
    if fields is None:
        found[root] = None
    elif root not in found:
        found[root] = set(fields)
    elif found[root] is not None:
        found[root].update(fields)  # type: ignore[union-attr]


def sorted_fields(found: Mapping[str, set[str] | None]) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """``found`` (:func:`merge_fields`) as a sorted tuple: (root, its fields sorted, or None)."""
    return tuple(sorted((root, None if fields is None else tuple(sorted(fields))) for root, fields in found.items()))


def _direct_ident(node: Any) -> Any:
    """The ``ident`` node of ``member(primary(ident))``, the target of ``R.f``; None for anything else."""
    if isinstance(node, lark.Tree) and node.data == "member" and len(node.children) == 1:
        primary = node.children[0]
        if isinstance(primary, lark.Tree) and primary.data == "primary" and len(primary.children) == 1:
            ident = primary.children[0]
            if isinstance(ident, lark.Tree) and ident.data == "ident":
                return ident
    return None


def _check_pattern(arg: Any, token: Any) -> None:
    """A literal matches() pattern must be a valid RE2 expression: refused here, not at each decision."""
    literal = next((t for t in arg.scan_values(lambda v: isinstance(v, lark.Token)) if t.type in ("STRING_LIT", "MLSTRING_LIT")), None) \
        if isinstance(arg, lark.Tree) and len(list(arg.iter_subtrees())) <= 12 else None
    if literal is None:
        return
    import re2
    from celpy.evaluation import celstr

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own complaint on stderr
    try:
        re2.compile(str(celstr(literal)), options)
    except Exception as exc:  # re2.error, or a pattern celstr cannot read
        line, col = _pos(literal)
        raise CheckError(f"matches(): the pattern is not a valid RE2 regular expression ({exc})", line, col) from None


def _unwrap(node: Any) -> Any:
    """The innermost node of a chain of single-child wrappers (expr -> ... -> member)."""
    while isinstance(node, lark.Tree) and len(node.children) == 1 and node.data != "member" and isinstance(node.children[0], lark.Tree):
        node = node.children[0]
    return node


def _scoped_names(tree: lark.Tree) -> set[str]:
    """Every name a macro binds somewhere in ``tree`` (used by the approximate kind and path views)."""
    names: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS and len(node.children) > 2:
            var = macro_variable(list(node.children[2].children))
            if var is not None:
                names.add(var)
    return names


# Cost: an upper bound of the steps one evaluation can take, as Kubernetes estimates CEL cost at
# admission. Lists whose size is not known are taken at UNKNOWN_LIST_SIZE.
MAX_COST = 100_000
UNKNOWN_LIST_SIZE = 10_000
_LIST_HELPERS = {"recent_count": 0, "in_windows": 1}  # helpers that walk one of their arguments


def estimate_cost(tree: lark.Tree, variables: Mapping[str, FieldSpec]) -> int:
    """Steps, counting every node once and a macro's body once per element of its target."""

    def size(node: Any) -> int:
        inner = _unwrap(node)
        if isinstance(inner, lark.Tree) and inner.data == "member" and isinstance(inner.children[0], lark.Tree):
            child = inner.children[0]
            if child.data == "primary" and isinstance(child.children[0], lark.Tree) and child.children[0].data == "list_lit":
                lit = child.children[0]
                return len(lit.children[0].children) if lit.children else 0
            path = member_path(inner)
            if path is not None:
                try:
                    spec = _resolve(path, variables)
                except CheckError:
                    spec = None
                if spec is not None and spec.max_items is not None:
                    return spec.max_items
        return UNKNOWN_LIST_SIZE

    def cost(node: Any) -> int:
        if not isinstance(node, lark.Tree):
            return 0
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS and len(node.children) > 2:
            args = node.children[2].children
            return cost(node.children[0]) + size(node.children[0]) * (1 + cost(args[1]))
        if node.data == "ident_arg" and str(node.children[0]) in _LIST_HELPERS and len(node.children) > 1:
            args = node.children[1].children
            scanned = _LIST_HELPERS[str(node.children[0])]
            return 1 + sum(cost(a) for a in args) + (size(args[scanned]) if len(args) > scanned else 0)
        total = 1 if node.data not in _WRAPPERS else 0
        return total + sum(cost(c) for c in node.children)

    return cost(tree)


def recent_windows(tree: lark.Tree) -> tuple[tuple[str, str, int, int], ...]:
    """The windows of ``recent_count(list, now - X, ...)`` calls where X is ``params.NAME`` or a
    number: (kind "param" | "literal", name or number text, line, column). The bundle loader checks
    them against ``state.lookbackMs``: a longer window would silently count too few records."""
    found = []
    for node in tree.iter_subtrees_topdown():
        if node.data != "ident_arg" or str(node.children[0]) != "recent_count" or len(node.children) < 2:
            continue
        args = node.children[1].children
        if len(args) < 2:
            continue
        sub = _unwrap(args[1])
        while isinstance(sub, lark.Tree) and sub.data != "addition" and len(sub.children) == 1:
            sub = sub.children[0]
        if not (isinstance(sub, lark.Tree) and sub.data == "addition" and len(sub.children) == 2
                and sub.children[0].data == "addition_sub"):
            continue
        left, right = _unwrap(sub.children[0].children[0]), _unwrap(sub.children[1])
        left_path = member_path(left) if isinstance(left, lark.Tree) else None
        if left_path is None or [str(t) for t in left_path] != ["now"]:
            continue
        line, col = _pos(node.children[0])
        right_path = member_path(right) if isinstance(right, lark.Tree) else None
        if right_path is not None and len(right_path) == 2 and str(right_path[0]) == "params":
            found.append(("param", str(right_path[1]), line, col))
        else:
            literal = next((t for t in right.scan_values(lambda v: isinstance(v, lark.Token)) if t.type in ("INT_LIT", "FLOAT_LIT", "UINT_LIT")), None) if isinstance(right, lark.Tree) else None
            if literal is not None and right.data in ("member", "primary") and len(list(right.iter_subtrees())) <= 3:
                found.append(("literal", literal.value.rstrip("uU"), line, col))
    return tuple(found)


def read_paths(tree: lark.Tree) -> tuple[str, ...]:
    """Longest ``a.b.c`` chains rooted at a free variable, in order of first appearance (for explain)."""
    bound = _scoped_names(tree)
    found: list[str] = []
    inner: set[int] = set()
    for node in tree.iter_subtrees_topdown():
        if id(node) in inner:
            continue
        if node.data in ("member_dot", "primary"):
            path = member_path(node)
            if path is None or str(path[0]) in bound:
                continue
            for sub in node.iter_subtrees():
                inner.add(id(sub))
            dotted = ".".join(str(t) for t in path)
            if dotted not in found:
                found.append(dotted)
    return tuple(found)


def expression_kind(tree: lark.Tree, variables: Mapping[str, FieldSpec]) -> str:
    """Static result kind: 'bool', a non-bool kind name, or 'unknown'."""
    return _kind(tree, variables, _scoped_names(tree))


def _kind(node: Any, variables: Mapping[str, FieldSpec], bound: set[str]) -> str:
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
        path = member_path(node)
        if path is not None and str(path[0]) not in bound:
            return _spec_kind(_resolve(path, variables))
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
