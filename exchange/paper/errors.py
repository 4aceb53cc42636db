"""Binance-style rejections: an HTTP status plus a ``{"code": ..., "msg": ...}`` body.

Codes and message texts follow the USDⓈ-M error-code page
(developers.binance.com/docs/derivatives/usds-margined-futures/error-code). Codes are stable;
Binance says messages may vary.
"""

from __future__ import annotations

__all__ = ["BinanceError", "illegal_decimal", "invalid_param", "mandatory", "not_required", "reject"]

MESSAGES: dict[int, str] = {
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1101: "Duplicate values for a parameter detected.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -1121: "Invalid symbol.",
    -1122: "Invalid symbol status.",
    -1136: "Invalid newOrderRespType.",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2025: "Reach max open order limit.",
    -2027: "Exceeded the maximum allowable position at current leverage.",
    -2022: "ReduceOnly Order is rejected.",
    -4001: "Price less than 0.",
    -4002: "Price greater than max price.",
    -4003: "Quantity less than zero.",
    -4004: "Quantity less than min quantity.",
    -4005: "Quantity greater than max quantity.",
    -4013: "Price less than min price.",
    -4014: "Price not increased by tick size.",
    -4015: "Client order id is not valid.",
    -4016: "Price is higher than mark price multiplier cap.",
    -4023: "Qty not increased by step size.",
    -4024: "Price is lower than mark price multiplier floor.",
    -4060: "Invalid position side.",
    -4061: "Order's position side does not match user's setting.",
    -4116: "clientOrderId is duplicated",
    -4120: "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
    -5021: "Due to the order could not be filled immediately, the FOK order has been rejected.",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected.",
}

# Binance answers authentication failures with 401; every other request error here is a 400.
_STATUS = {-2014: 401, -2015: 401}

_DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"


class BinanceError(Exception):
    """A rejection the paper exchange answers exactly as Binance would: status, code, msg."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


def reject(code: int, msg: str | None = None) -> BinanceError:
    """The error for ``code`` with its documented message (or ``msg`` for templated ones)."""
    return BinanceError(code, msg if msg is not None else MESSAGES[code], _STATUS.get(code, 400))


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def invalid_param(name: str) -> BinanceError:
    return BinanceError(-1130, f"Data sent for parameter '{name}' is not valid.")


def illegal_decimal(name: str) -> BinanceError:
    msg = f"Illegal characters found in parameter '{name}'; legal range is '{_DECIMAL_RANGE}'."
    return BinanceError(-1100, msg)
