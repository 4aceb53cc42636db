"""Issue 7: one test per reproduced safety hole, named after it. Each failed before its fix."""

from __future__ import annotations

import copy
import datetime
import json
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT, default_constraints
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


# --- hole 11: Rule 6 gaps ---


def _verify(**over):
    from test_verification import ack, ok, verify

    return verify(ok(ack(**over)))


def test_hole11_ack_before_the_request_was_possible_is_inconsistent() -> None:
    from test_verification import T

    # before the fix: an updateTime up to 5 s *before* the request was accepted
    assert _verify(updateTime=T - 5000).reason_code == "ACK_TIMESTAMP_INCONSISTENT"
    assert _verify(updateTime=T - 1001).reason_code == "ACK_TIMESTAMP_INCONSISTENT"
    # Binance executes only if timestamp < serverTime + 1000 (facts file §1.2): 1000 ms behind is already too far
    assert _verify(updateTime=T - 1000).reason_code == "ACK_TIMESTAMP_INCONSISTENT"
    assert _verify(updateTime=T - 999).reason_code == "ORDER_ACCEPTED"


def test_hole11_time_in_force_must_match() -> None:
    assert _verify(timeInForce="IOC").reason_code == "ACK_MISMATCH"


def test_hole11_executed_quantity_may_not_exceed_the_order() -> None:
    assert _verify(status="FILLED", executedQty="0.011").reason_code == "ACK_MISMATCH"
    assert _verify(status="PARTIALLY_FILLED", executedQty="-0.001").reason_code == "ACK_MISMATCH"
    assert _verify(status="FILLED", executedQty="0.010").reason_code == "ORDER_FILLED"


# --- hole 3: gates race between processes ---


def _racer(state_dir: str, bundle_path: str, decision_id: str, barrier, results) -> None:
    from conftest import default_constraints
    from engine.audit import AuditLog
    from engine.bundle import load_bundle
    from engine.executor import Executor
    from engine.ledger import Ledger
    from engine.models import ExecutionContext
    from exchange import BinanceClient, Credentials, PaperTransport, fetch_context
    from engine.cli.inputs import open_shipped_paper
    from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET, PAPER_BASE_URL

    paper = open_shipped_paper(None, mark_prices={"BTCUSDT": "64010.5"}, clock=lambda: 1764028800000)
    client = BinanceClient(PAPER_BASE_URL, Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET), transport=PaperTransport(paper),
                           connect_timeout_ms=2000, read_timeout_ms=5000)
    ctx = ExecutionContext.model_validate(fetch_context(client, symbol="BTCUSDT", account_id="shared", timestamp_ms=1764028800000,
                                                        recv_window_ms=5000, health={"api_latency_ms": "20", "order_rejection_rate": "0"}))
    ledger = Ledger(state_dir)
    executor = Executor(Config(load_bundle(bundle_path), default_constraints(), "paper"), ledger, AuditLog(Path(state_dir) / "audit.jsonl", ledger), client)
    decision = json.dumps({"decision_id": decision_id, "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a", **OPEN("0.001")}})
    barrier.wait(timeout=120)
    res = executor.execute(decision, ctx)
    results.put((res.result, res.reason_code, len(paper.orders)))


def _ledger_opener(root: str, rounds: int, barrier, results) -> None:
    from engine.errors import LedgerError
    from engine.ledger import Ledger

    for r in range(rounds):
        barrier.wait(timeout=120)  # every process opens the same new state directory at once
        try:
            Ledger(Path(root) / f"s{r}").close()
            results.put("ok")
        except LedgerError as exc:
            results.put(str(exc))


