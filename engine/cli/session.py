"""The scripted example session behind ``make run`` (imperative shell).

It runs ``examples/session.json`` against the embedded paper exchange through the real path:
contexts are read from the exchange with the read-only helpers, orders are signed and sent through
the httpx client, the ledger and the audit log record everything. Then the audit log is verified
and replayed. The paper exchange's clock follows the scripted time, so every run prints the same.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from exchange import BinanceClient, Credentials, PaperTransport, fetch_context
from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET, PAPER_BASE_URL

from ..audit import AuditLog, verify_log
from ..constraints import ConstraintsSnapshot
from ..executor import Executor
from ..ledger import Ledger
from ..models import ExecutionContext
from ..paths import examples_dir
from ..pipeline import Config
from ..replay import replay_log
from .inputs import InputError, load_config_bundle, load_constraints, open_shipped_paper, read_json

__all__ = ["run_session"]


def _describe(decision: Any) -> str:
    if not isinstance(decision, dict):
        return "(not JSON)"
    a = decision.get("action")
    if not isinstance(a, dict):
        return str(decision.get("decision_code"))
    bits = [str(a.get("type", "?")).replace("ACTION_", ""), str(a.get("symbol") or ("ALL" if "symbol" in a else ""))]
    for k in ("side", "quantity", "delta_quantity", "order_type", "limit_price"):
        if a.get(k) is not None:
            bits.append(str(a[k]))
    return " ".join(b for b in bits if b)


def run_session(args: argparse.Namespace) -> int:
    session = read_json(examples_dir() / "session.json", "example session")
    bundle = load_config_bundle(None)
    constraints: ConstraintsSnapshot = load_constraints(None, None)
    config = Config(bundle, constraints, "paper")
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="ep4-session-"))
    if (state_dir / "ledger.sqlite").exists():
        raise InputError(f"{state_dir} already holds a ledger; the example session needs a fresh state directory")
    now = {"ms": session["t0"]}
    paper = open_shipped_paper(None, mark_prices=session["mark_prices"], clock=lambda: now["ms"])
    ledger = Ledger(state_dir)
    audit = AuditLog(state_dir / "audit.jsonl", ledger)
    creds = Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET)
    timeouts = bundle.exchange_client
    rows = []
    with BinanceClient(
        PAPER_BASE_URL, creds, transport=PaperTransport(paper),
        connect_timeout_ms=timeouts.connectTimeoutMs, read_timeout_ms=timeouts.readTimeoutMs,
    ) as client:
        executor = Executor(config, ledger, audit, client)
        for i, step in enumerate(session["steps"], 1):
            now["ms"] = session["t0"] + step["at"] * 1000
            symbol = step.get("symbol", "BTCUSDT")
            raw = fetch_context(
                client, symbol=symbol, account_id=session["account_id"], timestamp_ms=now["ms"],
                recv_window_ms=timeouts.recvWindowMs, health={**session["health"], **step.get("health", {})},
            )
            context = ExecutionContext.model_validate(raw)
            if "fault" in step:
                paper.inject(step["fault"]["kind"])
            decision = step.get("decision_text", step.get("decision"))
            before = len(paper.orders)
            result = executor.execute(decision, context)
            sent = len(paper.orders) - before
            last = audit.last_record()
            forced = f"{last['execution_result']} {last['reason_code']}" if last and last["kind"] == "forced_cancel" else ""
            note = step.get("note", "") + (f"  (+ forced cancel: {forced})" if forced else "")
            rows.append((str(i), f"{step['at']:>4}s", note, _describe(step.get("decision")), result.result, result.reason_code, str(sent)))
        paper.clear_faults()
    _table(rows, bundle)
    anchor = ledger.audit_anchor()
    report = verify_log(audit.path, anchor, ledger.trace_ids())
    print(f"\naudit log {audit.path}: {report.records} records, " + ("chain verified" if report.ok else "PROBLEMS:"))
    for p in report.problems:
        print(f"  {p}")
    rep = replay_log(audit.path, bundle, constraints, ledger=ledger)
    print(f"replay: {rep.identical} of {rep.records} records recomputed byte for byte" + ("" if rep.ok else "; PROBLEMS:"))
    for p in rep.problems:
        print(f"  {p}")
    print(f"paper exchange: {len(paper.orders)} orders accepted, {len(paper.fills)} fills; state kept in {state_dir}")
    return 0 if report.ok and rep.ok else 1


def _table(rows: list[tuple[str, ...]], bundle: Any) -> None:
    head = ("#", "t", "step", "action", "result", "reason", "orders placed")
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"ep4 example session — bundle {bundle.name} {bundle.version}, embedded paper exchange")
    print(fmt.format(*head))
    print(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        print(fmt.format(*r))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[4]] = counts.get(r[4], 0) + 1
    print("\n" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
