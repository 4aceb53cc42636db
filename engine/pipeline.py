"""The pure core: spec §4 Rules 1-4 as one function of (decision, context, config, state).

No I/O, no clock, no randomness (spec §8.1): the only time is ``context.timestamp`` and every
identifier derives from the inputs, so identical inputs give byte-identical results.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from .activation import build_activation
from .authorization_gate import RawDecision, authorization_gate, read_decision
from .bundle import Bundle
from .cel import EVALUATORS, exact_arithmetic
from .constraint_alignment import constraint_alignment
from .constraints import ConstraintsSnapshot
from .intent import Intent, IntentError, resolve_intent
from .models import (
    ExecutionContext,
    ExecutionRecord,
    ExecutionResult,
    GateOutcome,
    AdjustPositionAction,
    CancelOrdersAction,
    ClosePositionAction,
    NoopAction,
    PolicyDecision,
    StateView,
)
from .errors import MODES
from .memo import KeptById, Sliding, frozen_builder, memo, memo_of
from .numbers import canonical_json, json_piece
from .order import OrderRequest, build_request
from .risk_gates import risk_gates
from .schema_validation import SchemaFailure, schema_validation

__all__ = ["Config", "Evaluation", "evaluate", "execution_record", "result_json"]



@dataclass(frozen=True)
class Config:
    """Spec §2.1 ExecutionConfig: risk ceilings + execution mode (the bundle) + constraints snapshot.

    ``evaluator`` picks how gates run: ``compiled`` (default) or cel-python's ``interpreter``, the
    reference; both give byte-identical results."""

    bundle: Bundle
    constraints: ConstraintsSnapshot
    mode: str = "dry-run"
    constraints_digest: str = field(default="")
    evaluator: str = "compiled"
    # live modes: the bundle's certificate, named in every result next to the bundle digest
    # (("certificate", digest)) or (("uncertified", why)) under --allow-uncertified (issue 9)
    certificate: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown execution mode {self.mode!r} (one of {', '.join(MODES)})")
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"unknown evaluator {self.evaluator!r} (one of {', '.join(EVALUATORS)})")
        if not self.constraints_digest:
            object.__setattr__(self, "constraints_digest", self.constraints.digest)


@dataclass(frozen=True)
class Evaluation:
    """Outcome of Rules 1-4. ``result`` is final, or None when ``request`` awaits Rule 5."""

    result: ExecutionResult | None
    decision: PolicyDecision | None
    intent: Intent | None
    request: OrderRequest | None
    header: dict[str, Any]  # fields every result of this evaluation carries
    gate_trace: tuple[GateOutcome, ...] = ()
    input_digest: str = ""


_evaluation = frozen_builder(Evaluation)  # Evaluation(*values), every field given: the evaluation's hot path


def _digests(raw: RawDecision, context: ExecutionContext, state: StateView, config: Config) -> tuple[str, str]:
    """``input_digest``: sha256 of the canonical JSON of {context, decision, state}; the context's
    (immutable) and an unchanged state's canonical text are computed once and spliced in, which is
    byte for byte what canonical_json of the whole payload gives (sorted keys, no spaces)."""
    decision = raw.data if not isinstance(raw.data, str) else {"unparsed_text": raw.data}
    # the hash of '{"context":<its text>,"decision":' is the same for every decision on this context:
    # hashed once, and each decision continues a copy of it (the same bytes, so the same digest)
    h = memo(context, "digest_prefix", lambda: hashlib.sha256(
        ('{"context":' + context_json(context) + ',"decision":').encode("utf-8"))).copy()
    h.update((canonical_json(decision) + ',"state":').encode("utf-8"))
    # the state's text, closed, as bytes once per (immutable) view: a ledger's 220 records are 44 KB,
    # hashed as they are rather than copied into one text with the decision's first
    h.update(memo(state, "json_closed", lambda: (_state_json(state) + "}").encode("utf-8")))
    input_digest = "sha256:" + h.hexdigest()
    seed = "\n".join([input_digest, config.bundle.digest, config.constraints_digest, config.mode])
    return input_digest, "ep4-" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def _context_json(context: ExecutionContext) -> str:
    return canonical_json(context.model_dump(mode="json"))


def context_json(context: ExecutionContext) -> str:
    """``canonical_json`` of the context's JSON dump, once per (immutable) context: the input digest
    and the audit record both hold it."""
    return memo(context, "json", lambda: _context_json(context))


def _record_json(record: ExecutionRecord) -> str:
    return canonical_json(record.model_dump(mode="json"))


def records_json(records: Sequence[ExecutionRecord]) -> str:
    """``canonical_json`` of the records' dumped list, from each (immutable) record's canonical text,
    computed once and kept with the record (engine.memo). A state view repeats the records of the one
    before, so the list of texts continues the previous call's (engine.memo.Sliding): only records
    not in it are looked up. The input digest's state and the audit record's ``recent_digest`` are
    both built on it."""
    return "[" + ",".join(_RECORD_TEXTS.values(records)) + "]"


_RECORD_TEXTS = Sliding(lambda record: memo_of(record, "json", _record_json))


def recent_json(state: StateView) -> str:
    """:func:`records_json` of ``state.recent``, once per (immutable) state view: the input digest and
    the audit record's ``recent_digest`` both need it."""
    return memo(state, "recent_json", lambda: records_json(state.recent))


