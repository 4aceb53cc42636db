"""Spec §4 Rule 4 — Exchange Constraint Alignment (step, tick, size, notional, margin mode,
leverage bounds). No rounding heuristics: incompatible means FAILED_SAFE."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .bundle import Gate
from .models import GateOutcome
from .risk_gates import GateFailure, evaluate_gates

__all__ = ["constraint_alignment"]


def constraint_alignment(
    checks: Sequence[Gate], activation: Mapping[str, Any], evaluator: str = "compiled",
    chain: Callable[[Mapping[str, Any], int], int] | None = None, *, exact_entered: bool = False,
    known: int | None = None,
) -> tuple[tuple[GateOutcome, ...], GateFailure | None]:
    return evaluate_gates(checks, activation, "CONSTRAINT_EVALUATION_ERROR", evaluator, chain, exact_entered=exact_entered,
                          known=known)