def test_processes_opening_a_new_ledger_together_all_open_it(tmp_path: Path) -> None:
    """Two `ep4 execute` processes starting together on a new state directory: one failed with
    "cannot open the ledger ...: database is locked" (CI, 2026-11-28). SQLite refuses a connection
    turning on WAL while another does so, at once, without its busy timeout; one process at a time
    now opens the ledger (reproduced before the fix: 24 of 120 opens by two processes failed)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rounds, barrier, results = 40, ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_ledger_opener, args=(str(tmp_path), rounds, barrier, results)) for _ in range(4)]
    try:
        for p in procs:
            p.start()
        answers = [results.get(timeout=180) for _ in range(rounds * len(procs))]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert answers == ["ok"] * len(answers), [a for a in answers if a != "ok"][:3]


def test_hole03_min_interval_holds_across_processes(tmp_path: Path) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # not fork: the test process has threads (paper servers) and locks
    barrier, results = ctx.Barrier(4), ctx.Queue()
    bundle = str(ROOT / "policies" / "binance-perp-default.yaml")  # min_interval_ms: 1000
    procs = [ctx.Process(target=_racer, args=(str(tmp_path), bundle, f"d-race-{i}", barrier, results)) for i in range(4)]
    try:
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=180) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    sent = [o for o in outcomes if o[2] > 0]
    # before the fix: the four processes read the same empty state and all four sent an order
    assert len(sent) == 1, outcomes
    assert sorted(o[1] for o in outcomes if o[2] == 0) == ["MIN_INTERVAL_NOT_ELAPSED"] * 3


def _account_racer(state_dir: str, account: str, n: int, barrier, results, bundle_path: str) -> None:
    """``n`` paper executions for ``account`` in a state directory other processes share."""
    from conftest import default_constraints
    from engine.audit import AuditLog
    from engine.bundle import load_bundle
    from engine.cli.inputs import open_shipped_paper
    from engine.executor import Executor
    from engine.ledger import Ledger
    from engine.models import ExecutionContext
    from exchange import BinanceClient, Credentials, PaperTransport, fetch_context
    from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET, PAPER_BASE_URL

    paper = open_shipped_paper(None, mark_prices={"BTCUSDT": "64010.5"}, clock=lambda: 1764028800000)
    client = BinanceClient(PAPER_BASE_URL, Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET), transport=PaperTransport(paper),
                           connect_timeout_ms=2000, read_timeout_ms=5000)
    ctx = ExecutionContext.model_validate(fetch_context(client, symbol="BTCUSDT", account_id=account, timestamp_ms=1764028800000,
                                                        recv_window_ms=5000, health={"api_latency_ms": "20", "order_rejection_rate": "0"}))
    ledger = Ledger(state_dir)
    executor = Executor(Config(load_bundle(bundle_path), default_constraints(), "paper"), ledger,
                        AuditLog(Path(state_dir) / "audit.jsonl", ledger), client)
    barrier.wait(timeout=120)
    outcomes = []
    for k in range(n):
        decision = json.dumps({"decision_id": f"{account}-{k}", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a", **OPEN("0.001")}})
        try:
            outcomes.append(executor.execute(decision, ctx).reason_code)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
            outcomes.append(f"{type(exc).__name__}: {exc}")
    results.put((account, outcomes))


def test_accounts_sharing_a_state_dir_are_serialised_and_see_each_others_appends_whole(tmp_path: Path) -> None:
    """Found while reproducing the CI failure of 2026-11-28: four accounts in one state directory,
    20 paper executions each at the same time, so all but the first open wait out the min interval.
    The lock was per account, but the gates read the directory's one ledger: the accounts read the
    same history at once, and up to all four first opens were sent (3 of 3 runs failed).

    With the lock per account the same runs also raised AuditError for 17 of 40 executions in one
    run: another process's append read as a torn record during the tail check, or records appended
    before their process moved the anchor read as not following it. With one lock these are rare
    here; tests/test_audit.py reproduces both deterministically."""
    import multiprocessing as mp
    from collections import Counter

    from engine.audit import verify_log
    from engine.ledger import Ledger

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    bundle = str(ROOT / "policies" / "binance-perp-default.yaml")  # min_interval_ms: 1000
    procs = [ctx.Process(target=_account_racer, args=(str(tmp_path), f"acct-{i}", 20, barrier, results, bundle)) for i in range(4)]
    try:
        for p in procs:
            p.start()
        outcomes = dict(results.get(timeout=180) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    codes = sorted(c for account in outcomes.values() for c in account)
    assert codes == ["MIN_INTERVAL_NOT_ELAPSED"] * 79 + ["ORDER_FILLED"], Counter(codes)
    ledger = Ledger(tmp_path)
    report = verify_log(tmp_path / "audit.jsonl", ledger.audit_anchor())
    assert report.ok and report.records == 80, report.problems


# --- hole 5: the forced cancel after a timeout was signed with a stale timestamp ---


def test_hole05_forced_cancel_after_a_timeout_is_signed_when_sent(tmp_path: Path) -> None:
    import time as _time

    from conftest import default_constraints
    from engine.audit import AuditLog
    from engine.bundle import load_bundle
    from engine.executor import Executor
    from engine.ledger import Ledger
    from engine.models import ExecutionContext
    from engine.cli.inputs import open_shipped_paper
    from exchange import BinanceClient, Credentials, PaperServer, fetch_context
    from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET

    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text().replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    text = text.replace("recvWindowMs: 5000", "recvWindowMs: 300").replace("readTimeoutMs: 5000", "readTimeoutMs: 500")
    (tmp_path / "b.yaml").write_text(text)
    bundle = load_bundle(tmp_path / "b.yaml")
    start, base = _time.monotonic(), 1764028800000
    clock = lambda: base + int((_time.monotonic() - start) * 1000)  # noqa: E731 - the exchange's clock runs
    paper = open_shipped_paper(None, mark_prices={"BTCUSDT": "64010.5"}, clock=clock)
    with PaperServer(paper) as server:
        client = BinanceClient(server.base_url, Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET), connect_timeout_ms=2000, read_timeout_ms=500)
        ledger = Ledger(tmp_path / "s")
        ex = Executor(Config(bundle, default_constraints(), "paper"), ledger, AuditLog(tmp_path / "s" / "audit.jsonl", ledger), client)
        health = {"api_latency_ms": "20", "order_rejection_rate": "0"}
        def run(decision_id: str, action: dict):
            ctx = ExecutionContext.model_validate(fetch_context(client, symbol="BTCUSDT", account_id="t", timestamp_ms=clock(),
                                                                recv_window_ms=300, health=health))
            d = json.dumps({"decision_id": decision_id, "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a", **action}})
            return ex.execute(d, ctx)
        resting = run("d-rest", OPEN("0.010", order_type="LIMIT", limit_price="63000.0", time_in_force="GTC"))
        assert resting.reason_code == "ORDER_ACCEPTED"
        _time.sleep(1.1)  # min_interval_ms
        paper.inject("read_timeout", delay_ms=1500)
        res = run("d-timeout", OPEN("0.010"))
        assert res.reason_code == "EXCHANGE_TIMEOUT"
        records = [json.loads(line) for line in (tmp_path / "s" / "audit.jsonl").read_text().splitlines()]
        cancel = records[-1]
        assert cancel["kind"] == "forced_cancel"
        # before the fix: signed with context.timestamp, ~500 ms old against a 300 ms recvWindow: -1021
        assert cancel["reason_code"] == "OPEN_ORDERS_CANCELLED", cancel["result"]["message"]
        assert cancel["sent_timestamp"] >= cancel["timestamp"] + 500
        assert not [o for o in paper.orders if o.status == "NEW"]
        client.close()
        ledger.close()
    from engine.replay import replay_log

    ledger = Ledger(tmp_path / "s")
    assert replay_log(tmp_path / "s" / "audit.jsonl", bundle, default_constraints(), ledger=ledger).ok


# --- hole 6: a damaged audit tail kept sending orders ---


def test_hole06_damaged_audit_tail_stops_sending_until_repaired(rig: Rig, capsys) -> None:
    from engine.audit import verify_log
    from engine.cli import main
    from engine.errors import AuditError

    rig.run(OPEN("0.010"))
    with open(rig.audit.path, "ab") as f:
        f.write(b'{"seq": 3, "kind": "execu')  # a torn last line (a crash mid-write, a full disk)
    orders = len(rig.paper.orders)
    with pytest.raises(AuditError, match="damaged"):
        rig.run(OPEN("0.010", side="SHORT"))
    assert len(rig.paper.orders) == orders  # before the fix: the order was placed, then exit 2
    assert main(["audit", "repair", str(rig.audit.path)]) == 0
    out = capsys.readouterr().out
    assert "damaged byte(s) are in" in out
    aside = next(rig.state.glob("audit.jsonl.damaged-*"))
    assert aside.read_bytes() == b'{"seq": 3, "kind": "execu'
    res, _ = rig.run(OPEN("0.010", side="SHORT"))
    assert res.result == "SUCCESS" and len(rig.paper.orders) == orders + 1
    assert verify_log(rig.audit.path, rig.ledger.audit_anchor()).ok
    kinds = [json.loads(line)["kind"] for line in rig.audit.path.read_text().splitlines()]
    assert "audit_repair" in kinds


# --- hole 15: an unwritable audit path was found out after the order ---


def test_hole15_audit_path_is_checked_before_the_call(tmp_path: Path, capsys) -> None:
    from engine.cli import main

    code = main(["execute", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"),
                 "--state-dir", str(tmp_path / "s"), "--audit", str(tmp_path)])  # a directory
    _, err = capsys.readouterr()
    assert code == 2 and "not a regular file" in err and "nothing was sent" in err
    paper_state = tmp_path / "s" / "paper-exchange.json"
    assert not paper_state.exists() or not json.loads(paper_state.read_text()).get("orders")


# --- hole 4: a context older than the ledger skipped temporal gates ---


def test_hole04_context_older_than_the_ledger_is_failed_safe(rig: Rig) -> None:
    res, _ = rig.run(OPEN("0.010"), advance_s=10)
    assert res.result == "SUCCESS"
    rig.now -= 5000  # the host's clock went back 5 s
    stale = rig.executor.execute(json.dumps({"decision_id": "d-stale", "decision_code": "AUTHORIZED_ACTION",
                                             "action": {"action_id": "a", **OPEN("0.010")}}), rig.context())
    # before the fix: the view kept rows up to the (earlier) timestamp, so min-interval saw nothing
    assert (stale.result, stale.reason_code) == ("FAILED_SAFE", "CLOCK_BEHIND_STATE")
    assert len(rig.paper.orders) == 1


# --- hole 8: the cooldown extended itself ---


def test_hole08_a_refusal_during_the_cooldown_never_moves_its_end(rig: Rig) -> None:
    rig.paper.inject("http_500")
    res, _ = rig.run(OPEN("0.010"))
    assert res.result == "FAILED_SAFE"  # arms the 300 s cooldown at t0
    t0 = rig.now
    rig.now = t0 + 200_000
    refused, _ = rig.run(OPEN("5"), advance_s=0)  # fails MAX_POSITION_EXCEEDED (before the cooldown gate)
    assert (refused.result, refused.reason_code) == ("FAILED_SAFE", "MAX_POSITION_EXCEEDED")
    rig.now = t0 + 301_000
    after, _ = rig.run(OPEN("0.010"), advance_s=0)
    # before the fix: the refusal at t0+200 s re-armed the cooldown until t0+500 s
    assert (after.result, after.reason_code) == ("SUCCESS", "ORDER_FILLED")


def test_hole08_which_rules_arm_the_cooldown_is_a_bundle_setting(tmp_path: Path) -> None:
    from engine.bundle import load_bundle
    from engine.models import StateView

    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text().replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    default = load_bundle(ROOT / "policies" / "binance-perp-default.yaml")
    assert default.cooldown_armed_by == {3, 4, 5, 6}
    (tmp_path / "b.yaml").write_text(text.replace("    forceCancelOpenOrders: true", "    forceCancelOpenOrders: true\n    cooldownArmedBy: [5, 6]"))
    exchange_only = load_bundle(tmp_path / "b.yaml")
    assert not exchange_only.arms_cooldown("FAILED_SAFE", 3, 1, StateView())
    assert exchange_only.arms_cooldown("FAILED_SAFE", 6, 1, StateView())
    assert exchange_only.digest != default.digest


# --- hole 9: exposure ignored working orders ---


def test_hole09_position_ceiling_counts_same_side_open_orders() -> None:
    from conftest import base_context, bundle_at, default_constraints, merge
    from engine.models import ExecutionContext

    # 0.3 long, 0.15 more resting on the bid: a 0.1 buy is 0.4 alone, 0.55 if the bids fill too (max 0.5)
    ctx = ExecutionContext.model_validate(merge(base_context(), {"account": {
        "positions": [{"symbol": "BTCUSDT", "quantity": "0.3", "entry_price": "63000", "leverage": 5, "margin_mode": "ISOLATED"}],
        "open_orders": [{"symbol": "BTCUSDT", "client_order_id": "x", "side": "BUY", "quantity": "0.15", "price": "62000"}],
    }}))
    decision = {"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a", **OPEN("0.1")}}
    res = evaluate(json.dumps(decision), ctx, Config(bundle_at(None), default_constraints(), "dry-run")).result
    # before the fix: 0.4 <= 0.5 passed
    assert (res.result, res.reason_code) == ("FAILED_SAFE", "MAX_POSITION_EXCEEDED")
    # an order on the other side does not add to this side's worst case
    ctx2 = ExecutionContext.model_validate(merge(ctx.model_dump(mode="json"), {"account": {"open_orders": [
        {"symbol": "BTCUSDT", "client_order_id": "x", "side": "SELL", "quantity": "0.15", "price": "66000"}]}}))
    res2 = evaluate(json.dumps(decision), ctx2, Config(bundle_at(None), default_constraints(), "dry-run")).result
    assert res2.reason_code != "MAX_POSITION_EXCEEDED"


# --- hole 10: a "non-negotiable" bundle could be empty ---


def _bundle_text() -> str:
    return (ROOT / "policies" / "binance-perp-default.yaml").read_text().replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")


def test_hole10_every_spec_gate_must_be_present_or_waived(tmp_path: Path) -> None:
    from engine.bundle import load_bundle
    from engine.errors import BundleError

    text = _bundle_text()
    empty = text[: text.index("  riskGates:")] + "  riskGates: []\n" + text[text.index("  constraintChecks:"):]
    (tmp_path / "empty.yaml").write_text(empty.replace("cooldownMs: 300000", "cooldownMs: 0"))
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "empty.yaml")  # before the fix: accepted
    text_of = str(info.value)
    assert "5.1.max-notional" in text_of and "5.4.margin-available" in text_of and "cooldownMs: 0" in text_of
    assert "5.2.session-windows" not in text_of  # optional in the spec
    # waived explicitly, with a reason, it loads, and every result names the waiver
    without = text.replace("    - exposure.max-open-positions\n", "").replace(
        "  riskGates:", "  waivers:\n    - implements: 5.1.max-open-positions\n      reason: single-symbol account, one position at most\n  riskGates:")
    (tmp_path / "waived.yaml").write_text(without)
    bundle = load_bundle(tmp_path / "waived.yaml")
    assert bundle.describe()["waivers"] == ["5.1.max-open-positions: single-symbol account, one position at most"]


def test_hole10_frequency_window_longer_than_the_lookback_is_a_load_error(tmp_path: Path) -> None:
    from engine.bundle import load_bundle
    from engine.errors import BundleError

    (tmp_path / "b.yaml").write_text(_bundle_text().replace("lookbackMs: 3600000", "lookbackMs: 60000"))
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "b.yaml")  # before the fix: loaded, and counted 1 h windows over 1 min of history
    problem = next(p for p in info.value.problems if "opens_window_ms" in p.message)
    assert problem.file.endswith("frequency.yaml") and problem.line > 1 and "longer than state.lookbackMs" in problem.message


# --- hole 14: keys echoed by the exchange reached the output ---


def test_hole14_an_echoed_api_key_and_signature_never_reach_results_or_audit(tmp_path: Path) -> None:
    import httpx

    from conftest import default_constraints
    from engine.audit import AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger
    from engine.bundle import load_bundle
    from engine.models import ExecutionContext
    from conftest import base_context
    from exchange import BinanceClient, Credentials

    key, secret = "K" * 64, "S" * 64

    def echo(request: httpx.Request) -> httpx.Response:  # a proxy error page quoting the request
        text = f'{{"code":-1022,"msg":"bad request {request.url.path}?{request.url.query.decode()} X-MBX-APIKEY={request.headers["X-MBX-APIKEY"]}"}}'
        return httpx.Response(400, text=text)

    client = BinanceClient("https://fapi.binance.com", Credentials.hmac(key, secret), transport=httpx.MockTransport(echo),
                           connect_timeout_ms=1000, read_timeout_ms=1000)
    ledger = Ledger(tmp_path)
    ex = Executor(Config(load_bundle(ROOT / "policies" / "binance-perp-default.yaml"), default_constraints(), "binance"),
                  ledger, AuditLog(tmp_path / "audit.jsonl", ledger), client)
    ctx = ExecutionContext.model_validate(base_context())
    res = ex.execute(json.dumps({"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a", **OPEN("0.010")}}), ctx)
    assert res.reason_code == "EXCHANGE_REJECTED"
    everything = res.model_dump_json() + (tmp_path / "audit.jsonl").read_text()
    assert key not in everything and "<redacted>" in everything  # before the fix: in message, reply.body, exchange_response
    signature = [p for p in json.loads(res.exchange_response["body"])["msg"].split("&") if p.startswith("signature=")]
    assert signature == ["signature=<redacted> X-MBX-APIKEY=<redacted>"]


def test_a_process_starting_as_a_call_is_written_ahead_does_not_take_it_for_an_orphan(rig: Rig) -> None:
    """Each process opening an executor gives IN_FLIGHT rows nobody is calling for (a dead process's)
    their outcome. The in-flight lock said who is calling, but it was taken only after the state lock
    was released, after the write-ahead row: a process starting in between found the row, no call in
    flight, and recorded a live call as FAILED_SAFE / OUTCOME_UNKNOWN (an audit record saying so,
    the cooldown armed) while the call went ahead. The lock is now held before the row exists."""
    from engine.audit import AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger

    started = []

    def another_process_starts(phase: str) -> None:
        if phase == "write-ahead":
            ledger = Ledger(rig.ledger.dir)  # its own connection and its own lock descriptors
            started.append(Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client))

    rig.executor.on_phase = another_process_starts
    res, _ = rig.run(OPEN("0.010"), decision_id="d-live")
    assert res.result == "SUCCESS", res
    assert len(started) == 1 and started[0].recovered == []  # before the fix: [outcome-unknown for d-live]
    kinds = [json.loads(line).get("kind") for line in rig.audit.path.read_text().splitlines()]
    assert "recovery" not in kinds, kinds


# --- hole 7: orders whose outcome is unknown were never resolved, and could be unaudited ---


class _Killed(BaseException):
    """The process dying at a given point (SIGKILL runs no handler; nothing after it happens)."""


def test_hole07_a_call_cut_off_by_a_crash_is_audited_on_open_and_reconciled(rig: Rig) -> None:
    from engine.audit import AuditLog, verify_log
    from engine.executor import Executor
    from engine.recovery import reconcile

    real_send = rig.client.send_signed

    def send_then_die(method, path, params):
        reply = real_send(method, path, params)  # the order reaches the exchange...
        if method == "POST":
            raise _Killed  # ...and the process dies before the reply is handled
        return reply

    rig.client.send_signed = send_then_die
    with pytest.raises(_Killed):
        rig.run(OPEN("0.010"), decision_id="d-killed")
    rig.client.send_signed = real_send
    assert len(rig.paper.orders) == 1 and rig.ledger.in_flight_rows()
    # before the fix: audit verify passed although the order had no audit record
    report = verify_log(rig.audit.path, rig.ledger.audit_anchor(), rig.ledger.trace_ids())
    assert not report.ok and any("unaudited" in p and "d-killed" in p for p in report.problems)
    # opening again (the next process) audits it as FAILED_SAFE / OUTCOME_UNKNOWN
    again = Executor(rig.executor.config, rig.ledger, AuditLog(rig.audit.path, rig.ledger), rig.client)
    assert [n.finding for n in again.recovered] == ["outcome-unknown"]
    assert verify_log(rig.audit.path, rig.ledger.audit_anchor(), rig.ledger.trace_ids()).ok
    # reconcile asks the exchange, read-only, and audits what it learns
    notes = reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)
    assert [n.finding for n in notes] == ["FILLED"] and len(rig.paper.orders) == 1
    last = json.loads(rig.audit.path.read_text().splitlines()[-1])
    assert last["kind"] == "reconcile" and last["finding"] == "FILLED" and last["query"]["path"] == "/fapi/v1/order"
    assert reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now) == []  # resolved once
    # the same decision is still a duplicate: never sent twice
    res, _ = rig.run(OPEN("0.010"), decision_id="d-killed", advance_s=400)
    assert res.reason_code == "DUPLICATE_EXECUTION" and len(rig.paper.orders) == 1


def test_a_crash_inside_the_outcome_append_stops_everything_until_repaired(rig: Rig, capsys) -> None:
    """A SIGKILL inside the write of the outcome's audit record leaves a torn last line and the row
    IN_FLIGHT (the CI kill campaign met it by chance). The next process must send nothing: its
    executor cannot record the interrupted execution, and says where the log is, that nothing was
    sent and how to repair it. After `ep4 audit repair` the row is recovered and reconciled as usual."""
    from engine.audit import AuditLog
    from engine.cli import main
    from engine.errors import AuditError
    from engine.executor import Executor
    from engine.recovery import reconcile
    from reliability import tear_last_record

    real_append = rig.audit.append

    def torn_append(record, *, anchor=True):
        if record.get("kind") == "execution" and record.get("reply") is not None:
            full = real_append(record, anchor=anchor)
            tear_last_record(rig.audit.path)  # half the record: the kill landed in its write
            raise _Killed(full)
        return real_append(record, anchor=anchor)

    rig.audit.append = torn_append
    with pytest.raises(_Killed):
        rig.run(OPEN("0.010"), decision_id="d-torn")
    assert len(rig.paper.orders) == 1 and rig.ledger.in_flight_rows()
    log = str(rig.audit.path)
    with pytest.raises(AuditError) as info:  # the next process
        Executor(rig.executor.config, rig.ledger, AuditLog(rig.audit.path, rig.ledger), rig.client)
    message = str(info.value)
    assert log in message and f"ep4 audit repair {log}" in message and "Nothing was sent" in message, message
    assert len(rig.paper.orders) == 1 and rig.ledger.in_flight_rows()
    assert main(["audit", "repair", log, "--state-dir", str(rig.ledger.dir)]) == 0
    capsys.readouterr()
    again = Executor(rig.executor.config, rig.ledger, AuditLog(rig.audit.path, rig.ledger), rig.client)
    assert [n.finding for n in again.recovered] == ["outcome-unknown"]
    notes = reconcile(rig.ledger, again.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)
    assert [n.finding for n in notes] == ["FILLED"] and len(rig.paper.orders) == 1


def _lost_before_sending(rig: Rig, decision_id: str) -> None:
    """A process dies after the write-ahead row, before its order reaches the exchange; the next
    executor records the attempt as OUTCOME_UNKNOWN (in doubt: reconcile asks about it)."""
    from engine.audit import AuditLog
    from engine.executor import Executor

    real_send = rig.client.send_signed

    def die_before_sending(method, path, params):
        if method == "POST":
            raise _Killed
        return real_send(method, path, params)

    rig.client.send_signed = die_before_sending
    with pytest.raises(_Killed):
        rig.run(OPEN("0.010"), decision_id=decision_id)
    rig.client.send_signed = real_send
    Executor(rig.executor.config, rig.ledger, AuditLog(rig.audit.path, rig.ledger), rig.client)


def test_hole07_an_order_that_never_reached_the_exchange_reconciles_as_not_found(rig: Rig) -> None:
    from engine.recovery import reconcile

    _lost_before_sending(rig, "d-lost")
    assert [n.finding for n in reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)] == ["NOT_FOUND"]
    assert rig.paper.orders == []


def test_reconcile_signs_with_the_exchanges_clock_not_a_drifted_host_clock(rig: Rig) -> None:
    """`ep4 reconcile` signs its queries with the exchange's clock (engine.cli.venue.exchange_clock):
    the rig's exchange runs a year behind this host, so queries stamped with the host's clock are all
    refused (-1021) and settle nothing."""
    from engine.cli.venue import exchange_clock
    from engine.recovery import reconcile

    _lost_before_sending(rig, "d-lost")
    host = reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000)
    assert [n.finding for n in host] == ["UNKNOWN"] and "-1021" in json.loads(rig.audit.path.read_text().splitlines()[-1])["reply"]["body"]
    clock = exchange_clock(rig.client)
    assert abs(clock() - rig.now) < 2000
    assert [n.finding for n in reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=clock)] == ["NOT_FOUND"]


def test_a_not_found_answer_about_an_order_older_than_90_days_settles_nothing(rig: Rig) -> None:
    """Binance answers -2013 for every order created more than 90 days ago (facts file §2): past that,
    "not found" does not mean "never executed", so reconcile leaves the order in doubt."""
    from engine.recovery import QUERY_HISTORY_MS, reconcile

    _lost_before_sending(rig, "d-old")
    decided = rig.now
    rig.now = decided + QUERY_HISTORY_MS  # the exchange's clock, 90 days on
    notes = reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)
    assert [n.finding for n in notes] == ["UNKNOWN"] and "90 days" in notes[0].detail
    assert [r["decision_id"] for r in rig.ledger.in_doubt_rows()] == ["d-old"]
    rig.now = decided + QUERY_HISTORY_MS - 1  # a millisecond younger: the answer settles it
    assert [n.finding for n in reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)] == ["NOT_FOUND"]


def test_hole07_an_outcome_audited_before_the_crash_completes_the_ledger_row(rig: Rig) -> None:
    from engine.audit import AuditLog
    from engine.executor import Executor

    real_complete = rig.ledger.complete

    def die(*a, **k):
        raise _Killed

    rig.ledger.complete = die
    with pytest.raises(_Killed):
        rig.run(OPEN("0.010"), decision_id="d-half")
    rig.ledger.complete = real_complete
    again = Executor(rig.executor.config, rig.ledger, AuditLog(rig.audit.path, rig.ledger), rig.client)
    assert [(n.finding, n.detail) for n in again.recovered] == [("audited-outcome", "ORDER_FILLED")]
    assert rig.ledger.in_flight_rows() == [] and rig.ledger.in_doubt_rows() == []


# --- hole 13: replay depended on library versions ---


def test_hole13_every_result_and_audit_record_names_the_ep4_version(rig: Rig) -> None:
    from engine.replay import replay_log
    from engine.version import __version__
    from conftest import default_constraints

    res, _ = rig.run(OPEN("0.010"))
    assert res.ep4_version == __version__
    lines = rig.audit.path.read_text().splitlines()
    assert json.loads(lines[-1])["ep4_version"] == __version__
    # a record made by another ep4 is not silently replayed with this one
    forged = tmp = rig.state / "other.jsonl"
    rec = json.loads(lines[-1])
    rec["ep4_version"] = "0.0.1"
    tmp.write_text(json.dumps(rec) + "\n")
    report = replay_log(forged, rig.bundle, default_constraints())
    assert not report.ok and "recorded by ep4 0.0.1" in report.problems[0]


def test_hole13_the_lock_file_pins_every_dependency() -> None:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=!\[ ]", w, maxsplit=1)[0].lower().replace("_", "-") for w in wanted}
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.lower().replace("_", "-")] = version
    assert names <= set(pinned) and all(pinned.values())
    assert "-r requirements.lock" in (ROOT / "Makefile").read_text()


# --- operator decisions: the kill switch, and risk-reducing orders when it matters most ---


def test_kill_switch_halt_reduce_only_resume(tmp_path: Path, capsys) -> None:
    from engine.cli import main

    state = str(tmp_path / "s")
    context = json.loads((EX / "context.json").read_text())

    def execute(decision: dict) -> dict:
        context["timestamp"] += 2000  # past min_interval_ms since the previous call
        (tmp_path / "c.json").write_text(json.dumps(context))
        f = tmp_path / "d.json"
        f.write_text(json.dumps(decision))
        assert main(["execute", str(f), "--context", str(tmp_path / "c.json"), "--state-dir", state]) == 0
        return json.loads(capsys.readouterr().out)

    opening = {"decision_id": "k-1", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a", **OPEN("0.001")}}
    assert main(["halt", "--state-dir", state, "--reason", "exchange incident", "--create"]) == 0
    assert "ACTIVE -> HALTED" in capsys.readouterr().out
    assert execute(opening)["reason_code"] == "TRADING_HALTED"
    cancel = {"decision_id": "k-2", "decision_code": "AUTHORIZED_ACTION",
              "action": {"type": "ACTION_CANCEL_OPEN_ORDERS", "action_id": "a", "symbol": "BTCUSDT"}}
    assert execute(cancel)["result"] == "SUCCESS"  # cancels go through a halt
    assert main(["reduce-only", "--state-dir", state]) == 0
    capsys.readouterr()
    assert execute({**opening, "decision_id": "k-3"})["reason_code"] == "TRADING_REDUCE_ONLY"
    assert main(["resume", "--state-dir", state]) == 0
    capsys.readouterr()
    assert execute({**opening, "decision_id": "k-4"})["result"] == "SUCCESS"
    records = [json.loads(line) for line in (tmp_path / "s" / "audit.jsonl").read_text().splitlines()]
    switches = [(r["from"], r["to"]) for r in records if r["kind"] == "trading_state"]
    assert switches == [("ACTIVE", "HALTED"), ("HALTED", "REDUCING"), ("REDUCING", "ACTIVE")]
    assert records[0]["reason"] == "exchange incident"
    # the refusals of the switch do not arm the cooldown: the resumed open went through above
    assert main(["audit", "verify", str(tmp_path / "s" / "audit.jsonl")]) == 0
    assert main(["replay", str(tmp_path / "s" / "audit.jsonl")]) == 0


def test_halt_waits_for_a_decision_reading_its_state_and_applies_to_every_later_one(tmp_path: Path) -> None:
    """`ep4 halt` changes the trading state under the state lock, as a decision reads its state
    view. A decision that read ACTIVE first finishes its gates and write-ahead row before halt
    returns, and no decision reads ACTIVE after it. Before, halt wrote the state at once, and a
    process that had read ACTIVE could write ahead and send after halt had returned."""
    import subprocess
    import sys
    import time

    from engine.ledger import Ledger

    state = tmp_path / "state"
    ledger = Ledger(state)
    with ledger.state_lock():  # a decision between its state view and its write-ahead row
        halt = subprocess.Popen([sys.executable, "-m", "engine.cli", "halt", "--state-dir", str(state), "--reason", "incident"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert halt.poll() is None, halt.communicate()  # still waiting for the decision
        assert ledger.trading_state()["state"] == "ACTIVE"
    out, err = halt.communicate(timeout=60)
    assert halt.returncode == 0, err
    assert ledger.trading_state()["state"] == "HALTED"
    ledger.close()


def test_an_unreadable_trading_state_counts_as_halted(tmp_path: Path) -> None:
    from engine.ledger import Ledger

    ledger = Ledger(tmp_path)
    (tmp_path / "trading-state.json").write_text("{not json")
    assert ledger.trading_state()["state"] == "HALTED"
    (tmp_path / "trading-state.json").write_text('{"state": "PAUSED"}')
    assert ledger.trading_state()["state"] == "HALTED"


# --- hole 12: audit records grew with history ---


def test_hole12_audit_records_stay_flat_as_history_grows(tmp_path: Path) -> None:
    import sqlite3

    from conftest import default_constraints
    from engine.bundle import load_bundle
    from engine.replay import replay_log

    text = _bundle_text()
    for name in ("max_actions_per_minute", "max_opens_per_symbol"):
        text = text.replace(f"    {name}:\n      type: integer\n      value: ", f"    {name}:\n      type: integer\n      value: 100000#")
    (tmp_path / "b.yaml").write_text(text.replace("#20\n", "\n").replace("#10\n", "\n"))
    r = Rig(tmp_path / "s", load_bundle(tmp_path / "b.yaml"), socket=False)
    try:
        for i in range(60):
            res, _ = r.run(OPEN("0.001", side="LONG" if i % 2 else "SHORT"))
            assert res.result == "SUCCESS", res.message
        sizes = [len(line) for line in r.audit.path.read_text().splitlines()]
        # before the fix every record repeated the whole state view: +~200 bytes per earlier call;
        # now a finished row is named by its ledger seq
        assert sizes[-1] - sizes[9] < 50 * 12, (sizes[9], sizes[-1])
        assert replay_log(r.audit.path, r.bundle, default_constraints(), ledger=r.ledger).ok
        alone = replay_log(r.audit.path, r.bundle, default_constraints())  # without the ledger: said plainly
        assert not alone.ok and "replay it with the ledger" in alone.problems[0]
        db = sqlite3.connect(r.ledger.path)
        db.execute("UPDATE executions SET reason_code = 'ORDER_ACCEPTED' WHERE seq = 1")
        db.commit()
        db.close()
        tampered = replay_log(r.audit.path, r.bundle, default_constraints(), ledger=r.ledger)
        assert not tampered.ok and any("recent_digest" in p for p in tampered.problems)
    finally:
        r.close()


# --- a host's decision object that is not exact JSON data (library API, docs/embedding.md) ---


def _host_decision(**action) -> dict:
    return {"decision_id": "d-host", "decision_code": "AUTHORIZED_ACTION",
            "action": {"action_id": "a-1", **OPEN("0.010"), **action}}


def _circular() -> dict:
    d = _host_decision()
    d["action"]["self"] = d
    return d


def _deep() -> dict:
    d = _host_decision()
    node = d["action"]
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    return d


@pytest.mark.parametrize("make,where", [
    (lambda: _host_decision(quantity=0.01), "a binary float 0.01 at action.quantity"),
    (lambda: _host_decision(quantity=datetime.date(2026, 1, 1)), "a date at action.quantity"),
    (lambda: _host_decision(quantity=b"0.01"), "a bytes at action.quantity"),
    (lambda: {**_host_decision(), 1: 2}, "a key that is not text (int)"),
    (_circular, "a value that contains itself at action.self"),
    (lambda: _host_decision(quantity=Decimal("NaN")), "NaN is not a finite number at action.quantity"),
    (lambda: _host_decision(quantity=10 ** 5000), "out of range"),
    (lambda: {**_host_decision(), "decision_id": "d-\ud800"}, "lone surrogate at decision_id"),
    (_deep, "nesting deeper than 256"),
    (lambda: _host_decision(tags={"a"}), "a set at action.tags"),
])
def test_a_host_object_that_is_not_exact_json_is_rejected_the_same_by_evaluate_and_the_executor(rig: Rig, make, where) -> None:
    """docs/embedding.md: a host may pass a dict, which ep4 reads as its canonical JSON text. A dict
    holding anything that is not exact JSON data is REJECTED INPUT_NOT_JSON naming it and where, by
    `evaluate` and by `Executor.execute` alike (before: a float went out as an order through the
    executor while `evaluate` refused it, and dates, cycles, NaN, huge ints, lone surrogates and deep
    nesting raised); nothing is sent, the caller's object is untouched, and the record replays."""
    from engine.replay import replay_log

    decision = make()
    kept = copy.deepcopy(decision) if make not in (_circular, _deep) else None
    ctx = rig.context()
    pure = evaluate(decision, ctx, rig.executor.config).result
    assert (pure.result, pure.reason_code, pure.rule) == ("REJECTED", "INPUT_NOT_JSON", 2) and where in pure.message
    executed = rig.executor.execute(decision, ctx)
    assert (executed.reason_code, executed.message, executed.input_digest) == (pure.reason_code, pure.message, pure.input_digest)
    assert rig.paper.orders == []
    if kept is not None:
        assert decision == kept
    assert replay_log(rig.audit.path, rig.bundle, default_constraints(), ledger=rig.ledger).ok


def test_a_host_object_of_exact_json_data_is_the_decision_its_text_is(rig: Rig) -> None:
    """Decimals, ints and strings in a host's dict: the same result as the decision's JSON text, by both
    entry points, and the order goes out once."""
    decision = _host_decision(quantity=Decimal("0.010"))
    text = json.dumps(_host_decision())
    ctx = rig.context()
    assert evaluate(decision, ctx, rig.executor.config).result == evaluate(text, ctx, rig.executor.config).result
    rig.now += 2000
    res = rig.executor.execute(decision, rig.context())
    assert (res.result, res.reason_code) == ("SUCCESS", "ORDER_FILLED") and len(rig.paper.orders) == 1
    assert res.order["params"]["quantity"] == "0.010"


def test_text_holding_a_lone_high_surrogate_is_rejected_not_raised(rig: Rig) -> None:
    """A host's str with a raw "\\ud800" (not a byte that failed to decode: those are U+DC80..U+DCFF)
    raised UnicodeEncodeError while the text was made printable; it is REJECTED, by both entry points."""
    text = json.dumps(_host_decision()).replace('"d-host"', '"d-\ud800"')
    ctx = rig.context()
    pure = evaluate(text, ctx, rig.executor.config).result
    assert (pure.result, pure.reason_code) == ("REJECTED", "INPUT_NOT_JSON") and "lone surrogate" in pure.message
    executed = rig.executor.execute(text, ctx)
    assert (executed.reason_code, executed.input_digest) == (pure.reason_code, pure.input_digest) and rig.paper.orders == []


@pytest.mark.parametrize("lose", ["delete", "empty"])
def test_a_lost_ledger_beside_an_audit_log_with_records_stops_sending(rig: Rig, lose: str) -> None:
    """The ledger is what makes a repeated decision a duplicate. With it deleted or emptied while its
    audit log stays, a new ledger knew nothing of the decisions the log shows executed, and the same
    decision went out again (the exchange refused the client order id, and the forced cancel then
    cancelled the first, legitimate order). The executor now refuses to open: nothing is sent."""
    from engine.audit import AuditError, AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger

    res, decision = rig.run(OPEN("0.010"), decision_id="d-once")
    assert res.result == "SUCCESS" and len(rig.paper.orders) == 1
    rig.ledger.close()
    for path in rig.state.glob("ledger.sqlite*"):
        if lose == "delete" or path.name == "ledger.sqlite":
            path.unlink() if lose == "delete" else path.write_bytes(b"")
    ledger = Ledger(rig.state)
    assert ledger.created
    with pytest.raises(AuditError, match="holds no execution and no audit anchor, but the audit log .* already holds records") as err:
        Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)
    assert "Nothing was sent" in str(err.value)
    # review: the refused run left its new, empty ledger behind, and the next open took it for a real
    # one and sent the decision again; it is refused as well
    ledger.close()
    ledger = Ledger(rig.state)
    assert not ledger.created
    with pytest.raises(AuditError, match="holds no execution and no audit anchor"):
        Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)
    assert len(rig.paper.orders) == 1
    rig.ledger = ledger  # closed by the rig