# StateView's fields in sorted order, as _state_json writes them (checked against the model below)
_STATE_FIELDS = ("executed", "last_execution_ms", "last_failed_safe_ms", "recent", "trading_state")
_STATE_FIELDS_KNOWN = tuple(sorted(StateView.model_fields)) == _STATE_FIELDS


def _state_json(state: StateView) -> str:
    """``canonical_json(state.model_dump(mode="json"))``, byte for byte: the keys in sorted order, each
    value as its JSON dump gives it (pairs as lists, integers, a string), the records from
    :func:`recent_json` (tests/test_performance.py compares both on odd states)."""
    if type(state) is not StateView or not _STATE_FIELDS_KNOWN:  # pragma: no cover - a changed model
        return canonical_json(state.model_dump(mode="json"))
    return "".join((
        '{"executed":', canonical_json([list(pair) for pair in state.executed]),
        ',"last_execution_ms":', json_piece(state.last_execution_ms),
        ',"last_failed_safe_ms":', json_piece(state.last_failed_safe_ms),
        ',"recent":', recent_json(state),
        ',"trading_state":', json_piece(state.trading_state), "}",
    ))


def _plain_result_model() -> bool:
    """ExecutionResult has no post-init, no root, and no field with an alias, a validation alias or a
    default factory: model_construct then only fills the fields in order, which the builders below do."""
    return not ExecutionResult.__pydantic_post_init__ and not ExecutionResult.__pydantic_root_model__ and all(
        f.alias is None and f.validation_alias is None and f.default_factory is None for f in ExecutionResult.model_fields.values())


def _result_builder() -> Any:
    """``ExecutionResult.model_construct(**values)`` for ep4's own, already typed values, without
    pydantic's per-field walk (aliases, validation aliases, default factories): the result model
    has none of them, which is checked here once, so the instance is the same (its ``__dict__`` in
    field order with the defaults filled in, its fields set, no extra, no private).
    tests/test_performance.py compares both on every kind of result."""
    fields = ExecutionResult.model_fields
    if not _plain_result_model():  # pragma: no cover - a model change that needs pydantic's own walk
        return ExecutionResult.model_construct
    # the fields in model order, the defaults filled in, a required field marked: a copy updated with
    # the values keeps that order (an update does not move a key that is already there)
    missing = object()
    template = {n: missing if f.is_required() else f.default for n, f in fields.items()}
    required = frozenset(n for n, f in fields.items() if f.is_required())
    count, new, setattr_ = len(template), object.__new__, object.__setattr__

    def build(**values: Any) -> ExecutionResult:
        d = template.copy()
        d.update(values)
        if len(d) != count or not values.keys() >= required:  # an unknown or a missing field: pydantic's walk
            return ExecutionResult.model_construct(**values)
        m = new(ExecutionResult)
        setattr_(m, "__dict__", d)
        setattr_(m, "__pydantic_fields_set__", set(values))
        setattr_(m, "__pydantic_extra__", None)
        setattr_(m, "__pydantic_private__", None)
        return m

    return build


construct_result = _result_builder()

