"""The ``ep4`` command line (imperative shell). Usage errors exit 2 with one clear message."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence


from ..errors import MODES, AuditError, BundleError, InputError, LedgerError

# Every command imports what it needs when it runs: `ep4 --help` does not load the engine.

__all__ = ["main"]


class UsageError(Exception):
    pass


def _err(msg: str) -> None:
    print(f"ep4: error: {msg}", file=sys.stderr)


# --- ep4 check ---


def cmd_check(args: argparse.Namespace) -> int:
    from ..bundle import load_bundle

    failed = 0
    for path in args.bundles:
        try:
            b = load_bundle(path)
        except BundleError as exc:
            failed += 1
            for p in exc.problems:
                print(str(p), file=sys.stderr)
            continue
        print(
            f"ok  {path}: {b.name} {b.version}, {len(b.risk_gates)} risk gates, "
            f"{len(b.constraint_checks)} constraint checks, {b.digest}"
        )
    if failed:
        print(f"{failed} of {len(args.bundles)} bundle(s) have problems", file=sys.stderr)
    return 1 if failed else 0


# --- shared set-up of execute / explain ---


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from ..ledger import Ledger
    from ..pipeline import Config
    from .inputs import load_config_bundle, load_constraints, load_context, read_decisions

    bundle = load_config_bundle(args.bundle)
    constraints = load_constraints(args.constraints, args.leverage_brackets)
    if args.context is None:
        raise UsageError("--context FILE is required for dry-run and explain")
    context = load_context(args.context)
    decisions = read_decisions(args.decisions)
    ledger = Ledger.open_existing(args.state_dir) if args.state_dir else None
    return Config(bundle, constraints, "dry-run", evaluator=args.evaluator), context, decisions, ledger


def _view(memory: Any, ledger: Any, ids: Any, context: Any, config: Any) -> Any:
    """The state view for a decision already read (``ids``: its RawDecision): this run's records,
    merged with the ledger's when there is one."""
    view = memory.view(ids.decision_id, ids.action_id, context.timestamp, config.bundle.lookback_ms)
    if ledger is not None:
        from ..state import merge_views

        view = merge_views(ledger.view(ids.decision_id, ids.action_id, context.timestamp, config.bundle.lookback_ms), view)
        view = view.model_copy(update={"trading_state": ledger.trading_state()["state"]})
    return view


def _warn_shadow(result: Any, bundle: Any) -> None:
    """A ``warn`` shadow gate that failed: one line on stderr (the result and the audit log carry it too)."""
    for g in result.gate_trace:
        if not g.passed and getattr(g, "enforcement", None) == "warn":
            gate = bundle.gate(g.id)
            why = f"could not be evaluated: {g.error}" if g.error else gate.reason_code if gate else "failed"
            print(
                f"ep4: warning: shadow gate {g.id} (warn) would have refused {result.decision_id}/{result.action_id}: {why} "
                f"(not enforced; the outcome stays {result.result} {result.reason_code})",
                file=sys.stderr,
            )


def _dry_run(args: argparse.Namespace) -> int:
    from ..authorization_gate import read_decision
    from ..pipeline import evaluate, execution_record, result_json
    from ..state import MemoryState

    config, context, decisions, ledger = _setup(args)
    memory = MemoryState()  # dry-run: this run's would-be executions, never written to the ledger
    for raw in decisions:
        raw = read_decision(raw)  # once: the state view needs its ids, evaluate the rest
        view = _view(memory, ledger, raw, context, config)
        ev = evaluate(raw, context, config, view)
        assert ev.result is not None  # dry-run always ends in Rules 1-4
        sys.stdout.write(result_json(ev.result) + "\n")
        if config.bundle.has_shadow_gates:
            _warn_shadow(ev.result, config.bundle)
        record = execution_record(ev, ev.result, attempted=ev.result.reason_code == "DRY_RUN")
        if record is not None:
            memory.add(record, arms=config.bundle.arms_cooldown(ev.result.result, ev.result.rule, context.timestamp, view, ev.result.reason_code))
    sys.stdout.flush()
    return 0


REJECTION_WINDOW_MS = 3_600_000  # health.order_rejection_rate of contexts read from the exchange


def _decision_symbol(text: str) -> str | None:
    """The symbol whose context to read for a decision; None when it names none (or a malformed one,
    which Rule 2 rejects whatever the context)."""
    from ..authorization_gate import read_decision

    data = read_decision(text).data
    action = data.get("action") if isinstance(data, dict) else None
    symbol = action.get("symbol") if isinstance(action, dict) else None
    return symbol if isinstance(symbol, str) and re.fullmatch(r"[A-Z0-9]{2,32}", symbol) else None


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or os.environ.get("EP4_STATE_DIR") or "ep4-state")


