"""Bundle lifecycle (spec §9, issue 9): ep4 certify, the signed certificate and its version
discipline, ep4 diff, ep4 keys, ep4 cases boundary / from-audit, and the live modes' refusal of an
uncertified bundle. Every test works on a copy of the shipped bundle in a temp dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest

from engine.cli import main
from engine.cli.certify import run_corpus
from engine.cli.corpus import load_corpus
from engine.cli.inputs import load_config_bundle
from engine.errors import BundleError

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"
BOUNDARY = CASES / "boundary"
SHIPPED = ROOT / "policies" / "binance-perp-default.yaml"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A copy of policies/ and gates/ (the bundle includes ../gates/), certificate and approvers too."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(ROOT / "gates", tmp_path / "gates")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def new_key(capsys, where: Path, name: str = "Risk Officer") -> tuple[Path, dict]:
    code, out, err = run(capsys, "keys", "new", "--out", where, "--name", name)
    assert code == 0, err
    return where, json.loads(out)


# --- what ships ---


@pytest.mark.parametrize("bundle", sorted(p.name for p in (ROOT / "policies").glob("*.yaml")))
def test_every_shipped_bundle_certifies_with_a_valid_signed_certificate(capsys, bundle: str) -> None:
    code, out, err = run(capsys, "certify", ROOT / "policies" / bundle, "--cases", CASES, "--no-progress")
    assert code == 0, out + err
    assert re.search(r"certificate .*: valid, approved by ", out), out
    assert "ok: 0 differences" in out


def test_the_committed_boundary_corpus_is_what_the_generator_gives(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "cases", "boundary", SHIPPED, "--out", tmp_path / "b")
    assert code == 0, err
    made = {p.relative_to(tmp_path / "b"): p.read_text() for p in (tmp_path / "b").rglob("*.json")}
    committed = {p.relative_to(BOUNDARY): p.read_text() for p in BOUNDARY.rglob("*.json")}
    assert sorted(made) == sorted(committed), "regenerate: ep4 cases boundary policies/binance-perp-default.yaml --out tests/cases/boundary --replace"
    assert made == committed
    # every enforced gate and check but the disabled session window is bounded on both sides
    assert "not reached by any knob (1): temporal.session-window" in out


def test_boundary_cases_sit_on_both_sides_of_each_limit() -> None:
    # the session window is disabled in the default bundle: its boundaries are pinned to the test bundle
    # that enables it (ep4 cases boundary ... --gate temporal.session-window --pin-bundle)
    corpus = load_corpus([str(BOUNDARY), str(CASES / "boundary-session-windows")])
    from engine.cli.boundary import CATEGORICAL

    categorical = {key for _, key, _, _ in CATEGORICAL}
    by_gate: dict[str, set[str]] = {}
    for c in corpus.cases:
        src = c.data["source"]
        assert src["generator"] == "ep4 cases boundary"
        # a categorical probe's passing side is its scenario's base input, written once for all gates
        by_gate.setdefault(src["gate"], set()).update({src["side"], "limit"} if src["knob"] in categorical else {src["side"]})
        if src["side"] == "over":
            assert c.expect["gate"] == src["gate"], c.name
        else:
            assert c.expect["reason_code"] == "DRY_RUN", c.name
    bundle = load_config_bundle(SHIPPED)
    for g in bundle.risk_gates + bundle.constraint_checks:
        assert {"limit", "over"} <= by_gate.get(g.id, set()), g.id


def test_cases_pinned_to_a_bundle_run_when_that_bundle_is_certified(capsys) -> None:
    sw = CASES / "bundles" / "session-windows.yaml"
    pinned = [CASES / "boundary-session-windows", CASES / "gate-session-window.json", CASES / "gate-session-window-inside.json"]
    code, out, _ = run(capsys, "certify", sw, "--cases", *pinned, "--outcomes-only")
    assert code == 0 and "ok: 0 differences in 142 cases" in out
    code, out, _ = run(capsys, "certify", SHIPPED, "--cases", *pinned, "--outcomes-only")
    assert code == 0 and "0 cases run" in out and "142 skipped (pinned to their own bundle)" in out


# --- a one-step change to any limit fails certification, naming the case and the gate ---


def _param_variants() -> list[tuple[str, str, str]]:
    """(label, old text, new text): each numeric param of the shipped bundle (each symbol's entry of
    a per-symbol one) and the cooldown, one unit of its written precision up and down."""
    text = SHIPPED.read_text()
    out = []

    def unit(v: str) -> Decimal:
        return Decimal(1).scaleb(Decimal(v).as_tuple().exponent)

    for m in re.finditer(r"\n    (\w+):\n      type: (\w+)\n      value: (.+)\n", text):
        name, kind, value = m.groups()
        if kind == "per_symbol_decimal":
            for sym, v in re.findall(r'(\w+): "([\d.]+)"', value):
                for sign in (1, -1):
                    old = f'{sym}: "{v}"'
                    out.append((f"{name}[{sym}]{'+' if sign > 0 else '-'}", m.group(0), m.group(0).replace(old, f'{sym}: "{Decimal(v) + sign * unit(v)}"')))
        elif kind in ("integer", "decimal"):
            v = value.strip('"')
            for sign in (1, -1):
                out.append((f"{name}{'+' if sign > 0 else '-'}", m.group(0), m.group(0).replace(f"value: {value}", f"value: {Decimal(v) + sign * unit(v)}")))
    for sign in (1, -1):
        out.append((f"cooldownMs{'+' if sign > 0 else '-'}", "cooldownMs: 300000", f"cooldownMs: {300000 + sign}"))
    return out


VARIANTS = _param_variants()


def test_the_variants_cover_every_numeric_param() -> None:
    bundle = load_config_bundle(SHIPPED)
    numeric = {n for n, p in bundle.params.items() if p[0] in ("integer", "decimal", "per_symbol_decimal")}
    assert numeric and numeric <= {label.split("[")[0].rstrip("+-") for label, _, _ in VARIANTS}


@pytest.mark.parametrize("label,old,new", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_a_one_step_change_to_any_param_changes_a_pinned_outcome(tmp_path: Path, label: str, old: str, new: str) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(ROOT / "gates", tmp_path / "gates")
    path = tmp_path / "policies" / SHIPPED.name
    edit(path, old, new)
    try:
        bundle = load_config_bundle(path)
    except BundleError as exc:  # the change itself is refused (a window longer than the lookback): caught too
        assert "opens_window_ms" in str(exc) or "cancel_window_ms" in str(exc), exc
        return
    name = label.split("[")[0].rstrip("+-")
    reads = "settings.cooldown_ms" if name == "cooldownMs" else f"params.{name}"
    gates = {g.id for g in bundle.risk_gates + bundle.constraint_checks if reads in g.expression.text}
    assert gates, f"no gate reads {reads}"
    cases = [c for c in load_corpus([str(BOUNDARY)]).cases if c.data["source"]["gate"] in gates]
    runs = run_corpus(bundle, cases)
    flipped = [(r.name, r.outcome["gate"], c.expect["gate"]) for r, c in zip(runs, cases) if r.outcome != c.expect]
    assert flipped, f"{label}: no pinned outcome changed"
    assert all((now or was) in gates for _, now, was in flipped), flipped


def test_certify_names_the_case_the_gate_and_the_values_it_read(capsys, repo: Path) -> None:
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "max_api_latency_ms:\n      type: decimal\n      value: 1000", "max_api_latency_ms:\n      type: decimal\n      value: 999")
    code, out, err = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 1, out + err
    assert re.search(r"DIFF boundary/health\.api-latency/\S+--latency--limit: NOOP DRY_RUN \(rule 5\) -> FAILED_SAFE API_LATENCY_TOO_HIGH \(rule 3, health\.api-latency\)", out), out
    assert "     order: POST /fapi/v1/order BTCUSDT BUY MARKET 0.001 -> none" in out
    assert 'gate health.api-latency: pass -> fail; read intent.kind = "ORDER", intent.reduce_only = false, health.api_latency_ms = 1000, params.max_api_latency_ms = 999' in out
    # the version did not change: its own message, listing the cases
    assert "VERSION outcomes changed on the corpus but metadata.version is still 1.1.0: boundary/health.api-latency/" in out
    assert out.rstrip().splitlines()[-1].startswith("FAILED:")


def test_a_comment_only_change_asks_for_a_version_bump_and_a_re_sign(capsys, repo: Path) -> None:
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "# Ceilings are deliberately conservative", "# Reviewed 2026-11-27. Ceilings are deliberately conservative")
    code, out, err = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 1, err
    assert "0 differences" in out
    assert ("VERSION content changed since the certificate, outcomes unchanged on the corpus; metadata.version is still 1.1.0: "
            "bump it and re-sign") in out
    assert "files changed since it was signed: binance-perp-default.yaml" in out
    # an approver cannot sign over it: the version comes first
    key, entry = new_key(capsys, repo / "k.key")
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress", "--sign", key)
    assert code == 1 and "NOT SIGNED (--sign): fix the version problem(s) first" in out
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress", "--sign", key, "--format", "markdown")
    assert code == 1 and "* **not signed** (--sign): fix the version problem(s) first" in out
    # the same for a change in an included gate library
    edit(bundle, "Reviewed 2026-11-27. ", "")
    edit(repo / "gates" / "health.yaml", "\n", "\n# a comment\n")
    code, out, err = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 1, err
    assert "content changed since the certificate, outcomes unchanged" in out and "../gates/health.yaml" in out


def test_bump_sign_and_certify_again(capsys, repo: Path) -> None:
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "version: 1.1.0", "version: 1.1.1")
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 1 and "it certifies binance-perp-default 1.1.0, not binance-perp-default 1.1.1" in out
    key, entry = new_key(capsys, repo / "keys" / "officer.key")
    # a key the approvers file does not list cannot sign
    code, _, err = run(capsys, "certify", bundle, "--cases", CASES, "--sign", key, "--no-progress")
    assert code == 2 and "not in the approvers file" in err and "BEGIN" not in err
    approvers = repo / "policies" / "approvers.json"
    data = json.loads(approvers.read_text())
    data["approvers"].append(entry)
    approvers.write_text(json.dumps(data))
    code, out, err = run(capsys, "certify", bundle, "--cases", CASES, "--sign", key, "--no-progress")
    assert code == 0, out + err
    assert "valid (written), approved by Risk Officer" in out
    cert = json.loads((repo / "policies" / "binance-perp-default.cert.json").read_text())
    assert cert["bundle"]["version"] == "1.1.1" and cert["corpus"]["cases"] > 1000
    assert cert["approval"]["approver"] == "Risk Officer" and cert["ep4_version"]
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 0 and "valid, approved by Risk Officer" in out


def test_a_tampered_certificate_or_an_unknown_key_fails(capsys, repo: Path) -> None:
    bundle = repo / "policies" / SHIPPED.name
    cert_path = repo / "policies" / "binance-perp-default.cert.json"
    cert = json.loads(cert_path.read_text())
    cert["corpus"]["cases"] += 1
    cert_path.write_text(json.dumps(cert))
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 1 and "does not match the certificate's content: it was edited after signing" in out
    shutil.copy(ROOT / "policies" / cert_path.name, cert_path)
    (repo / "other.json").write_text(json.dumps({"approvers": []}))
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--approvers", repo / "other.json", "--no-progress")
    assert code == 1 and "which is not in the approvers file" in out
    cert_path.write_text("{not json")
    code, out, _ = run(capsys, "certify", bundle, "--cases", CASES, "--no-progress")
    assert code == 1 and "UNREADABLE" in out


def test_a_sub_directory_or_a_single_case_uses_the_base_above_it(capsys) -> None:
    code, out, err = run(capsys, "certify", SHIPPED, "--cases", BOUNDARY / "health.api-latency", "--outcomes-only")
    assert code == 0 and "ok: 0 differences in 48 cases" in out, out + err
    one = next((BOUNDARY / "exposure.max-notional").glob("*--over.json"))
    code, out, err = run(capsys, "certify", SHIPPED, "--cases", one, "--outcomes-only")
    assert code == 0 and "ok: 0 differences in 1 cases" in out, out + err


def test_a_json_number_in_a_case_is_read_exactly_as_written(capsys, tmp_path: Path) -> None:
    """Never through float: 0.0100000000000000000001 (22 digits) is not 0.01."""
    shutil.copytree(CASES / "_base", tmp_path / "_base")
    text = (CASES / "dry-run-open-limit.json").read_text()
    case = json.loads(text)
    case.pop("expect")
    body = json.dumps(case, indent=1).replace('"quantity": "0.010"', '"quantity": 0.0100000000000000000001')
    assert "0.0100000000000000000001" in body
    (tmp_path / "exact.json").write_text(body)
    code, out, _ = run(capsys, "certify", SHIPPED, "--cases", tmp_path, "--outcomes-only", "--update")
    pinned = json.loads((tmp_path / "exact.json").read_text())["expect"]
    assert (pinned["result"], pinned["gate"]) == ("FAILED_SAFE", "exchange.qty-step"), pinned


def test_unusable_corpus_input_exits_2_naming_the_file(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "c"
    bad.mkdir()
    (bad / "x.json").write_text('{"decision": {}, "contexts": 1}')
    code, out, err = run(capsys, "certify", SHIPPED, "--cases", bad, "--outcomes-only")
    assert code == 2 and "x.json: unknown field(s) contexts" in err and "Traceback" not in err
    code, _, err = run(capsys, "certify", SHIPPED, "--cases", tmp_path / "none", "--outcomes-only")
    assert code == 2 and "no such file or directory" in err


def test_reports_for_ci_and_review(capsys, repo: Path) -> None:
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "max_open_positions:\n      type: integer\n      value: 3", "max_open_positions:\n      type: integer\n      value: 4")
    junit = repo / "report.xml"
    code, out, _ = run(capsys, "certify", bundle, "--cases", BOUNDARY, "--outcomes-only", "--junit", junit, "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["differences"] and all(d["case"].startswith("exposure.max-open-positions/") for d in report["differences"])
    suite = ElementTree.parse(junit).getroot()
    assert int(suite.get("failures")) == len(report["differences"])
    failed = [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failed == sorted(d["case"] for d in report["differences"])
    code, out, _ = run(capsys, "certify", bundle, "--cases", BOUNDARY, "--outcomes-only", "--format", "markdown")
    assert code == 1 and "| case |" in out and "exposure.max-open-positions" in out


def test_update_re_pins_after_review(capsys, repo: Path) -> None:
    corpus = repo / "cases"
    shutil.copytree(BOUNDARY / "_base", corpus / "_base")
    for p in sorted((BOUNDARY / "health.api-latency").glob("BTCUSDT--one-way--open-market--*.json")):
        shutil.copy(p, corpus / p.name)
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "max_api_latency_ms:\n      type: decimal\n      value: 1000", "max_api_latency_ms:\n      type: decimal\n      value: 1001")
    code, out, _ = run(capsys, "certify", bundle, "--cases", corpus, "--outcomes-only", "--update")
    assert code == 0 and "REPINNED" in out and "1 re-pinned" in out
    over = json.loads(next(corpus.glob("*--over.json")).read_text())
    assert list(over)[:2] == ["description", "source"] and over["expect"]["reason_code"] == "DRY_RUN"
    code, out, _ = run(capsys, "certify", bundle, "--cases", corpus, "--outcomes-only")
    assert code == 0 and "ok: 0 differences" in out


# --- ep4 diff ---


def test_diff_over_the_corpus_groups_changes_by_gate(capsys, repo: Path) -> None:
    new = repo / "policies" / "new.yaml"
    shutil.copy(repo / "policies" / SHIPPED.name, new)
    edit(new, "version: 1.1.0", "version: 1.2.0")
    edit(new, "value: {BTCUSDT: \"30000\", ETHUSDT: \"25000\"}", "value: {BTCUSDT: \"20000\", ETHUSDT: \"25000\"}")
    edit(new, "max_actions_per_minute:\n      type: integer\n      value: 20", "max_actions_per_minute:\n      type: integer\n      value: 19")
    code, out, _ = run(capsys, "diff", SHIPPED, new, "--cases", CASES, "--format", "json")
    assert code == 1
    r = json.loads(out)
    assert (r["old"]["version"], r["new"]["version"]) == ("1.1.0", "1.2.0")
    assert set(r["by_gate"]) >= {"exposure.max-notional", "frequency.max-actions-per-minute"}
    assert sum(r["by_gate"].values()) == len(r["changed"])
    code, out, _ = run(capsys, "diff", SHIPPED, new, "--cases", CASES)
    assert code == 1 and re.search(r"\d+ of \d+ change outcome", out) and "  exposure.max-notional: " in out
    code, out, _ = run(capsys, "diff", SHIPPED, SHIPPED, "--cases", CASES)
    assert code == 0 and out.splitlines()[1].startswith("0 of ")


# --- keys ---


def test_keys_new_writes_a_private_file_and_prints_only_the_public_entry(capsys, tmp_path: Path) -> None:
    key, entry = new_key(capsys, tmp_path / "k" / "a.key", "A. Approver")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert entry["name"] == "A. Approver" and entry["public_key"].startswith("ed25519:")
    code, out, err = run(capsys, "keys", "new", "--out", key, "--name", "x")
    assert code == 2 and "never overwrites" in err


# --- the live modes ---


def test_live_modes_refuse_an_uncertified_bundle(capsys, repo: Path, monkeypatch) -> None:
    from engine.cli.inputs import open_shipped_paper
    from exchange import ApiCredential, PaperServer

    key, secret = "cert-test-key-123456", "cert-test-secret-DO-NOT-PRINT-654321"
    monkeypatch.setenv("EP4_API_KEY", key)
    monkeypatch.setenv("EP4_API_SECRET", secret)
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "max_open_positions:\n      type: integer\n      value: 3", "max_open_positions:\n      type: integer\n      value: 4")
    decision = repo / "d.json"
    decision.write_text(json.dumps({"decision_id": "live-1", "decision_code": "AUTHORIZED_ACTION",
                                    "action": {"type": "ACTION_OPEN_POSITION", "action_id": "a", "symbol": "BTCUSDT", "side": "LONG",
                                               "quantity": "0.002", "order_type": "MARKET", "reduce_only": False}}))
    paper = open_shipped_paper(None, mark_prices={}, extra_credentials=(ApiCredential(key, hmac_secret=secret),),
                               clock=lambda: int(time.time() * 1000))
    with PaperServer(paper) as server:
        base = ["execute", decision, "--exchange", "binance-testnet", "--base-url", server.base_url, "--bundle", bundle]
        code, out, err = run(capsys, *base, "--state-dir", repo / "s1")
        assert code == 2 and out == ""
        assert "binance-perp-default 1.1.0 is not certified for live trading" in err and "--allow-uncertified" in err
        assert not (repo / "s1" / "audit.jsonl").exists() or (repo / "s1" / "audit.jsonl").read_text() == ""
        code, out, err = run(capsys, *base, "--state-dir", repo / "s2", "--allow-uncertified")
        assert code == 0, err
        assert "UNCERTIFIED" in err
        result = json.loads(out)
        assert "files changed since it was signed" in result["bundle"]["uncertified"]
        records = [json.loads(line) for line in (repo / "s2" / "audit.jsonl").read_text().splitlines()]
        executions = [r for r in records if r.get("kind") == "execution"]
        assert executions and all("uncertified" in json.dumps(r["result"]["bundle"]) for r in executions)
        # the shipped bundle, certified: the certificate digest is named in the result
        code, out, err = run(capsys, "execute", decision, "--exchange", "binance-testnet", "--base-url", server.base_url,
                             "--state-dir", repo / "s3")
        assert code == 0, err
        assert json.loads(out)["bundle"]["certificate"].startswith("sha256:")
        everything = out + err + (repo / "s2" / "audit.jsonl").read_text()
        assert secret not in everything and key not in everything
    # the records replay byte for byte, certificate and override included
    for d, used in (("s2", bundle), ("s3", SHIPPED)):
        code, out, err = run(capsys, "replay", repo / d / "audit.jsonl", "--bundle", used)
        assert code == 0, out + err
    # dry-run and paper need no certificate
    code, out, err = run(capsys, "execute", decision, "--exchange", "dry-run", "--bundle", bundle,
                         "--context", ROOT / "examples" / "context.json")
    assert code == 0 and "certificate" not in out and "uncertified" not in out


# --- recorded decisions: ep4 cases from-audit, ep4 diff --audit ---


def test_recorded_executions_become_cases_and_a_diff_over_the_log(capsys, repo: Path) -> None:
    state = repo / "s"
    code, _, err = run(capsys, "execute", ROOT / "examples" / "decisions.jsonl", "--exchange", "paper", "--state-dir", state)
    assert code in (0, 1), err
    code, out, err = run(capsys, "cases", "from-audit", state / "audit.jsonl", "--out", repo / "recorded")
    assert code == 0, out + err
    written = sorted((repo / "recorded").glob("*.json"))
    assert len(written) == 8 and "8 recorded executions, 8 cases written" in out
    first = json.loads(written[0].read_text())
    assert first["source"]["recorded"]["result"] == "SUCCESS" and first["expect"]["reason_code"] == "DRY_RUN"
    assert first["expect"]["order"]["params"]["quantity"] == "0.010"  # exact, as recorded
    code, out, _ = run(capsys, "certify", SHIPPED, "--cases", repo / "recorded", "--outcomes-only")
    assert code == 0 and "ok: 0 differences in 8 cases" in out
    # again into the same directory: refused rather than overwritten
    code, _, err = run(capsys, "cases", "from-audit", state / "audit.jsonl", "--out", repo / "recorded")
    assert code == 2 and "--replace" in err
    # another bundle did not decide these records: nothing is written, each line says why
    new = repo / "policies" / SHIPPED.name
    edit(new, "version: 1.1.0", "version: 1.2.0")
    edit(new, 'value: {BTCUSDT: "0.5", ETHUSDT: "8"}', 'value: {BTCUSDT: "0.02", ETHUSDT: "8"}')
    code, out, _ = run(capsys, "cases", "from-audit", state / "audit.jsonl", "--out", repo / "other", "--bundle", new)
    assert code == 1 and "0 cases written" in out and "line 1: decided by bundle sha256:" in out
    # what the tighter position ceiling would have changed over the recorded decisions
    code, out, _ = run(capsys, "diff", SHIPPED, new, "--audit", state / "audit.jsonl", "--format", "json")
    assert code == 1
    r = json.loads(out)
    assert r["total"] == 8 and r["by_gate"] == {"exposure.max-abs-position": len(r["changed"])} and r["changed"]
    assert all(c["new"]["reason_code"] == "MAX_POSITION_EXCEEDED" for c in r["changed"])


def test_the_interpreter_agrees_at_every_refusing_boundary() -> None:
    """Issue 6's reference evaluator on the cases where a limit refuses (the flips): same outcomes
    as the compiled one pinned. (`ep4 certify --evaluator interpreter` runs the whole corpus.)"""
    bundle = load_config_bundle(SHIPPED)
    cases = [c for c in load_corpus([str(BOUNDARY)]).cases if c.data["source"]["side"] == "over"]
    assert len(cases) > 300
    runs = run_corpus(bundle, cases, evaluator="interpreter")
    assert [r.outcome for r in runs] == [c.expect for c in cases]


def test_a_live_run_trusts_only_the_operators_approvers_not_a_file_beside_the_bundle(capsys, repo: Path, monkeypatch) -> None:
    """Review: whoever could write a bundle's directory listed their own key in the approvers.json beside
    it, signed a bundle with raised ceilings, and a live run took it as certified. A live run now trusts
    --approvers, $EP4_APPROVERS or the approvers file shipped with ep4, never one found next to the
    bundle; and the approver named is the approvers file's, not the certificate's own claim."""
    from engine.cli.certify import live_certificate
    from engine.cli.inputs import load_config_bundle
    from engine.errors import InputError

    monkeypatch.delenv("EP4_APPROVERS", raising=False)
    bundle = repo / "policies" / SHIPPED.name
    edit(bundle, "version: 1.1.0", "version: 9.0.0")
    edit(bundle, 'value: {BTCUSDT: "0.5", ETHUSDT: "8"}', 'value: {BTCUSDT: "500", ETHUSDT: "8000"}')
    key, entry = new_key(capsys, repo / "keys" / "me.key", name="Chief Risk Officer")
    approvers = repo / "policies" / "approvers.json"
    approvers.write_text(json.dumps({"approvers": [entry]}))
    cases = repo / "cases"  # --update re-pins the corpus it is given: a copy
    shutil.copytree(CASES, cases)
    code, out, err = run(capsys, "certify", bundle, "--cases", cases, "--update", "--sign", key, "--no-progress")
    assert "valid (written)" in out, out + err
    loaded = load_config_bundle(str(bundle))
    with pytest.raises(InputError) as info:
        live_certificate(loaded, bundle, certificate=None, approvers=None, allow_uncertified=False)
    assert "not in the approvers file" in str(info.value)
    # the operator's own file, given explicitly, is what decides
    assert "certificate" in live_certificate(loaded, bundle, certificate=None, approvers=str(approvers), allow_uncertified=False)
    monkeypatch.setenv("EP4_APPROVERS", str(approvers))
    assert "certificate" in live_certificate(loaded, bundle, certificate=None, approvers=None, allow_uncertified=False)
    # a certificate that names another approver than the file lists for its key
    cert_path = repo / "policies" / "binance-perp-default.cert.json"
    cert = json.loads(cert_path.read_text())
    renamed = json.loads(json.dumps(entry))
    renamed["name"] = "Jane Doe (head of risk)"
    approvers.write_text(json.dumps({"approvers": [renamed]}))
    with pytest.raises(InputError) as info:
        live_certificate(loaded, bundle, certificate=None, approvers=None, allow_uncertified=False)
    assert "names its approver 'Chief Risk Officer', but the approvers file lists key" in str(info.value)
    # a certificate whose key id is not text is malformed, not an exception
    approvers.write_text(json.dumps({"approvers": [entry]}))
    cert["approval"]["key_id"] = ["x"]
    cert_path.write_text(json.dumps(cert))
    with pytest.raises(InputError) as info:
        live_certificate(loaded, bundle, certificate=None, approvers=None, allow_uncertified=False)
    assert "missing or garbles a field" in str(info.value)


@pytest.mark.parametrize("pin", [{}, {"Result": "NOOP", "reasonCode": "DRY_RUN"}, {"result": "NOOP"},
                                 {"result": "NOOP", "reason_code": "DRY_RUN", "colour": "red"}])
def test_a_pin_that_pins_nothing_is_a_difference_not_a_pass(capsys, repo: Path, pin: dict) -> None:
    """Review: a case with "expect": {} or misspelt keys passed silently (only the pinned fields are
    compared, and there were none). Such a pin is reported as no pin at all; --update writes a real one."""
    corpus = repo / "cases"
    shutil.copytree(BOUNDARY / "_base", corpus / "_base")
    source = next(iter(sorted((BOUNDARY / "health.api-latency").glob("BTCUSDT--one-way--open-market--*--inside.json"))))
    case = json.loads(source.read_text())
    case["expect"] = pin
    (corpus / "case.json").write_text(json.dumps(case))
    bundle = repo / "policies" / SHIPPED.name
    code, out, _ = run(capsys, "certify", bundle, "--cases", corpus, "--outcomes-only")
    assert code == 1 and "DIFF case:" in out and "1 difference" in out, out
    code, out, _ = run(capsys, "certify", bundle, "--cases", corpus, "--outcomes-only", "--update")
    assert code == 0 and "REPINNED case" in out
    assert {"result", "reason_code"} <= json.loads((corpus / "case.json").read_text())["expect"].keys()
    code, out, _ = run(capsys, "certify", bundle, "--cases", corpus, "--outcomes-only")
    assert code == 0 and "ok: 0 differences" in out


def test_diff_lists_every_setting_a_corpus_cannot_show(capsys, repo: Path) -> None:
    """Review: a bundle that turned the §6.3 forced cancel off and raised the read timeout and the ack
    tolerance showed "0 of 1457 change outcome", exit 0. Every changed value of the bundle is listed now
    (a gate by its id), and makes the exit status 1."""
    new = repo / "policies" / "v3.yaml"
    shutil.copy(repo / "policies" / SHIPPED.name, new)
    edit(new, "version: 1.1.0", "version: 1.2.0")
    edit(new, "forceCancelOpenOrders: true", "forceCancelOpenOrders: false")
    edit(new, "readTimeoutMs: 5000", "readTimeoutMs: 60000")
    corpus = BOUNDARY / "health.api-latency"
    code, out, _ = run(capsys, "diff", SHIPPED, new, "--cases", corpus)
    assert code == 1 and "0 of 48 change outcome" in out
    assert "2 setting(s) changed" in out and "spec.postFailure.forceCancelOpenOrders: true -> false" in out
    assert "spec.exchangeClient.readTimeoutMs: 5000 -> 60000" in out and "metadata.version" not in out
    code, out, _ = run(capsys, "diff", SHIPPED, new, "--cases", corpus, "--format", "json")
    assert {c["path"] for c in json.loads(out)["settings"]} == {"spec.postFailure.forceCancelOpenOrders", "spec.exchangeClient.readTimeoutMs"}
    code, out, _ = run(capsys, "diff", SHIPPED, new, "--cases", corpus, "--format", "markdown")
    assert "| `spec.postFailure.forceCancelOpenOrders` | true | false |" in out
    # a gate's text, by its id; a gate moved is its position, not every gate after it
    gates = repo / "gates" / "exposure.yaml"
    text = gates.read_text()
    assert "intent.worst_case_notional_after <= params.max_notional" in text
    gates.write_text(text.replace("intent.worst_case_notional_after <= params.max_notional",
                                  "intent.worst_case_notional_after < params.max_notional"))
    code, out, _ = run(capsys, "diff", SHIPPED, repo / "policies" / SHIPPED.name, "--cases", corpus, "--format", "json")
    (change,) = json.loads(out)["settings"]
    assert change["path"] == "spec.riskGates[exposure.max-notional].expression" and "< params.max_notional" in change["new"]


def test_odd_certificates_and_unwritable_outputs_are_one_clear_line(capsys, repo: Path) -> None:
    """Review: a certificate whose source file name is a list raised TypeError ("unexpected ... please
    report it"); --junit into a missing directory printed "ok" and then failed; so did --sign with
    --certificate there."""
    bundle = repo / "policies" / SHIPPED.name
    corpus = BOUNDARY / "health.api-latency"
    cert = json.loads((repo / "policies" / "binance-perp-default.cert.json").read_text())
    for damage in ({"file": ["x"]}, {"sha256": 7}):
        bad = json.loads(json.dumps(cert))
        bad["bundle"]["sources"][0].update(damage)
        (repo / "bad.cert.json").write_text(json.dumps(bad))
        code, out, err = run(capsys, "certify", bundle, "--cases", corpus, "--certificate", repo / "bad.cert.json", "--no-progress")
        assert code == 1 and "garbles a field" in out and "unexpected" not in err, out + err
    bad = json.loads(json.dumps(cert))
    bad["bundle"]["sources"] = 7
    (repo / "bad.cert.json").write_text(json.dumps(bad))
    code, out, err = run(capsys, "certify", bundle, "--cases", corpus, "--certificate", repo / "bad.cert.json", "--no-progress")
    assert code == 1 and "garbles a field" in out and "unexpected" not in err, out + err
    code, out, err = run(capsys, "certify", bundle, "--cases", corpus, "--no-progress", "--junit", repo / "no" / "dir" / "j.xml")
    assert code == 2 and out == "" and err.startswith("ep4: error: cannot write the JUnit report") and "unexpected" not in err
    edit(bundle, "version: 1.1.0", "version: 1.1.1")
    key, entry = new_key(capsys, repo / "keys" / "k.key")
    (repo / "approvers.json").write_text(json.dumps({"approvers": [entry]}))
    code, out, err = run(capsys, "certify", bundle, "--cases", CASES, "--sign", key, "--approvers", repo / "approvers.json",
                         "--certificate", repo / "no" / "dir" / "c.cert.json", "--first-release", "--no-progress")
    assert code == 2 and err.startswith("ep4: error: cannot write the certificate") and "unexpected" not in err, err


def test_a_diff_over_a_log_names_records_decided_under_other_constraints(capsys, repo: Path) -> None:
    """Review: `ep4 diff --audit` re-evaluated every record under the shipped sample constraints, whatever
    they were decided with (a live run reads the exchange's own): a record FAILED_SAFE SYMBOL_NOT_TRADING
    counted as "went through". Now --constraints gives the snapshot, and records decided under another
    are counted and said."""
    info = json.loads((ROOT / "policies" / "samples" / "binance-usdm-exchangeInfo.json").read_text())
    for entry in info["symbols"]:
        if entry["symbol"] == "BTCUSDT":
            entry["status"] = "BREAK"
    (repo / "break.json").write_text(json.dumps(info))
    state = repo / "s"
    code, out, err = run(capsys, "execute", ROOT / "examples" / "decision-open-limit.json", "--context", ROOT / "examples" / "context.json",
                         "--state-dir", state, "--constraints", repo / "break.json")
    assert code == 0 and json.loads(out)["reason_code"] == "SYMBOL_NOT_TRADING", out + err
    code, out, _ = run(capsys, "diff", SHIPPED, SHIPPED, "--audit", state / "audit.jsonl", "--format", "json")
    r = json.loads(out)
    assert "1 of them were decided under other exchange constraints" in r["source"] and r["went_through"] == 1
    code, out, _ = run(capsys, "diff", SHIPPED, SHIPPED, "--audit", state / "audit.jsonl", "--format", "json",
                       "--constraints", repo / "break.json")  # what the run was given: no brackets
    r = json.loads(out)
    assert "other exchange constraints" not in r["source"] and r["went_through"] == 0, r["source"]


def test_a_certificate_that_is_not_an_object_and_a_key_listed_twice_are_clear_errors(capsys, repo: Path) -> None:
    """Second review: a certificate file holding 42, [], null or {"approval": [1]} ended in "unexpected
    TypeError/AttributeError" (or "no certificate" for null); an approvers file listing one key under two
    names made fresh certificates invalid."""
    from engine.cli.certify import live_certificate
    from engine.cli.inputs import load_config_bundle
    from engine.errors import InputError

    bundle = repo / "policies" / SHIPPED.name
    loaded = load_config_bundle(str(bundle))
    corpus = BOUNDARY / "health.api-latency"
    for text in ("42", "[]", "null", '{"approval": [1], "bundle": {}}'):
        (repo / "odd.cert.json").write_text(text)
        code, out, err = run(capsys, "certify", bundle, "--cases", corpus, "--certificate", repo / "odd.cert.json", "--no-progress")
        assert code == 1 and "UNREADABLE" in out and "not a certificate" in out and "unexpected" not in err, text + out + err
        with pytest.raises(InputError) as info:
            live_certificate(loaded, bundle, certificate=str(repo / "odd.cert.json"), approvers=None, allow_uncertified=False)
        assert "not a certificate" in str(info.value)
    entry = json.loads((repo / "policies" / "approvers.json").read_text())["approvers"][0]
    (repo / "twice.json").write_text(json.dumps({"approvers": [entry, {**entry, "name": "Someone Else"}]}))
    code, out, err = run(capsys, "certify", bundle, "--cases", corpus, "--approvers", repo / "twice.json", "--no-progress")
    assert code == 2 and "is listed twice" in err, out + err
    code, out, err = run(capsys, "diff", SHIPPED, SHIPPED, "--cases", corpus, "--constraints", repo / "nope.json")
    assert code == 2 and "go with --audit" in err


def test_the_version_rule_cannot_be_skipped_by_removing_the_certificate(capsys, repo: Path) -> None:
    """Review of issue 9 (spec §9 "new version"): a changed bundle was signed under its old version once
    its certificate was deleted, emptied or given a fresh --certificate path, and a version going down
    counted as new. --sign now needs the last certificate, or --first-release for a bundle never
    certified; a new version must be higher than the last certified one; and a run with a version
    problem re-pins nothing (re-pinned cases no longer showed the change)."""
    bundle = repo / "policies" / SHIPPED.name
    cert_path = repo / "policies" / "binance-perp-default.cert.json"
    key, entry = new_key(capsys, repo / "keys" / "k.key")
    approvers = repo / "policies" / "approvers.json"
    data = json.loads(approvers.read_text())
    data["approvers"].append(entry)
    approvers.write_text(json.dumps(data))
    cases = repo / "cases"
    shutil.copytree(CASES, cases)
    edit(bundle, 'value: {BTCUSDT: "0.5", ETHUSDT: "8"}', 'value: {BTCUSDT: "5", ETHUSDT: "8"}')
    shipped = cert_path.read_text()
    for damage in ("delete", "empty", "elsewhere"):
        if damage == "delete":
            cert_path.unlink()
        elif damage == "empty":
            cert_path.write_text("{}")
        extra = ["--certificate", repo / "fresh.cert.json"] if damage == "elsewhere" else []
        code, out, err = run(capsys, "certify", bundle, "--cases", cases, "--update", "--sign", key, "--no-progress", *extra)
        assert code == 1 and "cannot be checked against the last certified one" in out and "--first-release" in out, (damage, out, err)
        assert "NOT SIGNED (--sign)" in out and "NOT RE-PINNED (--update)" in out, out
        assert not (repo / "fresh.cert.json").exists()
        assert {"delete": not cert_path.exists(), "empty": cert_path.read_text() == "{}" if cert_path.exists() else False,
                "elsewhere": cert_path.read_text() == shipped if cert_path.exists() else False}[damage], damage
        cert_path.write_text(shipped)
    # no pin was touched by those runs: the changed outcomes still show
    code, out, _ = run(capsys, "certify", bundle, "--cases", cases, "--update", "--no-progress")
    assert code == 1 and "VERSION outcomes changed on the corpus but metadata.version is still 1.1.0: " in out
    assert "NOT RE-PINNED (--update): fix the version problem(s) first" in out
    code, out, _ = run(capsys, "certify", bundle, "--cases", cases, "--no-progress")
    assert code == 1 and "VERSION outcomes changed on the corpus but metadata.version is still 1.1.0: " in out
    # going down, or to a pre-release of the same version, is not a new version
    for version in ("1.0.9", "1.1.0-rc1"):
        edit(bundle, "version: 1.1.0", f"version: {version}")
        code, out, _ = run(capsys, "certify", bundle, "--cases", cases, "--update", "--sign", key, "--no-progress")
        assert code == 1 and f"metadata.version {version} is not above the certified 1.1.0" in out, out
        edit(bundle, f"version: {version}", "version: 1.1.0")
    # --first-release where a certificate of the bundle exists is refused; and it goes with --sign
    code, out, _ = run(capsys, "certify", bundle, "--cases", cases, "--sign", key, "--first-release", "--no-progress")
    assert code == 1 and "this is not its first certificate" in out
    code, _, err = run(capsys, "certify", bundle, "--cases", cases, "--first-release", "--no-progress")
    assert code == 2 and "--first-release goes with --sign" in err
    # the way that works: a higher version, re-pinned and signed in one run
    edit(bundle, "version: 1.1.0", "version: 1.2.0")
    code, out, err = run(capsys, "certify", bundle, "--cases", cases, "--update", "--sign", key, "--no-progress")
    assert code == 0 and "valid (written)" in out, out + err
    # a bundle never certified: --first-release says so, and it is signed
    cert_path.unlink()
    code, out, err = run(capsys, "certify", bundle, "--cases", cases, "--sign", key, "--first-release", "--no-progress")
    assert code == 0 and "valid (written)" in out, out + err


def test_signed_at_must_be_a_utc_time() -> None:
    """Review of issue 9: approval.signed_at was never checked (missing, an object, any text passed).
    It is not compared with this host's clock (the signing host's may differ)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from engine.certification import Approver, check_certificate, sign_certificate

    bundle = load_config_bundle(SHIPPED)
    cert = json.loads((ROOT / "policies" / "binance-perp-default.cert.json").read_text())
    payload = {k: v for k, v in cert.items() if k != "approval"}
    key = Ed25519PrivateKey.generate()
    approver = [Approver("A", key.public_key())]
    for signed_at, ok in (("2026-11-28T11:00:00Z", True), ("2099-01-01T00:00:00Z", True), ("2026-11-28 11:00:00", False),
                          ("2026-11-28T11:00:00+00:00", False), ("2026-02-30T11:00:00Z", False), ("2026-11-28T24:00:00Z", False),
                          ("", False), (None, False), (1764028800, False), ({"x": [1, 2]}, False)):
        signed = sign_certificate(payload, key, approver="A", signed_at=signed_at)
        messages = [p.message for p in check_certificate(signed, bundle, approver)]
        if ok:
            assert messages == [], (signed_at, messages)
        else:
            assert len(messages) == 1 and "is not a UTC time YYYY-MM-DDTHH:MM:SSZ" in messages[0], (signed_at, messages)
    # the shipped certificate's own is one (its only problem here: its key is not listed)
    assert [p.kind for p in check_certificate(cert, bundle, [])] == ["unknown-key"]


def test_junit_lists_the_cases_pinned_to_the_bundle_certified(capsys, repo: Path) -> None:
    """Review of issue 9: the JUnit report left out the cases pinned to the very bundle being certified,
    so 28 differences showed as one passing "certificate and version" test case."""
    cases = repo / "tests" / "cases"  # where its bundles' includes (../../../gates) lead
    shutil.copytree(CASES, cases)
    own = [c for c in load_corpus([str(cases)]).cases if c.own_bundle]
    target = (own[0].path.parent / own[0].own_bundle).resolve()
    mine = {c.name for c in own if (c.path.parent / c.own_bundle).resolve() == target}
    code, out, err = run(capsys, "certify", target, "--cases", cases, "--outcomes-only", "--no-progress", "--junit", repo / "j.xml")
    assert code == 1 and "unexpected" not in err  # the corpus's general cases differ under this bundle
    suite = ElementTree.parse(repo / "j.xml").getroot()
    names = {tc.get("name") for tc in suite.iter("testcase")}
    assert mine and mine <= names, sorted(mine - names)[:5]
    assert int(suite.get("tests")) == len(names)


@pytest.mark.parametrize(("value", "message"), [
    (5, '"bundle" must be the path of a bundle file'),
    ("", '"bundle" must be the path of a bundle file'),
    ("../policies/no-such-bundle.yaml", "pinned to the bundle ../policies/no-such-bundle.yaml, which is not a file"),
])
def test_a_case_pinned_to_no_bundle_is_unusable_input(capsys, tmp_path: Path, value: object, message: str) -> None:
    """Review of issue 9: a case pinned to a bundle that does not exist was skipped by every run (its
    pin checked by none, exit 0); a "bundle" that is not text was an unexpected TypeError."""
    case = json.loads(sorted(CASES.glob("*.json"))[0].read_text())
    case["bundle"] = value
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "odd.json").write_text(json.dumps(case))
    code, out, err = run(capsys, "certify", SHIPPED, "--cases", tmp_path / "c", "--outcomes-only", "--no-progress")
    assert code == 2 and message in err and "unexpected" not in err, err


def test_versions_are_ordered_as_semantic_versions() -> None:
    """Review: two pre-releases of one version compared equal (1.2.0-rc2 was "not above" 1.2.0-rc1)."""
    from engine.cli.certify import _version_key

    ordered = ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0-rc1", "1.2.0-rc2", "1.2.0", "1.10.0", "2.0.0"]
    keys = [_version_key(v) for v in ordered]
    assert all(a < b for a, b in zip(keys, keys[1:]))
    assert _version_key("1.0.0+build.7") == _version_key("1.0.0") and _version_key("1.0") is None and _version_key(None) is None


def test_a_case_pinned_to_a_bundle_name_too_long_to_look_up_is_unusable_input(capsys, tmp_path: Path) -> None:
    """Review: is_file() of a 300-character name raised OSError (ENAMETOOLONG) out of ep4 certify."""
    case = json.loads(sorted(CASES.glob("*.json"))[0].read_text())
    case["bundle"] = "x" * 300 + ".yaml"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "odd.json").write_text(json.dumps(case))
    code, out, err = run(capsys, "certify", SHIPPED, "--cases", tmp_path / "c", "--outcomes-only", "--no-progress")
    assert code == 2 and "cannot be looked up" in err and "unexpected" not in err, err
