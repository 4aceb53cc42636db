"""CEL evaluation behind one small interface: compile once, evaluate many, with two evaluators.

The rules (``risk_gates``, ``constraint_alignment``) only use :func:`compile_expression` and
:meth:`CompiledExpression.evaluate`. An expression is parsed by cel-python (its lark tree is the AST),
checked (:mod:`engine.cel.check`), and then made runnable twice:

* ``compiled`` (the default): :mod:`engine.cel.planner` turns the tree into one Python function that
  calls :mod:`engine.cel.runtime` — the interpreter's own rules without the tree walk;
* ``interpreter``: cel-python's tree-walking ``Evaluator``, kept as the reference. The two agree
  byte for byte, error messages included (``tests/test_cel_differential.py``, ``make differential``).

Numbers inside gates are exact decimals (spec §4 Rule 4: no rounding heuristics):

* every number in the activation is a ``Decimal`` (integers too);
* every numeric literal in an expression is rewritten to an exact ``Decimal`` at compile time,
  so ``0.1`` in a gate means the decimal 0.1, never the binary float;
* arithmetic runs in :data:`engine.numbers.EXACT`: an inexact result (``1 / 3``) is an evaluation
  error, which the rules turn into FAILED_SAFE, never a pass.
"""

from __future__ import annotations

from . import celpy_patches  # noqa: F401  (before anything binds celtypes.logical_or / logical_and)

import decimal
import logging
import marshal
import pickle
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import celpy
import lark
from celpy.celparser import CELParseError

from ..numbers import EXACT, MAX_DIGITS, DecimalParseError, parse_decimal
from .check import (MAX_COST, CheckError, FieldSpec, check_depth, check_names, estimate_cost, expression_kind, read_paths,
                    recent_windows, root_fields)
from .functions import FUNCTIONS, HELPER_FUNCTIONS, LITERAL_FUNCTION
from .planner import PlanError, plan
from .planner import restore as restore_plan
from .values import from_cel, to_cel

__all__ = [
    "EVALUATORS",
    "CelCompileError",
    "CelEvaluationError",
    "CompiledExpression",
    "FieldSpec",
    "HELPER_FUNCTIONS",
    "compile_expression",
    "error_message",
    "exact_arithmetic",
    "from_cel",
    "to_cel",
]

EVALUATORS = ("compiled", "interpreter")

# cel-python logs every evaluation error at WARNING/ERROR; ep4 reports them itself.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

_NUMERIC_TOKENS = {"INT_LIT", "FLOAT_LIT", "UINT_LIT"}
_ENVIRONMENT: list[Any] = []


def _env() -> Any:
    """cel-python's Environment, built on first use; its LALR tables come from a private cache
    (engine.cel.grammar) instead of 250 ms of grammar analysis per process."""
    if not _ENVIRONMENT:
        from celpy.celparser import CELParser

        from .grammar import cel_parser

        if CELParser.CEL_PARSER is None:
            CELParser.CEL_PARSER = cel_parser()
        _ENVIRONMENT.append(celpy.Environment())
    return _ENVIRONMENT[0]