def cmd_execute(args: argparse.Namespace) -> int:
    """Rules 1-6 for each decision: one JSON result per line, each recorded in the audit log first."""
    if args.exchange == "dry-run":
        return _dry_run(args)
    from ..audit import AuditLog
    from ..executor import Executor, decision_text
    from ..ledger import Ledger
    from ..pipeline import Config, result_json
    from .inputs import load_config_bundle, load_constraints, load_context, read_decisions
    from .venue import open_venue

    bundle = load_config_bundle(args.bundle)
    if args.exchange in ("binance", "binance-testnet") and MODES.index(args.exchange) > MODES.index(bundle.execution_mode):
        # the bundle's executionMode is recorded, not enforced (docs/bundles.md): said, never silent
        print(f"ep4: warning: {bundle.name} {bundle.version} declares executionMode {bundle.execution_mode}; this run is "
              f"--exchange {args.exchange} (the bundle's mode does not cap the run's: docs/bundles.md)", file=sys.stderr)
    certificate: tuple[tuple[str, str], ...] = ()
    if args.exchange in ("binance", "binance-testnet"):  # spec §9: a live bundle is certified (issue 9)
        from .certify import live_certificate

        certificate = tuple(live_certificate(
            bundle, args.bundle or bundle.path, certificate=args.certificate, approvers=args.approvers,
            allow_uncertified=args.allow_uncertified,
        ).items())
        if certificate[0][0] == "uncertified":
            print(f"ep4: warning: running {bundle.name} {bundle.version} UNCERTIFIED (--allow-uncertified): {certificate[0][1]}; "
                  "every result and audit record says so", file=sys.stderr)
    decisions = read_decisions(args.decisions)
    given_context = load_context(args.context) if args.context else None
    if given_context is not None and args.exchange != "paper" and not args.constraints:
        raise UsageError(
            "with --context the order must be the only request sent, so live modes need --constraints "
            "(and --leverage-brackets) too; or omit --context to read context and constraints from the exchange"
        )
    state_dir = _state_dir(args)
    ledger = Ledger(state_dir)
    audit = AuditLog(Path(args.audit) if args.audit else state_dir / "audit.jsonl", ledger)
    venue = open_venue(args.exchange, bundle=bundle, state_dir=state_dir, base_url=args.base_url, follow_context=given_context is not None)
    try:
        if args.constraints or args.exchange == "paper":
            constraints = load_constraints(args.constraints, args.leverage_brackets)
        else:  # live: the exchange's own current filters and brackets
            constraints = venue.read_constraints(bundle.exchange_client.recvWindowMs)
        executor = Executor(Config(bundle, constraints, args.exchange, evaluator=args.evaluator, certificate=certificate), ledger, audit, venue.client)
        for raw in decisions:
            text = decision_text(raw)
            if given_context is not None:
                context = given_context
                venue.sync_market(context)
            else:
                context = venue.read_context(
                    symbol=_decision_symbol(text) or args.symbol, account_id=args.account_id,
                    recv_window_ms=bundle.exchange_client.recvWindowMs, ledger=ledger, lookback_ms=REJECTION_WINDOW_MS,
                )
            result = executor.execute(text, context)
            sys.stdout.write(result_json(result) + "\n")
            sys.stdout.flush()
            if bundle.has_shadow_gates:
                _warn_shadow(result, bundle)
    finally:
        venue.close()
        ledger.close()
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    if args.compiled:
        return _explain_compiled(args)
    if args.decisions is None:
        raise UsageError("explain needs DECISIONS (or --compiled GATE_ID to print a gate's compiled Python)")
    from ..authorization_gate import read_decision
    from ..pipeline import execution_record
    from ..state import MemoryState
    from .explain import explain

    config, context, decisions, ledger = _setup(args)
    memory = MemoryState()
    for i, raw in enumerate(decisions):
        view = _view(memory, ledger, read_decision(raw), context, config)
        if i:
            print()
        text, ev = explain(raw, context, config, view)
        print(text)
        rec = execution_record(ev, ev.result, attempted=ev.result.reason_code == "DRY_RUN")
        if rec is not None:
            memory.add(rec, arms=config.bundle.arms_cooldown(ev.result.result, ev.result.rule, context.timestamp, view, ev.result.reason_code))
    return 0


def _explain_compiled(args: argparse.Namespace) -> int:
    """The Python a gate runs (its fast path and its reference path), for review; ``chains``: the
    chain over both rules' gates the pipeline runs first, then each rule's chain, which runs the
    rule's fast paths in order from where its loop takes over (engine.gate_chain)."""
    from .inputs import load_config_bundle

    bundle = load_config_bundle(args.bundle)
    if args.compiled == "chains":
        every = len(bundle.risk_gates) + len(bundle.constraint_checks)
        print(f"# Rules 3 and 4: all {every} gates' fast paths in order, run first (engine/pipeline.py); where it "
              "stops, the rule of that gate goes on with its own loop and chain, below")
        print(getattr(bundle.rules_chain, "source", None) or "# (the gates' own fast functions, called one by one)\n")
        for rule, chain, gates in ((3, bundle.risk_chain, bundle.risk_gates), (4, bundle.constraint_chain, bundle.constraint_checks)):
            print(f"# Rule {rule}: {len(gates)} gates' fast paths in order (engine/gate_chain.py); the rule's loop decides "
                  "each gate this does not pass, on the gate's own code (ep4 explain --compiled GATE_ID)")
            print(getattr(chain, "source", None) or "# (the gates' own fast functions, called one by one)\n")
        return 0
    gates = {g.id: g for g in bundle.risk_gates + bundle.constraint_checks}
    wanted = list(gates) if args.compiled == "all" else [args.compiled]
    for gid in wanted:
        gate = gates.get(gid)
        if gate is None:
            raise UsageError(f"no gate {gid!r} in {bundle.name} (gates: {', '.join(gates)}; or 'all', or 'chains')")
        print(f"# {gate.id} (Rule {gate.rule}, {gate.source})")
        for line in gate.expression.text.strip().splitlines():
            print(f"#   {line}")
        print(gate.expression.source)
    return 0


