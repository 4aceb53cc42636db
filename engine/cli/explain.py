"""``ep4 explain``: the same evaluation as ``ep4 execute``, printed for a person."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..activation import build_activation
from ..bundle import Gate
from ..cel import from_cel
from ..intent import IntentError, resolve_intent
from ..models import ExecutionContext, StateView
from ..numbers import decimal_text
from ..pipeline import Config, Evaluation, evaluate

__all__ = ["explain"]


def _fmt(value: Any) -> str:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in list(value.items())[:6]) + ("…}" if len(value) > 6 else "}")
    return str(value)


def _lookup(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return "(absent)"
        node = node[part]
    return node


def explain(raw: Any, context: ExecutionContext, config: Config, state: StateView) -> tuple[str, Evaluation]:
    """The evaluation of ``raw`` and its human-readable account."""
    ev = evaluate(raw, context, config, state)
    return _describe(ev, context, config, state), ev


def _describe(ev: Evaluation, context: ExecutionContext, config: Config, state: StateView) -> str:
    res = ev.result
    lines = [f"decision {res.decision_id if res else ev.header['decision_id']} / action {ev.header['action_id']}"]
    lines.append(f"  bundle {config.bundle.name} {config.bundle.version} ({config.bundle.digest[:19]}…), mode {config.mode}")
    if ev.decision is None:
        lines.append(f"  stops at Rule {res.rule}: {res.result} {res.reason_code} — {res.message}")
        for e in res.errors:
            lines.append(f"    {e['field']}: {e['message']} [{e['reason_code']}]")
        return "\n".join(lines)
    action = ev.decision.action
    lines.append("  Rule 1 authorization: pass (AUTHORIZED_ACTION)")
    lines.append(f"  Rule 2 schema: pass ({action.type})")
    if res is not None and res.reason_code in ("DUPLICATE_EXECUTION", "ACTION_NOOP"):
        lines.append(f"  outcome: {res.result} {res.reason_code} — {res.message}")
        return "\n".join(lines)
    try:
        intent = resolve_intent(action, context)
    except IntentError as exc:
        lines.append(f"  Rule 3 position: FAIL {exc.reason_code} — {exc.message}")
        lines.append(f"  outcome: {res.result} {res.reason_code}")
        return "\n".join(lines)
    if intent.kind == "ORDER":
        price = f" @ {decimal_text(intent.price)}" if intent.price is not None else ""
        lines.append(
            f"  intent: {intent.side} {intent.order_type} {decimal_text(intent.quantity)}{price}"
            f"{' reduce-only' if intent.reduce_only else ''}; position {decimal_text(intent.position_before)}"
            f" -> {decimal_text(intent.position_after)}"
        )
    else:
        lines.append(f"  intent: cancel open orders of {intent.symbol or 'ALL symbols'}")
    sc = config.constraints.symbols.get(intent.symbol) if intent.symbol else None
    activation = build_activation(action=action, intent=intent, context=context, bundle=config.bundle, state=state, constraints=sc)
    data = {k: from_cel(v) for k, v in activation.items()}
    outcomes = {g.id: g for g in ev.gate_trace}
    for rule, gates in ((3, config.bundle.risk_gates), (4, config.bundle.constraint_checks)):
        lines.append(f"  Rule {rule} {'risk gates' if rule == 3 else 'exchange-constraint alignment'}:")
        for gate in gates:
            lines.extend(_gate_lines(gate, outcomes.get(gate.id), data))
    lines.append(f"  outcome: {res.result if res else 'ready for Rule 5'} {res.reason_code if res else ''} — {res.message if res else ''}")
    if res is not None and res.order:
        lines.append(f"  order: {res.order['method']} {res.order['path']} {res.order['params']}")
    return "\n".join(lines)


def _gate_lines(gate: Gate, outcome: Any, data: dict[str, Any]) -> list[str]:
    if outcome is None:
        return [f"    ----  {gate.id} (not evaluated: an earlier rule decided)"]
    mark = "pass" if outcome.passed else "FAIL"
    out = [f"    {mark}  {gate.id}" + ("" if outcome.passed else f"  [{gate.reason_code}]")]
    for ln in gate.expression.text.strip().splitlines():
        out.append(f"          | {ln}")
    seen = ", ".join(f"{p} = {_fmt(_lookup(data, p))}" for p in gate.expression.paths)
    if seen:
        out.append(f"          saw: {seen}")
    if outcome.error:
        out.append(f"          error: {outcome.error}")
    return out
