"""``ep4 cases from-audit AUDIT.jsonl --out DIR``: recorded executions become certification cases.

Every ``execution`` record of an audit log holds the whole pure input it was decided with (the
decision text, the context, the state view by ledger reference, the constraints by digest) and the
bundle by digest. Each becomes one case: that input, and the outcome the recording bundle gives it
in a dry run (Rules 1-4; an order that was sent pins the order a dry run would send). So real
decisions become tomorrow's regression suite (spec §9 regression certification).

A record is written only when it can be reproduced exactly: the bundle given (``--bundle``, default
the embedded one) must be the one the record names by digest, the constraints snapshot
(``--constraints``, default the shipped sample) must have the record's digest, and the ledger the
state view names (``--state-dir``, default the log's directory) must hold those rows. For a record
decided in Rules 1-4 the dry run must give the recorded result and reason (ep4 is deterministic);
anything else is reported, with the line, and not written.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError

__all__ = ["cmd_cases_from_audit"]


def _decision_field(text: str) -> Any:
    """The decision as a JSON object when that reads back to exactly the same input (no duplicate
    keys, no number whose text a JSON round trip would change); otherwise ``{"raw_text": ...}``."""
    from ..numbers import loads as exact_loads

    pairs_seen: list[bool] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            pairs_seen.append(True)
        return dict(pairs)

    try:
        plain = json.loads(text, object_pairs_hook=hook)
        if pairs_seen or not isinstance(plain, dict) or set(plain) == {"raw_text"}:
            raise ValueError
        if exact_loads(json.dumps(plain)) != exact_loads(text):
            raise ValueError
    except (ValueError, RecursionError, TypeError):
        return {"raw_text": text}
    return plain


def _safe(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:60] or "_"


def cmd_cases_from_audit(args: argparse.Namespace) -> int:
    from ..certification import outcome_of
    from ..pipeline import Config, evaluate
    from .boundary import dump_case
    from .certify import recorded_executions
    from .inputs import load_config_bundle, load_constraints

    path = Path(args.audit)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    bundle = load_config_bundle(args.bundle)
    constraints = load_constraints(args.constraints, args.leverage_brackets)
    config = Config(bundle, constraints, "dry-run")
    written: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    executions = 0
    constraints_rel: str | None = None
    for line_no, rec, inputs in recorded_executions(path, args.state_dir):
        executions += 1
        where = f"line {line_no}"
        named = (rec.get("bundle") or {}).get("digest")
        if named != bundle.digest:
            problems.append(f"{where}: decided by bundle {named}, not {bundle.name} {bundle.version} ({bundle.digest}); pass that bundle with --bundle")
            continue
        if rec.get("constraints_digest") != config.constraints_digest:
            problems.append(f"{where}: decided with constraints {rec.get('constraints_digest')}; pass that exchangeInfo with --constraints")
            continue
        if isinstance(inputs, str):
            problems.append(f"{where}: {inputs}")
            continue
        raw, context, state = inputs
        context_data = rec["input"]["context"]
        result = evaluate(raw, context, config, state).result
        outcome = outcome_of(result)
        recorded = rec.get("result") or {}
        if recorded.get("rule") in (1, 2, 3, 4) and (recorded.get("result"), recorded.get("reason_code")) != (outcome["result"], outcome["reason_code"]):
            problems.append(f"{where}: recorded {recorded.get('result')} {recorded.get('reason_code')} but a dry run now gives "
                            f"{outcome['result']} {outcome['reason_code']}: not reproducible, not written")
            continue
        doc: dict[str, Any] = {
            "description": f"recorded {recorded.get('result')} {recorded.get('reason_code')} ({rec.get('mode')}) for "
                           f"{rec.get('policy_decision_id')}/{rec.get('action_id')}",
            "source": {"audit": path.name, "line": line_no, "trace_id": rec.get("trace_id"), "mode": rec.get("mode"),
                       "recorded": {"result": recorded.get("result"), "reason_code": recorded.get("reason_code"),
                                    "rule": recorded.get("rule")}},
            "decision": _decision_field(raw),
            "context": context_data,
        }
        state_data = state.model_dump(mode="json", exclude_defaults=True)
        if state_data:
            doc["state"] = state_data
        if args.constraints:
            if constraints_rel is None:
                out.mkdir(parents=True, exist_ok=True)
                (out / "_constraints").mkdir(exist_ok=True)
                shutil.copyfile(args.constraints, out / "_constraints" / "exchange-info.json")
                constraints_rel = "_constraints/exchange-info.json"
                if args.leverage_brackets:
                    shutil.copyfile(args.leverage_brackets, out / "_constraints" / "leverage-brackets.json")
            doc["constraints"] = constraints_rel
            if args.leverage_brackets:
                doc["leverage_brackets"] = "_constraints/leverage-brackets.json"
        doc["expect"] = outcome
        key = json.dumps([doc["decision"], doc["context"], doc.get("state")], sort_keys=True)
        if key in seen:
            continue  # the same input twice (a replayed or duplicate decision): one case
        seen.add(key)
        name = f"{line_no:06d}-{_safe(rec.get('policy_decision_id'))}-{_safe(rec.get('action_id'))}.json"
        target = out / name
        if target.exists() and not args.replace:
            raise InputError(f"{target} exists; pass --replace to overwrite cases made from this log before")
        out.mkdir(parents=True, exist_ok=True)
        target.write_text(dump_case(doc), encoding="utf-8")
        written.append(name)
    print(f"ep4 cases from-audit {path}: {executions} recorded executions, {len(written)} cases written to {out}"
          + (f", {len(problems)} not written" if problems else ""))
    for p in problems[:50]:
        print(f"  not written: {p}")
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more")
    if written:
        print(f"next: ep4 certify {args.bundle or 'BUNDLE'} --cases {out}")
    if not executions:
        print("  the log holds no execution records")
    return 1 if problems or not written else 0


def add_parser(cases_sub: Any, add_evaluator: Callable[[argparse.ArgumentParser], None]) -> None:
    q = cases_sub.add_parser("from-audit", help="recorded executions of an audit log become certification cases")
    q.add_argument("audit", metavar="AUDIT.jsonl")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--bundle", metavar="BUNDLE", help="the bundle the records were decided with (default: the embedded one)")
    q.add_argument("--constraints", metavar="EXCHANGE_INFO", help="the exchangeInfo they were decided with (default: the shipped sample)")
    q.add_argument("--leverage-brackets", metavar="FILE")
    q.add_argument("--state-dir", metavar="DIR", help="the ledger the records' state views name (default: the log's directory)")
    q.add_argument("--replace", action="store_true", help="overwrite cases written from this log before")
    q.set_defaults(func=cmd_cases_from_audit)
