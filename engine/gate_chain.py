"""One generated function per rule that runs its gates' compiled fast paths in order (issue 6).

The per-gate loop in :mod:`engine.risk_gates` pays, for every gate, a Python loop step, an attribute
walk to the fast function, a ``try`` and a trace append. A rule whose gates all pass (the common
case) needs none of that: the chain calls each fast function directly and answers only *how many
leading gates passed on the fast path*. The loop then takes over from the first gate that did not
(a refusal, an error value, a gate without a fast path, or a fast path that raised and must be
decided by the reference path), so outcomes, traces and messages are exactly the loop's.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .cel.values import TRUE

__all__ = ["gate_chain"]


def gate_chain(gates: Sequence[Any]) -> Callable[[Mapping[str, Any]], int]:
    """``chain(activation) -> n``: gates ``[0, n)`` returned CEL ``true`` on their fast paths (run
    inside :func:`engine.cel.exact_arithmetic`); ``n == len(gates)`` means every gate passed."""
    namespace: dict[str, Any] = {"T": TRUE}
    lines = ["def chain(act):", "    n = 0", "    try:"]
    for i, gate in enumerate(gates):
        fast = gate.expression.fast
        if fast is None:  # reference path only: the loop decides from here
            lines.append(f"        return {i}")
            break
        namespace[f"g{i}"] = fast
        lines.append(f"        if g{i}(act) is not T: return {i}  # {gate.id}")
        lines.append(f"        n = {i + 1}")
    else:
        lines.append(f"        return {len(gates)}")
    lines += ["    except Exception:  # the loop re-runs this gate and lets the reference path decide", "        return n"]
    exec(compile("\n".join(lines) + "\n", "<ep4 gate chain>", "exec"), namespace)
    return namespace["chain"]