# the fields every result of an evaluation carries, as evaluate's header holds them (in its order)
_HEADER_KEYS = ("trace_id", "decision_id", "action_id", "timestamp", "mode", "bundle", "constraints_digest", "input_digest")


def _final_builder() -> Any:
    """``build(header, result, code, rule, message, trace, extra)``: what ``construct_result`` gives for
    evaluate's ``header`` (its eight keys, always), these five fields and ``extra``, without the
    keyword packing and the per-call check of the required fields, which the header and the five
    always hold (checked here once); None from ``build`` when ``extra`` names a field the result does
    not have (then construct_result decides). tests/test_performance.py compares every corpus result
    with ``ExecutionResult.model_construct`` of its fields."""
    fields = ExecutionResult.model_fields
    given = frozenset(_HEADER_KEYS) | {"result", "reason_code", "rule", "message", "gate_trace"}
    if not _plain_result_model() or not given <= fields.keys() or not all(n in given for n, f in fields.items() if f.is_required()):
        return None  # pragma: no cover - a model change: construct_result's way
    template = {n: None if f.is_required() else f.default for n, f in fields.items()}  # the required: all given
    count, base, new, setattr_ = len(template), set(given), object.__new__, object.__setattr__

    def build(header: dict[str, Any], result: str, code: str, rule: int | None, message: str,
              trace: tuple[GateOutcome, ...], extra: dict[str, Any]) -> ExecutionResult | None:
        d = template.copy()
        d.update(header)
        d["result"], d["reason_code"], d["rule"], d["message"], d["gate_trace"] = result, code, rule, message, trace
        fields_set = base.copy()
        if extra:
            d.update(extra)
            fields_set.update(extra)
        if len(d) != count:  # a name that is not a field
            return None
        m = new(ExecutionResult)
        setattr_(m, "__dict__", d)
        setattr_(m, "__pydantic_fields_set__", fields_set)
        setattr_(m, "__pydantic_extra__", None)
        setattr_(m, "__pydantic_private__", None)
        return m

    return build


_final = _final_builder()


def _done(
    header: dict[str, Any], result: str, code: str, rule: int | None, message: str, *, decision: PolicyDecision | None = None,
    intent: Intent | None = None, trace: tuple[GateOutcome, ...] = (), request: OrderRequest | None = None,
    **extra: Any,
) -> Evaluation:
    """A final evaluation: its result from the evaluation's ``header`` and these fields. Every value
    here is ep4's own, already typed (the header, the trace's outcome models, the order's text
    fields): built without re-validation, as the model's fields in its order."""
    res = _final(header, result, code, rule, message, trace, extra) if _final is not None else None
    if res is None:
        res = construct_result(result=result, reason_code=code, rule=rule, message=message, gate_trace=trace, **header, **extra)
    return _evaluation(res, decision, intent, request, header, trace, header["input_digest"])