def test_a_ledger_whose_tables_were_emptied_stops_sending(rig: Rig) -> None:
    """Review: DELETE FROM executions / audit_anchor (the tables kept) sent a decision the log shows
    executed again on the very next run."""
    import sqlite3

    from engine.audit import AuditError, AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger

    res, _ = rig.run(OPEN("0.010"), decision_id="d-once")
    assert res.result == "SUCCESS"
    rig.ledger.close()
    with sqlite3.connect(rig.state / "ledger.sqlite") as db:
        db.execute("DELETE FROM executions")
        db.execute("DELETE FROM audit_anchor")
    ledger = Ledger(rig.state)
    rig.ledger = ledger
    with pytest.raises(AuditError, match="holds no execution and no audit anchor"):
        Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)
    assert len(rig.paper.orders) == 1


def test_the_one_record_a_crash_leaves_before_the_first_ledger_row_does_not_lock_the_directory(rig: Rig) -> None:
    """A first decision refused by Rules 1-4 appends its audit record, then writes its ledger row and
    anchor: a process that died between the two leaves one record beside an empty ledger. That log is
    not taken for a lost ledger's (the directory would be locked for good); a second record, or one of
    an exchange call, is."""
    from engine.audit import AuditError, AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger

    noop = json.dumps({"decision_id": "d-noop", "decision_code": "HOLD", "action": {"type": "ACTION_NOOP", "action_id": "a"}})
    res = rig.executor.execute(noop, rig.context())
    assert res.result == "NOOP"
    rig.ledger.close()
    for path in rig.state.glob("ledger.sqlite*"):
        path.unlink()
    ledger = Ledger(rig.state)
    rig.ledger = ledger
    executor = Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)  # opens
    assert executor.execute(json.dumps({"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION",
                                        "action": {"action_id": "a", **OPEN("0.010")}}), rig.context()).result == "SUCCESS"


