"""Issue 7: one test per reproduced safety hole, named after it. Each failed before its fix."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT
from engine.pipeline import Config, evaluate
from test_executor import OPEN, Rig, fast_bundle  # noqa: F401 - the fixture

EX = ROOT / "examples"


@pytest.fixture
def rig(tmp_path, fast_bundle):
    r = Rig(tmp_path, fast_bundle, socket=False)
    yield r
    r.close()


def _send_text(rig: Rig, text: str):
    rig.now += 2000
    return rig.executor.execute(text, rig.context())


# --- hole 1: authorization ambiguity ---


def test_hole01_duplicated_decision_code_never_executes(rig: Rig) -> None:
    action = json.dumps({"action_id": "a-1", **OPEN("0.010")})
    text = '{"decision_id": "d-dup", "decision_code": "HOLD", "decision_code": "AUTHORIZED_ACTION", "action": %s}' % action
    res = _send_text(rig, text)
    assert (res.result, res.reason_code, res.rule) == ("NOOP", "DECISION_CODE_DUPLICATED", 1)
    assert rig.paper.orders == []  # before the fix: last key won and the order was placed


def test_hole01_any_other_duplicated_key_is_rejected_naming_it(rig: Rig) -> None:
    text = json.dumps({"decision_id": "d-q", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a-1", **OPEN("0.010")}})
    text = text.replace('"quantity": "0.010"', '"quantity": "0.010", "quantity": "5"')
    res = _send_text(rig, text)
    assert (res.result, res.reason_code) == ("REJECTED", "DUPLICATE_KEY") and "action.quantity" in res.message
    assert rig.paper.orders == []


def test_hole01_missing_decision_code_is_a_rule1_noop(rig: Rig) -> None:
    res = _send_text(rig, json.dumps({"decision_id": "d-none", "action": {"action_id": "a-1", **OPEN("0.010")}}))
    assert (res.result, res.reason_code, res.rule) == ("NOOP", "DECISION_CODE_MISSING", 1)


# --- hole 2: inexact arithmetic outside the exact context ---


def test_hole02_adjust_with_more_digits_than_the_context_is_never_rounded(rig: Rig) -> None:
    rig.run(OPEN("0.010"))  # a position to adjust
    res, _ = rig.run({"type": "ACTION_ADJUST_POSITION", "symbol": "BTCUSDT", "delta_quantity": "0.0010000000000000000000000000004"})
    # before the fix: abs() in the 28-digit context gave 0.001000000000000000000000000000, which
    # passed the step check and was sent
    assert res.result == "FAILED_SAFE" and res.reason_code in ("QTY_STEP_MISALIGNED", "ARITHMETIC_INEXACT")
    assert [o.orig_qty for o in rig.paper.orders] == ["0.010"]


def test_hole02_sixty_one_digit_quantity_is_failed_safe_not_rounded() -> None:
    from conftest import base_context, bundle_at, default_constraints
    from engine.models import ExecutionContext

    ctx = ExecutionContext.model_validate(base_context())
    decision = {"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": {
        "type": "ACTION_ADJUST_POSITION", "action_id": "a", "symbol": "BTCUSDT", "delta_quantity": "-0." + "0" * 2 + "1" * 61}}
    res = evaluate(json.dumps(decision), ctx, Config(bundle_at(None), default_constraints(), "dry-run")).result
    assert (res.result, res.reason_code) == ("FAILED_SAFE", "ARITHMETIC_INEXACT")


def test_hole02_constraints_refuse_binary_floats() -> None:
    from engine.constraints import ConstraintsError, build_constraints

    info = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "filters": [
        {"filterType": "LOT_SIZE", "minQty": 0.001, "maxQty": "1000", "stepSize": "0.001"}]}]}
    with pytest.raises(ConstraintsError, match="binary float"):
        build_constraints(info)
