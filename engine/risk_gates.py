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
from .memo import memo_of
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
    chain: Callable[[Mapping[str, Any], int], int] | None = None, *, exact_entered: bool = False,
    known: int | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    """Every gate, in order, with the given evaluator (``compiled`` or the reference ``interpreter``).

    ``chain`` (:func:`engine.gate_chain.gate_chain` of the same ``gates``) runs each stretch of fast-path
    passes in one call; every other gate is decided here, one by one, in order. Gates run inside
    :func:`engine.cel.exact_arithmetic`; ``exact_entered``: the caller has entered it already.
    ``known``: what ``chain(activation, 0)`` gives, when the caller has worked it out already (the
    pipeline's chain over both rules stops where this rule's would: engine.pipeline)."""
    if exact_entered:
        return _evaluate_gates(gates, activation, error_code, evaluator, chain, known)
    with exact_arithmetic():
        return _evaluate_gates(gates, activation, error_code, evaluator, chain, known)


def _no_chain(activation: Mapping[str, Any], start: int) -> int:
    return start  # no fast passes: the loop decides every gate


def _evaluate_gates(
    gates: Sequence[Gate], activation: Mapping[str, Any], error_code: str, evaluator: str,
    chain: Callable[[Mapping[str, Any], int], int] | None = None, known: int | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    count = len(gates)
    if chain is None or evaluator != "compiled":
        chain, known = _no_chain, None
    i = chain(activation, 0) if known is None else known
    if i == count:
        return getattr(chain, "passed", None) or tuple(g.passed for g in gates), None
    trace: list[GateOutcome] = [g.passed for g in gates[:i]]
    failure: GateFailure | None = None
    while i < count:
        outcome, failed = _decide(gates[i], activation, error_code, evaluator)
        trace.append(outcome)
        if failure is None:
            failure = failed
        nxt = chain(activation, i + 1)  # the gates after it that pass on their fast paths
        trace.extend(g.passed for g in gates[i + 1:nxt])
        i = nxt
    return tuple(trace), failure


def _decide(gate: Gate, activation: Mapping[str, Any], error_code: str, evaluator: str) -> tuple[GateOutcome, GateFailure | None]:
    """One gate, decided in full: its trace entry, and its failure if it refuses (an enforced gate)."""
    error = None
    value: Any = _UNSET
    fast = gate.expression.fast if evaluator == "compiled" else None
    if fast is not None:  # the typed case, without the general path's wrapping
        try:
            value = fast(activation)
        except Exception:
            value = _UNSET  # anything else: the general path decides (reference semantics)
        if value is TRUE:
            return gate.passed, None
    if value is _UNSET:
        try:
            value = gate.expression.evaluate_exact(activation, evaluator)
        except CelEvaluationError as exc:
            value, error = None, str(exc)
    else:
        value = from_cel(value)
    if value is True:
        return gate.passed, None
    if value is False:  # a refusal: its trace entry is the gate's own (built once), its failure too
        return gate.refused, (None if gate.shadow else _refusal(gate))
    if error is None and not isinstance(value, bool):
        error = f"gate returned {type(value).__name__}, not a boolean"
    if gate.shadow:  # warn / audit: recorded, never deciding (issue 9, shadow gates)
        return ShadowGateOutcome(id=gate.id, rule=gate.rule, category=gate.category, passed=False, error=error,
                                 enforcement=gate.enforcement), None
    outcome = GateOutcome(id=gate.id, rule=gate.rule, category=gate.category, passed=False, error=error)
    if error is None:
        return outcome, GateFailure(gate, gate.reason_code, f"{gate.id}: {gate.message}")
    return outcome, GateFailure(gate, error_code, f"{gate.id} could not be evaluated: {error}")


def _refusal(gate: Gate) -> GateFailure:
    """An enforced gate's refusal, built once per gate (engine.memo): it names only the gate's own fields."""
    return memo_of(gate, "refusal", _new_refusal)


def _new_refusal(gate: Gate) -> GateFailure:
    return GateFailure(gate, gate.reason_code, f"{gate.id}: {gate.message}")


def risk_gates(
    gates: Sequence[Gate], activation: Mapping[str, Any], evaluator: str = "compiled",
    chain: Callable[[Mapping[str, Any], int], int] | None = None, *, exact_entered: bool = False,
    known: int | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    """Rule 3: any failure (or evaluation error) means FAILED_SAFE."""
    return evaluate_gates(gates, activation, "GATE_EVALUATION_ERROR", evaluator, chain, exact_entered=exact_entered, known=known)
