"""`ep4 execute` in paper / live modes, `ep4 audit verify` and `ep4 replay`, as a user runs them."""

from __future__ import annotations

import json
import time
from pathlib import Path


from engine.cli import main
from engine.cli.inputs import open_shipped_paper
from exchange import ApiCredential, PaperServer

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
KEY = "live-test-key-1234567890"
SECRET = "live-test-secret-DO-NOT-PRINT-0987654321"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_paper_mode_with_a_host_context_then_verify_and_replay(capsys, tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, out, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--context", str(EX / "context.json"), "--state-dir", str(state))
    assert code == 0, err
    results = [json.loads(x) for x in out.splitlines()]
    assert [r["reason_code"] for r in results][:2] == ["ORDER_ACCEPTED", "DUPLICATE_EXECUTION"]
    assert (state / "paper-exchange.json").exists()
    # successive CLI calls see the same account and the same ledger
    code, out, _ = run(capsys, "execute", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"), "--state-dir", str(state))
    assert json.loads(out)["reason_code"] == "DUPLICATE_EXECUTION"
    code, out, _ = run(capsys, "audit", "verify", str(state / "audit.jsonl"))
    assert code == 0 and "9 records, hash chain intact" in out
    code, out, _ = run(capsys, "replay", str(state / "audit.jsonl"))
    assert code == 0 and "9 of 9 records recomputed byte for byte" in out


def test_tampering_is_reported_by_the_cli(capsys, tmp_path: Path) -> None:
    state = tmp_path / "state"
    run(capsys, "execute", str(EX / "decisions.jsonl"), "--context", str(EX / "context.json"), "--state-dir", str(state))
    log = state / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2]) + lines[2].replace("NOT_AUTHORIZED", "DRY_RUN") + "".join(lines[3:]))
    code, _, err = run(capsys, "audit", "verify", str(log))
    assert code == 1 and "line 3 (seq 3): edited" in err
    code, _, err = run(capsys, "replay", str(log))
    assert code == 1 and "line 3" in err
    log.write_text("".join(lines[:-1]))
    code, _, err = run(capsys, "audit", "verify", str(log))
    assert code == 1 and "truncated" in err


def test_live_mode_against_a_loopback_exchange_keeps_keys_secret(capsys, tmp_path: Path, monkeypatch) -> None:
    paper = open_shipped_paper(
        None,
        mark_prices={},
        extra_credentials=(ApiCredential(KEY, hmac_secret=SECRET),),
        clock=lambda: int(time.time() * 1000),  # a live exchange has its own clock
    )
    monkeypatch.setenv("EP4_API_KEY", KEY)
    monkeypatch.setenv("EP4_API_SECRET", SECRET)
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps({"decision_id": "live-1", "decision_code": "AUTHORIZED_ACTION",
                                    "action": {"type": "ACTION_OPEN_POSITION", "action_id": "a", "symbol": "BTCUSDT", "side": "LONG",
                                               "quantity": "0.002", "order_type": "MARKET", "reduce_only": False}}))
    with PaperServer(paper) as server:
        # no --context: the context is read from the exchange; no --constraints: so are the filters
        code, out, err = run(capsys, "execute", str(decision), "--exchange", "binance-testnet", "--base-url", server.base_url,
                             "--state-dir", str(tmp_path / "s"))
    assert code == 0, err
    result = json.loads(out)
    assert (result["result"], result["reason_code"]) == ("SUCCESS", "ORDER_FILLED")
    everything = out + err + (tmp_path / "s" / "audit.jsonl").read_text()
    assert SECRET not in everything and KEY not in everything


def test_live_mode_refuses_to_start_without_keys(capsys, tmp_path: Path, monkeypatch) -> None:
    for var in ("EP4_API_KEY", "EP4_API_SECRET", "EP4_ED25519_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    code, out, err = run(capsys, "execute", str(EX / "decision-open-limit.json"), "--exchange", "binance", "--state-dir", str(tmp_path))
    assert code == 2 and out == "" and "EP4_API_KEY" in err
    monkeypatch.setenv("EP4_API_KEY", KEY)
    code, _, err = run(capsys, "execute", str(EX / "decision-open-limit.json"), "--exchange", "binance", "--state-dir", str(tmp_path))
    assert code == 2 and SECRET not in err and "EP4_API_SECRET" in err
