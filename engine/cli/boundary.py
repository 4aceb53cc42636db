"""``ep4 cases boundary BUNDLE --out DIR``: cases at every limit of a bundle, found by search.

Spec §9 asks for regression certification of every bundle change. A corpus only certifies a limit
if it holds a case on each side of it: this generator finds those cases instead of trusting a
person to write them. For every scenario (action type x symbol x position mode) it starts from an
input that passes every gate and check (the result a dry run gives: NOOP ``DRY_RUN``) and moves one
*knob* of the input at a time (the order quantity, the limit or mark price, the position, the
leverage, the margin, the health figures, the times and counts in the state view) in steps of that
knob's unit (the symbol's step size or tick, 1 ms, one record, ...), in both directions, until a
gate or Rule 4 check refuses it. A binary search over the steps finds the two adjacent values
where the outcome flips; the cases written are

* ``limit``: the last value that still passes,
* ``inside``: one step inside it (passes too),
* ``over``: one step over (refused, by the gate the case names).

Because the search runs the bundle itself (the compiled evaluator, the same as ``ep4 execute``),
every gate the bundle has is probed, including a risk officer's own, as long as it reads one of the
knobs; the report lists every enforced gate and check with the boundaries found, and those no knob
reaches (a gate disabled by a param, or one reading an input the knobs do not move). A one-step
change to any limit the corpus pins (a param, a setting, an exchange filter) moves one of these
flips, so ``ep4 certify`` fails naming the case and the gate.

Categorical inputs (symbol status, margin mode, supported order types, a quantity or price off the
exchange's grid, the cancel scope, the leverage brackets) are probed by trying each alternative
value against the passing base. A base refused at 00:00 UTC (a bundle trading only in session
windows) is moved through the day an hour at a time, and the time of day is a knob too.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputError

__all__ = ["BASE_CONTEXT", "Boundary", "generate_boundaries", "cmd_cases_boundary"]

NOW = 1764028800000  # 2025-11-25T00:00:00Z: the timestamp of the base context
HOUR = 3_600_000
DAY = 24 * HOUR

# The base context of every generated case (written to DIR/_base/context.json); the scenarios and
# knobs patch it. Two symbols with live filters in the shipped exchangeInfo sample.
BASE_CONTEXT: dict[str, Any] = {
    "exchange": "BINANCE_PERP",
    "symbol": "BTCUSDT",
    "timestamp": NOW,
    "account_id": "acct-1",
    "account": {
        "position_mode": "ONE_WAY",
        "available_margin": "2500",
        "positions": [
            {"symbol": "BTCUSDT", "quantity": "0.020", "entry_price": "63000", "leverage": 5, "margin_mode": "ISOLATED"},
            {"symbol": "ETHUSDT", "quantity": "0.400", "entry_price": "3000", "leverage": 5, "margin_mode": "ISOLATED"},
        ],
        "open_orders": [
            {"symbol": "BTCUSDT", "client_order_id": "x", "side": "BUY", "quantity": "0.01", "price": "62000"},
            {"symbol": "ETHUSDT", "client_order_id": "y", "side": "BUY", "quantity": "0.1", "price": "2900"},
        ],
    },
    "market": {"BTCUSDT": {"mark_price": "64010.5"}, "ETHUSDT": {"mark_price": "3010.25"}},
    "health": {"api_latency_ms": 85, "order_rejection_rate": "0.0"},
}


def _d(x: Any) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _s(x: Decimal) -> str:
    """A decimal as the exact text a case carries (never through float, no exponent)."""
    return format(x, "f")


# --- scenarios: one passing input per action type x symbol x position mode ---


@dataclass
class Scenario:
    name: str  # e.g. "BTCUSDT/one-way/open-market"
    symbol: str
    mode: str  # ONE_WAY | HEDGE
    kind: str  # open-market | open-limit | adjust-up | adjust-down | close-partial | cancel
    action: dict[str, Any]
    context: dict[str, Any]
    state: dict[str, Any]
    constraints_override: dict[str, Any]
    filters: dict[str, Any]  # the symbol's filters in the snapshot (read only)

    @property
    def now(self) -> int:
        return int(self.context["timestamp"])

    @property
    def orders(self) -> bool:
        return self.kind != "cancel"

    def copy(self) -> "Scenario":
        return Scenario(self.name, self.symbol, self.mode, self.kind, copy.deepcopy(self.action), copy.deepcopy(self.context),
                        copy.deepcopy(self.state), copy.deepcopy(self.constraints_override), self.filters)


# A variant of every scenario with the mark price a tenth of the base: where one limit hides another
# (at 64,010.5 USDT the notional ceiling binds before the position ceiling), the variant reaches it.
# A variant only adds the boundaries of gates its plain scenario did not reach.
VARIANTS = ("", "low-mark")

KINDS = ("open-market", "open-flat", "open-limit", "adjust-up", "adjust-down", "close-partial", "cancel")


def _unit_qty(filters: dict[str, Any], mark: Decimal) -> Decimal:
    """The smallest step multiple that clears minQty and twice the min notional at the mark price."""
    step, min_qty = _d(filters["lot_size"]["step_size"]), _d(filters["lot_size"]["min_qty"])
    need = max(min_qty, _d(filters["min_notional"]) * 2 / mark)
    n = (need / step).to_integral_value(rounding="ROUND_CEILING")
    return n * step


def scenarios(constraints: dict[str, Any]) -> Iterator[Scenario]:
    for symbol, variant in [(sym, v) for sym in sorted(BASE_CONTEXT["market"]) for v in VARIANTS]:
        filters = constraints["symbols"].get(symbol)
        if filters is None:
            continue
        tick = _d(filters["price_filter"]["tick_size"])
        mark = _d(BASE_CONTEXT["market"][symbol]["mark_price"])
        if variant == "low-mark":
            mark = ((mark / 10) / tick).to_integral_value(rounding="ROUND_FLOOR") * tick
        q = _unit_qty(filters, mark)
        for mode in ("ONE_WAY", "HEDGE"):
            ctx = copy.deepcopy(BASE_CONTEXT)
            ctx["symbol"] = symbol
            ctx["market"][symbol]["mark_price"] = _s(mark) if variant else ctx["market"][symbol]["mark_price"]
            acct = ctx["account"]
            acct["position_mode"] = mode
            mine = next(p for p in acct["positions"] if p["symbol"] == symbol)
            mine["quantity"] = _s(q * 4)
            if mode == "HEDGE":
                mine["position_side"] = "LONG"
                short = {k: v for k, v in mine.items() if k != "entry_price"}
                short.update(quantity="0", position_side="SHORT")
                acct["positions"] = [mine, short]
            else:
                acct["positions"] = [p for p in acct["positions"] if p["symbol"] == symbol]
            for kind in KINDS:
                a: dict[str, Any] = {"action_id": "a-1", "symbol": symbol}
                here = copy.deepcopy(ctx)
                if kind == "open-flat":  # opening a new position: the position is flat before the order
                    for p in here["account"]["positions"]:
                        p["quantity"] = "0"
                if kind.startswith("open"):
                    a.update(type="ACTION_OPEN_POSITION", side="LONG", quantity=_s(q), reduce_only=False,
                             order_type="LIMIT" if kind == "open-limit" else "MARKET")
                    if kind == "open-limit":
                        a.update(limit_price=_s((mark / tick).to_integral_value(rounding="ROUND_FLOOR") * tick), time_in_force="GTC")
                elif kind == "adjust-up":
                    a.update(type="ACTION_ADJUST_POSITION", delta_quantity=_s(q))
                elif kind == "adjust-down":
                    a.update(type="ACTION_ADJUST_POSITION", delta_quantity=_s(-q))
                elif kind == "close-partial":
                    a.update(type="ACTION_CLOSE_POSITION", quantity=_s(q), order_type="MARKET", reduce_only=True)
                else:
                    a.update(type="ACTION_CANCEL_OPEN_ORDERS")
                name = f"{symbol}/{mode.lower().replace('_', '-')}/{kind}" + (f"/{variant}" if variant else "")
                yield Scenario(name, symbol, mode, kind, a, here, {}, {}, filters)


# --- knobs: one input dimension each, moved in steps of its unit ---


@dataclass
class Knob:
    name: str  # a phrase for the case description, e.g. "order quantity"
    key: str  # a short name for file names
    applies: Callable[[Scenario], bool]
    step: Callable[[Scenario, dict[str, Any]], Decimal]  # (scenario, symbol filters)
    get: Callable[[Scenario], Decimal]
    put: Callable[[Scenario, Decimal], None]
    lo: Callable[[Scenario, dict[str, Any]], Decimal]
    hi: Callable[[Scenario, dict[str, Any]], Decimal]


def _position(s: Scenario) -> dict[str, Any]:
    return next(p for p in s.context["account"]["positions"] if p["symbol"] == s.symbol and p.get("position_side", "LONG") == "LONG")


def _qty_get(s: Scenario) -> Decimal:
    a = s.action
    return abs(_d(a.get("quantity") or a.get("delta_quantity")))


def _qty_put(s: Scenario, x: Decimal) -> None:
    if "delta_quantity" in s.action:
        s.action["delta_quantity"] = _s(x if s.kind == "adjust-up" else -x)
    else:
        s.action["quantity"] = _s(x)


def _rows(kind: str, symbol: str, times: list[int]) -> list[dict[str, Any]]:
    """Attempted ledger records (what the state view carries) at the given times."""
    rows = []
    for i, t in enumerate(sorted(times)):
        row = {"decision_id": f"h-{i}", "action_id": f"ha-{i}", "symbol": symbol, "result": "SUCCESS", "reason_code": "FILLED",
               "timestamp": t, "attempted": True, "opens": kind == "open",
               "action_type": {"open": "ACTION_OPEN_POSITION", "cancel": "ACTION_CANCEL_OPEN_ORDERS"}.get(kind, "ACTION_CLOSE_POSITION")}
        rows.append(row)
    return rows


def _set_recent(s: Scenario, rows: list[dict[str, Any]]) -> None:
    s.state["recent"] = sorted(rows, key=lambda r: r["timestamp"])
    if rows:
        s.state["last_execution_ms"] = max(r["timestamp"] for r in rows)
    else:
        s.state.pop("last_execution_ms", None)


def _spread(n: int, start: int, end: int) -> list[int]:
    """n distinct times in [start, end]."""
    if n <= 0:
        return []
    if n == 1:
        return [end]
    return [start + (end - start) * i // (n - 1) for i in range(n)]


def _count_get(s: Scenario) -> Decimal:
    return Decimal(len(s.state.get("recent", [])))


def _placed(n: int, where: str, now: int) -> list[int]:
    """n record times: "recent" inside the last minute (the newest 2 s old, clear of the min
    interval), "older" just over a minute old (clear of the per-minute ceiling)."""
    if where == "recent":
        return _spread(n, now - 59_000, now - 2_000 - n)
    return _spread(n, now - 61_000 - 10 * n, now - 61_000)


def _count_put(kind: str, where: str) -> Callable[[Scenario, Decimal], None]:
    def put(s: Scenario, x: Decimal) -> None:
        _set_recent(s, _rows(kind, s.symbol, _placed(int(x), where, s.now)))

    return put


def _age_put(kind: str, where: str, count: int) -> Callable[[Scenario, Decimal], None]:
    """``count`` records of ``kind``: count - 1 placed as the count knob placed them, one ``x`` ms old."""

    def put(s: Scenario, x: Decimal) -> None:
        _set_recent(s, _rows(kind, s.symbol, _placed(count - 1, where, s.now) + [s.now - int(x)]))

    return put


def _since_put(field: str) -> Callable[[Scenario, Decimal], None]:
    def put(s: Scenario, x: Decimal) -> None:
        s.state[field] = s.now - int(x)

    return put


def _since_get(field: str) -> Callable[[Scenario], Decimal]:
    def get(s: Scenario) -> Decimal:
        v = s.state.get(field)
        return Decimal(s.now - v) if v is not None else Decimal(10 * HOUR)

    return get


def _other_positions_put(s: Scenario, x: Decimal) -> None:
    acct = s.context["account"]
    acct["positions"] = [p for p in acct["positions"] if not p["symbol"].startswith("ZZ")]
    for i in range(int(x)):
        acct["positions"].append({"symbol": f"ZZ{i}USDT", "quantity": "1", "leverage": 1, "margin_mode": "ISOLATED"})


def _ctx_field(*path: str) -> tuple[Callable[[Scenario], Decimal], Callable[[Scenario, Decimal], None]]:
    def where(s: Scenario) -> tuple[dict[str, Any], str]:
        node = s.context
        for p in path[:-1]:
            node = node[s.symbol if p == "{symbol}" else p]
        return node, path[-1]

    def get(s: Scenario) -> Decimal:
        node, k = where(s)
        return _d(node[k])

    def put(s: Scenario, x: Decimal) -> None:
        node, k = where(s)
        node[k] = _s(x) if not isinstance(node[k], int) or x != x.to_integral_value() else int(x)

    return get, put


def _tick(_s: Scenario, f: dict[str, Any]) -> Decimal:
    return _d(f["price_filter"]["tick_size"])


def _qty_step(_s: Scenario, f: dict[str, Any]) -> Decimal:
    return _d(f["lot_size"]["step_size"])


def _one(_s: Scenario, _f: dict[str, Any]) -> Decimal:
    return Decimal(1)


def _const(v: Any) -> Callable[[Scenario, dict[str, Any]], Decimal]:
    return lambda _s, _f: _d(v)


_mark_get, _mark_put = _ctx_field("market", "{symbol}", "mark_price")
_margin_get, _margin_put = _ctx_field("account", "available_margin")
_latency_get, _latency_put = _ctx_field("health", "api_latency_ms")
_reject_get, _reject_put = _ctx_field("health", "order_rejection_rate")


def _pos_get(s: Scenario) -> Decimal:
    return _d(_position(s)["quantity"])


def _pos_put(s: Scenario, x: Decimal) -> None:
    _position(s)["quantity"] = _s(x)


def _lev_get(s: Scenario) -> Decimal:
    return _d(_position(s)["leverage"])


def _lev_put(s: Scenario, x: Decimal) -> None:
    _position(s)["leverage"] = int(x)


def _limit_get(s: Scenario) -> Decimal:
    return _d(s.action["limit_price"])


def _limit_put(s: Scenario, x: Decimal) -> None:
    s.action["limit_price"] = _s(x)


def knobs(lookback_ms: int) -> list[Knob]:
    orders = lambda s: s.orders  # noqa: E731
    big_qty = lambda _s, f: _d(f["lot_size"]["max_qty"]) * 2  # noqa: E731
    return [
        Knob("order quantity", "qty", lambda s: s.kind in ("open-market", "open-limit", "adjust-up", "adjust-down", "close-partial"),
             _qty_step, _qty_get, _qty_put, _qty_step, big_qty),
        Knob("limit price", "limit-price", lambda s: s.kind == "open-limit", _tick, _limit_get, _limit_put, _tick,
             lambda s, f: _d(f["price_filter"]["max_price"]) * 2),
        Knob("mark price", "mark", orders, _tick, _mark_get, _mark_put, _tick, lambda s, f: _mark_get(s) * 100),
        Knob("position", "position", orders, _qty_step, _pos_get, _pos_put, lambda s, f: Decimal(0), big_qty),
        Knob("position leverage", "leverage", orders, _one, _lev_get, _lev_put, _one, _const(125)),
        Knob("other open positions", "open-positions", orders, _one,
             lambda s: Decimal(sum(1 for p in s.context["account"]["positions"] if p["symbol"].startswith("ZZ"))),
             _other_positions_put, _const(0), _const(60)),
        Knob("available margin", "margin", orders, _const("0.01"), _margin_get, _margin_put, _const(0), _const(10_000_000)),
        Knob("API latency (ms)", "latency", lambda s: True, _one, _latency_get, _latency_put, _const(0), _const(10_000_000)),
        Knob("order rejection rate", "rejection-rate", lambda s: True, _const("0.0001"), _reject_get, _reject_put, _const(0), _const(1)),
        Knob("ms since the last exchange action", "since-last", lambda s: True, _one, _since_get("last_execution_ms"),
             _since_put("last_execution_ms"), _const(0), _const(lookback_ms)),
        Knob("ms since the last FAILED_SAFE", "since-failed-safe", lambda s: True, _one, _since_get("last_failed_safe_ms"),
             _since_put("last_failed_safe_ms"), _const(0), _const(lookback_ms)),
        Knob("time of day (ms after 00:00 UTC)", "time-of-day", lambda s: not s.state, _one,
             lambda s: Decimal(s.now % DAY), lambda s, x: s.context.__setitem__("timestamp", s.now - s.now % DAY + int(x)),
             _const(0), _const(DAY - 1)),
        Knob("exchange actions in the last minute", "actions-per-minute", lambda s: True, _one, _count_get,
             _count_put("any", "recent"), _const(0), _const(300)),
        Knob("opens on the symbol in the last minute", "opens-recent", lambda s: True, _one, _count_get, _count_put("open", "recent"),
             _const(0), _const(300)),
        Knob("opens on the symbol, just over a minute old", "opens-older", lambda s: True, _one, _count_get,
             _count_put("open", "older"), _const(0), _const(300)),
        Knob("cancels in the last minute", "cancels-recent", lambda s: True, _one, _count_get, _count_put("cancel", "recent"),
             _const(0), _const(300)),
        Knob("cancels, just over a minute old", "cancels-older", lambda s: True, _one, _count_get, _count_put("cancel", "older"),
             _const(0), _const(300)),
        # the exchange's filters in the snapshot are inputs too: Rule 4 checks flip on them
        Knob("the lot filter's maxQty", "max-qty", orders, _qty_step, *_filter("max_qty", "lot_size", "market_lot_size"),
             _qty_step, lambda s, f: _d(f["lot_size"]["max_qty"])),
        Knob("the lot filter's minQty", "min-qty", orders, _qty_step, *_filter("min_qty", "lot_size", "market_lot_size"),
             _qty_step, lambda s, f: _d(f["lot_size"]["max_qty"])),
        Knob("the price filter's minPrice", "min-price", lambda s: s.kind == "open-limit", _tick, *_filter("min_price", "price_filter"),
             _tick, lambda s, f: _d(f["price_filter"]["max_price"])),
        Knob("the price filter's maxPrice", "max-price", lambda s: s.kind == "open-limit", _tick, *_filter("max_price", "price_filter"),
             _tick, lambda s, f: _d(f["price_filter"]["max_price"]) * 2),
    ]


def _filter(field: str, *groups: str) -> tuple[Callable[[Scenario], Decimal], Callable[[Scenario, Decimal], None]]:
    """A filter value of the symbol in the constraints snapshot, moved through constraints_override."""

    def get(s: Scenario) -> Decimal:
        over = s.constraints_override.get(s.symbol, {}).get(groups[0], {})
        return _d(over.get(field, s.filters[groups[0]][field]))

    def put(s: Scenario, x: Decimal) -> None:
        mine = s.constraints_override.setdefault(s.symbol, {})
        for g in groups:
            mine.setdefault(g, {})[field] = _s(x)

    return get, put


# the age knobs follow a count knob: with the count that was refused, how old may the oldest record be
AGE_AFTER = {"opens-recent": ("open", "recent"), "opens-older": ("open", "older"), "cancels-recent": ("cancel", "recent"),
             "cancels-older": ("cancel", "older"), "actions-per-minute": ("any", "recent")}

CATEGORICAL: list[tuple[str, str, Callable[[Scenario], bool], list[tuple[str, Callable[[Scenario], None]]]]] = [
    ("symbol status", "status", lambda s: True,
     [(v, (lambda v: lambda s: s.constraints_override.setdefault(s.symbol, {}).__setitem__("status", v))(v))
      for v in ("BREAK", "PENDING_TRADING", "SETTLING")]),
    ("margin mode", "margin-mode", lambda s: s.orders,
     [("CROSSED", lambda s: _position(s).__setitem__("margin_mode", "CROSSED"))]),
    ("order types the symbol supports", "order-types", lambda s: s.orders,
     [("LIMIT only", lambda s: s.constraints_override.setdefault(s.symbol, {}).__setitem__("order_types", ["LIMIT"])),
      ("MARKET only", lambda s: s.constraints_override.setdefault(s.symbol, {}).__setitem__("order_types", ["MARKET"]))]),
    ("quantity off the step grid", "qty-grid", lambda s: s.kind in ("open-market", "open-flat", "open-limit", "close-partial"),
     [("half a step over", lambda s: s.action.__setitem__("quantity", _s(_d(s.action["quantity"]) + _d(s.filters["lot_size"]["step_size"]) / 2)))]),
    ("limit price off the tick grid", "price-grid", lambda s: s.kind == "open-limit",
     [("half a tick over", lambda s: s.action.__setitem__("limit_price", _s(_d(s.action["limit_price"]) + _d(s.filters["price_filter"]["tick_size"]) / 2)))]),
    ("cancel scope", "cancel-scope", lambda s: s.kind == "cancel",
     [("all symbols", lambda s: s.action.__setitem__("symbol", None))]),
    ("leverage bracket", "bracket", lambda s: s.orders,
     [("initial leverage 1 in every bracket", lambda s: s.constraints_override.setdefault(s.symbol, {}).__setitem__("leverage_brackets", [
         {"bracket": 1, "initial_leverage": "1", "notional_floor": "0", "notional_cap": "1000000000"}]))]),
]


# --- evaluation of a candidate ---


class Runner:
    def __init__(self, bundle: Any, constraints: Any, evaluator: str) -> None:
        from ..models import ExecutionContext, StateView
        from ..pipeline import evaluate

        self.bundle = bundle
        self.constraints = constraints
        self.dumped = constraints.model_dump(mode="json")
        self._ctx, self._state, self._evaluate = ExecutionContext, StateView, evaluate
        self.evaluator = evaluator
        self.runs = 0

    def outcome(self, s: Scenario) -> dict[str, Any] | None:
        """The pinned outcome of this input, or None when it is not a usable input (the knob left
        the domain of valid contexts: no case is written there)."""
        from ..certification import outcome_of
        from .certify import dry_run_config
        from .corpus import overridden

        self.runs += 1
        try:
            context = self._ctx.model_validate(copy.deepcopy(s.context))
            state = self._state.model_validate(s.state)
            constraints = overridden(self.constraints, s.constraints_override) if s.constraints_override else self.constraints
        except Exception:  # noqa: BLE001 - a context the models refuse is outside the domain
            return None
        decision = {"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": s.action}
        config = dry_run_config(self.bundle, constraints, self.evaluator)
        ev = self._evaluate(json.dumps(decision), context, config, state)
        return outcome_of(ev.result)


def _passes(o: dict[str, Any] | None) -> bool:
    return o is not None and o["reason_code"] == "DRY_RUN"


@dataclass
class Boundary:
    gate: str
    scenario: Scenario
    knob: str  # knob key
    knob_name: str
    limit: Decimal  # last value that passes
    over: Decimal  # first value refused, one step away
    step: Decimal
    cases: list[tuple[str, Scenario, dict[str, Any], Decimal | str]]  # (side, input, outcome, value)


def _search(run: Runner, base: Scenario, knob: Knob, filters: dict[str, Any], direction: int) -> Boundary | None:
    step = knob.step(base, filters)
    start = knob.get(base)
    end = knob.hi(base, filters) if direction > 0 else knob.lo(base, filters)

    def at(i: int) -> tuple[Scenario, dict[str, Any] | None]:
        s = base.copy()
        knob.put(s, start + direction * i * step)
        return s, run.outcome(s)

    n = int(((end - start) * direction / step).to_integral_value(rounding="ROUND_FLOOR"))
    if n <= 0:
        return None
    far_s, far = at(n)
    if far is None or _passes(far) or far.get("gate") is None:
        return None
    lo, hi, hi_s, hi_o = 0, n, far_s, far
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s, o = at(mid)
        if _passes(o):
            lo = mid
        elif o is not None and o.get("gate") is not None:
            hi, hi_s, hi_o = mid, s, o
        else:
            return None  # the engine (not a gate) refuses in between: no clean boundary along this knob
    gate = hi_o["gate"]
    limit_s, limit_o = at(lo)
    if not _passes(limit_o):
        return None
    cases: list[tuple[str, Scenario, dict[str, Any], Decimal | str]] = []
    if lo >= 1:
        inside_s, inside_o = at(lo - 1)
        if _passes(inside_o):
            cases.append(("inside", inside_s, inside_o, start + direction * (lo - 1) * step))
    cases.append(("limit", limit_s, limit_o, start + direction * lo * step))
    cases.append(("over", hi_s, hi_o, start + direction * hi * step))
    return Boundary(gate, base, knob.key, knob.name, start + direction * lo * step, start + direction * hi * step, step, cases)


def generate_boundaries(bundle: Any, constraints: Any, *, evaluator: str = "compiled") -> tuple[list[Boundary], list[str], Runner]:
    """Every boundary the knobs reach under this bundle, and the scenarios that do not pass at all."""
    run = Runner(bundle, constraints, evaluator)
    dumped = run.dumped
    found: list[Boundary] = []
    unusable: list[str] = []
    reached: dict[str, set[str]] = {}  # plain scenario -> gates bounded there
    lookback = int(bundle.lookback_ms)
    for base in scenarios(dumped):
        filters = dumped["symbols"][base.symbol]
        o = run.outcome(base)
        for hours in range(1, 24):  # a bundle that trades only in session windows: find an hour that passes
            if _passes(o):
                break
            moved = base.copy()
            moved.context["timestamp"] = NOW + hours * HOUR
            if _passes(o2 := run.outcome(moved)):
                base, o = moved, o2
        if not _passes(o):
            unusable.append(f"{base.name}: the base input does not pass ({o and o['reason_code']}); its knobs were not searched")
            continue
        bounded: set[tuple[str, str, int]] = set()
        plain = base.name.rsplit("/", 1)[0] if base.name.count("/") == 3 else None
        already = reached.setdefault(plain or base.name, set())
        for knob in knobs(lookback):
            if not knob.applies(base):
                continue
            for direction in (1, -1):
                b = _search(run, base, knob, filters, direction)
                if b is None:
                    continue
                family = (b.gate, "count" if knob.key in AGE_AFTER else knob.key, direction)
                if plain is not None and b.gate in already:
                    continue
                if family in bounded:
                    continue  # the same limit along another placement of the same records: once is enough
                bounded.add(family)
                if plain is None:
                    already.add(b.gate)
                found.append(b)
                if knob.key in AGE_AFTER and direction == 1:
                    # with the count that was refused, how old may one of the records be: the window
                    kind, where = AGE_AFTER[knob.key]
                    count = int(b.over)
                    put = _age_put(kind, where, count)
                    age = Knob(f"age (ms) of one of {count} records ({knob.name})", f"{knob.key}-age", lambda s: True, _one,
                               lambda s: Decimal(lookback), put, _const(2_000), _const(lookback))
                    older = _search(run, _with(base, put, Decimal(lookback)), age, filters, -1)
                    if older is not None:
                        found.append(older)
        for label, key, applies, values in CATEGORICAL:
            if not applies(base):
                continue
            for value, change in values:
                s = base.copy()
                change(s)
                o2 = run.outcome(s)
                if o2 is not None and not _passes(o2) and o2.get("gate") and not (plain is not None and o2["gate"] in already):
                    found.append(Boundary(o2["gate"], base, key, label, Decimal(0), Decimal(0), Decimal(0),
                                          [("limit", base.copy(), o, "as the base"), ("over", s, o2, value)]))
    return found, unusable, run


def _with(base: Scenario, put: Callable[[Scenario, Decimal], None], x: Decimal) -> Scenario:
    s = base.copy()
    put(s, x)
    return s


# --- writing the corpus ---


def _patch(base: Any, new: Any) -> Any:
    """The RFC 7396 merge patch that turns ``base`` into ``new`` (lists whole; None where deleted)."""
    if not isinstance(base, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for k in new:
        if k not in base:
            out[k] = new[k]
        elif base[k] != new[k]:
            out[k] = _patch(base[k], new[k])
    for k in base:
        if k not in new:
            out[k] = None
    return out


def case_document(b: Boundary, side: str, s: Scenario, outcome: dict[str, Any], value: Decimal | str) -> dict[str, Any]:
    if b.step:
        what = {"inside": "one step inside the last value that passes", "limit": "the last value that passes",
                "over": "one step over: refused"}[side]
        desc = f"{b.gate}: {b.knob_name} = {_s(value) if isinstance(value, Decimal) else value} ({what}; step {_s(b.step)}), {s.name}"
    else:
        desc = f"{b.gate}: {b.knob_name} {value} ({'passes' if side == 'limit' else 'refused'}), {s.name}"
    doc: dict[str, Any] = {
        "description": desc,
        "source": {"generator": "ep4 cases boundary", "gate": b.gate, "knob": b.knob, "side": side, "scenario": s.name,
                   "value": _s(value) if isinstance(value, Decimal) else value},
        "decision": {"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": s.action},
    }
    patch = _patch(BASE_CONTEXT, s.context)
    if patch:
        doc["context_patch"] = patch
    if s.state:
        doc["state"] = s.state
    if s.constraints_override:
        doc["constraints_override"] = s.constraints_override
    doc["expect"] = outcome
    return doc


def dump_case(doc: dict[str, Any]) -> str:
    """A case as JSON text a person can read: indented, with each state record on one line."""
    recent = (doc.get("state") or {}).get("recent")
    if not recent:
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    marker = "\u0000recent\u0000"
    shallow = {**doc, "state": {**doc["state"], "recent": marker}}
    text = json.dumps(shallow, indent=1, ensure_ascii=False)
    rows = ",\n".join("   " + json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) for r in recent)
    return text.replace(json.dumps(marker), "[\n" + rows + "\n  ]") + "\n"


def write_corpus(out: Path, boundaries: list[Boundary], *, pin_bundle: Path | None = None) -> dict[str, int]:
    """Write DIR/_base/context.json and one file per case (DIR/GATE/SCENARIO--KNOB--SIDE.json);
    identical inputs are written once. Returns {gate: cases written}."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "_base").mkdir(exist_ok=True)
    (out / "_base" / "context.json").write_text(json.dumps(BASE_CONTEXT, indent=1) + "\n", encoding="utf-8")
    seen: set[str] = set()
    written: set[Path] = set()
    per_gate: dict[str, int] = {}
    for b in boundaries:
        for side, s, outcome, value in b.cases:
            doc = case_document(b, side, s, outcome, value)
            key = json.dumps([doc["decision"], doc.get("context_patch"), doc.get("state"), doc.get("constraints_override")], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            if not b.step:  # a categorical probe: the alternative value names the case
                tail = "" if side == "limit" else "-" + re.sub(r"[^A-Za-z0-9]+", "-", str(value)).strip("-").lower()
            else:
                tail = "-dn" if b.over < b.limit else ""
            name = f"{s.name.replace('/', '--')}--{b.knob}{tail}--{side}"
            path = out / b.gate / f"{name}.json"
            n = 2
            while path in written:  # never overwrite a case of this run
                path, n = out / b.gate / f"{name}-{n}.json", n + 1
            written.add(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if pin_bundle is not None:  # the case runs only against this bundle (`ep4 certify` of another skips it)
                doc = {"description": doc["description"], "bundle": os.path.relpath(pin_bundle, path.parent),
                       **{k: v for k, v in doc.items() if k != "description"}}
            path.write_text(dump_case(doc), encoding="utf-8")
            per_gate[b.gate] = per_gate.get(b.gate, 0) + 1
    return per_gate


def enforced_gates(bundle: Any) -> list[str]:
    ids = []
    for g in list(bundle.risk_gates) + list(bundle.constraint_checks):
        if getattr(g, "enforcement", "enforce") == "enforce":
            ids.append(g.id)
    return ids


def cmd_cases_boundary(args: argparse.Namespace) -> int:
    from .inputs import load_config_bundle, load_constraints

    bundle = load_config_bundle(args.bundle)
    constraints = load_constraints(args.constraints, args.leverage_brackets)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(p for p in out.rglob("*.json") if "_base" not in p.parts) and not args.replace:
        raise InputError(f"--out {out} already holds cases; pass --replace to regenerate it (its case files are deleted first)")
    if args.replace and out.is_dir():
        for p in sorted(out.rglob("*.json")):
            p.unlink()
    boundaries, unusable, run = generate_boundaries(bundle, constraints, evaluator=args.evaluator)
    if args.gate:
        unknown = sorted(set(args.gate) - set(enforced_gates(bundle)))
        if unknown:
            raise InputError(f"--gate {', '.join(unknown)}: not an enforced gate or check of {bundle.name}")
        boundaries = [b for b in boundaries if b.gate in args.gate]
    pin = Path(args.bundle).resolve() if args.pin_bundle and args.bundle else None
    if args.pin_bundle and pin is None:
        raise InputError("--pin-bundle needs the BUNDLE path (the embedded default is what unpinned cases run against)")
    per_gate = write_corpus(out, boundaries, pin_bundle=pin)
    total = sum(per_gate.values())
    print(f"ep4 cases boundary {args.bundle or 'binance-perp-default (embedded)'}: {bundle.name} {bundle.version}")
    print(f"{total} cases written to {out} ({len(boundaries)} boundaries, {run.runs} evaluations)")
    missing = []
    for gid in [g for g in enforced_gates(bundle) if not args.gate or g in args.gate]:
        bs = [b for b in boundaries if b.gate == gid]
        if not bs:
            missing.append(gid)
            continue
        knobs_seen = sorted({b.knob_name for b in bs})
        limits = sorted({f"{_s(b.limit)}|{_s(b.over)}" for b in bs if b.step})[:3]
        print(f"  {gid}: {per_gate.get(gid, 0)} cases; {len(bs)} boundaries along {', '.join(knobs_seen)}"
              + (f" (e.g. passes at {limits[0].split('|')[0]}, refused at {limits[0].split('|')[1]})" if limits else ""))
    for u in unusable:
        print(f"  note: {u}")
    if missing:
        print(f"not reached by any knob ({len(missing)}): {', '.join(missing)}. A gate disabled by a param, or one reading an "
              "input no knob moves, needs hand-written cases (docs/certification.md)")
    print(f"next: ep4 certify {args.bundle or 'BUNDLE'} --cases {out}")
    return 0


def add_parser(cases_sub: Any, add_evaluator: Callable[[argparse.ArgumentParser], None]) -> None:
    q = cases_sub.add_parser("boundary", help="cases at every limit of a bundle: the last value that passes, one step inside, one step over")
    q.add_argument("bundle", metavar="BUNDLE", nargs="?", help="the bundle (default: the embedded binance-perp-default)")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--replace", action="store_true", help="delete the case files already in DIR first")
    q.add_argument("--gate", action="append", metavar="ID", help="write only the cases of this gate or check (repeatable)")
    q.add_argument("--pin-bundle", action="store_true", help="pin every case to BUNDLE (\"bundle\": its path): certifying another bundle skips them")
    q.add_argument("--constraints", metavar="EXCHANGE_INFO", help="exchangeInfo JSON (default: the shipped sample)")
    q.add_argument("--leverage-brackets", metavar="FILE")
    add_evaluator(q)
    q.set_defaults(func=cmd_cases_boundary)

