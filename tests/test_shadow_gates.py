"""Shadow gates (issue 9): ``enforcement: warn | audit`` is evaluated and recorded, never deciding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, default_constraints
from engine.bundle import BundleError, load_bundle
from engine.cli import main
from engine.cli.inputs import load_context
from engine.pipeline import Config, evaluate, result_json

EX = ROOT / "examples"

SHADOW = """  gates:
    - id: exposure.tiny-orders-only
      category: exposure
      enforcement: {enforcement}
      expression: intent.quantity <= 0.001
      reason_code: ORDER_TOO_LARGE_FOR_PILOT
      message: pilot ceiling on order size
  riskGates:
"""


def variant(tmp_path: Path, enforcement: str, *, extra: dict[str, str] | None = None) -> Path:
    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text()
    text = text.replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    text = text.replace("  riskGates:\n", SHADOW.format(enforcement=enforcement), 1)
    text = text.replace("    - health.margin-available\n", "    - health.margin-available\n    - exposure.tiny-orders-only\n", 1)
    for a, b in (extra or {}).items():
        assert a in text
        text = text.replace(a, b)
    path = tmp_path / f"shadow-{enforcement}.yaml"
    path.write_text(text)
    return path


def run(bundle_path: Path):
    context = load_context(EX / "context.json")
    raw = (EX / "decision-open-limit.json").read_text()
    return evaluate(raw, context, Config(load_bundle(bundle_path), default_constraints(), "dry-run")).result


@pytest.mark.parametrize("enforcement", ["warn", "audit"])
def test_a_failing_shadow_gate_is_recorded_and_changes_nothing(tmp_path: Path, enforcement: str) -> None:
    plain = run(ROOT / "policies" / "binance-perp-default.yaml")
    shadow = run(variant(tmp_path, enforcement))
    assert (shadow.result, shadow.reason_code, shadow.rule, shadow.order) == (plain.result, plain.reason_code, plain.rule, plain.order)
    assert plain.reason_code == "DRY_RUN"
    entry = [g for g in shadow.gate_trace if g.id == "exposure.tiny-orders-only"]
    assert len(entry) == 1 and entry[0].passed is False and entry[0].enforcement == enforcement
    dumped = json.loads(result_json(shadow))
    assert {"id": "exposure.tiny-orders-only", "rule": 3, "category": "exposure", "passed": False, "error": None,
            "enforcement": enforcement} in dumped["gate_trace"]
    # enforced gates' entries are unchanged (no "enforcement" key): default results stay byte-identical
    assert all("enforcement" not in g for g in dumped["gate_trace"] if g["id"] != "exposure.tiny-orders-only")


def test_the_same_gate_enforced_refuses(tmp_path: Path) -> None:
    res = run(variant(tmp_path, "enforce"))
    assert (res.result, res.reason_code) == ("FAILED_SAFE", "ORDER_TOO_LARGE_FOR_PILOT")


def test_enforcement_is_part_of_the_digest(tmp_path: Path) -> None:
    digests = {e: load_bundle(variant(tmp_path, e)).digest for e in ("enforce", "warn", "audit")}
    assert len(set(digests.values())) == 3
    # "enforcement: enforce" written out or left to its default: the same bundle, the same digest
    implicit = variant(tmp_path, "enforce", extra={"      enforcement: enforce\n": ""})
    assert load_bundle(implicit).digest == digests["enforce"]


@pytest.mark.parametrize("enforcement,warned", [("warn", True), ("audit", False)])
def test_warn_is_printed_by_the_cli_audit_is_not(tmp_path: Path, capsys, enforcement: str, warned: bool) -> None:
    code = main(["execute", str(EX / "decision-open-limit.json"), "--exchange", "dry-run", "--context", str(EX / "context.json"),
                 "--bundle", str(variant(tmp_path, enforcement))])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["reason_code"] == "DRY_RUN"
    if warned:
        assert "ep4: warning: shadow gate exposure.tiny-orders-only (warn) would have refused" in err
        assert "ORDER_TOO_LARGE_FOR_PILOT" in err and "not enforced" in err
    else:
        assert err == ""


def test_a_shadow_gate_does_not_cover_a_required_spec_gate(tmp_path: Path) -> None:
    path = variant(tmp_path, "warn", extra={
        "  - id: exposure.tiny-orders-only\n      category: exposure\n":
        "  - id: exposure.tiny-orders-only\n      category: exposure\n      implements: 5.1.max-abs-position\n",
        "    - exposure.max-abs-position\n": "",
    })
    with pytest.raises(BundleError) as exc:
        load_bundle(path)
    assert "no gate implements spec §5 '5.1.max-abs-position'" in str(exc.value)


def test_paper_execution_records_the_shadow_outcome_in_the_audit_log(tmp_path: Path, capsys) -> None:
    state = tmp_path / "state"
    code = main(["execute", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"), "--state-dir", str(state),
                 "--bundle", str(variant(tmp_path, "warn"))])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["result"] == "SUCCESS", out + err
    record = json.loads((state / "audit.jsonl").read_text().splitlines()[-1])
    assert {"id": "exposure.tiny-orders-only", "rule": 3, "category": "exposure", "passed": False, "error": None,
            "enforcement": "warn"} in record["gate_trace"]
    assert "shadow gate exposure.tiny-orders-only (warn)" in err
    assert main(["replay", str(state / "audit.jsonl"), "--bundle", str(variant(tmp_path, "warn"))]) == 0