# --- ep4 schema / reason-codes ---

_SCHEMAS: dict[str, tuple[str, str]] = {
    "decision": ("models", "PolicyDecision"),
    "context": ("models", "ExecutionContext"),
    "result": ("models", "ExecutionResult"),
    "bundle": ("bundle", "BundleDocument"),
    "gate-library": ("bundle", "GateLibraryDocument"),
    "constraints": ("constraints", "ConstraintsSnapshot"),
    "state": ("models", "StateView"),
}


def cmd_schema(args: argparse.Namespace) -> int:
    import importlib

    module, name = _SCHEMAS[args.what]
    schema = getattr(importlib.import_module(f"engine.{module}"), name).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


def reason_codes_markdown() -> str:
    """docs/reason-codes.md, generated: engine codes, then the default bundle's gate codes."""
    from ..bundle import load_bundle
    from ..paths import default_bundle_path
    from ..reason_codes import ENGINE_CODES

    lines = [
        "# Reason codes",
        "",
        "Generated by `ep4 docs reason-codes` from `engine/reason_codes.py` and the default bundle;",
        "`tests/test_docs.py` fails when this file is stale. Codes are stable: a code is never reused for",
        "another meaning. Gate codes belong to the gate that declares them (bundle YAML); a custom gate",
        "may add codes but may not reuse an engine code.",
        "",
        "## Engine codes",
        "",
        "| code | result | rule | when it fires |",
        "|---|---|---|---|",
    ]
    for c in ENGINE_CODES.values():
        rule = f"Rule {c.rule}" if c.rule else "§6.2" if c.code == "DUPLICATE_EXECUTION" else "§3.1"
        lines.append(f"| `{c.code}` | {c.result} | {rule} | {c.when} |")
    bundle = load_bundle(default_bundle_path())
    lines += [
        "",
        f"## Gate codes of the default bundle (`{bundle.name}` {bundle.version})",
        "",
        "Every gate failure is FAILED_SAFE. Rule 3 = risk gates (spec §5), Rule 4 = exchange-constraint alignment.",
        "",
        "| code | result | rule | gate | when it fires |",
        "|---|---|---|---|---|",
    ]
    for g in bundle.risk_gates + bundle.constraint_checks:
        lines.append(f"| `{g.reason_code}` | FAILED_SAFE | Rule {g.rule} | `{g.id}` | {g.message} |")
    return "\n".join(lines) + "\n"


def cmd_docs(args: argparse.Namespace) -> int:
    from ..activation import variables_markdown

    sys.stdout.write(reason_codes_markdown() if args.which == "reason-codes" else variables_markdown())
    return 0


def cmd_reason_codes(args: argparse.Namespace) -> int:
    from ..reason_codes import ENGINE_CODES

    for c in ENGINE_CODES.values():
        print(f"{c.code:32} {c.result:12} {c.when}")
    return 0


# --- ep4 bench ---


def _percentile(samples: list[int], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] / 1000.0


_BENCH_ROUNDS = 10  # ep4 bench: blocks of each evaluator, in turn
_BENCH_BLOCK = 500  # at least this many compiled runs per block (fewer rounds for fewer runs)


