"""A small `make fuzz` in `make test`: a few hundred generated hostile inputs per reader, no traceback,
each answered within a second (tests/fuzz.py)."""

from __future__ import annotations

from fuzz import run


def test_fuzz_smoke() -> None:
    tally = run(800, seed_value=7)
    assert sum(tally.counts.values()) >= 800 and set(tally.counts) == {"decision", "context", "bundle", "cel"}
    assert not tally.failures, tally.failures[:3]
