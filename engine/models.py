"""The contracts of spec §2 and §3 as frozen pydantic models.

Every model forbids unknown fields. Quantities and prices are :data:`ExactDecimal`: exact ``Decimal``
values parsed from JSON numbers or decimal strings; floats, booleans, NaN and infinities are refused.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .numbers import DecimalParseError, decimal_text, parse_decimal
from .version import __version__

__all__ = [
    "AUTHORIZED_ACTION",
    "Action",
    "AdjustPositionAction",
    "CancelOrdersAction",
    "ClosePositionAction",
    "ExactDecimal",
    "ExecutionContext",
    "ExecutionRecord",
    "ExecutionResult",
    "GateOutcome",
    "ShadowGateOutcome",
    "NoopAction",
    "OpenPositionAction",
    "PolicyDecision",
    "StateView",
]

AUTHORIZED_ACTION = "AUTHORIZED_ACTION"


def _validate_decimal(value: Any) -> Decimal:
    try:
        return parse_decimal(value)
    except DecimalParseError as exc:
        raise PydanticCustomError("decimal", str(exc)) from None


ExactDecimal = Annotated[
    Decimal,
    PlainValidator(_validate_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"},
                {"type": "number"},
            ],
            "description": "exact decimal: a JSON number or a decimal string",
        }
    ),
]


# Input limits (docs/reliability.md): what one context may hold, checked when it is read, so the cost
# of a decision is bounded by them (10,000 positions took 5 s per decision, 1,000,000 took 100 s).
MAX_POSITIONS = 200
MAX_OPEN_ORDERS = 1000
MAX_MARKETS = 200
MAX_TIMESTAMP_MS = 10**14  # year 5138: far beyond any real clock, and cheap to check


def _whole(value: Any) -> int | None:
    """The integer a JSON integer, or a decimal number or decimal string without a fraction, stands for
    ("5", 5.0, "1764028800000": ARCHITECTURE "numbers may be JSON numbers or decimal strings"); None
    for anything else (a bool, a fraction, text that is no decimal). The exponent is checked before any
    conversion: int(Decimal("1e9999999")) alone takes minutes."""
    if type(value) is int:
        return value
    if isinstance(value, (str, Decimal)) and not isinstance(value, bool):
        try:
            number = parse_decimal(value)
        except DecimalParseError:
            return None
        if number.is_finite() and abs(number.adjusted()) <= 15 and number == number.to_integral_value():
            return int(number)
    return None


def _int_ms(value: Any) -> int:
    """Integer milliseconds since the Unix epoch, 0 <= t < 10^14 (:func:`_whole`)."""
    value = _whole(value)
    if value is None:
        raise PydanticCustomError("int_ms", "invalid timestamp: expected integer milliseconds since the Unix epoch")
    if not 0 <= value < MAX_TIMESTAMP_MS:
        raise PydanticCustomError("int_ms", "invalid timestamp: {value} is outside 0 .. 10^14 ms", {"value": value})
    return value


Millis = Annotated[int, PlainValidator(_int_ms), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP_MS - 1}, {"type": "string", "pattern": r"^[0-9]{1,14}(\.0*)?$"}],
    "description": "integer milliseconds since the Unix epoch (UTC), below 10^14: a JSON integer, or a decimal number or string without a fraction",
})]


def _leverage(value: Any) -> int:
    """A position's leverage, a whole number 1..125 (Binance's positionRisk sends it as text: "5")."""
    number = _whole(value)
    if number is None:
        raise PydanticCustomError("leverage", "invalid leverage: expected a whole number from 1 to 125")
    if not 1 <= number <= 125:
        raise PydanticCustomError("leverage", "invalid leverage: {value} is outside 1 .. 125", {"value": number})
    return number


Leverage = Annotated[int, PlainValidator(_leverage), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": 125}, {"type": "string", "pattern": r"^0*(12[0-5]|1[01][0-9]|[1-9][0-9]?)(\.0*)?$"}],
    "description": "a whole number from 1 to 125: a JSON integer, or a decimal number or string without a fraction",
})]

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
# spec §2.1 "account_id (opaque)": any text of 1-128 characters without control characters (spaces and
# letters beyond ASCII too); the decision's ids stay Identifier (printable ASCII, no space)
OpaqueId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,32}$", description="exchange symbol, e.g. BTCUSDT")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _field_error(reason_code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("ep4", message, {"reason_code": reason_code})


# --- §3.2 action schemas ---


class OpenPositionAction(_Frozen):
    """ACTION_OPEN_POSITION (spec §3.2): quantity > 0, limit_price iff LIMIT, reduce_only false."""

    type: Literal["ACTION_OPEN_POSITION"]
    action_id: Identifier
    symbol: Symbol
    side: Literal["LONG", "SHORT"]
    quantity: ExactDecimal
    order_type: Literal["MARKET", "LIMIT"]
    limit_price: ExactDecimal | None = None
    reduce_only: bool
    time_in_force: Literal["GTC", "IOC"] | None = None

    @field_validator("quantity")
    @classmethod
    def _positive_quantity(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise _field_error("INVALID_QUANTITY", "quantity must be > 0")
        return v

    @field_validator("limit_price")
    @classmethod
    def _positive_price(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and v <= 0:
            raise _field_error("INVALID_LIMIT_PRICE", "limit_price must be > 0")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> "OpenPositionAction":
        if self.reduce_only:
            raise _field_error("REDUCE_ONLY_ON_OPEN", "reduce_only must be false on ACTION_OPEN_POSITION")
        if self.order_type == "LIMIT" and self.limit_price is None:
            raise _field_error("LIMIT_PRICE_REQUIRED", "limit_price is required when order_type is LIMIT")
        if self.order_type == "MARKET" and self.limit_price is not None:
            raise _field_error("LIMIT_PRICE_ON_MARKET", "limit_price must be absent when order_type is MARKET")
        if self.order_type == "LIMIT" and self.time_in_force is None:
            raise _field_error("INVALID_TIME_IN_FORCE", "time_in_force (GTC or IOC) is required for LIMIT orders")
        return self


class ClosePositionAction(_Frozen):
    """ACTION_CLOSE_POSITION (spec §3.2): ``quantity`` must be given; ``null`` means a full close."""

    type: Literal["ACTION_CLOSE_POSITION"]
    action_id: Identifier
    symbol: Symbol
    quantity: ExactDecimal | None
    order_type: Literal["MARKET"]
    reduce_only: Literal[True]

    @field_validator("quantity")
    @classmethod
    def _positive_quantity(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and v <= 0:
            raise _field_error("INVALID_QUANTITY", "quantity must be > 0, or null for a full close")
        return v

    @field_validator("reduce_only", mode="before")
    @classmethod
    def _true_itself(cls, v: Any) -> Any:
        # Literal[True] alone takes 1 and 1.0 (they equal True), even in strict mode: the spec's field
        # is a boolean, so only the JSON value true is one (the open action's strict bool refuses 0 / 1)
        if type(v) is not bool:
            kind = ("null" if v is None else "a string" if isinstance(v, str) else "an object" if isinstance(v, dict)
                    else "an array" if isinstance(v, (list, tuple)) else "a number")
            raise _field_error("INVALID_REDUCE_ONLY", f"reduce_only must be the boolean true, got {kind}")
        return v


class AdjustPositionAction(_Frozen):
    """ACTION_ADJUST_POSITION (spec §3.2): positive delta increases, negative decreases; never 0."""

    type: Literal["ACTION_ADJUST_POSITION"]
    action_id: Identifier
    symbol: Symbol
    delta_quantity: ExactDecimal

    @field_validator("delta_quantity")
    @classmethod
    def _non_zero(cls, v: Decimal) -> Decimal:
        if v == 0:
            raise _field_error("INVALID_DELTA_QUANTITY", "delta_quantity must not be 0")
        return v


class CancelOrdersAction(_Frozen):
    """ACTION_CANCEL_OPEN_ORDERS (spec §3.2): ``symbol`` must be given; ``null`` means all symbols."""

    type: Literal["ACTION_CANCEL_OPEN_ORDERS"]
    action_id: Identifier
    symbol: Symbol | None


class NoopAction(_Frozen):
    """ACTION_NOOP (spec §3.2): explicit do-nothing; always succeeds."""

    type: Literal["ACTION_NOOP"]
    action_id: Identifier


Action = Annotated[
    Union[OpenPositionAction, ClosePositionAction, AdjustPositionAction, CancelOrdersAction, NoopAction],
    Field(discriminator="type"),
]


class PolicyDecision(_Frozen):
    """The EP-3 output EP-4 receives (spec §2.1)."""

    decision_id: Identifier
    decision_code: str
    action: Action


# --- ExecutionContext (spec §2.1 plus the explicit account / market / health snapshot) ---


class Position(_Frozen):
    symbol: Symbol
    quantity: ExactDecimal = Field(description="signed: + long, - short")
    entry_price: ExactDecimal | None = None
    leverage: Leverage | None = None
    margin_mode: Literal["ISOLATED", "CROSSED"] | None = None
    position_side: Literal["BOTH", "LONG", "SHORT"] = "BOTH"


class OpenOrder(_Frozen):
    symbol: Symbol
    client_order_id: str = Field(max_length=64)
    side: Literal["BUY", "SELL"]
    quantity: ExactDecimal = Field(description="the order's quantity, >= 0 (its side says which way; a closePosition order shows 0)")
    price: ExactDecimal | None = None
    position_side: Literal["BOTH", "LONG", "SHORT"] = "BOTH"

    @field_validator("quantity")
    @classmethod
    def _quantity_not_negative(cls, v: Decimal) -> Decimal:
        # the worst-case exposure adds it on the order's side (spec §5.1): a negative one would hide
        # exposure from the position and notional ceilings. 0 adds nothing (Binance shows a
        # closePosition stop order with origQty 0); the price is not read (a stop market order shows 0)
        if v < 0:
            raise PydanticCustomError("open_order", "an open order's quantity must not be negative (its side says which way)")
        return v


class Account(_Frozen):
    position_mode: Literal["ONE_WAY", "HEDGE"]
    available_margin: ExactDecimal
    positions: tuple[Position, ...] = Field(default=(), strict=False, max_length=MAX_POSITIONS)
    open_orders: tuple[OpenOrder, ...] = Field(default=(), strict=False, max_length=MAX_OPEN_ORDERS)


class MarketData(_Frozen):
    mark_price: ExactDecimal

    @field_validator("mark_price")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise PydanticCustomError("mark_price", "mark_price must be > 0")
        return v


class Health(_Frozen):
    api_latency_ms: ExactDecimal = Field(description="milliseconds, >= 0")
    order_rejection_rate: ExactDecimal = Field(description="fraction of recent orders rejected, 0..1")

    @field_validator("api_latency_ms")
    @classmethod
    def _latency(cls, v: Decimal) -> Decimal:
        if v < 0:
            raise PydanticCustomError("health", "api_latency_ms must be >= 0")
        return v

    @field_validator("order_rejection_rate")
    @classmethod
    def _rate(cls, v: Decimal) -> Decimal:
        if not 0 <= v <= 1:
            raise PydanticCustomError("health", "order_rejection_rate must be between 0 and 1")
        return v


class ExecutionContext(_Frozen):
    """Spec §2.1 ExecutionContext: exchange, symbol, timestamp (the only clock, §8.1), account_id,
    plus the account / market / health snapshot the gates read."""

    exchange: Literal["BINANCE_PERP"]
    symbol: Symbol
    timestamp: Millis
    account_id: OpaqueId
    account: Account
    market: dict[Symbol, MarketData] = Field(max_length=MAX_MARKETS)
    health: Health


# --- state view: the explicit execution history the temporal and frequency gates read (§8.1) ---


class ExecutionRecord(_Frozen):
    decision_id: str
    action_id: str
    action_type: str
    symbol: str | None
    result: Literal["SUCCESS", "NOOP", "REJECTED", "FAILED_SAFE"]
    reason_code: str
    timestamp: Millis
    attempted: bool = Field(description="an exchange call was made (or, in dry-run, would have been)")
    opens: bool = Field(default=False, description="the action increased exposure")


class StateView(_Frozen):
    """What the ledger tells the pure core. Built by the shell, recorded with every audit record."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    executed: tuple[tuple[str, str], ...] = Field(
        default=(), strict=False, description="(decision_id, action_id) pairs already processed, for this decision"
    )
    recent: tuple[ExecutionRecord, ...] = Field(
        default=(), strict=False, description="attempted records (exchange calls) within the bundle's lookback, oldest first"
    )
    last_execution_ms: Millis | None = None
    last_failed_safe_ms: Millis | None = None
    trading_state: Literal["ACTIVE", "REDUCING", "HALTED"] = Field(
        default="ACTIVE",
        description="the operator's kill switch (ep4 halt / reduce-only / resume): HALTED lets only cancels through, "
        "REDUCING only cancels and reduce-only orders",
    )


