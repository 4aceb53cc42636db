"""One generated function per rule that runs its gates' compiled fast paths in order (issue 6).

The per-gate loop in :mod:`engine.risk_gates` pays, for every gate, a Python loop step, an attribute
walk to the fast function, a ``try`` and a trace append. A gate that passes (the common case) needs
none of that: the chain calls each fast function directly and answers only *where the run of fast
passes from a given gate on stops*. The loop decides that gate itself (a refusal, an error value, a
gate without a fast path, or a fast path that raised and must be decided by the reference path),
then asks the chain again from the next gate, so outcomes, traces and messages are exactly the
loop's.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .cel.values import TRUE

__all__ = ["gate_chain"]


def gate_chain(gates: Sequence[Any]) -> Callable[[Mapping[str, Any], int], int]:
    """``chain(activation, start) -> n``: gates ``[start, n)`` returned CEL ``true`` on their fast
    paths (run inside :func:`engine.cel.exact_arithmetic`); ``n == len(gates)`` means every gate from
    ``start`` on passed. The loop decides gate ``n`` and calls the chain again from ``n + 1``."""
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
    chain = namespace["chain"]
    chain.passed = tuple(g.passed for g in gates)  # the trace when every gate passes, built once
    return chain
