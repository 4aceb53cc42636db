"""One generated function per rule that runs its gates' compiled fast paths in order (issue 6).

The per-gate loop in :mod:`engine.risk_gates` pays, for every gate, a Python loop step, an attribute
walk to the fast function, a ``try`` and a trace append. A gate that passes (the common case) needs
none of that: the chain runs each fast path in turn and answers only *where the run of fast passes
from a given gate on stops*. The loop decides that gate itself (a refusal, an error value, a gate
without a fast path, or a fast path that raised and must be decided by the reference path), then
asks the chain again from the next gate, so outcomes, traces and messages are exactly the loop's.

The chain holds the gates' fast expressions inline, in one function (:func:`_inline_chain`), and
reads each variable, and each field that more than one gate reads as ``root.field``, once: of the
113 such reads in the default bundle's 26 gates, 79 are of the 22 fields shared so (per rule), and
become 22 reads. Those reads are the ones the fast paths make (a dict lookup, which changes
nothing); if one of them raises (a variable missing, a value that is not a map), the chain of
separate fast functions (:func:`_call_chain`) answers instead, so a read that only some gate makes
on some path never decides for another. Where the gates' sources cannot be put together (a name two
gates bind differently), the chain is that one.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

from .cel.values import TRUE

__all__ = ["gate_chain"]

Chain = Callable[[Mapping[str, Any], int], int]


def gate_chain(gates: Sequence[Any]) -> Chain:
    """``chain(activation, start) -> n``: gates ``[start, n)`` returned CEL ``true`` on their fast
    paths (run inside :func:`engine.cel.exact_arithmetic`); ``n == len(gates)`` means every gate from
    ``start`` on passed. The loop decides gate ``n`` and calls the chain again from ``n + 1``."""
    calls = _call_chain(gates)
    chain = _inline_chain(gates, calls) or calls
    chain.passed = tuple(g.passed for g in gates)  # the trace when every gate passes, built once
    return chain


def _call_chain(gates: Sequence[Any]) -> Any:
    """The chain as one call per gate to its fast function."""
    namespace: dict[str, Any] = {"T": TRUE}
    lines = ["def chain(act, start):", "    n = start", "    try:"]
    for i, gate in enumerate(gates):
        fast = gate.expression.fast
        if fast is None:  # reference path only: the loop decides this one
            lines.append(f"        if start <= {i}: return {i}  # {gate.id}")
            continue
        namespace[f"g{i}"] = fast
        lines.append(f"        if start <= {i}:  # {gate.id}")
        lines.append(f"            if g{i}(act) is not T: return {i}")
        lines.append(f"            n = {i + 1}")
    lines.append(f"        return {len(gates)}")
    lines += ["    except Exception:  # the loop re-runs this gate and lets the reference path decide", "        return n"]
    exec(compile("\n".join(lines) + "\n", "<ep4 gate chain>", "exec"), namespace)
    return namespace["chain"]


# a generated gate module's fast function: its variable reads, then one return (engine.cel.planner)
_FAST = re.compile(r"^def (\w+)_fast\(act\):\n((?:    r_\w+ = act\['\w+'\]\n)*)    return (.+)\n", re.M)
_ROOT = re.compile(r"    (r_\w+) = act\['(\w+)'\]\n")
# a quoted literal (kept as it is) or a name; the planner quotes with repr(), so no quote is escaped
# inside a field name (a CEL identifier)
_WORD = re.compile(r"'[^'\\]*'|\"[^\"\\]*\"|[A-Za-z_]\w*")
_OWN = re.compile(r"(?:_t|k|m|mk|n)\d+")  # a generated module's own names: temporaries, constants
_READ = re.compile(r"DGET\((r_\w+), '(\w+)'\)")  # a field read off a variable, as the planner writes it
_RENAMED = re.compile(r"g\d+_(?:k|m|mk)\d+")  # a gate's constant in the chain (printed with the source)


class _Unfit(Exception):
    """The gates' fast sources cannot be put into one function as they are."""


def _inline_chain(gates: Sequence[Any], calls: Any) -> Any | None:
    """The chain with every fast expression inline and the shared reads made once (None: unfit)."""
    try:
        pieces = [_fast_piece(i, g) for i, g in enumerate(gates)]
        namespace: dict[str, Any] = {"T": TRUE, "calls": calls}
        roots: dict[str, str] = {}
        for piece in pieces:
            if piece is None:
                continue
            _, names, piece_roots = piece
            for name, variable in piece_roots.items():
                if roots.setdefault(name, variable) != variable:
                    raise _Unfit(name)
            for name, value in names.items():
                if namespace.setdefault(name, value) is not value:
                    raise _Unfit(name)
        counts = Counter(read for piece in pieces if piece is not None for read in _READ.findall(piece[0]))
        shared = {read: f"h{k}" for k, read in enumerate(sorted(r for r, c in counts.items() if c > 1), 1)}
        if set(shared.values()) & namespace.keys() or "DGET" not in namespace and shared:
            raise _Unfit("shared reads")
        lines = ["def chain(act, start):", "    try:  # the reads the gates share, made once"]
        lines += [f"        {name} = act[{variable!r}]" for name, variable in sorted(roots.items())]
        lines += [f"        {h} = DGET({name}, {field!r})" for (name, field), h in shared.items()]
        lines += ["    except Exception:  # a read some gate's path would not make: gate by gate",
                  "        return calls(act, start)", "    n = start", "    try:"]
        for i, gate in enumerate(gates):
            piece = pieces[i]
            if piece is None:
                lines.append(f"        if start <= {i}: return {i}  # {gate.id}")
                continue
            text = _READ.sub(lambda m: shared.get((m.group(1), m.group(2)), m.group(0)), piece[0])
            lines.append(f"        if start <= {i}:  # {gate.id}")
            lines.append(f"            if {text} is not T: return {i}")
            lines.append(f"            n = {i + 1}")
        lines.append(f"        return {len(gates)}")
        lines += ["    except Exception:  # the loop re-runs this gate and lets the reference path decide",
                  "        return n"]
        constants = [f"# {name} = {value!r}" for name, value in namespace.items() if _RENAMED.fullmatch(name)]
        source = "\n".join(constants + lines) + "\n"
        exec(compile(source, "<ep4 gate chain>", "exec"), namespace)
    except (_Unfit, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    chain = namespace["chain"]
    chain.source = source
    return chain


def _fast_piece(i: int, gate: Any) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """Gate ``i``'s fast expression with its module's own names renamed apart from the other gates'
    (``g3_k1``, ``g3__t2``), the module values the expression's global names stand for, and its
    variable reads (``r_intent`` -> ``intent``). None for a gate without a fast path."""
    if gate.expression.fast is None:
        return None
    plan = gate.expression._plan
    found = _FAST.search(plan.source) if plan is not None else None
    if found is None or plan.namespace is None:
        raise _Unfit(gate.id)
    module = plan.namespace
    roots = dict(_ROOT.findall(found.group(2)))
    names: dict[str, Any] = {}

    def rename(m: re.Match[str]) -> str:
        word = m.group(0)
        if word[0] in "'\"" or word in roots:
            return word
        if _OWN.fullmatch(word):
            if word in module:  # a constant of this gate's module
                names[f"g{i}_{word}"] = module[word]
            return f"g{i}_{word}"
        if word in module:  # the runtime's names and the helpers (x_NAME): one object per name
            names[word] = module[word]
        return word

    return _WORD.sub(rename, found.group(3)), names, roots