def cmd_bench(args: argparse.Namespace) -> int:
    """Rules 1-4 in-process, the context reused as a host would: both evaluators, interleaved in blocks."""
    import statistics

    from ..paths import examples_dir
    from ..pipeline import Config, evaluate, result_json
    from .inputs import load_config_bundle, load_constraints, load_context

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    ex = examples_dir()
    bundle, constraints = load_config_bundle(args.bundle), load_constraints(None, None)
    context = load_context(args.context or ex / "context.json")
    decision = (Path(args.decision) if args.decision else ex / "decision-open-limit.json").read_text(encoding="utf-8")
    evaluators = ["compiled", "interpreter"] if args.evaluator == "both" else [args.evaluator]
    configs = {e: Config(bundle, constraints, "dry-run", evaluator=e) for e in evaluators}
    first = {e: evaluate(decision, context, c).result for e, c in configs.items()}
    if len({result_json(r) for r in first.values()}) != 1:
        raise UsageError("the evaluators disagree on this decision; run `make differential`")
    runs = {e: args.runs if e == "compiled" else max(1, min(args.runs, args.interpreter_runs)) for e in evaluators}
    samples: dict[str, list[int]] = {e: [] for e in evaluators}
    for e in evaluators:  # warm-up
        for _ in range(min(50, runs[e])):
            evaluate(decision, context, configs[e])
    # interleaved in blocks, so both see the same machine over the run: each round times a block of
    # each evaluator in turn. Not run by run: one interpreter run (~15 ms, ~300x the work) leaves the
    # CPU caches full of its own data, and the compiled run right after it pays for that: run by run,
    # the first 200 of 5,000 compiled runs (4 %) each followed one, and they were the compiled p99. In
    # blocks only the first compiled run after an interpreter block does (10 of 5,000 by default). A block
    # is at least _BENCH_BLOCK compiled runs: in blocks of 20 (--runs 200) every compiled run was still
    # refilling what 20 interpreter runs had evicted (p50 53 us, p99 234-267 us, against 46-47 / 86-87 us
    # with 5,000 runs in the same minutes)
    compiled_runs = runs.get("compiled", _BENCH_ROUNDS * _BENCH_BLOCK)
    rounds = max(1, min(_BENCH_ROUNDS, compiled_runs // _BENCH_BLOCK, *runs.values()))
    for r in range(rounds):
        for e in evaluators:
            config_e = configs[e]
            for _ in range(runs[e] * (r + 1) // rounds - runs[e] * r // rounds):
                t0 = time.perf_counter_ns()
                evaluate(decision, context, config_e)
                samples[e].append(time.perf_counter_ns() - t0)
    result = next(iter(first.values()))
    print(f"Rules 1-4, one dry-run decision in-process, default context reused; bundle {bundle.name} "
          f"({len(bundle.risk_gates)} risk gates + {len(bundle.constraint_checks)} constraint checks); "
          f"outcome {result.result} {result.reason_code}")
    p50 = {}
    for e in evaluators:
        s = sorted(samples[e])
        p50[e] = statistics.median(s) / 1000.0
        print(f"  {e:11} runs {len(s):6}: p50 {p50[e]:9.1f} us   p99 {_percentile(s, 0.99):9.1f} us   min {s[0] / 1000.0:8.1f} us")
    if len(evaluators) == 2:
        print(f"  compiled is {p50['interpreter'] / p50['compiled']:.0f}x faster than the interpreter (p50 ratio, same run)")
    s = sorted(samples[evaluators[0]])
    print(f"{evaluators[0]}: p50 {p50[evaluators[0]]:.1f} us, p99 {_percentile(s, 0.99):.1f} us")
    return 0


# --- ep4 audit verify / ep4 replay / ep4 paper serve ---


def _anchor_for(log: Path, state_dir: str | None) -> tuple[tuple[int, str] | None, dict[str, tuple[str, str]] | None, str]:
    from ..ledger import Ledger

    directory = Path(state_dir) if state_dir else log.parent
    ledger = Ledger.open_existing(directory)
    if ledger is None:
        return None, None, (
            f"NO LEDGER in {directory}: only the log's internal consistency was checked; a re-hashed "
            "forged chain or a cut tail cannot be detected without the ledger's anchor"
        )
    try:
        return ledger.audit_anchor(), ledger.trace_ids(), f"tail checked against {ledger.path}, every ledger row has its record"
    finally:
        ledger.close()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ..audit import verify_log

    log = Path(args.log)
    if not log.is_file():
        raise UsageError(f"audit log not found (or not a file): {log}")
    anchor, traces, how = _anchor_for(log, args.state_dir)
    report = verify_log(log, anchor, traces)
    if report.ok:
        print(f"ok  {log}: {report.records} records, hash chain intact; {how}")
        return 0
    for p in report.problems:
        print(f"{log}: {p}", file=sys.stderr)
    print(f"FAILED  {log}: {len(report.problems)} problem(s) in {report.records} records", file=sys.stderr)
    return 1


def cmd_audit_repair(args: argparse.Namespace) -> int:
    """Set a damaged tail aside (kept byte for byte), truncate, and record that it was done."""
    from ..audit import repair_log, tail_problem
    from ..ledger import Ledger

    log = Path(args.log)
    if not log.is_file():
        raise UsageError(f"audit log not found (or not a file): {log}")
    directory = Path(args.state_dir) if args.state_dir else log.parent
    ledger = Ledger.open_existing(directory)
    if args.halt and ledger is None:
        raise UsageError(f"--halt: no ledger in {directory.resolve()} (check --state-dir)")
    halted = None
    try:
        problem = tail_problem(log, ledger.audit_anchor() if ledger else None)
        if problem is None and not args.force and not args.halt:
            print(f"ok  {log}: the tail is sound; nothing to repair (--force appends a repair record anyway)")
            return 0
        if ledger is not None:
            from ..executor import record_named, record_the_ledger_lacks

            lacking = record_the_ledger_lacks(ledger, log)
            if lacking is not None:  # a repair moves the anchor: never past records whose rows are missing (review)
                raise UsageError(
                    f"the ledger in {directory.resolve()} lacks the row of {record_named(lacking)} that {log} records: the ledger and the log "
                    "do not belong together (the log's own ledger lost, emptied or replaced by an older copy, or a wrong "
                    "--state-dir); nothing was changed: restore the ledger that recorded the log")
        with ledger.state_lock() if args.halt else contextlib.nullcontext():
            # --halt: repaired and HALTED under the state lock, so no decision reads ACTIVE in between
            if problem is not None or args.force:
                report = repair_log(log, ledger, reason=args.reason or (problem or "operator repair"))
            else:
                report = None
            if args.halt:
                from ..audit import AuditLog

                halted = _switch_trading_state(ledger, AuditLog(log, ledger), "HALTED",
                                               args.reason or "ep4 audit repair --halt", _operator())
    finally:
        if ledger is not None:
            ledger.close()
    if report is None:
        print(f"ok  {log}: the tail is sound; nothing to repair")
    else:
        aside = f"; the {report.removed_bytes} damaged byte(s) are in {report.set_aside}" if report.set_aside else ""
        print(f"repaired {log}: {report.kept} sound record(s) kept{aside}; repair recorded as seq {report.record['seq']}")
    if halted is not None:
        print(f"trading state {halted['state']} -> HALTED in {directory.resolve()} (only cancels go through); recorded in the audit log")
    if report is not None and report.record["records_lost"]:
        print(f"WARNING: {report.record['records_lost']} record(s) the ledger had anchored were in the damaged part", file=sys.stderr)
    return 0


def cmd_trading_state(args: argparse.Namespace) -> int:
    """ep4 halt / reduce-only / resume: the operator's kill switch, in the state dir, audited."""
    from ..audit import AuditLog
    from ..ledger import Ledger

    state_dir = _state_dir(args)
    if not (state_dir / "ledger.sqlite").exists() and not args.create:
        # a mistyped --state-dir, or the wrong working directory: a new, empty state dir would be switched,
        # and the one that trades would carry on
        raise UsageError(
            f"no ledger in {state_dir.resolve()}: nothing trades there, so switching it would change nothing. Check "
            "--state-dir (or EP4_STATE_DIR, or the working directory); --create switches a new state directory")
    ledger = Ledger(state_dir)
    try:
        audit = AuditLog(Path(args.audit) if args.audit else state_dir / "audit.jsonl", ledger)
        by = _operator()
        reason = args.reason or f"ep4 {args.command}"
        # under the state lock, as a decision reads its state view: once this returns, every decision
        # that read the old state has written its write-ahead row or refusal, and every later one
        # reads the new state (no call is started on an ACTIVE read after `ep4 halt` returned)
        with ledger.state_lock():
            before = _switch_trading_state(ledger, audit, args.target, reason, by)
    finally:
        ledger.close()
    meaning = {"ACTIVE": "every action is evaluated as usual", "REDUCING": "only cancels, closes and decreases go through",
               "HALTED": "only cancels go through"}[args.target]
    print(f"trading state {before['state']} -> {args.target} in {state_dir.resolve()} ({meaning}); recorded in the audit log")
    return 0


def _switch_trading_state(ledger: Any, audit: Any, target: str, reason: str, by: str) -> dict[str, Any]:
    """The trading state set to ``target``, audited; the caller holds the state lock. The new state is
    written first (a full or failing disk is an error here, before anything is recorded), then its
    audit record, then it is put in place: a record never says a switch that did not happen. Returns
    the state before."""
    from ..executor import record_named, record_the_ledger_lacks

    before = ledger.trading_state()
    now_ms = int(time.time() * 1000)
    # a ledger lacking the row of a call the log records after its anchor (an older copy restored, rows
    # deleted): the switch is recorded, but the anchor stays where it is, so the executor still refuses
    # to open until the ledger is restored (moving it let a decision be sent again: review)
    lacking = record_the_ledger_lacks(ledger, audit.path)
    if lacking is not None:
        print(f"WARNING: the ledger lacks the row of {record_named(lacking)} that the audit log records: the switch is recorded, "
              "the ledger's anchor is not moved, "
              "and ep4 execute refuses to send until the ledger that recorded the log is restored", file=sys.stderr)
    _, prepared = ledger.prepare_trading_state(target, reason=reason, by=by, at_ms=now_ms)
    try:
        audit.append({"kind": "trading_state", "from": before["state"], "to": target, "reason": reason, "by": by, "timestamp": now_ms},
                     anchor=lacking is None)
    except BaseException:
        ledger.discard_trading_state(prepared)
        raise
    try:
        ledger.commit_trading_state(prepared)
    except LedgerError as exc:
        ledger.discard_trading_state(prepared)
        audit.append({  # the record above said it happened: say that it did not
            "kind": "trading_state", "from": target, "to": before["state"], "by": by, "timestamp": now_ms,
            "reason": f"the switch to {target} recorded just before did not take effect: {exc}",
        }, anchor=lacking is None)
        raise
    return before


def _operator() -> str:
    import getpass

    try:
        return os.environ.get("EP4_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Orders in doubt: one read-only GET /fapi/v1/order each; what the exchange says is audited."""
    from ..audit import AuditLog
    from ..ledger import Ledger
    from ..recovery import reconcile
    from .inputs import load_config_bundle
    from .venue import open_venue

    bundle = load_config_bundle(args.bundle)
    state_dir = _state_dir(args)
    if not (state_dir / "ledger.sqlite").exists():
        raise UsageError(f"no ledger in {state_dir}: nothing to reconcile")
    ledger = Ledger(state_dir)
    if args.exchange == "paper" and not (args.base_url or os.environ.get("EP4_BASE_URL")) and not (state_dir / "paper-exchange.json").exists():
        # the embedded paper exchange would be made new, empty, just to be asked: it would answer -2013 for
        # every order, and orders sent elsewhere (a live venue, `ep4 paper serve`) would be taken for never executed
        waiting = len(ledger.in_doubt_rows()) + len(ledger.in_flight_rows())
        ledger.close()
        if waiting:
            raise UsageError(f"no embedded paper exchange in {state_dir} (no paper-exchange.json): the {waiting} order(s) in "
                             "doubt were sent elsewhere; name that venue with --exchange and --base-url")
        print("reconcile: 0 row(s) looked at, 0 still in doubt")
        return 0
    audit = AuditLog(Path(args.audit) if args.audit else state_dir / "audit.jsonl", ledger)
    venue = open_venue(args.exchange, bundle=bundle, state_dir=state_dir, base_url=args.base_url, follow_context=False)
    try:
        audit.check_before_sending(ledger.audit_anchor())
        from ..executor import venue_label

        notes = reconcile(ledger, audit, venue.client, recv_window_ms=bundle.exchange_client.recvWindowMs, now_ms=venue.clock(),
                          venue=venue_label(args.exchange, venue.client))
        in_doubt = len(ledger.in_doubt_rows())  # those asked about and not settled, and any not asked (after a 429 / 418)
        # rows still IN_FLIGHT: a call in flight in another process (recovery waits for it), or an orphan of a
        # process that died while another had a call in flight; either is still in doubt
        in_flight = len(ledger.in_flight_rows())
    finally:
        venue.close()
        ledger.close()
    for n in notes:
        print(f"{n.decision_id} / {n.action_id} (trace {n.trace_id}): {n.finding}" + (f" — {n.detail}" if n.detail else ""))
    if in_flight:
        print(f"{in_flight} row(s) still in flight (a call another process is making, or one a dead process left while "
              "another had a call in flight): not asked; run ep4 reconcile again once no call is in flight")
    unknown = [n for n in notes if n.finding == "UNKNOWN"]
    print(f"reconcile: {len(notes)} row(s) looked at, {max(in_doubt, len(unknown)) + in_flight} still in doubt")
    return 1 if unknown or in_doubt or in_flight else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ..replay import replay_log
    from .inputs import load_config_bundle, load_constraints

    log = Path(args.log)
    if not log.is_file():
        raise UsageError(f"audit log not found (or not a file): {log}")
    from ..ledger import Ledger

    ledger = Ledger.open_existing(Path(args.state_dir) if args.state_dir else log.parent)
    try:
        report = replay_log(
            log, load_config_bundle(args.bundle), load_constraints(args.constraints, args.leverage_brackets),
            evaluator=args.evaluator, ledger=ledger,
        )
    finally:
        if ledger is not None:
            ledger.close()
    if report.ok:
        print(f"ok  {log}: {report.identical} of {report.records} records recomputed byte for byte")
        return 0
    for p in report.problems:
        print(f"{log}: {p}", file=sys.stderr)
    if report.records == 0 and not report.problems:
        print(f"FAILED  {log}: no record to replay", file=sys.stderr)
    else:
        print(f"FAILED  {log}: {len(report.problems)} problem(s) in {report.records} record(s) replayed", file=sys.stderr)
    return 1


def _check_port_free(port: int) -> None:
    """A port another process listens on is said plainly (exit 2), before the server is announced,
    rather than by the web server's own log line and exit 3. Bound as the server binds it
    (SO_REUSEADDR, so a port in TIME_WAIT is free); the server's own bind still decides."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None


def cmd_paper_serve(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from exchange import serve
    from exchange.paper.embedded import PAPER_API_KEY, PaperBusy, paper_lock, save_paper

    from .inputs import open_shipped_paper

    state_dir = Path(args.state_dir) if args.state_dir else None
    with ExitStack() as stack:
        if state_dir is not None:  # the server is the one process using this state directory's paper exchange
            try:
                stack.enter_context(paper_lock(state_dir, timeout_s=0))
            except PaperBusy as exc:
                raise UsageError(f"{exc}: a second server on it would lose one's orders; stop that process first") from None
        paper = open_shipped_paper(
            state_dir, mark_prices=dict(m.split("=", 1) for m in args.mark), clock=lambda: int(time.time() * 1000)
        )
        _check_port_free(args.port)
        where = f"; state kept in {state_dir}" if state_dir else " (state not kept: no --state-dir)"
        print(f"paper exchange on http://127.0.0.1:{args.port} (API key {PAPER_API_KEY}){where}; Ctrl-C to stop", flush=True)
        serve(paper, "127.0.0.1", args.port, after_change=(lambda: save_paper(paper, state_dir)) if state_dir else None)
    return 0


# --- ep4 run-examples (make run) ---


def cmd_run_examples(args: argparse.Namespace) -> int:
    from .session import run_session

    return run_session(args)


# --- parser ---


def _add_evaluator(p: argparse.ArgumentParser, *, both: bool = False) -> None:
    choices = ["compiled", "interpreter"] + (["both"] if both else [])
    p.add_argument(
        "--evaluator", choices=choices, default="both" if both else "compiled",
        help="how gates run: compiled Python (default) or cel-python's interpreter, the reference"
        + ("; both = side by side (default)" if both else ""),
    )


def _add_eval_args(p: argparse.ArgumentParser, *, optional_decisions: bool = False) -> None:
    if optional_decisions:
        p.add_argument("decisions", metavar="DECISIONS", nargs="?", help="JSON file, JSONL file, or - for stdin")
    else:
        p.add_argument("decisions", metavar="DECISIONS", help="JSON file, JSONL file, or - for stdin")
    _add_evaluator(p)
    p.add_argument("--context", metavar="FILE", help="ExecutionContext JSON (execute without it reads the context from the exchange)")
    p.add_argument("--bundle", metavar="FILE", help="policy bundle YAML (default: policies/binance-perp-default.yaml)")
    p.add_argument("--constraints", metavar="FILE", help="raw GET /fapi/v1/exchangeInfo response (default: the shipped sample)")
    p.add_argument("--leverage-brackets", metavar="FILE", help="raw GET /fapi/v1/leverageBracket response")
    p.add_argument("--state-dir", metavar="DIR", help="ledger directory (dry-run and explain only read it)")


def _add_execute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", choices=MODES, default="paper", help="execution mode (default: paper, the embedded paper exchange)")
    p.add_argument("--base-url", metavar="URL", help="any Binance-compatible base URL (or EP4_BASE_URL)")
    p.add_argument("--audit", metavar="PATH", help="audit log (default: STATE_DIR/audit.jsonl)")
    p.add_argument("--symbol", default="BTCUSDT", help="symbol whose context is read when a decision names none")
    p.add_argument("--account-id", default="default", help="account_id of contexts read from the exchange")
    p.add_argument("--certificate", metavar="FILE", help="the bundle's certificate (default: BUNDLE with .cert.json); live modes require a valid one")
    p.add_argument("--approvers", metavar="FILE", help="approvers' public keys (default: $EP4_APPROVERS, else the approvers file shipped with ep4; "
                   "never one found next to the bundle)")
    p.add_argument("--allow-uncertified", action="store_true",
                   help="live modes: run a bundle without a valid certificate (recorded in every result and audit record)")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ep4", description="EP-4 Execution Policy Layer")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", help="lint policy bundles (exit 1 on any problem)")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("execute", help="run decisions through Rules 1-6; one JSON result per line")
    _add_eval_args(p)
    _add_execute_args(p)
    p.set_defaults(func=cmd_execute)

    p = sub.add_parser("explain", help="the same evaluation, printed for a person")
    _add_eval_args(p, optional_decisions=True)
    p.add_argument("--compiled", metavar="GATE_ID",
                   help="print the Python a gate compiles to (or 'all'; or 'chains': each rule's gates as the one function that runs them) and exit")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("schema", help="print a JSON Schema")
    p.add_argument("what", choices=sorted(_SCHEMAS))
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("reason-codes", help="list the engine's reason-code vocabulary")
    p.set_defaults(func=cmd_reason_codes)

    p = sub.add_parser("docs", help="print a generated doc page (reason-codes, gate-variables)")
    p.add_argument("which", choices=["reason-codes", "gate-variables"])
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("bench", help="time one dry-run decision through Rules 1-4 (both evaluators, side by side)")
    p.add_argument("--runs", type=int, default=5000, help="timed runs of the compiled evaluator (default 5000)")
    p.add_argument("--interpreter-runs", type=int, default=200, help="timed runs of the interpreter (default 200; it is ~100x slower)")
    _add_evaluator(p, both=True)
    p.add_argument("--bundle", metavar="FILE")
    p.add_argument("--context", metavar="FILE")
    p.add_argument("--decision", metavar="FILE")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("audit", help="audit log tools")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="COMMAND")
    audit_sub.required = True
    q = audit_sub.add_parser("verify", help="check the hash chain; exit 1 naming any edited, dropped, reordered or truncated record")
    q.add_argument("log", metavar="LOG")
    q.add_argument("--state-dir", metavar="DIR", help="ledger holding the log's anchor (default: the log's directory)")
    q.set_defaults(func=cmd_audit_verify)

    q = audit_sub.add_parser("repair", help="set a damaged tail aside (kept), truncate, record the repair; then sending resumes")
    q.add_argument("log", metavar="LOG")
    q.add_argument("--state-dir", metavar="DIR", help="ledger holding the log's anchor (default: the log's directory)")
    q.add_argument("--reason", help="why (recorded in the repair record)")
    q.add_argument("--force", action="store_true", help="record a repair even when the tail is sound")
    q.add_argument("--halt", action="store_true", help="and set the trading state HALTED in the same step, under the state "
                   "lock (sending would otherwise resume the moment the log is repaired)")
    q.set_defaults(func=cmd_audit_repair)

    p = sub.add_parser("replay", help="re-run the pure core on every audit record; exit 1 on any byte of difference")
    p.add_argument("log", metavar="LOG")
    p.add_argument("--bundle", metavar="FILE")
    p.add_argument("--constraints", metavar="FILE")
    p.add_argument("--leverage-brackets", metavar="FILE")
    p.add_argument("--state-dir", metavar="DIR", help="the ledger the records' state views name (default: the log's directory)")
    _add_evaluator(p)
    p.set_defaults(func=cmd_replay)

    for command, target, text in (("halt", "HALTED", "kill switch: refuse everything but cancels"),
                                  ("reduce-only", "REDUCING", "refuse everything but cancels, closes and decreases"),
                                  ("resume", "ACTIVE", "back to normal evaluation")):
        p = sub.add_parser(command, help=f"{text} (state dir, audited)")
        p.add_argument("--state-dir", metavar="DIR", help="state directory (default: ./ep4-state or EP4_STATE_DIR)")
        p.add_argument("--audit", metavar="PATH", help="audit log (default: STATE_DIR/audit.jsonl)")
        p.add_argument("--reason", help="why (recorded in the audit log)")
        p.add_argument("--create", action="store_true", help="switch a state directory that has no ledger yet (refused "
                       "otherwise: a mistyped --state-dir would be switched while the one that trades carries on)")
        p.set_defaults(func=cmd_trading_state, target=target)

    p = sub.add_parser("reconcile", help="ask the exchange (read-only) about orders whose outcome is unknown; audit the answers")
    p.add_argument("--exchange", choices=[m for m in MODES if m != "dry-run"], default="paper")
    p.add_argument("--base-url", metavar="URL", help="any Binance-compatible base URL (or EP4_BASE_URL)")
    p.add_argument("--state-dir", metavar="DIR", help="ledger directory (default: ./ep4-state or EP4_STATE_DIR)")
    p.add_argument("--audit", metavar="PATH", help="audit log (default: STATE_DIR/audit.jsonl)")
    p.add_argument("--bundle", metavar="FILE")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("paper", help="the Binance-compatible paper exchange")
    paper_sub = p.add_subparsers(dest="paper_command", metavar="COMMAND")
    paper_sub.required = True
    q = paper_sub.add_parser("serve", help="serve it on 127.0.0.1 (state kept in --state-dir)")
    q.add_argument("--port", type=_port, default=8089)
    q.add_argument("--state-dir", metavar="DIR")
    q.add_argument("--mark", action="append", default=[], metavar="SYMBOL=PRICE", help="initial mark price of a new account")
    q.set_defaults(func=cmd_paper_serve)

    from .lifecycle import add_parsers as add_lifecycle_parsers

    add_lifecycle_parsers(sub, _add_evaluator)

    p = sub.add_parser("run-examples", help="the scripted example session (what `make run` shows)")
    p.add_argument("--state-dir", metavar="DIR", help="where the session keeps its state (default: a fresh temp dir)")
    p.set_defaults(func=cmd_run_examples)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, InputError, LedgerError, AuditError) as exc:
        _err(str(exc))
        return 2
    except BundleError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        _err("the bundle has problems; run `ep4 check BUNDLE` for the full list")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one error line, never a traceback
        if os.environ.get("EP4_DEBUG"):
            raise
        _err(f"unexpected {type(exc).__name__}: {_without_secrets(str(exc))[:500]} (ep4 did not expect this input or "
             "state: please report it; EP4_DEBUG=1 shows where it happened). The ledger and the audit log hold what "
             "was done; an exchange call it interrupted is recovered the next time an executor opens")
        return 2


def _without_secrets(text: str) -> str:
    """``text`` with the API key and secret of this environment blanked out, should an error quote them."""
    from exchange.client import ENV_API_KEY, ENV_API_SECRET

    for name in (ENV_API_KEY, ENV_API_SECRET):
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "<redacted>")
    return text


def run() -> None:
    """The ``ep4`` console command (and ``python -m engine.cli``): :func:`main`, then exit with its code.

    Before the interpreter finalises, the heap is frozen (``gc.freeze``), so finalisation no longer
    walks everything the command built (pydantic's validators, the bundle, the compiled gates) in
    collector passes: measured, 80-113 ms of a one-decision ``ep4 execute`` went there, 9-15 ms frozen.
    Atexit handlers, flushing the standard streams and module teardown still run, and objects
    freed by reference counting are still freed; only garbage in reference cycles is left for the
    process's end to release. Every file, ledger and audit write has been closed or fsynced by then.
    In-process callers (tests, a host) call :func:`main` and keep their collector as it is."""
    import gc

    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