def evaluate(
    raw_decision: str | bytes | dict[str, Any] | RawDecision,
    context: ExecutionContext,
    config: Config,
    state: StateView = StateView(),
) -> Evaluation:
    """Spec §4 Rules 1-4 (and §6.2 duplicate detection). Never raises on bad decision input.
    ``raw_decision`` may be the :class:`RawDecision` the caller already read (the executor reads the
    ids for its state view first)."""
    raw = read_decision(raw_decision)
    input_digest, trace_id = _digests(raw, context, state, config)
    header: dict[str, Any] = {  # _HEADER_KEYS, always all of them
        "trace_id": trace_id,
        "decision_id": raw.decision_id,
        "action_id": raw.action_id,
        "timestamp": context.timestamp,
        "mode": config.mode,
        "bundle": {**config.bundle.describe(), **dict(config.certificate)} if config.certificate else config.bundle.describe(),
        "constraints_digest": config.constraints_digest,
        "input_digest": input_digest,
    }

    if raw.problem is not None:
        return _done(header, "REJECTED", raw.problem, 2, raw.detail)

    # Rule 1 — before anything about the action is looked at.
    if not authorization_gate(raw):
        return _done(header, "NOOP", raw.unauthorized or "NOT_AUTHORIZED", 1, f"{raw.detail}; nothing done")

    # Rule 2
    checked = schema_validation(raw.data, context)
    if isinstance(checked, SchemaFailure):
        return _done(header, "REJECTED", checked.reason_code, 2, checked.message, errors=checked.errors)
    decision = checked
    action = decision.action

    # §6.2 duplicate execution: a decision seen before is never executed again (§6.3).
    if (decision.decision_id, action.action_id) in set(state.executed):
        return _done(header, "NOOP", "DUPLICATE_EXECUTION", None, "this (decision_id, action_id) was already processed; nothing done", decision=decision)

    if isinstance(action, NoopAction):
        return _done(header, "SUCCESS", "ACTION_NOOP", None, "ACTION_NOOP: nothing to do", decision=decision)

    # The operator's kill switch (engine-level: no bundle can remove it). Cancels only remove risk.
    if state.trading_state != "ACTIVE" and not isinstance(action, CancelOrdersAction):
        reduces = isinstance(action, ClosePositionAction) or (isinstance(action, AdjustPositionAction) and action.delta_quantity < 0)
        if state.trading_state == "HALTED":
            return _done(header, "FAILED_SAFE", "TRADING_HALTED", 3, "trading is HALTED by the operator (ep4 halt): only cancels go through", decision=decision)
        if not reduces:
            return _done(
                header, "FAILED_SAFE", "TRADING_REDUCE_ONLY", 3,
                "trading is REDUCING by the operator (ep4 reduce-only): only cancels, closes and decreases go through",
                decision=decision,
            )

    # §6.2 ambiguous state: a context older than the history it is judged against (a clock that went
    # backwards, a stale snapshot) would skip the temporal gates; it is refused instead.
    newest, failed_ms = state.last_execution_ms, state.last_failed_safe_ms
    if newest is None or failed_ms is not None and failed_ms > newest:
        newest = failed_ms
    if newest is not None and newest > context.timestamp:
        return _done(
            header, "FAILED_SAFE", "CLOCK_BEHIND_STATE", 3,
            f"context.timestamp {context.timestamp} is {newest - context.timestamp} ms older than the newest recorded "
            "call or failure: the temporal gates cannot be judged; send a fresh context", decision=decision,
        )

    # Rules 3-4 in one exact decimal context (spec §4 Rule 4: nothing rounded): the intent's arithmetic
    # and every gate run in it, entered once rather than by each of them
    with exact_arithmetic():
        # Rule 3 (position resolution first: an ambiguous state is never guessed, §6.2)
        try:
            intent = resolve_intent(action, context, exact_entered=True)
        except IntentError as exc:
            return _done(header, "FAILED_SAFE", exc.reason_code, 3, exc.message, decision=decision)

        bundle = config.bundle
        symbol_constraints = config.constraints.symbols.get(intent.symbol) if intent.symbol else None
        activation = build_activation(
            action=action, intent=intent, context=context, bundle=bundle, state=state, constraints=symbol_constraints,
            roots=bundle.roots, reads=bundle.reads,
        )
        # Rules 3 and 4's gates first run as one chain of fast paths (engine.gate_chain), which stops
        # where each rule's own chain would: at the first gate that does not pass on its fast path
        rules, risk = bundle.rules_chain, bundle.risk_gates
        passed = rules(activation, 0) if config.evaluator == "compiled" and (
            symbol_constraints is not None or intent.symbol is None) else None
        if passed == len(rules.passed):  # every gate of both rules passed: the trace both give then
            trace = rules.passed
        else:  # rule by rule, each rule's loop deciding from the first gate that did not pass
            known3 = None if passed is None else min(passed, len(risk))
            trace3, failure = risk_gates(risk, activation, config.evaluator, bundle.risk_chain, exact_entered=True, known=known3)
            if failure is not None:
                return _done(header, "FAILED_SAFE", failure.reason_code, 3, failure.message, decision=decision, intent=intent, trace=trace3)

            # Rule 4
            if intent.symbol is not None and symbol_constraints is None:
                return _done(
                    header, "FAILED_SAFE", "SYMBOL_NOT_IN_CONSTRAINTS", 4,
                    f"the constraints snapshot has no {intent.symbol}; alignment cannot be checked",
                    decision=decision, intent=intent, trace=trace3,
                )
            known4 = None if passed is None or passed < len(risk) else passed - len(risk)
            trace4, failure = constraint_alignment(
                bundle.constraint_checks, activation, config.evaluator, bundle.constraint_chain, exact_entered=True, known=known4)
            trace = trace3 + trace4
            if failure is not None:
                return _done(header, "FAILED_SAFE", failure.reason_code, 4, failure.message, decision=decision, intent=intent, trace=trace)
        if intent.kind == "CANCEL" and intent.symbol is None:
            # Binance cancels open orders per symbol (DELETE /fapi/v1/allOpenOrders needs `symbol`): across
            # all symbols would be one call per symbol, and Rule 5 allows exactly one. The default bundle's
            # exchange.cancel-scope gate says so first; this holds for a bundle without it.
            return _done(
                header, "FAILED_SAFE", "CANCEL_ACROSS_SYMBOLS_NOT_ONE_CALL", 4,
                "a cancel across all symbols needs one exchange call per symbol and Rule 5 allows exactly one: nothing was cancelled",
                decision=decision, intent=intent, trace=trace,
            )

    request = build_request(
        intent,
        decision_id=decision.decision_id,
        action_id=action.action_id,
        timestamp=context.timestamp,
        recv_window_ms=bundle.exchange_client.recvWindowMs,
        hedge_mode=context.account.position_mode == "HEDGE",
    )
    if config.mode == "dry-run":
        return _done(
            header, "NOOP", "DRY_RUN", 5, "dry-run: Rules 1-4 passed; this order was not sent",
            decision=decision, intent=intent, trace=trace, order=request.as_dict(), request=request,
        )
    return _evaluation(None, decision, intent, request, header, trace, input_digest)


