"""Spec §4 Rule 3 — Risk Gate Evaluation (pre-execution), and the gate runner Rule 4 shares.

All gates of a rule are evaluated, in the bundle's fixed order, so the trace is complete; the
first failing enforced gate gives the reason code. A gate that cannot be evaluated fails (spec §6.1).
A shadow gate (``enforcement: warn | audit``) is evaluated and its outcome recorded in the trace, but
it never decides: spec §9 extensions are rolled out observed before they are enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .bundle import Gate
from .cel import CelEvaluationError, exact_arithmetic
from .cel.values import TRUE, from_cel
from .models import GateOutcome, ShadowGateOutcome

__all__ = ["GateFailure", "evaluate_gates", "risk_gates"]

_UNSET = object()


@dataclass(frozen=True)
class GateFailure:
    gate: Gate
    reason_code: str
    message: str


def evaluate_gates(
    gates: Sequence[Gate], activation: Mapping[str, Any], error_code: str, evaluator: str = "compiled",
    chain: Callable[[Mapping[str, Any]], int] | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    """Every gate, in order, with the given evaluator (``compiled`` or the reference ``interpreter``).

    ``chain`` (:func:`engine.gate_chain.gate_chain` of the same ``gates``) runs the leading fast
    paths in one call; the loop decides every gate from the first one that did not pass there."""
    with exact_arithmetic():
        return _evaluate_gates(gates, activation, error_code, evaluator, chain)


def _evaluate_gates(
    gates: Sequence[Gate], activation: Mapping[str, Any], error_code: str, evaluator: str,
    chain: Callable[[Mapping[str, Any]], int] | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    start = chain(activation) if chain is not None and evaluator == "compiled" else 0
    if start == len(gates):
        return tuple(g.passed for g in gates), None
    trace: list[GateOutcome] = [g.passed for g in gates[:start]]
    failure: GateFailure | None = None
    for gate in gates[start:]:
        error = None
        value: Any = _UNSET
        fast = gate.expression.fast if evaluator == "compiled" else None
        if fast is not None:  # the typed case, without the general path's wrapping
            try:
                value = fast(activation)
            except Exception:
                value = _UNSET  # anything else: the general path decides (reference semantics)
            if value is TRUE:
                trace.append(gate.passed)
                continue
        if value is _UNSET:
            try:
                value = gate.expression.evaluate_exact(activation, evaluator)
            except CelEvaluationError as exc:
                value, error = None, str(exc)
        else:
            value = from_cel(value)
        if value is True:
            trace.append(gate.passed)
            continue
        if error is None and not isinstance(value, bool):
            error = f"gate returned {type(value).__name__}, not a boolean"
        if gate.shadow:  # warn / audit: recorded, never deciding (issue 9, shadow gates)
            trace.append(ShadowGateOutcome(id=gate.id, rule=gate.rule, category=gate.category, passed=False, error=error,
                                           enforcement=gate.enforcement))
            continue
        trace.append(GateOutcome(id=gate.id, rule=gate.rule, category=gate.category, passed=False, error=error))
        if failure is None:
            if error is None:
                failure = GateFailure(gate, gate.reason_code, f"{gate.id}: {gate.message}")
            else:
                failure = GateFailure(gate, error_code, f"{gate.id} could not be evaluated: {error}")
    return tuple(trace), failure


def risk_gates(
    gates: Sequence[Gate], activation: Mapping[str, Any], evaluator: str = "compiled",
    chain: Callable[[Mapping[str, Any]], int] | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    """Rule 3: any failure (or evaluation error) means FAILED_SAFE."""
    return evaluate_gates(gates, activation, "GATE_EVALUATION_ERROR", evaluator, chain)
