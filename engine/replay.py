"""``ep4 replay``: re-run the pure core on every recorded input; any byte of difference fails.

For each audit record, Rules 1-4 are evaluated again from the recorded decision text, context and
state view; where an exchange call was made, Rule 6 is applied again to the recorded reply. The
canonical JSON of the recomputed result must equal the recorded one byte for byte (spec §8.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audit import GENESIS, read_records
from .bundle import Bundle
from .constraints import ConstraintsSnapshot
from .executor import forced_cancel_request, forced_cancel_result
from .models import ExecutionContext, ExecutionResult, StateView
from .numbers import canonical_json, loads, sha256_digest
from .pipeline import Config, evaluate
from .verification import ExchangeReplyData, verify_ack
from .version import __version__

__all__ = ["ReplayReport", "replay_log"]

# Records that are not the outcome of a decision.
_NOT_DECISIONS = {"audit_repair", "recovery", "reconcile", "trading_state"}

# Outcomes the shell makes without an exchange reply, after Rules 1-4 said "send".
_SHELL_OUTCOMES = {"DUPLICATE_EXECUTION", "STATE_UNAVAILABLE"}


@dataclass
class ReplayReport:
    records: int = 0
    identical: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0


def recorded_state(rec: dict[str, Any], ledger: Any) -> StateView | str:
    """The state view the record was decided with: inline (older records), or rebuilt from its
    ledger references and checked against the recorded digest."""
    if "state_view" in rec:
        return StateView.model_validate(rec["state_view"])
    compact = dict(rec["state"])
    refs = compact.pop("recent_refs")
    digest = compact.pop("recent_digest")
    seqs = [r for r in refs if isinstance(r, int)]
    if seqs and ledger is None:
        return f"its state view names {len(seqs)} ledger row(s); replay it with the ledger beside the log (or --state-dir)"
    rows = ledger.records_at(seqs) if seqs else {}
    missing = [s for s in seqs if s not in rows]
    if missing:
        return f"ledger row(s) {missing[:5]} named by its state view are not in the ledger"
    recent = [rows[r].model_dump(mode="json") if isinstance(r, int) else r for r in refs]
    if sha256_digest(recent) != digest:
        return "the ledger rows its state view names differ from when it was recorded (recent_digest)"
    return StateView.model_validate({**compact, "recent": recent})


def _recompute(
    rec: dict[str, Any], config: Config, failed_by_trace: dict[str, ExecutionResult], ledger: Any = None
) -> ExecutionResult | str:
    context = ExecutionContext.model_validate(rec["input"]["context"])
    state = recorded_state(rec, ledger)
    if isinstance(state, str):
        return state
    ev = evaluate(rec["input"]["decision_text"], context, config, state)
    reply = ExchangeReplyData.model_validate(rec["reply"]) if rec.get("reply") is not None else None
    if rec["kind"] == "forced_cancel":
        failed = failed_by_trace.get(ev.header["trace_id"])
        if failed is None or reply is None:
            return "forced cancel without the FAILED_SAFE record it follows"
        header, request = forced_cancel_request(ev, failed, config, context)
        return forced_cancel_result(header, request.sent_at(rec.get("sent_timestamp") or context.timestamp), reply, failed)
    if ev.result is not None:
        return ev.result
    if reply is None:
        recorded = rec["result"]
        if recorded["reason_code"] in _SHELL_OUTCOMES:
            # made by the shell from the same header; its message may quote an OS error
            return ExecutionResult.model_validate({**recorded, **{k: v for k, v in ev.header.items()}})
        return "Rules 1-4 say the order is sent, but the record holds no exchange reply"
    assert ev.request is not None
    request = ev.request.sent_at(rec.get("sent_timestamp") or context.timestamp)
    return verify_ack(
        ev.header, request, reply, sent_timestamp=request.timestamp,
        tolerance_ms=config.bundle.exchange_client.ackTimestampToleranceMs, gate_trace=ev.gate_trace,
    )


def _replay_one(
    rec: dict[str, Any], where: str, bundle: Bundle, constraints: ConstraintsSnapshot, evaluator: str, ledger: Any,
    failed_by_trace: dict[str, ExecutionResult],
) -> str | None:
    """None if the record recomputes byte for byte, else what is wrong."""
    if rec.get("ep4_version") not in (None, __version__):
        return (f"{where}: recorded by ep4 {rec.get('ep4_version')}, replaying with ep4 {__version__}: "
                "install that version (its requirements.lock pins the libraries) to replay it byte for byte")
    recorded_bundle = rec.get("bundle")
    if not isinstance(recorded_bundle, dict) or recorded_bundle.get("digest") != bundle.digest:
        return f"{where}: recorded with bundle {recorded_bundle!r}"[:300] + f", replaying with {bundle.digest}"
    if rec.get("constraints_digest") != constraints.digest:
        return f"{where}: recorded with constraints {rec.get('constraints_digest')}, replaying with {constraints.digest}"
    certificate = tuple((k, v) for k, v in recorded_bundle.items() if k in ("certificate", "uncertified"))
    got = _recompute(rec, Config(bundle, constraints, rec["mode"], evaluator=evaluator, certificate=certificate), failed_by_trace, ledger)
    if isinstance(got, str):
        return f"{where}: {got}"
    if rec["kind"] == "execution" and got.result == "FAILED_SAFE":
        failed_by_trace[got.trace_id] = got
    dumped = got.model_dump(mode="json")
    expected, actual = canonical_json(rec["result"]), canonical_json(dumped)
    if expected != actual:
        at = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
        return (f"{where}: result differs at byte {at}: recorded …{expected[max(0, at - 40):at + 40]}… "
                f"replayed …{actual[max(0, at - 40):at + 40]}…")
    # the record's spec §8.2 fields are the result's, projected: each must be what the replay gives
    for field, value in _PROJECTION:
        if field in rec and canonical_json(rec[field]) != canonical_json(dumped.get(value)):
            return f"{where}: {field} {canonical_json(rec[field])[:80]} recorded, the replayed result says {canonical_json(dumped.get(value))[:80]}"
    return None


# the audit record's top-level fields (engine.executor.audit_record) and the result fields they copy
_PROJECTION = (
    ("ep4_version", "ep4_version"), ("trace_id", "trace_id"), ("policy_decision_id", "decision_id"), ("action_id", "action_id"),
    ("execution_result", "result"), ("timestamp", "timestamp"), ("reason_code", "reason_code"),
    ("exchange_response", "exchange_response"), ("mode", "mode"), ("bundle", "bundle"),
    ("constraints_digest", "constraints_digest"), ("input_digest", "input_digest"), ("gate_trace", "gate_trace"),
)


def replay_log(
    path: str | Path, bundle: Bundle, constraints: ConstraintsSnapshot, evaluator: str = "compiled", ledger: Any = None
) -> ReplayReport:
    """Recompute every record (``ledger``: where records name their state view's rows)."""
    report = ReplayReport()
    failed_by_trace: dict[str, ExecutionResult] = {}
    expected_seq, prev_hash = 1, GENESIS
    for lineno, text in read_records(path):
        try:
            rec = loads(text)
        except (ValueError, RecursionError):
            report.problems.append(f"line {lineno}: not a JSON record")
            continue
        if not isinstance(rec, dict):
            report.problems.append(f"line {lineno}: not a JSON record (a {type(rec).__name__})")
            continue
        # the chain, as read (replay recomputes each record; a record dropped, added or reordered in
        # between is the chain's to say: `ep4 audit verify` says which and where, with the ledger's anchor)
        if rec.get("seq") != expected_seq or rec.get("prev_hash") != prev_hash:
            report.problems.append(f"line {lineno}: seq {rec.get('seq')!r} does not follow seq {expected_seq - 1} in the hash "
                                   "chain (a record dropped, added or reordered): run `ep4 audit verify`")
        expected_seq = rec["seq"] + 1 if isinstance(rec.get("seq"), int) and not isinstance(rec.get("seq"), bool) else expected_seq + 1
        prev_hash = rec.get("hash")
        if rec.get("kind") in _NOT_DECISIONS:
            continue  # an operator's record (audit repair, recovery note): nothing to recompute
        report.records += 1
        where = f"line {lineno} (seq {rec.get('seq')}, trace {rec.get('trace_id')})"
        try:
            problem = _replay_one(rec, where, bundle, constraints, evaluator, ledger, failed_by_trace)
        except Exception as exc:  # a damaged or forged record is a reported problem, never a traceback
            problem = f"{where}: record cannot be replayed: {type(exc).__name__}: {exc}"[:400]
        if problem:
            report.problems.append(problem)
        else:
            report.identical += 1
    return report
