"""The scripted example session behind ``make run`` (imperative shell).

``examples/session.json`` holds a base context and steps; each step is a decision plus a patch of
the context (deep-merged; lists replaced), so the session moves through time and positions.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

from pydantic import ValidationError

from .config_files import InputError, load_config_bundle, load_constraints, read_json
from .models import ExecutionContext
from .paths import examples_dir
from .pipeline import Config, evaluate, execution_record
from .state import MemoryState

__all__ = ["merge", "run_session"]


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def _describe(decision: Any) -> str:
    if not isinstance(decision, dict):
        return "(not a decision)"
    a = decision.get("action")
    if not isinstance(a, dict):
        return str(decision.get("decision_code"))
    t = str(a.get("type", "?")).replace("ACTION_", "")
    bits = [t, str(a.get("symbol", "") or "")]
    for k in ("side", "quantity", "delta_quantity", "order_type", "limit_price"):
        if a.get(k) is not None:
            bits.append(str(a[k]))
    return " ".join(b for b in bits if b)


def run_session(args: argparse.Namespace) -> int:
    session = read_json(examples_dir() / "session.json", "example session")
    config = Config(load_config_bundle(None), load_constraints(None, None), "dry-run")
    memory = MemoryState()
    rows = []
    for i, step in enumerate(session["steps"], 1):
        try:
            context = ExecutionContext.model_validate(merge(session["context"], step.get("context", {})))
        except ValidationError as exc:
            raise InputError(f"examples/session.json step {i}: invalid context: {exc.errors()[0]['msg']}") from None
        decision = step["decision"]
        view = memory.view(
            decision.get("decision_id") if isinstance(decision, dict) else None,
            (decision.get("action") or {}).get("action_id") if isinstance(decision, dict) and isinstance(decision.get("action"), dict) else None,
            context.timestamp, config.bundle.lookback_ms,
        )
        ev = evaluate(decision, context, config, view)
        res = ev.result
        rec = execution_record(ev, res, attempted=res.reason_code == "DRY_RUN")
        if rec is not None:
            memory.add(rec)
        rows.append((str(i), step.get("note", ""), _describe(decision), res.result, res.reason_code))
    widths = [max(len(r[c]) for r in rows + [("#", "step", "action", "result", "reason")]) for c in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"ep4 example session — bundle {config.bundle.name} {config.bundle.version}, mode {config.mode}")
    print(fmt.format("#", "step", "action", "result", "reason"))
    print(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        print(fmt.format(*r))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[3]] = counts.get(r[3], 0) + 1
    print("\n" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    sys.stdout.flush()
    return 0