def test_a_ledger_made_before_its_log_has_records_is_not_taken_for_a_lost_one(tmp_path) -> None:
    from engine.ledger import Ledger

    first = Ledger(tmp_path)
    assert first.created
    again = Ledger(tmp_path)  # the same directory opened again (another process, a later run)
    assert not again.created
    first.close()
    again.close()


def test_an_audit_log_ending_in_a_line_nested_too_deep_to_parse_is_damaged_and_repairable(rig: Rig, capsys) -> None:
    """A last line of 100,000 "[" raised RecursionError out of the tail check: `ep4 execute`, `ep4 halt`
    and `ep4 audit repair` (the tool meant for it) crashed. It is a damaged record: nothing is sent,
    and the repair sets it aside."""
    from engine.audit import AuditError, tail_problem
    from engine.cli import main

    rig.run(OPEN("0.010"), decision_id="d-before")
    with open(rig.audit.path, "ab") as f:
        f.write(b"[" * 100_000 + b"\n")
    assert tail_problem(rig.audit.path, rig.ledger.audit_anchor()) == "the last record is not valid JSON"
    with pytest.raises(AuditError, match="damaged"):
        rig.run(OPEN("0.010"), decision_id="d-after")
    assert len(rig.paper.orders) == 1
    capsys.readouterr()
    assert main(["audit", "repair", str(rig.audit.path), "--state-dir", str(rig.state)]) == 0
    assert tail_problem(rig.audit.path, rig.ledger.audit_anchor()) is None


