"""Bundle loading: valid bundles load and digest stably; every broken one says file:line:col."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.bundle import BundleError, load_bundle
from engine.paths import default_bundle_path

ROOT = Path(__file__).resolve().parent.parent
GATES = ROOT / "gates"


def test_default_bundle_loads_with_every_spec_gate() -> None:
    b = load_bundle(default_bundle_path())
    categories = {g.category for g in b.risk_gates}
    assert categories == {"exposure", "temporal", "frequency", "health"}
    assert len(b.risk_gates) == 13 and len(b.constraint_checks) == 13
    assert b.digest.startswith("sha256:") and b.digest == load_bundle(default_bundle_path()).digest


def _write(tmp_path: Path, body: str, name: str = "b.yaml") -> Path:
    path = tmp_path / name
    body = body.replace("GATES", str(GATES))
    if str(GATES) in body and "includeRoot" not in body:
        body = body.replace("  include:", f"  includeRoot: {ROOT}\n  include:", 1)
    path.write_text(body)
    return path


HEADER = """apiVersion: ep4.io/v1
kind: PolicyBundle
metadata:
  name: t
  version: 1.0.0
spec:
  exchange: BINANCE_PERP
  executionMode: dry-run
  params:
    limit:
      type: decimal
      value: "0.5"
  postFailure: {cooldownMs: 1000, forceCancelOpenOrders: false}
  state: {lookbackMs: 60000}
"""


def _problems(path: Path) -> list:
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    return info.value.problems


def test_inline_gate_typo_points_at_line_and_column(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + """  gates:
    - id: exposure.limit
      category: exposure
      expression: |
        intent.kind != "ORDER"
          || abs(intent.position_aftr) <= params.limit
      reason_code: LIMIT_HIT
      message: too big
  riskGates: [exposure.limit]
  constraintChecks: []
""",
    )
    (p,) = _problems(path)
    assert (p.line, p.column) == (20, 25)
    assert "unknown field 'position_aftr'" in p.message and "position_after" in p.message
    assert p.text == "|| abs(intent.position_aftr) <= params.limit"
    assert str(p).startswith(f"{path}:20:25: gate 'exposure.limit'")


def test_plain_and_quoted_scalars_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + """  gates:
    - {id: health.a, category: health, expression: "health.api_latency_ms < params.limt", reason_code: AAA_X, message: m}
    - id: health.b
      category: health
      expression: health.api_latency_ms + 1
      reason_code: BBB_X
      message: m
  riskGates: [health.a, health.b]
  constraintChecks: []
""",
    )
    problems = _problems(path)
    assert [(p.line, p.column) for p in problems] == [(16, 84), (19, 19)]
    assert "unknown field 'limt'" in problems[0].message
    assert "must evaluate to a boolean" in problems[1].message


def test_syntax_error_duplicate_and_unknown_ids(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + """  gates:
    - id: health.a
      category: health
      expression: health.api_latency_ms <
      reason_code: AAA_X
      message: m
    - id: health.a
      category: health
      expression: "true"
      reason_code: AAA_Y
      message: m
  riskGates: [health.a, health.nope]
  constraintChecks: [health.a]
""",
    )
    msgs = [(p.line, p.column, p.message) for p in _problems(path)]
    assert any(line == 18 and "syntax error" in m for line, _, m in msgs)
    assert any(line == 21 and "duplicate gate id 'health.a'" in m and "b.yaml:16:" in m for line, _, m in msgs)
    assert any(line == 26 and "no gate 'health.nope'" in m for line, _, m in msgs)


def test_schema_errors_are_located(tmp_path: Path) -> None:
    text = HEADER.replace("executionMode: dry-run", "executionMode: live").replace('value: "0.5"', "value: fast")
    path = _write(tmp_path, text + "  riskGates: []\n  constraintChecks: []\n  colour: red\n")
    msgs = {(p.line, p.message.split(":")[0]) for p in _problems(path)}
    assert (8, "spec.executionMode") in msgs
    assert (17, "spec.colour") in msgs


def test_bad_param_value_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER.replace('value: "0.5"', "value: fast") + "  riskGates: []\n  constraintChecks: []\n")
    (p,) = _problems(path)
    assert (p.line, p.message.split(":")[0]) == (12, "spec.params.limit.value")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "  riskGates: [a, b\n")
    (p,) = _problems(path)
    assert "invalid YAML" in p.message and p.line >= 15


def test_wrong_rule_category_and_reserved_code(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + """  include: [GATES/exchange-constraints.yaml]
  gates:
    - {id: health.a, category: health, expression: "true", reason_code: DRY_RUN, message: m}
  riskGates: [exchange.qty-min]
  constraintChecks: [health.a]
""",
    )
    msgs = " | ".join(p.message for p in _problems(path))
    assert "reserved by the engine" in msgs
    assert "spec.riskGates: 'exchange.qty-min' has category exchange-constraint" in msgs
    assert "spec.constraintChecks: 'health.a' has category health" in msgs


def test_missing_include(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "  include: [nowhere.yaml]\n  riskGates: []\n  constraintChecks: []\n")
    (p,) = _problems(path)
    assert p.line == 15 and "include 'nowhere.yaml': file not found" in p.message


def test_gate_library_edit_changes_the_digest(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "gates", tmp_path / "gates")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    before = load_bundle(tmp_path / "policies" / "binance-perp-default.yaml").digest
    lib = tmp_path / "gates" / "health.yaml"
    lib.write_text(lib.read_text().replace("health.api_latency_ms <= params.max_api_latency_ms", "health.api_latency_ms < params.max_api_latency_ms"))
    assert load_bundle(tmp_path / "policies" / "binance-perp-default.yaml").digest != before


def test_an_ack_tolerance_below_the_recv_window_is_refused() -> None:
    """Binance runs a request up to recvWindowMs after its timestamp, so a genuine ack may be that late:
    a tolerance below it would put a good order in doubt and cancel it (Rule 6, §6.3)."""
    from pydantic import ValidationError

    from engine.bundle import ExchangeClientSettings

    assert ExchangeClientSettings(recvWindowMs=5000, ackTimestampToleranceMs=5000).ackTimestampToleranceMs == 5000
    with pytest.raises(ValidationError) as info:
        ExchangeClientSettings(recvWindowMs=5000, ackTimestampToleranceMs=4999)
    assert "ackTimestampToleranceMs 4999 is below recvWindowMs 5000" in str(info.value)
    with pytest.raises(ValidationError):
        ExchangeClientSettings(recvWindowMs=60000)  # the default tolerance (5000) is below it
