"""`make differential`: compiled gates against cel-python's interpreter on many random pairs.

    python tests/differential.py [--count 100000] [--seed 20261127]

Draws (expression, activation) pairs from tests/cel_grammar.py with a fixed seed, evaluates each
with both evaluators and prints the count and the agreement rate; exit 1 on any disagreement (each
one printed with the expression and both outcomes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, assume, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cel_grammar import Grammar, activations, compile_for_test, outcome  # noqa: E402


class Tally:
    def __init__(self) -> None:
        self.pairs = self.refused = self.errors = self.values = 0
        self.disagreements: list[str] = []


def run(count: int, seed_value: int, depth: int = 3, quiet: bool = False) -> Tally:
    tally = Tally()
    grammar = Grammar()

    @seed(seed_value)
    @settings(max_examples=count, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(text=st.sampled_from(["bool", "num", "any"]).flatmap(lambda k: grammar.expr(k, depth)), activation=activations())
    def pair(text: str, activation: dict) -> None:
        expression = compile_for_test(text)
        if expression is None:
            tally.refused += 1
        assume(expression is not None)  # refused by the checker: drawn again, not counted as a pair
        compiled = outcome(expression, activation, "compiled")
        interpreted = outcome(expression, activation, "interpreter")
        tally.pairs += 1
        if compiled[0] == "error":
            tally.errors += 1
        else:
            tally.values += 1
        if compiled != interpreted:
            tally.disagreements.append(f"{text}\n    compiled:    {compiled}\n    interpreter: {interpreted}")

    pair()
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20261127)
    args = ap.parse_args()
    if args.count < 1:
        ap.error("--count must be at least 1")
    t0 = time.monotonic()
    tally = run(args.count, args.seed)
    took = time.monotonic() - t0
    agree = tally.pairs - len(tally.disagreements)
    rate = 100.0 * agree / tally.pairs if tally.pairs else 0.0
    print(f"differential: {tally.pairs} pairs evaluated by both evaluators (seed {args.seed}, {took:.0f} s); "
          f"{tally.values} values, {tally.errors} errors; {tally.refused} expressions refused by the checker")
    print(f"agreement: {agree} of {tally.pairs} ({rate:.3f} %)")
    for d in tally.disagreements[:50]:
        print("DISAGREE", d)
    return 0 if not tally.disagreements else 1


if __name__ == "__main__":
    sys.exit(main())
