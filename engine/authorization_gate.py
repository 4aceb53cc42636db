"""Spec §4 Rule 1 — Authorization Gate (absolute), and reading the input as a decision at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import AUTHORIZED_ACTION
from .memo import frozen_builder
from .numbers import TEXT_NUMBERS_DECODER as _TEXT_NUMBERS
from .numbers import DecimalParseError, duplicate_keys, loads, printable_text, repeats_seen

__all__ = ["RawDecision", "authorization_gate", "read_decision"]


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
    repeats_before = repeats_seen()
    if isinstance(raw, (str, bytes)):
        try:
            data = loads(raw)
        except (ValueError, DecimalParseError, RecursionError) as exc:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else printable_text(raw)
            if isinstance(exc, DecimalParseError):  # valid JSON holding a number out of ep4's range
                unauthorized = _unauthorized_text(raw, text)
                if unauthorized is not None:
                    return unauthorized
            return RawDecision(text, None, None, "INPUT_NOT_JSON", f"not valid JSON: {exc}")
    else:
        data = raw
    if not isinstance(data, dict):
        return RawDecision(data, None, None, "INPUT_NOT_OBJECT", f"expected a JSON object, got {type(data).__name__}")
    # a host's dict cannot repeat a key; parsed text only needs the walk if the parser met one
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


def _unauthorized_text(raw: str | bytes, text: str) -> RawDecision | None:
    """Rule 1 on JSON that ep4 cannot read exactly (a number out of range): read again with every
    number kept as its text, which holds any JSON number; an object that authorizes nothing is the
    NOOP it would be with readable numbers (the text is what it records), anything else None."""
    repeats_before = repeats_seen()
    try:
        data = _TEXT_NUMBERS.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    repeated = duplicate_keys(data) if repeats_seen() != repeats_before else []
    # a number's text (digits, sign, point, exponent; NaN, Infinity) is never the text AUTHORIZED_ACTION
    return _rule1(data, _ids(data), repeated, shown=text)


def authorization_gate(decision: RawDecision) -> bool:
    """Rule 1: only exactly one ``decision_code``, equal to ``AUTHORIZED_ACTION``, goes on; checked
    before the action is read. A missing or repeated decision_code authorizes nothing (NOOP)."""
    return decision.problem is None and decision.unauthorized is None
