"""The case corpus (tests/cases/): every outcome pinned by a reviewed snapshot under snapshots/."""

from __future__ import annotations

import pytest

from conftest import bundle_at, case_inputs, case_names, load_case
from engine.pipeline import Config, evaluate
from engine.reason_codes import ENGINE_CODES


def run(name: str):
    case = load_case(name)
    raw, context, bundle, constraints, state = case_inputs(case)
    return case, evaluate(raw, context, Config(bundle, constraints, "dry-run"), state).result


@pytest.mark.parametrize("name", case_names())
def test_case(name: str, snapshot) -> None:
    case, result = run(name)
    assert (result.result, result.reason_code) == (case["expect"]["result"], case["expect"]["reason_code"]), result.message
    assert result.model_dump(mode="json") == snapshot


@pytest.mark.parametrize("name", case_names())
def test_result_json_is_compact_json_of_the_dump(name: str) -> None:
    import json

    from engine.pipeline import result_json

    _, result = run(name)
    assert result_json(result) == json.dumps(result.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)


def test_corpus_reaches_every_reason_code() -> None:
    reached = {run(name)[1].reason_code for name in case_names()}
    default = bundle_at(None)
    gate_codes = {g.reason_code for g in default.risk_gates + default.constraint_checks}
    # Rules 5-6 codes need an exchange reply: tests/test_verification.py and tests/test_executor.py reach them.
    engine_codes = {c.code for c in ENGINE_CODES.values() if c.rule not in (5, 6) or c.code == "DRY_RUN"}
    missing = (engine_codes | gate_codes) - reached
    assert not missing, f"no case in tests/cases reaches: {sorted(missing)}"


def test_every_default_gate_fails_in_some_case() -> None:
    failed = set()
    for name in case_names():
        _, result = run(name)
        failed |= {g.id for g in result.gate_trace if not g.passed}
    default = bundle_at(None)
    assert {g.id for g in default.risk_gates + default.constraint_checks} <= failed