def execution_record(ev: Evaluation, result: ExecutionResult, *, attempted: bool) -> ExecutionRecord | None:
    """What the ledger keeps of an outcome; None for inputs that never became a valid decision."""
    if ev.decision is None or result.reason_code == "DUPLICATE_EXECUTION":
        return None
    action = ev.decision.action
    return ExecutionRecord(
        decision_id=ev.decision.decision_id,
        action_id=action.action_id,
        action_type=action.type,
        symbol=getattr(action, "symbol", None),
        result=result.result,
        reason_code=result.reason_code,
        timestamp=result.timestamp or 0,
        attempted=attempted,
        opens=bool(ev.intent and ev.intent.increases_exposure),
    )


def result_json(result: ExecutionResult) -> str:
    """The result as one line of JSON, byte-identical for identical inputs: compact, fields in model
    order, UTF-8 kept (pydantic's serializer; tests/test_cases.py checks it is byte for byte what
    json.dumps of model_dump(mode="json") gives, at a quarter of the cost).

    A gate trace entry is an immutable object, mostly the gate's own (``Gate.passed``), so its text
    is serialised once and kept with it; the rest of the result is serialised with an empty trace,
    whose ``"gate_trace":[]`` is then filled in. That text is the trace's key: the fields before it
    are strings (ids, message, digests), integers and the bundle's name map, where a quote is always
    escaped, so the text cannot occur there; the first occurrence is taken, ahead of the order and
    the exchange's reply, which follow it (tests/test_performance.py puts the text in all of them)."""
    trace = result.gate_trace
    if not trace or type(result) is not ExecutionResult:
        return result.model_dump_json()
    values = result.__dict__
    if not values.keys() >= _RESULT_FIELD_SET:  # a result made without every field: pydantic's own way
        return result.model_dump_json()
    empty = object.__new__(ExecutionResult)
    kept = dict(values)  # a key that is not a field (engine.memo's) is not serialised
    kept["gate_trace"] = ()
    object.__setattr__(empty, "__dict__", kept)
    object.__setattr__(empty, "__pydantic_fields_set__", result.__pydantic_fields_set__)
    object.__setattr__(empty, "__pydantic_extra__", None)
    object.__setattr__(empty, "__pydantic_private__", None)
    entries = ",".join(_OUTCOME_TEXTS.values(trace))
    return empty.model_dump_json().replace('"gate_trace":[]', '"gate_trace":[' + entries + "]", 1)


_RESULT_FIELD_SET = frozenset(ExecutionResult.model_fields)


# a trace entry as the result's serializer writes it (SerializeAsAny: by the entry's own type); an
# entry with an error is new per evaluation and not kept
_OUTCOME_TEXTS = KeptById(lambda outcome: outcome.model_dump_json(), keep=lambda outcome: outcome.error is None)
