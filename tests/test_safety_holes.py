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