# --- from the Binance-conformance review (2026-11-28, later) ---


def test_a_duplicate_client_order_id_is_a_duplicate_execution_and_cancels_nothing(tmp_path, fast_bundle) -> None:
    """A second host (its own state directory) runs a decision the first already executed: the
    exchange refuses the clientOrderId with -4116 (facts file §4) while the first order is open.
    Spec §6.2: a duplicate execution is a NOOP. Before the fix: FAILED_SAFE EXCHANGE_REJECTED, and the
    §6.3 forced cancel then cancelled the first, legitimate order."""
    from engine.audit import AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger

    first = Rig(tmp_path / "a", fast_bundle, socket=False)
    try:
        res, decision = first.run(OPEN(order_type="LIMIT", limit_price="63000.0", time_in_force="GTC"), decision_id="d-twice")
        assert res.reason_code == "ORDER_ACCEPTED"
        other = tmp_path / "b"
        other.mkdir()
        ledger = Ledger(other)
        second = Executor(first.executor.config, ledger, AuditLog(other / "audit.jsonl", ledger), first.client)
        sent: list[tuple[str, str]] = []
        handle = first.paper.handle
        first.paper.handle = lambda method, path, *rest: (method != "GET" and sent.append((method, path)), handle(method, path, *rest))[1]
        first.now += 1000
        again = second.execute(json.dumps(decision), first.context())
        first.paper.handle = handle
        assert (again.result, again.reason_code, again.rule) == ("NOOP", "DUPLICATE_EXECUTION", None), again.message
        assert "-4116" in again.message and json.loads(again.exchange_response["body"])["code"] == -4116
        assert sent == [("POST", "/fapi/v1/order")]  # no forced cancel
        assert [o.status for o in first.paper.orders] == ["NEW"]  # the first order still rests
        records = [json.loads(line) for line in (other / "audit.jsonl").read_text().splitlines()]
        assert [r["kind"] for r in records] == ["execution"] and records[-1]["reason_code"] == "DUPLICATE_EXECUTION"
        assert ledger.in_doubt_rows() == []
        ledger.close()
    finally:
        first.close()


@pytest.mark.parametrize("fault", ["http_500", "http_503_unknown", "read_timeout"])
def test_a_failed_cancel_action_is_not_sent_again_as_a_forced_cancel(rig: Rig, fault: str) -> None:
    """Rule 5: exactly one call per action, no retries (spec §6.3). The §6.3 forced cancel after a failed
    cancel action would be the same DELETE again. Before the fix: two DELETE /fapi/v1/allOpenOrders."""
    rig.run(OPEN(order_type="LIMIT", limit_price="63000.0", time_in_force="GTC"))
    rig.paper.inject(fault)
    sent: list[tuple[str, str]] = []
    handle = rig.paper.handle
    rig.paper.handle = lambda method, path, *rest: (method != "GET" and sent.append((method, path)), handle(method, path, *rest))[1]
    res, _ = rig.run({"type": "ACTION_CANCEL_OPEN_ORDERS", "symbol": "BTCUSDT"}, decision_id="d-cancel")
    rig.paper.handle = handle
    assert res.result == "FAILED_SAFE" and res.rule == 6
    assert sent == [("DELETE", "/fapi/v1/allOpenOrders")]
    assert json.loads(rig.audit.path.read_text().splitlines()[-1])["kind"] == "execution"


def test_the_paper_exchange_refuses_a_client_order_id_with_a_trailing_newline(rig: Rig) -> None:
    """Binance's clientOrderId rule is ^[\\.A-Z\\:/a-z0-9_-]{1,36}$ (-4015 otherwise); Python's "$" also
    matches before a final newline, so "abc\\n" was accepted. Decimal parameters likewise (-1100)."""
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.001"),
              ("newClientOrderId", "abc\n"), ("recvWindow", "5000"), ("timestamp", str(rig.now))]
    reply = rig.client.send_signed("POST", "/fapi/v1/order", params)
    assert reply.http_status == 400 and json.loads(reply.body)["code"] == -4015 and rig.paper.orders == []
    params = [(k, "0.001\n" if k == "quantity" else "abc" if k == "newClientOrderId" else v) for k, v in params]
    reply = rig.client.send_signed("POST", "/fapi/v1/order", params)
    assert reply.http_status == 400 and json.loads(reply.body)["code"] == -1100 and rig.paper.orders == []


def test_reconcile_takes_no_answer_about_another_order(rig: Rig) -> None:
    """A 200 reply to the query that names another clientOrderId or symbol (a proxy, a cache) settles
    nothing: the order stays in doubt. Before the fix its status was taken for this order's."""
    from engine.recovery import reconcile
    from exchange.client import ExchangeReply

    _lost_before_sending(rig, "d-other")
    row = rig.ledger.in_doubt_rows()[0]
    for body in ({"clientOrderId": "someone-else", "symbol": row["symbol"], "status": "FILLED", "executedQty": "0.010"},
                 {"clientOrderId": row["client_order_id"], "symbol": "ETHUSDT", "status": "FILLED", "executedQty": "0.010"}):
        class Wrong:
            def get_signed(self, path, params, body=body):
                return ExchangeReply("response", 200, json.dumps(body), None, {})

        notes = reconcile(rig.ledger, rig.audit, Wrong(), recv_window_ms=5000, now_ms=lambda: rig.now)
        assert [n.finding for n in notes] == ["UNKNOWN"] and "another order" in notes[0].detail
        assert [r["decision_id"] for r in rig.ledger.in_doubt_rows()] == ["d-other"]
    assert [n.finding for n in reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)] == ["NOT_FOUND"]