class CelCompileError(ValueError):
    """An expression that cannot be used: syntax, unknown name, not a boolean, not compilable."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line  # 1-based, within the expression text
        self.column = column  # 1-based


class CelEvaluationError(RuntimeError):
    """Evaluation failed (missing field, type error, inexact arithmetic). Never a pass."""


def exact_arithmetic() -> Any:
    """The decimal context every evaluation runs in (enter it once around a batch of gates and call
    :meth:`CompiledExpression.evaluate_exact`)."""
    return decimal.localcontext(EXACT)


@dataclass(frozen=True)
class CompiledExpression:
    """A checked CEL expression, runnable by either evaluator. ``evaluate`` is pure and deterministic."""

    text: str
    # the checked tree, numeric literals rewritten: what both evaluators run (a _Deferred when restored)
    _tree: Any = field(compare=False)
    _function: Any  # the planned Python function
    source: str  # the planned function's Python source (``ep4 explain --compiled``)
    roots: frozenset[str]
    paths: tuple[str, ...] = ()  # dotted variable paths the expression reads (for `ep4 explain`)
    fast: Any = None  # the compiled fast path alone: returns the value or raises (then use evaluate)
    windows: tuple[tuple[str, str, int, int], ...] = ()  # recent_count windows (check.recent_windows)
    cost: int = 0  # estimated steps per evaluation (check.estimate_cost), at most MAX_COST
    # per root read: the fields read off it as ``root.field``, or None when the root is used whole
    # (check.root_fields); None here: not known, every root whole
    fields: tuple[tuple[str, tuple[str, ...] | None], ...] | None = None
    _plan: Any = field(default=None, repr=False, compare=False)  # planner.Plan: what a pickle keeps

    @property
    def _program(self) -> Any:
        """cel-python's interpreter (the reference), built on first use from the same tree."""
        runner = self.__dict__.get("_runner")
        if runner is None:
            tree = self._tree
            runner = _env().program(tree.load()[0] if isinstance(tree, _Deferred) else tree, functions=FUNCTIONS)
            object.__setattr__(self, "_runner", runner)
        return runner

    def __reduce__(self) -> Any:
        """Pickled (the compiled-bundle cache, engine.bundle_cache) as what the checks found and its
        plan: the compiled code (marshal) and the generated module's own names (constants; helpers
        by name), with the tree and the tree nodes errors name pickled apart, as bytes. Unpickling
        runs that code again, no planning, and leaves those bytes as they are until the reference
        path or the interpreter first needs them (:class:`_Deferred`): the fast path reads neither."""
        plan_ = self._plan
        kept = dict(plan_.kept or {})
        nodes = {name: kept.pop(name) for name in [n for n, v in kept.items() if isinstance(v, _NODE_TYPES)]}
        tree = self._tree
        blob = tree.blob if isinstance(tree, _Deferred) else pickle.dumps((tree, nodes), protocol=pickle.HIGHEST_PROTOCOL)
        return (_restore, (self.text, blob, self.source, marshal.dumps(plan_.code), kept,
                           self.roots, self.paths, self.windows, self.cost, self.fields))

    def evaluate(self, activation: Mapping[str, Any], evaluator: str = "compiled") -> Any:
        """Evaluate against CEL values (see :func:`to_cel`); raise CelEvaluationError on any error."""
        with decimal.localcontext(EXACT):
            return self.evaluate_exact(activation, evaluator)

    def evaluate_exact(self, activation: Mapping[str, Any], evaluator: str = "compiled") -> Any:
        """:meth:`evaluate` for callers already inside :func:`exact_arithmetic` (one context for a
        whole batch of gates instead of one per expression)."""
        try:
            if evaluator == "compiled":
                value = self._function(activation)
            elif evaluator == "interpreter":
                value = self._program.evaluate(activation)
            else:
                raise ValueError(f"unknown evaluator {evaluator!r} (one of {', '.join(EVALUATORS)})")
        except celpy.CELEvalError as exc:
            raise CelEvaluationError(error_message(exc)) from None
        except Exception as exc:  # any other failure inside an expression fails the gate, never the run
            raise CelEvaluationError(error_message(Exception(f"{type(exc).__name__}: {exc}"))) from None
        return from_cel(value)


_LARK_RULE = re.compile(r"Token\('RULE', '(\w+)'\)")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
MAX_MESSAGE = 400