# --- output (spec §2.2) ---


class GateOutcome(_Frozen):
    id: str
    rule: int
    category: str
    passed: bool
    error: str | None = None


class ShadowGateOutcome(GateOutcome):
    """The trace entry of a shadow gate (``enforcement: warn | audit``): recorded, never deciding."""

    enforcement: Literal["warn", "audit"]


class ExecutionResult(BaseModel):
    """Spec §2.2: one of SUCCESS / NOOP / REJECTED / FAILED_SAFE, always with trace_id, decision_id,
    timestamp and reason_code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    result: Literal["SUCCESS", "NOOP", "REJECTED", "FAILED_SAFE"]
    trace_id: str
    decision_id: str | None
    action_id: str | None
    timestamp: int | None
    reason_code: str
    rule: int | None = Field(description="the spec §4 rule that produced the outcome")
    message: str
    mode: str
    bundle: dict[str, str]
    constraints_digest: str
    input_digest: str
    gate_trace: tuple[SerializeAsAny[Union[ShadowGateOutcome, GateOutcome]], ...] = ()  # shadow gates' entries carry "enforcement"
    order: dict[str, Any] | None = None
    errors: tuple[dict[str, str], ...] = ()
    exchange_response: Any = None
    ep4_version: str = Field(default=__version__, description="the ep4 that produced this result (replay compares it)")
