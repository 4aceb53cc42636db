"""Spec §4 Rule 1 — Authorization Gate (absolute), and reading the input as a decision at all."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .models import AUTHORIZED_ACTION
from .memo import frozen_builder
from .numbers import TEXT_NUMBERS_DECODER as _TEXT_NUMBERS
from .numbers import DecimalParseError, bytes_text, canonical_json, duplicate_keys, loads, parse_decimal, printable_text, repeats_seen

__all__ = ["HOST_VALUE_REFUSED", "RawDecision", "authorization_gate", "host_text", "read_decision"]

# The text a host's decision object becomes when it is not exact JSON data: no JSON text starts so, so
# it is read as INPUT_NOT_JSON, with what follows this prefix as the message (the same when replayed)
HOST_VALUE_REFUSED = "ep4: not exact JSON data: "
MAX_HOST_DEPTH = 256  # a decision is two objects deep; a host's object nested deeper is refused, not walked


def host_text(raw: Any) -> str:
    """The text a host's decision object (a dict, or anything that is not text) is evaluated as and
    recorded as: its canonical JSON (decimals as strings), so ``evaluate(obj)``, ``Executor.execute(obj)``
    and ``ep4 replay`` read the same thing. An object holding something that is not exact JSON data (a
    binary float, a date, bytes, a key that is not text, NaN, a number out of range, a lone surrogate,
    a value that contains itself, nesting deeper than MAX_HOST_DEPTH) becomes ``HOST_VALUE_REFUSED``
    and what it is and where: REJECTED INPUT_NOT_JSON, never an exception (spec §4 Rule 2; ep4 never
    writes a quantity through a float)."""
    problem = _host_problem(raw)
    return HOST_VALUE_REFUSED + problem if problem is not None else canonical_json(raw)


def _host_problem(value: Any) -> str | None:
    """What in ``value`` is not exact JSON data, and its path; None when all of it is."""
    stack: list[tuple[Any, str, int, frozenset[int]]] = [(value, "", 0, frozenset())]
    while stack:
        node, path, depth, above = stack.pop()
        where = f" at {path}" if path else ""
        kind = type(node)
        if node is None or kind is bool:
            continue
        if isinstance(node, str):
            if printable_text(node) != node:
                return f"text holding a lone surrogate{where}"
            continue
        if kind is float:
            return f"a binary float {node!r}{where}: floats are not exact; pass a decimal string or a Decimal"
        if isinstance(node, int):
            if node.bit_length() > 14_000:  # more than ~4,200 digits: cannot even be written out
                return f"an integer of {node.bit_length()} bits{where}: out of range"
            continue
        if isinstance(node, Decimal):
            try:
                parse_decimal(node)
            except DecimalParseError as exc:
                return f"{exc}{where}"
            continue
        if isinstance(node, (dict, list, tuple)):
            if id(node) in above:
                return f"a value that contains itself{where}"
            if depth >= MAX_HOST_DEPTH:
                return f"nesting deeper than {MAX_HOST_DEPTH}{where}"
            inner = above | {id(node)}
            if isinstance(node, dict):
                for key, item in node.items():
                    if not isinstance(key, str):
                        return f"a key that is not text ({type(key).__name__}){where}"
                    if printable_text(key) != key:
                        return f"a key holding a lone surrogate{where}"
                    stack.append((item, f"{path}.{key}" if path else key, depth + 1, inner))
            else:
                for i, item in enumerate(node):
                    stack.append((item, f"{path}[{i}]", depth + 1, inner))
            continue
        return f"a {kind.__name__}{where}: not JSON data"
    return None


@dataclass(frozen=True)
class RawDecision:
    """The input as far as it could be read. ``problem`` is a REJECTED reason code, or None;
    ``unauthorized`` is Rule 1's NOOP reason code for an object that authorizes nothing (``detail``
    says why), None when it is exactly one AUTHORIZED_ACTION."""

    data: Any
    decision_id: str | None
    action_id: str | None
    problem: str | None = None
    detail: str = ""
    unauthorized: str | None = None


_raw_decision = frozen_builder(RawDecision)


def _accepted(data: Any, decision_id: str | None, action_id: str | None) -> RawDecision:
    """``RawDecision(data, decision_id, action_id)``, built as a decision that is read without a
    problem is on every evaluation (engine.memo.frozen_builder)."""
    return _raw_decision(data, decision_id, action_id, None, "", None)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_decision(raw: str | bytes | dict[str, Any] | RawDecision) -> RawDecision:
    """Parse the decision text exactly (decimals kept) and read its ids, never raising.

    Spec §4 Rule 1 comes first: whatever else is wrong with an object that does not hold exactly one
    ``decision_code`` equal to AUTHORIZED_ACTION (a repeated key elsewhere, a number ep4 cannot hold
    exactly), it authorizes nothing and is a NOOP; only an authorized decision is refused for it."""
    if isinstance(raw, RawDecision):  # already read (the shell read the ids first)
        return raw
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if isinstance(raw, bytes):  # the text the executor evaluates and records too (engine.executor.decision_text)
        raw = bytes_text(raw)
    elif not isinstance(raw, str):  # a host's object: read as the text it is recorded as
        raw = host_text(raw)
    if isinstance(raw, str) and raw.startswith(HOST_VALUE_REFUSED):
        return RawDecision(raw, None, None, "INPUT_NOT_JSON", raw[len("ep4: "):])
    repeats_before = repeats_seen()
    try:
        data = loads(raw)
    except (ValueError, DecimalParseError, RecursionError) as exc:
        text = printable_text(raw)
        ids: tuple[str | None, str | None] = (None, None)
        if isinstance(exc, DecimalParseError):  # valid JSON holding a number out of ep4's range
            unauthorized, ids = _unauthorized_text(raw, text)
            if unauthorized is not None:
                return unauthorized
            # an authorized decision refused for it names the ids it holds (ARCHITECTURE: "with whatever
            # ids could be read")
        return RawDecision(text, *ids, "INPUT_NOT_JSON", f"not valid JSON: {exc}")
    if type(data) is dict and repeats_seen() == repeats_before and data.get("decision_code") == AUTHORIZED_ACTION:
        # the common case, as the general reading below decides it: an object without a repeated key
        # (a DuplicateKeys would not be a plain dict either) holding one decision_code, AUTHORIZED_ACTION
        action = data.get("action")
        decision_id, action_id = data.get("decision_id"), action.get("action_id") if isinstance(action, dict) else None
        return _raw_decision(data, decision_id if isinstance(decision_id, str) and decision_id else None,
                             action_id if isinstance(action_id, str) and action_id else None, None, "", None)
    if not isinstance(data, dict):
        return RawDecision(data, None, None, "INPUT_NOT_OBJECT", f"expected a JSON object, got {type(data).__name__}")
    # only a parse that met a repeated key needs the walk
    repeated = duplicate_keys(data) if repeats_seen() != repeats_before else []
    ids = _ids(data)
    unauthorized = _rule1(data, ids, repeated)
    if unauthorized is not None:
        return unauthorized
    if repeated:
        keys = ", ".join(repeated)
        return RawDecision(data, *ids, "DUPLICATE_KEY", f"a key appears more than once, so the decision is ambiguous: {keys}")
    return _accepted(data, *ids)


def _ids(data: dict[str, Any]) -> tuple[str | None, str | None]:
    action = data.get("action")
    return _str_or_none(data.get("decision_id")), _str_or_none(action.get("action_id")) if isinstance(action, dict) else None


def _rule1(data: Any, ids: tuple[str | None, str | None], repeated: list[str], shown: Any = None) -> RawDecision | None:
    """Rule 1's NOOP for an object that does not authorize exactly one action, else None. ``shown``:
    what the result records as the decision (default: ``data``)."""
    shown = data if shown is None else shown
    if "decision_code" in repeated:
        # two decision_codes are not one unambiguous authorization, whatever either says
        return RawDecision(shown, *ids, unauthorized="DECISION_CODE_DUPLICATED",
                           detail="decision_code appears more than once: not an unambiguous authorization")
    if "decision_code" not in data:
        return RawDecision(shown, *ids, unauthorized="DECISION_CODE_MISSING", detail="no decision_code: nothing authorizes an action")
    if data.get("decision_code") != AUTHORIZED_ACTION:
        code = data.get("decision_code")
        return RawDecision(shown, *ids, unauthorized="NOT_AUTHORIZED", detail=f"decision_code {code!r} is not AUTHORIZED_ACTION")
    return None


def _unauthorized_text(raw: str, text: str) -> tuple[RawDecision | None, tuple[str | None, str | None]]:
    """Rule 1 on JSON that ep4 cannot read exactly (a number out of range): read again with every
    number kept as its text, which holds any JSON number; an object that authorizes nothing is the
    NOOP it would be with readable numbers (the text is what it records), anything else None; and
    the ids the object holds (text ids: a number id is none)."""
    repeats_before = repeats_seen()
    try:
        data = _TEXT_NUMBERS.decode(raw)
    except (ValueError, RecursionError):
        return None, (None, None)
    if not isinstance(data, dict):
        return None, (None, None)
    repeated = duplicate_keys(data) if repeats_seen() != repeats_before else []
    # a number read as its text is no id (an id is a JSON string: engine.numbers.NumberText marks the others)
    ids = tuple(i if type(i) is str else None for i in _ids(data))
    # a number's text (digits, sign, point, exponent; NaN, Infinity) is never the text AUTHORIZED_ACTION
    return _rule1(data, ids, repeated, shown=text), ids  # type: ignore[arg-type]


def authorization_gate(decision: RawDecision) -> bool:
    """Rule 1: only exactly one ``decision_code``, equal to ``AUTHORIZED_ACTION``, goes on; checked
    before the action is read. A missing or repeated decision_code authorizes nothing (NOOP)."""
    return decision.problem is None and decision.unauthorized is None