def error_message(exc: Exception) -> str:
    """The text of an evaluation error: the same whichever evaluator raised it, the same in every
    process (no object addresses, no library-internal reprs), and bounded in length."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], str):
        text = args[0]
        if text.startswith("undeclared reference to ") and " (in activation" in text:
            text = text[: text.index(" (in activation")]  # the interpreter appends its whole activation
        if len(args) > 2 and isinstance(args[2], tuple) and args[2] and "CELEvalError(" not in str(args[2][0]):
            text += f" ({args[2][0]})"  # the Python error behind it, unless it only quotes other errors
        text = _LARK_RULE.sub(r"'\1'", text)  # lark >= 1.2 names rules Token('RULE', 'x'): say 'x'
        if "InvalidOperation" in text or "Inexact" in text:
            text += " — inexact decimal arithmetic"
    else:
        text = str(exc)
    text = _ADDRESS.sub("", text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def compile_expression(
    text: str, variables: Mapping[str, FieldSpec], *, require_bool: bool = True
) -> CompiledExpression:
    """Parse, check and compile ``text``.

    Checks made here, all reported with the line/column inside ``text``: syntax; nesting depth;
    every root variable is one of ``variables`` (macro variables only inside their macro); every
    member read from a variable whose shape is known exists; every function is known; macros and
    ``has()`` have their required shape; and (``require_bool``) the expression is boolean by
    construction.
    """
    if not isinstance(text, str) or not text.strip():
        raise CelCompileError("expression is empty", 1, 1)
    try:
        tree = _env().compile(text)
    except CELParseError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise CelCompileError(f"syntax error: {msg}", exc.line or 1, exc.column or 1) from None
    except RecursionError:
        raise CelCompileError("expression nested too deeply to parse; split it into simpler gates", 1, 1) from None
    except Exception as exc:  # lark may raise other parse errors on odd input
        raise CelCompileError(f"syntax error: {exc}", 1, 1) from None
    try:
        check_depth(tree)
        roots = check_names(tree, variables)
        cost = estimate_cost(tree, variables)
        if cost > MAX_COST:
            raise CheckError(
                f"estimated cost {cost:,} steps exceeds the limit of {MAX_COST:,} per evaluation (a macro over a list "
                "inside another multiplies); bound the lists or split the gate", 1, 1,
            )
        if require_bool:
            kind = expression_kind(tree, variables)
            if kind != "bool":
                raise CheckError(
                    "a gate must evaluate to a boolean (true = pass); this expression "
                    f"gives {kind if kind != 'unknown' else 'a value of unknown type'} — "
                    "compare it (==, <, ...) or use a boolean helper",
                    1,
                    1,
                )
        paths = read_paths(tree)
        fields = root_fields(tree)
        windows = recent_windows(tree)
        _rewrite_numeric_literals(tree)
        planned = plan(tree, FUNCTIONS)
    except (CheckError, PlanError) as exc:
        raise CelCompileError(exc.message, exc.line, exc.column) from None
    return CompiledExpression(
        text=text, _tree=tree, _function=planned.function, source=planned.source,
        roots=frozenset(roots), paths=paths, fast=planned.fast, windows=windows, cost=cost, fields=fields, _plan=planned,
    )


_NODE_TYPES = (lark.Tree, lark.Token)


class _Deferred:
    """A restored expression's checked tree and the tree nodes its reference path names in errors,
    as the pickled bytes of ``(tree, {name: node})``, read on first need (:meth:`load`) and then put
    into the generated module's namespace. Both the tree and the nodes come from one pickle, so a
    node is the very sub-tree of that tree, as when the expression was compiled."""

    __slots__ = ("blob", "_namespace", "_loaded", "_lock")

    def __init__(self, blob: bytes, namespace: dict[str, Any]) -> None:
        self.blob = blob
        self._namespace = namespace
        self._loaded: tuple[Any, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, dict[str, Any]]:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                loaded = self._loaded
                if loaded is None:
                    loaded = pickle.loads(self.blob)
                    self._namespace.update(loaded[1])
                    self._loaded = loaded
        return loaded


def _restore(text: str, blob: bytes, source: str, code: bytes, kept: dict[str, Any], roots: frozenset[str],
             paths: tuple[str, ...], windows: tuple[tuple[str, str, int, int], ...], cost: int,
             fields: tuple[tuple[str, tuple[str, ...] | None], ...] | None = None) -> CompiledExpression:
    planned = restore_plan(source, marshal.loads(code), kept, FUNCTIONS)
    deferred = _Deferred(blob, planned.namespace)
    function = planned.function

    def gate(activation: Any) -> Any:
        """The planned function, once the nodes its reference path names are in its namespace."""
        if deferred._loaded is None:
            deferred.load()
        return function(activation)

    return CompiledExpression(
        text=text, _tree=deferred, _function=gate, source=planned.source,
        roots=roots, paths=paths, fast=planned.fast, windows=windows, cost=cost, fields=fields, _plan=planned,
    )


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
            if len(text) > MAX_DIGITS:  # int() of a long hex text is slow, and its value out of range anyway
                raise CheckError(f"the number {text[:40]}… is out of range (at most {MAX_DIGITS} digits)",
                                 getattr(token, "line", 1) or 1, getattr(token, "column", 1) or 1)
            text = str(int(text, 16))
        try:  # the bounds every number ep4 reads has (engine.numbers): 1e9999999999999999999 is no Decimal at all
            parse_decimal(text)
        except DecimalParseError as exc:
            raise CheckError(f"the number {exc}", getattr(token, "line", 1) or 1, getattr(token, "column", 1) or 1) from None
        arg = _env().compile('"' + text + '"')
        tree_class = type(node)  # keep the runner's own tree class
        node.children = [tree_class("ident_arg", [lark.Token("IDENT", LITERAL_FUNCTION), tree_class("exprlist", [arg])])]
