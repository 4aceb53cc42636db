"""Rules 5-6 end to end: the executor, the ledger, the audit log and the paper exchange.

Orders travel the real path: signed by the httpx client, sent over a loopback socket (or the
in-process transport), checked by Rule 6, recorded in the ledger and the hash-chained audit log.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, default_constraints
from engine.audit import AuditLog, verify_log
from engine.bundle import load_bundle
from engine.executor import Executor
from engine.ledger import Ledger
from engine.models import ExecutionContext
from engine.cli.inputs import open_shipped_paper
from engine.pipeline import Config
from engine.replay import replay_log
from engine.verification import BACK_OFF_CODES
from exchange import BinanceClient, Credentials, PaperServer, PaperTransport, fetch_context
from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET, PAPER_BASE_URL

T0 = 1764028800000
HEALTH = {"api_latency_ms": "20", "order_rejection_rate": "0"}


@pytest.fixture(scope="module")
def fast_bundle(tmp_path_factory) -> Any:
    """The default bundle with short client timeouts, so timeout faults take milliseconds."""
    d = tmp_path_factory.mktemp("bundle")
    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text().replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    text = text.replace("readTimeoutMs: 5000", "readTimeoutMs: 400").replace("min_interval_ms:\n      type: integer\n      value: 1000", "min_interval_ms:\n      type: integer\n      value: 0")
    (d / "fast.yaml").write_text(text)
    return load_bundle(d / "fast.yaml")


class Rig:
    """A paper exchange, a client to it, and an executor with its own ledger and audit log."""

    def __init__(self, tmp_path: Path, bundle: Any, *, socket: bool, hedge: bool = False) -> None:
        self.now = T0
        self.paper = open_shipped_paper(
            None, mark_prices={"BTCUSDT": "64010.5", "ETHUSDT": "3010.25"}, clock=lambda: self.now, dual_side_position=hedge
        )
        self.server = PaperServer(self.paper).start() if socket else None
        self.client = BinanceClient(
            self.server.base_url if self.server else PAPER_BASE_URL, Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET),
            transport=None if self.server else PaperTransport(self.paper),
            connect_timeout_ms=bundle.exchange_client.connectTimeoutMs, read_timeout_ms=bundle.exchange_client.readTimeoutMs,
        )
        self.bundle = bundle
        self.state = tmp_path
        self.ledger = Ledger(tmp_path)
        self.audit = AuditLog(tmp_path / "audit.jsonl", self.ledger)
        self.executor = Executor(Config(bundle, default_constraints(), "paper"), self.ledger, self.audit, self.client)

    def context(self, symbol: str = "BTCUSDT") -> ExecutionContext:
        raw = fetch_context(self.client, symbol=symbol, account_id="t", timestamp_ms=self.now, recv_window_ms=5000, health=HEALTH)
        return ExecutionContext.model_validate(raw)

    def run(self, action: dict, *, decision_id: str | None = None, advance_s: int = 2, symbol: str = "BTCUSDT"):
        self.now += advance_s * 1000
        decision = {"decision_id": decision_id or f"d-{self.now}", "decision_code": "AUTHORIZED_ACTION",
                    "action": {"action_id": "a-1", **action}}
        return self.executor.execute(json.dumps(decision), self.context(symbol)), decision

    def close(self) -> None:
        self.client.close()
        if self.server:
            self.server.stop()
        self.ledger.close()


@pytest.fixture
def rig(tmp_path, fast_bundle):
    r = Rig(tmp_path, fast_bundle, socket=False)
    yield r
    r.close()


@pytest.fixture
def socket_rig(tmp_path, fast_bundle):
    r = Rig(tmp_path, fast_bundle, socket=True)
    yield r
    r.close()


def OPEN(qty="0.010", side="LONG", **kw):
    a = {"type": "ACTION_OPEN_POSITION", "symbol": "BTCUSDT", "side": side, "quantity": qty, "order_type": "MARKET", "reduce_only": False}
    a.update(kw)
    return a


def test_every_action_type_over_a_loopback_socket(socket_rig: Rig) -> None:
    r = socket_rig
    res, _ = r.run(OPEN(order_type="LIMIT", limit_price="63000.0", time_in_force="GTC"))
    assert (res.result, res.reason_code) == ("SUCCESS", "ORDER_ACCEPTED")
    res, _ = r.run({"type": "ACTION_CANCEL_OPEN_ORDERS", "symbol": "BTCUSDT"})
    assert res.reason_code == "OPEN_ORDERS_CANCELLED" and not [o for o in r.paper.orders if o.status == "NEW"]
    res, _ = r.run(OPEN("0.020"))
    assert res.reason_code == "ORDER_FILLED" and r.paper.position("BTCUSDT").amount == Decimal("0.020")
    res, _ = r.run({"type": "ACTION_ADJUST_POSITION", "symbol": "BTCUSDT", "delta_quantity": "0.005"})
    assert res.reason_code == "ORDER_FILLED" and r.paper.position("BTCUSDT").amount == Decimal("0.025")
    res, _ = r.run({"type": "ACTION_ADJUST_POSITION", "symbol": "BTCUSDT", "delta_quantity": "-0.010"})
    assert res.reason_code == "ORDER_FILLED" and r.paper.position("BTCUSDT").amount == Decimal("0.015")
    res, _ = r.run({"type": "ACTION_CLOSE_POSITION", "symbol": "BTCUSDT", "quantity": "0.005", "order_type": "MARKET", "reduce_only": True})
    assert res.reason_code == "ORDER_FILLED" and r.paper.position("BTCUSDT").amount == Decimal("0.010")
    res, _ = r.run({"type": "ACTION_CLOSE_POSITION", "symbol": "BTCUSDT", "quantity": None, "order_type": "MARKET", "reduce_only": True})
    assert res.reason_code == "ORDER_FILLED" and r.paper.position("BTCUSDT").amount == 0
    res, _ = r.run({"type": "ACTION_NOOP"})
    assert res.reason_code == "ACTION_NOOP"
    # quantities reach the exchange as the exact authorized text
    assert [o.orig_qty for o in r.paper.orders] == ["0.010", "0.020", "0.005", "0.010", "0.005", "0.010"]
    assert verify_log(r.audit.path, r.ledger.audit_anchor()).ok
    assert replay_log(r.audit.path, r.bundle, default_constraints(), ledger=r.ledger).ok


def test_hedge_mode_orders(tmp_path: Path, fast_bundle: Any) -> None:
    r = Rig(tmp_path, fast_bundle, socket=False, hedge=True)
    try:
        res, _ = r.run(OPEN("0.010", side="SHORT"))
        assert res.reason_code == "ORDER_FILLED"
        assert res.order["params"]["positionSide"] == "SHORT" and "reduceOnly" not in res.order["params"]
        res, _ = r.run({"type": "ACTION_CLOSE_POSITION", "symbol": "BTCUSDT", "quantity": None, "order_type": "MARKET", "reduce_only": True})
        assert res.reason_code == "ORDER_FILLED" and res.order["params"]["side"] == "BUY"
        assert r.paper.position("BTCUSDT", "SHORT").amount == 0
    finally:
        r.close()


FAULTS = [
    ("read_timeout", True, "EXCHANGE_TIMEOUT"),
    ("connection_drop", True, "EXCHANGE_NO_ACK"),
    ("http_500", False, "EXCHANGE_STATUS_UNKNOWN"),
    ("http_502", False, "EXCHANGE_STATUS_UNKNOWN"),
    ("http_503_unknown", True, "EXCHANGE_STATUS_UNKNOWN"),
    ("http_503_unavailable", False, "EXCHANGE_STATUS_UNKNOWN"),
    ("backend_timeout", True, "EXCHANGE_STATUS_UNKNOWN"),
    ("rate_limit_429", False, "EXCHANGE_RATE_LIMITED"),
    ("ip_ban_418", False, "EXCHANGE_IP_BANNED"),
    ("malformed_body", True, "ACK_MALFORMED"),
]


@pytest.mark.parametrize("fault,executed,code", FAULTS)
@pytest.mark.parametrize("over_socket", [False, True], ids=["in-process", "loopback"])
def test_every_fault_fails_safe_and_is_never_sent_twice(tmp_path: Path, fast_bundle: Any, fault: str, executed: bool, code: str, over_socket: bool) -> None:
    r = Rig(tmp_path, fast_bundle, socket=over_socket)
    try:
        r.run(OPEN(order_type="LIMIT", limit_price="63000.0", time_in_force="GTC"))  # a resting order to force-cancel
        r.paper.inject(fault)
        sent: list[tuple[str, str]] = []  # every trade request the exchange receives from here on (not the context's reads)
        handle = r.paper.handle
        r.paper.handle = lambda method, path, *rest: (method != "GET" and sent.append((method, path)), handle(method, path, *rest))[1]
        res, decision = r.run(OPEN("0.010"), decision_id="d-fault")
        r.paper.handle = handle
        assert (res.result, res.reason_code, res.rule) == ("FAILED_SAFE", code, 6)
        assert res.exchange_response["outcome"] in ("response", "timeout", "no_response")
        market_orders = [o for o in r.paper.orders if o.type == "MARKET"]
        assert len(market_orders) == (1 if executed else 0)
        last = json.loads(r.audit.path.read_text().splitlines()[-1])
        if code in BACK_OFF_CODES:
            # Binance asked to back off (429) or banned the IP (418): nothing more is sent, not even the
            # forced cancel; the resting order stays for the operator
            assert last["kind"] == "execution" and last["reason_code"] == code
            assert sent == [("POST", "/fapi/v1/order")]
            assert [o.type for o in r.paper.orders if o.status == "NEW"] == ["LIMIT"]
        else:
            # spec §6.3: forced cancel of the symbol's open orders, with its own audit record
            assert last["kind"] == "forced_cancel" and last["reason_code"] == "OPEN_ORDERS_CANCELLED"
            assert sent == [("POST", "/fapi/v1/order"), ("DELETE", "/fapi/v1/allOpenOrders")]
            assert not [o for o in r.paper.orders if o.status == "NEW"]
        # the same decision again: a duplicate, no second order
        r.now += 1000
        again = r.executor.execute(json.dumps(decision), r.context())
        assert (again.result, again.reason_code) == ("NOOP", "DUPLICATE_EXECUTION")
        assert len([o for o in r.paper.orders if o.type == "MARKET"]) == len(market_orders)
        # and a fresh decision inside the cooldown is refused before the exchange
        res, _ = r.run(OPEN("0.010"), decision_id="d-next")
        assert res.reason_code == "COOLDOWN_ACTIVE"
        assert replay_log(r.audit.path, r.bundle, default_constraints(), ledger=r.ledger).ok
    finally:
        r.close()


def test_latency_below_the_timeout_is_fine(rig: Rig) -> None:
    rig.paper.inject("latency", delay_ms=50)
    res, _ = rig.run(OPEN())
    assert res.reason_code == "ORDER_FILLED"


class _Crash(BaseException):
    """Stands in for the process dying between the exchange call and the ack being recorded."""


class _CrashingClient:
    def __init__(self, inner: BinanceClient) -> None:
        self.inner = inner

    def send_signed(self, method: str, path: str, params: Any) -> Any:
        self.inner.send_signed(method, path, params)
        raise _Crash()


def test_decision_replayed_after_a_crash_between_write_ahead_and_ack_is_noop(rig: Rig) -> None:
    crashing = Executor(rig.executor.config, rig.ledger, rig.audit, _CrashingClient(rig.client))
    rig.now += 2000
    decision = json.dumps({"decision_id": "d-crash", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a-1", **OPEN()}})
    with pytest.raises(_Crash):
        crashing.execute(decision, rig.context())
    assert len(rig.paper.orders) == 1  # the order did reach the exchange
    # a new process (new ledger handle) sees the in-flight row
    ledger = Ledger(rig.state)
    executor = Executor(rig.executor.config, ledger, AuditLog(rig.audit.path, ledger), rig.client)
    rig.now += 1000
    res = executor.execute(decision, rig.context())
    assert (res.result, res.reason_code) == ("NOOP", "DUPLICATE_EXECUTION")
    assert len(rig.paper.orders) == 1
    # the unknown outcome counts as a FAILED_SAFE: the cooldown is on
    rig.now += 1000
    fresh = json.dumps({"decision_id": "d-after", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a-1", **OPEN()}})
    assert executor.execute(fresh, rig.context()).reason_code == "COOLDOWN_ACTIVE"


def test_exchange_rejection_is_failed_safe_with_the_binance_code(rig: Rig) -> None:
    # the host's context claims a position the exchange does not hold: the reduce-only close is refused there
    ctx = rig.context().model_dump(mode="json")
    ctx["account"]["positions"] = [{"symbol": "BTCUSDT", "quantity": "0.010", "leverage": 5, "margin_mode": "ISOLATED"}]
    decision = {"decision_id": "d-rej", "decision_code": "AUTHORIZED_ACTION",
                "action": {"type": "ACTION_CLOSE_POSITION", "action_id": "a", "symbol": "BTCUSDT", "quantity": None, "order_type": "MARKET", "reduce_only": True}}
    res = rig.executor.execute(json.dumps(decision), ExecutionContext.model_validate(ctx))
    assert res.reason_code == "EXCHANGE_REJECTED" and "-2022" in res.message
    assert json.loads(res.exchange_response["body"])["code"] == -2022


def test_audit_records_carry_the_spec_fields_and_no_secrets(rig: Rig) -> None:
    rig.run(OPEN())
    text = rig.audit.path.read_text()
    rec = json.loads(text.splitlines()[-1])
    for key in ("trace_id", "policy_decision_id", "action_id", "execution_result", "timestamp", "reason_code", "exchange_response",
                "bundle", "constraints_digest", "input_digest", "state", "gate_trace", "prev_hash", "hash"):
        assert key in rec
    assert PAPER_API_SECRET not in text and "signature" not in text


@pytest.mark.skipif(__import__("shutil").which("strace") is None, reason="needs strace to count fsync system calls")
def test_two_durable_writes_per_execution(tmp_path: Path) -> None:
    """Crash safety needs the write-ahead row durable before the call and the outcome durable before
    the return: exactly two fsync/fdatasync per execution (issue 6: fold the rest)."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import json, os, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r}); sys.path.insert(0, {str(ROOT)!r})\n"
        "from test_executor import OPEN, Rig\n"
        "from engine.bundle import load_bundle\n"
        f"rig = Rig(__import__('pathlib').Path({str(tmp_path)!r}), load_bundle({str(ROOT / 'policies' / 'binance-perp-default.yaml')!r}), socket=False)\n"
        "rig.run(OPEN('0.001'))\n"
        "ctx = rig.context()\n"
        "decision = json.dumps({'decision_id': 'counted', 'decision_code': 'AUTHORIZED_ACTION', 'action': {'action_id': 'a', **OPEN('0.001', side='SHORT')}})\n"
        "rig.now += 2000\n"
        "ctx = rig.context()\n"
        "os.write(2, b'MARK-START\\n')\n"
        "r = rig.executor.execute(decision, ctx)\n"
        "os.write(2, b'MARK-END\\n')\n"
        "assert r.result == 'SUCCESS', r.message\n"
    )
    trace = tmp_path / "strace.txt"
    subprocess.run(["strace", "-f", "-e", "trace=fsync,fdatasync,write", "-o", str(trace), sys.executable, str(script)],
                   check=True, capture_output=True, cwd=ROOT)
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "MARK-START" in line)
    end = next(i for i, line in enumerate(lines) if "MARK-END" in line)
    syncs = [line for line in lines[start:end] if "fsync(" in line or "fdatasync(" in line]
    assert len(syncs) == 2, syncs