@pytest.mark.parametrize("quantity,price", [("-0.45", "62000"), ("-0.000001", None)])
def test_an_open_order_with_a_negative_quantity_is_not_a_context(quantity: str, price: str | None, capsys, tmp_path) -> None:
    """The worst-case exposure adds the open orders on the order's side (spec §5.1). An open BUY of
    -0.45 hid 0.45 BTC from the position and notional ceilings: OPEN LONG 0.600 on a 0.020 position
    (ceiling 0.5) passed Rules 1-4 (review reproduction). Such a context is refused, naming the field.
    A quantity of 0 and a price of 0 are what Binance shows for a closePosition / stop market order:
    a context with them is still one (second review: refusing them made every live context invalid)."""
    from pydantic import ValidationError

    from engine.cli import main
    from engine.models import ExecutionContext
    from engine.numbers import canonical_json, loads

    ctx = loads((EX / "context.json").read_text())  # exact numbers, as a host passes them
    ctx["account"]["available_margin"] = "100000"
    ctx["account"]["open_orders"][0].update(quantity=quantity, price=price)
    with pytest.raises(ValidationError) as info:
        ExecutionContext.model_validate(ctx)
    assert "account.open_orders.0." in str(info.value).replace("\n", ".").replace(" ", "") or "open_orders" in str(info.value)
    path = tmp_path / "context.json"
    path.write_text(canonical_json(ctx))
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps({"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": {
        "type": "ACTION_OPEN_POSITION", "action_id": "a-1", "symbol": "BTCUSDT", "side": "LONG", "quantity": "0.600",
        "order_type": "MARKET", "reduce_only": False}}))
    assert main(["execute", str(decision), "--context", str(path), "--exchange", "dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "open_orders" in err and "must not be negative" in err
    for q, p in (("0", "0"), ("0.010", "0"), ("0.010", None)):
        ctx["account"]["open_orders"][0].update(quantity=q, price=p)
        assert ExecutionContext.model_validate(ctx).account.open_orders[0].quantity == Decimal(q)


def test_replay_checks_the_records_top_level_fields_against_the_replayed_result(rig: Rig, tmp_path) -> None:
    """An audit record's spec §8.2 fields (execution_result, reason_code, ...) are the result's, copied;
    `ep4 replay` compared only the nested result, so a record whose top-level outcome was edited (and the
    chain re-hashed) replayed as identical (noticed in an earlier review)."""
    from engine.replay import replay_log

    rig.run(OPEN("0.010"))
    rig.run(OPEN("0.010", order_type="LIMIT", limit_price="63000.0", time_in_force="GTC"))
    assert replay_log(rig.audit.path, rig.bundle, default_constraints(), ledger=rig.ledger).ok
    lines = rig.audit.path.read_text().splitlines()
    for field, value in (("execution_result", "NOOP"), ("reason_code", "ORDER_REJECTED"), ("policy_decision_id", "d-other"),
                         ("timestamp", 1), ("gate_trace", [])):
        record = json.loads(lines[-1])
        assert field in record and record[field] != value
        record[field] = value
        forged = tmp_path / f"forged-{field}.jsonl"
        forged.write_text("\n".join(lines[:-1] + [json.dumps(record)]) + "\n")
        report = replay_log(forged, rig.bundle, default_constraints(), ledger=rig.ledger)
        assert not report.ok and any(f"{field} " in p and "the replayed result says" in p for p in report.problems), (field, report.problems)



def test_a_halt_of_a_state_dir_with_no_ledger_is_refused(tmp_path: Path, capsys) -> None:
    """Operator review: `ep4 halt` with a mistyped --state-dir (or from the wrong working directory)
    created a new state directory, switched it, and said so: the one that trades carried on."""
    from engine.cli import main

    typo = tmp_path / "ep4-stat"
    for command in ("halt", "reduce-only", "resume"):
        assert main([command, "--state-dir", str(typo)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and f"no ledger in {typo}" in err and "--create" in err
    assert not typo.exists()
    assert main(["halt", "--state-dir", str(typo), "--create"]) == 0
    assert f"ACTIVE -> HALTED in {typo}" in capsys.readouterr().out


@pytest.mark.parametrize("fails", ["prepare", "commit"])
def test_a_switch_that_cannot_be_written_leaves_no_record_saying_it_happened(tmp_path: Path, capsys, monkeypatch, fails: str) -> None:
    """Operator review: the audit record of a halt was appended before the state file was written, so a
    full disk left "ACTIVE -> HALTED" in the log while trading went on. The new state is now written
    first; if putting it in place fails after its record, a second record says it did not happen."""
    from engine.cli import main
    from engine.errors import LedgerError
    from engine.ledger import Ledger

    state = tmp_path / "s"
    Ledger(state).close()

    def broken(self, *a, **k):
        raise LedgerError(f"cannot write {state / 'trading-state.json'}: [Errno 28] No space left on device")

    monkeypatch.setattr(Ledger, f"{fails}_trading_state", broken)
    assert main(["halt", "--state-dir", str(state), "--reason", "incident"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    ledger = Ledger(state)
    assert ledger.trading_state()["state"] == "ACTIVE"  # the switch did not happen ...
    log = state / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    switches = [(r["from"], r["to"]) for r in records if r["kind"] == "trading_state"]
    # ... and the log does not say it did: nothing, or the switch and its undoing
    assert switches == ([] if fails == "prepare" else [("ACTIVE", "HALTED"), ("HALTED", "ACTIVE")])
    if switches:
        assert "did not take effect" in records[-1]["reason"]
    assert [p.name for p in state.iterdir() if p.name.startswith(".trading-state")] == []  # no leftover
    ledger.close()
    assert main(["audit", "verify", str(log)]) == 0 if log.exists() else True


def test_audit_repair_refuses_a_ledger_that_belongs_to_another_log(tmp_path: Path, capsys) -> None:
    """Operator review: `ep4 audit repair LOG --state-dir OTHER` "repaired" a sound log against another
    state directory's ledger and moved that ledger's anchor onto it, which then blocked OTHER."""
    from engine.cli import main
    from engine.ledger import Ledger

    for name, decisions in (("a", "decisions.jsonl"), ("b", "decision-open-limit.json")):
        assert main(["execute", str(EX / decisions), "--state-dir", str(tmp_path / name)]) == 0
    capsys.readouterr()
    other = Ledger(tmp_path / "b")
    anchor = other.audit_anchor()
    other.close()
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes((tmp_path / "a" / "audit.jsonl").read_bytes())
    before = copy.read_bytes()
    assert main(["audit", "repair", str(copy), "--state-dir", str(tmp_path / "b"), "--force"]) == 2
    err = capsys.readouterr().err
    assert "do not belong together" in err and "nothing was changed" in err
    assert copy.read_bytes() == before and not list(tmp_path.glob("copy.jsonl.damaged-*"))
    other = Ledger(tmp_path / "b")
    assert other.audit_anchor() == anchor  # untouched
    other.close()
    # its own ledger: a torn tail is repaired as before
    log = tmp_path / "a" / "audit.jsonl"
    log.write_bytes(log.read_bytes()[:-40])
    assert main(["audit", "repair", str(log)]) == 0
    assert "repaired" in capsys.readouterr().out


def test_audit_repair_halt_repairs_and_halts_in_one_step(tmp_path: Path, capsys) -> None:
    """Operator review: with a damaged audit log nothing can be sent, nor can the kill switch be set
    (its record cannot be appended); `ep4 audit repair` then resumed sending at once. `--halt` repairs and
    sets HALTED under the state lock, so no decision reads ACTIVE in between."""
    from engine.cli import main
    from engine.ledger import Ledger

    state = tmp_path / "s"
    assert main(["execute", str(EX / "decisions.jsonl"), "--state-dir", str(state)]) == 0
    log = state / "audit.jsonl"
    log.write_bytes(log.read_bytes()[:-40])  # a torn last record (a full disk mid-write)
    capsys.readouterr()
    assert main(["halt", "--state-dir", str(state)]) == 2
    assert "--halt" in capsys.readouterr().err  # the way out is named
    assert main(["audit", "repair", str(log), "--halt", "--reason", "disk full"]) == 0
    out = capsys.readouterr().out
    assert "repaired" in out and "-> HALTED" in out
    ledger = Ledger(state)
    assert ledger.trading_state()["state"] == "HALTED"
    ledger.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kind"] for r in records[-2:]] == ["audit_repair", "trading_state"] and records[-1]["to"] == "HALTED"
    assert main(["audit", "repair", str(log), "--halt"]) == 0  # a sound log: only the halt (already HALTED: recorded again)
    assert "nothing to repair" in capsys.readouterr().out


def test_replay_says_when_the_chain_is_broken(tmp_path: Path, capsys) -> None:
    """Operator review: `ep4 replay` said "ok ... 7 of 7 records recomputed" on a log with a middle
    record deleted (each record still recomputed); and "1 of 0 records differ" on a garbage file."""
    from engine.cli import main

    state = tmp_path / "s"
    assert main(["execute", str(EX / "decisions.jsonl"), "--state-dir", str(state)]) == 0
    lines = (state / "audit.jsonl").read_text().splitlines()
    assert main(["replay", str(state / "audit.jsonl")]) == 0
    for name, kept in (("dropped", lines[:3] + lines[4:]), ("reordered", lines[:2] + [lines[3], lines[2]] + lines[4:])):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(kept) + "\n")
        capsys.readouterr()
        assert main(["replay", str(tmp_path / f"{name}.jsonl"), "--state-dir", str(state)]) == 1
        err = capsys.readouterr().err
        assert "in the hash chain" in err and "ep4 audit verify" in err, err
    (tmp_path / "garbage.jsonl").write_text("garbage\n")
    assert main(["replay", str(tmp_path / "garbage.jsonl"), "--state-dir", str(state)]) == 1
    assert "0 record(s) replayed" in capsys.readouterr().err


def _in_doubt_rows(rig: Rig, n: int) -> list[dict]:
    """``n`` orders in doubt (each lost before sending), each after the cooldown the one before armed."""
    for i in range(n):
        rig.now += 400_000
        _lost_before_sending(rig, f"d-doubt-{i}")
    rows = rig.ledger.in_doubt_rows()
    assert len(rows) == n
    return rows


@pytest.mark.parametrize("status,body", [(429, {"code": -1003, "msg": "Too many requests; current limit is 2400 requests per minute."}),
                                         (418, {"code": -1003, "msg": "Way too many requests; IP banned until 1764029000000."})])
def test_reconcile_stops_asking_when_the_exchange_says_back_off(rig: Rig, status: int, body: dict, capsys) -> None:
    """Facts file §4: 429 "Back off."; 418: banned for going on after 429s (bans escalate up to 3 days).
    Reconcile sent one GET per order in doubt whatever the answer: 4 GETs after a 429 (review
    2026-11-28). Now the first back-off ends it; the orders stay in doubt and the note says so."""
    from engine.recovery import reconcile
    from exchange.client import ExchangeReply

    _in_doubt_rows(rig, 3)
    sent = []

    class BackOff:
        def get_signed(self, path, params):
            sent.append(params)
            return ExchangeReply("response", status, json.dumps(body), None, {})

    notes = reconcile(rig.ledger, rig.audit, BackOff(), recv_window_ms=5000, now_ms=lambda: rig.now)
    assert len(sent) == 1
    assert [n.finding for n in notes] == ["UNKNOWN"] and "back off" in notes[0].detail and "2 more" in notes[0].detail
    assert len(rig.ledger.in_doubt_rows()) == 3
    records = [json.loads(x) for x in rig.audit.path.read_text().splitlines()]
    assert records[-1]["kind"] == "reconcile" and records[-1]["finding"] == "UNKNOWN"
    # `ep4 reconcile` says all three are still in doubt, not only the one it asked about
    import engine.recovery
    from engine.cli import main

    from exchange.paper.embedded import save_paper

    save_paper(rig.paper, rig.state)  # the embedded paper exchange the orders went to, as ep4 execute keeps it
    real = engine.recovery.reconcile
    monkey = pytest.MonkeyPatch()
    monkey.setattr(engine.recovery, "reconcile", lambda ledger, audit, client, **kw: real(ledger, audit, BackOff(), **kw))
    try:
        assert main(["reconcile", "--state-dir", str(rig.state)]) == 1
    finally:
        monkey.undo()
    assert "reconcile: 1 row(s) looked at, 3 still in doubt" in capsys.readouterr().out
    # later, the exchange answering again: every order is asked about
    assert [n.finding for n in reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now)] == ["NOT_FOUND"] * 3


def test_reconcile_takes_nothing_from_a_reply_that_repeats_a_key(rig: Rig) -> None:
    """{"status":"NEW",...,"status":"FILLED"}: json keeps the last, which the exchange may not have meant."""
    from engine.recovery import reconcile
    from exchange.client import ExchangeReply

    row = _in_doubt_rows(rig, 1)[0]

    class Twice:
        def get_signed(self, path, params):
            text = json.dumps({"clientOrderId": row["client_order_id"], "symbol": row["symbol"], "status": "NEW", "executedQty": "0"})
            return ExchangeReply("response", 200, text[:-1] + ', "status": "CANCELED"}', None, {})

    notes = reconcile(rig.ledger, rig.audit, Twice(), recv_window_ms=5000, now_ms=lambda: rig.now)
    assert [n.finding for n in notes] == ["UNKNOWN"] and "repeats status" in notes[0].detail
    assert len(rig.ledger.in_doubt_rows()) == 1


def test_a_call_that_fails_during_a_cooldown_starts_a_new_one(rig: Rig) -> None:
    """Spec §6.3: after FAILED_SAFE, an enforced cooldown. A cooldown lets cancels and reduce-only
    orders through (gates/temporal.yaml); when such a call's outcome was unknown too, no new cooldown
    started, and a fresh open went out 1.5 s after it while two orders were in doubt (review
    2026-11-28). A refusal during a cooldown still does not extend it."""
    from exchange.paper import FaultKind

    cooldown = rig.bundle.cooldown_ms
    res, _ = rig.run(OPEN("0.010"))
    assert res.result == "SUCCESS"
    rig.paper.inject(FaultKind.HTTP_503_UNKNOWN)
    first, _ = rig.run(OPEN("0.010"), advance_s=5)
    assert (first.result, first.reason_code) == ("FAILED_SAFE", "EXCHANGE_STATUS_UNKNOWN")
    refused, _ = rig.run(OPEN("0.001"), advance_s=5)
    assert refused.reason_code == "COOLDOWN_ACTIVE"  # a refusal: does not move the end
    rig.now = first.timestamp + cooldown - 3_000
    rig.paper.inject(FaultKind.HTTP_503_UNKNOWN)
    close, _ = rig.run({"type": "ACTION_CLOSE_POSITION", "symbol": "BTCUSDT", "quantity": "0.005", "order_type": "MARKET", "reduce_only": True}, advance_s=1)
    assert (close.result, close.reason_code) == ("FAILED_SAFE", "EXCHANGE_STATUS_UNKNOWN")
    rig.now = first.timestamp + cooldown + 500  # the first cooldown is over; the second is not
    fresh, _ = rig.run(OPEN("0.001"), advance_s=0)
    assert (fresh.result, fresh.reason_code) == ("FAILED_SAFE", "COOLDOWN_ACTIVE")
    rig.now = close.timestamp + cooldown + 500
    assert rig.run(OPEN("0.001"), advance_s=0)[0].result == "SUCCESS"


@pytest.mark.parametrize(("mode", "side", "stated", "expected"), [
    ("ONE_WAY", "BOTH", True, "MAX_POSITION_EXCEEDED"),  # counted: the ceiling sees it
    ("ONE_WAY", "LONG", True, "AMBIGUOUS_POSITION"),
    ("ONE_WAY", "SHORT", True, "AMBIGUOUS_POSITION"),
    ("HEDGE", "LONG", True, "MAX_POSITION_EXCEEDED"),
])
def test_an_open_order_on_a_side_the_accounts_mode_lacks_is_ambiguous(mode: str, side: str, stated: bool, expected: str) -> None:
    """Review: an open order on a hedge position side (LONG / SHORT) in a one-way account was counted on
    no side, so a 5 BTC resting BUY did not count against the position ceiling. Spec §6.2: ambiguous
    state -> FAILED_SAFE, not a guess. (Hedge mode with a BOTH order is not covered: an order row
    without position_side reads as BOTH, and the shipped corpus pins such cases.)"""
    from conftest import base_context, bundle_at
    from engine.models import ExecutionContext

    ctx = base_context()
    ctx["account"]["position_mode"] = mode
    if mode == "HEDGE":
        for p in ctx["account"]["positions"]:
            p["position_side"] = "LONG" if Decimal(str(p["quantity"])) >= 0 else "SHORT"
    ctx["account"]["open_orders"] = [{"symbol": "BTCUSDT", "client_order_id": "x", "side": "BUY", "quantity": "5", "price": "62000",
                                      "position_side": side}]
    decision = json.dumps({"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": {
        "type": "ACTION_OPEN_POSITION", "action_id": "a", "symbol": "BTCUSDT", "side": "LONG", "quantity": "0.002",
        "order_type": "MARKET", "reduce_only": False}})
    res = evaluate(decision, ExecutionContext.model_validate(ctx), Config(bundle_at(None), default_constraints(), "dry-run")).result
    assert (res.result, res.reason_code) == ("FAILED_SAFE", expected), res.message


def test_a_cancel_is_refused_too_with_a_ledger_ahead_of_the_context(rig: Rig) -> None:
    """Review of c13cbe9 (reverted): letting a cancel through CLOCK_BEHIND_STATE let it skip its
    frequency gates too, since the state view stops at the context's time (30 of 30 cancels with a
    clock stepping back 1 ms each, against 10 of 30 going forward). A cancel is refused as well."""
    res, _ = rig.run(OPEN("0.010"), advance_s=10)
    assert res.result == "SUCCESS"
    rig.now -= 60_000
    cancel = rig.executor.execute(json.dumps({"decision_id": "d-cancel", "decision_code": "AUTHORIZED_ACTION",
                                              "action": {"type": "ACTION_CANCEL_OPEN_ORDERS", "action_id": "a", "symbol": "BTCUSDT"}}),
                                  rig.context())
    assert (cancel.result, cancel.reason_code) == ("FAILED_SAFE", "CLOCK_BEHIND_STATE")


@pytest.mark.parametrize("raw", [b'{"decision_id":"d1","decision_code":"HOLD","x":"\xff"}',
                                 b'{"decision_id":"d2","decision_code":"AUTHORIZED_ACTION","action":{"type":"ACTION_NOOP","action_id":"a2"},"\xff":1}'])
def test_bytes_that_are_not_utf8_are_rejected_by_the_executor_as_by_evaluate(rig: Rig, raw: bytes) -> None:
    """Review: Executor.execute decoded bytes with U+FFFD in place of what was not UTF-8, and so judged
    another, readable decision (a HOLD one NOOP, an authorized NOOP with a bad key SUCCESS) where
    evaluate of the same bytes is REJECTED (docs/reliability.md: bytes that are not UTF-8 make that
    decision REJECTED). The audit record keeps the bytes as backslash escapes."""
    expected = evaluate(raw, rig.context(), Config(rig.bundle, default_constraints(), "paper")).result
    res = rig.executor.execute(raw, rig.context())
    assert (res.result, res.reason_code) == (expected.result, expected.reason_code) == ("REJECTED", "INPUT_NOT_JSON")
    # the same text digested: the same input digest and trace id (review)
    assert (res.input_digest, res.trace_id, res.message) == (expected.input_digest, expected.trace_id, expected.message)
    record = json.loads((rig.state / "audit.jsonl").read_text().splitlines()[-1])
    assert "\\xff" in record["input"]["decision_text"] and "\ufffd" not in record["input"]["decision_text"]


def test_reconcile_asks_only_the_venue_an_order_was_sent_to(rig: Rig, tmp_path, capsys) -> None:
    """Review: a bare `ep4 reconcile` asked a new, empty embedded paper exchange about orders sent to a
    live venue (or to `ep4 paper serve`): -2013 for each, recorded as never executed, and the rows
    marked reconciled, so a later reconcile against the right venue looked at none. The ledger now
    notes the venue of each call; reconcile asks only that one, and will not make an embedded paper
    exchange just to ask it."""
    import shutil

    from engine.cli import main
    from engine.ledger import Ledger
    from engine.recovery import reconcile

    rows = _in_doubt_rows(rig, 2)
    assert {r["venue"] for r in rows} == {rig.executor.venue} == {f"paper http://paper.ep4.invalid#paper-account:{rig.paper.account_id}"}
    asked = []

    class Elsewhere:
        def get_signed(self, path, params):
            asked.append(params)
            raise AssertionError("not to be asked")

    notes = reconcile(rig.ledger, rig.audit, Elsewhere(), recv_window_ms=5000, now_ms=lambda: rig.now,
                      venue="binance-testnet https://testnet.binancefuture.com")
    assert asked == [] and [n.finding for n in notes] == ["UNKNOWN"] * 2
    assert all(f"sent to {rig.executor.venue}, not to binance-testnet" in n.detail for n in notes)
    assert len(rig.ledger.in_doubt_rows()) == 2  # still in doubt, not marked
    # another paper account in the state directory (all in-process ones share a base URL) is not asked
    from engine.cli.inputs import open_shipped_paper
    from exchange.paper.embedded import save_paper

    other = open_shipped_paper(None, mark_prices={"BTCUSDT": "64010.5"}, clock=lambda: rig.now)
    assert other.account_id != rig.paper.account_id
    save_paper(other, rig.state)
    capsys.readouterr()
    assert main(["reconcile", "--state-dir", str(rig.state)]) == 1
    out = capsys.readouterr().out
    assert "not asked; still in doubt" in out and "2 still in doubt" in out, out
    assert len(rig.ledger.in_doubt_rows()) == 2
    (tmp_path / "s").mkdir()
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "audit.jsonl"):
        if (rig.state / name).exists():
            shutil.copy(rig.state / name, tmp_path / "s" / name)  # the same rows in doubt, no paper exchange
    notes = reconcile(rig.ledger, rig.audit, rig.client, recv_window_ms=5000, now_ms=lambda: rig.now, venue=rig.executor.venue)
    assert [n.finding for n in notes] == ["NOT_FOUND"] * 2
    # the CLI: no embedded paper exchange in the state directory is not one to make and ask, when orders
    # are in doubt (with none, there is nothing to ask: 0 and 0, exit 0)
    Ledger(tmp_path / "empty").close()
    assert main(["reconcile", "--state-dir", str(tmp_path / "empty")]) == 0
    assert "0 row(s) looked at, 0 still in doubt" in capsys.readouterr().out
    assert main(["reconcile", "--state-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "no embedded paper exchange in" in err and "--base-url" in err
    assert not (tmp_path / "s" / "paper-exchange.json").exists()


def test_reconcile_counts_a_row_in_flight_elsewhere_as_in_doubt(rig: Rig, capsys) -> None:
    """Review: with another process's call in flight, reconcile left IN_FLIGHT rows alone (rightly) but
    said "0 still in doubt" and exited 0, though a dead process's orphan among them was FILLED."""
    from engine.cli import main
    from engine.models import ExecutionRecord
    from exchange.paper.embedded import save_paper

    save_paper(rig.paper, rig.state)
    record = ExecutionRecord(decision_id="d-orphan", action_id="a", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT",
                             result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN", timestamp=rig.now, attempted=True, opens=True)
    assert rig.ledger.write_ahead(record, client_order_id="ep4-" + "0" * 32, trace_id="t-orphan", input_digest="sha256:0",
                                  bundle_digest="sha256:0", constraints_digest="sha256:0", venue=rig.executor.venue)
    with rig.ledger.in_flight():  # another process's call in flight
        code = main(["reconcile", "--state-dir", str(rig.state)])
    out = capsys.readouterr().out
    assert code == 1 and "1 row(s) still in flight" in out and "1 still in doubt" in out, out


def test_a_client_that_raises_after_the_write_ahead_row_is_an_audited_outcome_unknown(rig: Rig) -> None:
    """Review: a client raising instead of reporting (a BinanceClient built with Credentials.from_env of an
    environment without keys raises CredentialsError) left the write-ahead row IN_FLIGHT with no audit
    record (spec §8.2), and the exception went out of Executor.execute. Now the attempt is FAILED_SAFE,
    outcome unknown (in doubt for reconcile), audited; only the exception's type is recorded."""
    from engine.audit import verify_log
    from engine.executor import Executor

    class Raising:
        base_url = "http://paper.ep4.invalid"

        def send_signed(self, method, path, params):
            raise RuntimeError("secret-in-message-Z9")

    executor = Executor(rig.executor.config, rig.ledger, rig.audit, Raising())
    res = executor.execute(json.dumps({"decision_id": "d-raise", "decision_code": "AUTHORIZED_ACTION",
                                       "action": {"action_id": "a", **OPEN("0.010")}}), rig.context())
    assert (res.result, res.reason_code) == ("FAILED_SAFE", "EXCHANGE_NO_ACK")
    assert rig.ledger.in_flight_rows() == [] and any(r["decision_id"] == "d-raise" for r in rig.ledger.in_doubt_rows())
    text = rig.audit.path.read_text()
    assert "the exchange client raised RuntimeError" in text and "secret-in-message-Z9" not in text
    assert verify_log(rig.audit.path, rig.ledger.audit_anchor(), rig.ledger.trace_ids()).problems == []


@pytest.mark.parametrize("forged", ["recovery", "execution", "reconcile", "wrong-ids"])
def test_verify_names_a_record_of_a_call_that_no_ledger_row_holds(rig: Rig, forged: str) -> None:
    """Review: a record appended with a correct hash after the anchor ("recovery ... SUCCESS ORDER_FILLED" for
    a decision the ledger never saw) passed `ep4 audit verify` with the ledger, and the next execution
    anchored it. A record of an exchange call, a forced cancel, a recovery or a reconcile must name a
    ledger row, with its ids."""
    from engine.audit import record_hash, verify_log
    from engine.numbers import canonical_json

    res, _ = rig.run(OPEN("0.010"))
    assert res.result == "SUCCESS"
    lines = rig.audit.path.read_text().splitlines()
    last = json.loads(lines[-1])
    rec = {"kind": forged if forged in ("recovery", "reconcile") else "execution", "seq": last["seq"] + 1, "prev_hash": last["hash"],
           "trace_id": res.trace_id if forged == "wrong-ids" else "ep4-forged", "policy_decision_id": "d-x", "action_id": "a-x",
           "execution_result": "SUCCESS", "timestamp": 1, "reason_code": "ORDER_FILLED", "exchange_response": None,
           "reply": {"outcome": "response"}, "sent_timestamp": 1}
    rec["hash"] = record_hash(rec)
    with open(rig.audit.path, "a") as f:
        f.write(canonical_json(rec) + "\n")
    problems = verify_log(rig.audit.path, rig.ledger.audit_anchor(), rig.ledger.trace_ids()).problems
    assert len(problems) == 1, problems
    assert ("no ledger row holds" if forged != "wrong-ids" else "the ledger's row of that trace") in problems[0]
    # the genuine log, before it, is clean
    rig.audit.path.write_text("\n".join(lines) + "\n")
    assert verify_log(rig.audit.path, rig.ledger.audit_anchor(), rig.ledger.trace_ids()).problems == []


def _back_up_the_ledger_between_two_calls(rig: Rig, first: str, second: str) -> None:
    """Execute ``first``, copy the ledger to backup.sqlite beside the state directory, execute ``second``:
    the backup then lacks the row of a call the audit log records."""
    import shutil

    from engine.audit import AuditLog
    from engine.executor import Executor
    from engine.ledger import Ledger

    assert rig.run(OPEN("0.010"), decision_id=first)[0].result == "SUCCESS"
    rig.ledger.close()
    shutil.copy(rig.state / "ledger.sqlite", rig.state.parent / "backup.sqlite")
    rig.ledger = Ledger(rig.state)
    rig.executor = Executor(rig.executor.config, rig.ledger, AuditLog(rig.audit.path, rig.ledger), rig.client)
    assert rig.run(OPEN("0.010"), decision_id=second, advance_s=5)[0].result == "SUCCESS"


@pytest.mark.parametrize("how", ["halt-after-loss", "older-backup", "rows-deleted"])
def test_a_ledger_lacking_the_row_of_a_recorded_call_stops_sending(rig: Rig, how: str, capsys) -> None:
    """Review: the lost-ledger refusal looked only at an empty ledger. `ep4 halt` / `resume` (or `audit repair
    --force`) on the empty ledger a refused run left behind wrote an anchor, and the next run sent the
    decision again; so did a ledger restored from an older backup (the log ahead of its anchor), and one
    whose rows were deleted with the anchor kept. A record of an exchange call the ledger has no row
    for now stops the executor from opening."""
    import shutil
    import sqlite3

    from engine.audit import AuditError, AuditLog
    from engine.cli import main
    from engine.executor import Executor
    from engine.ledger import Ledger

    if how == "older-backup":
        _back_up_the_ledger_between_two_calls(rig, "d-first", "d-second")
    else:
        res, _ = rig.run(OPEN("0.010"), decision_id="d-first")
        assert res.result == "SUCCESS"
    rig.ledger.close()
    if how == "halt-after-loss":
        for path in rig.state.glob("ledger.sqlite*"):
            path.unlink()
        Ledger(rig.state).close()  # what a refused run leaves behind
        assert main(["halt", "--state-dir", str(rig.state), "--reason", "r"]) == 0
        assert main(["resume", "--state-dir", str(rig.state), "--reason", "r"]) == 0
    elif how == "older-backup":
        for path in rig.state.glob("ledger.sqlite*"):
            path.unlink()
        shutil.copy(rig.state.parent / "backup.sqlite", rig.state / "ledger.sqlite")
    else:
        with sqlite3.connect(rig.state / "ledger.sqlite") as db:
            db.execute("DELETE FROM executions")
    capsys.readouterr()
    ledger = Ledger(rig.state)
    rig.ledger = ledger
    with pytest.raises(AuditError, match="an exchange call, but the ledger .* holds no row of it|holds no execution and no audit anchor") as err:
        Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)
    assert "Nothing was sent" in str(err.value)


def test_halt_resume_or_repair_never_move_the_anchor_past_a_call_the_ledger_lacks(rig: Rig, capsys) -> None:
    """Review: an older copy of the ledger restored (t-2's row missing), then `ep4 halt` and `ep4 resume`:
    each moved the anchor to the end of the log, past t-2's record, and t-2 was sent again. Now a switch
    is recorded without moving the anchor (a warning says so), `ep4 audit repair` refuses, and the
    executor still refuses to open."""
    import shutil

    from engine.audit import AuditError, AuditLog
    from engine.cli import main
    from engine.executor import Executor
    from engine.ledger import Ledger

    _back_up_the_ledger_between_two_calls(rig, "t-1", "t-2")
    rig.ledger.close()
    for path in rig.state.glob("ledger.sqlite*"):
        path.unlink()
    shutil.copy(rig.state.parent / "backup.sqlite", rig.state / "ledger.sqlite")
    capsys.readouterr()
    for command in ("halt", "resume"):
        assert main([command, "--state-dir", str(rig.state), "--reason", "r"]) == 0
        assert "the ledger's anchor is not moved" in capsys.readouterr().err
    assert main(["audit", "repair", str(rig.audit.path), "--force"]) == 2
    assert "do not belong together" in capsys.readouterr().err
    ledger = Ledger(rig.state)
    rig.ledger = ledger
    with pytest.raises(AuditError, match="holds no row of it"):
        Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)


def test_a_trading_state_record_beside_an_empty_ledger_does_not_lock_the_directory(tmp_path) -> None:
    """Review: `ep4 halt --create` on a new directory, its record written and the process killed before
    the anchor, left one trading_state record beside an empty ledger, and every execute then refused."""
    from engine.audit import AuditLog
    from engine.ledger import Ledger

    ledger = Ledger(tmp_path)
    AuditLog(tmp_path / "audit.jsonl").append({"kind": "trading_state", "from": "ACTIVE", "to": "HALTED", "reason": "r", "by": "me", "timestamp": 1})
    assert ledger.empty() and not AuditLog(tmp_path / "audit.jsonl", ledger).holds_more_than_one_unanchored_refusal()
    ledger.close()


def test_a_new_embedded_paper_account_is_saved_before_any_call_names_it(tmp_path) -> None:
    """Review: the paper account's id (which the write-ahead rows name, and reconcile asks) was saved only
    after a change: a process killed on its first call left rows naming an account the next run made
    anew under another id, so reconcile could never settle them. A new account is saved at once."""
    import json as _json

    from engine.cli.inputs import load_config_bundle
    from engine.cli.venue import open_venue
    from engine.executor import venue_label

    bundle = load_config_bundle(None)
    first = open_venue("paper", bundle=bundle, state_dir=tmp_path, base_url=None, follow_context=True)
    try:
        saved = _json.loads((tmp_path / "paper-exchange.json").read_text())["account_id"]
        label = venue_label("paper", first.client)
    finally:
        first.close()
    assert label.endswith(f"#paper-account:{saved}")
    again = open_venue("paper", bundle=bundle, state_dir=tmp_path, base_url=None, follow_context=True)
    try:
        assert venue_label("paper", again.client) == label
    finally:
        again.close()
