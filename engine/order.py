"""The one place that builds the exchange request for an intent (spec §4 Rule 5 "exactly one call").

Quantities and prices are sent as the exact authorized decimal text (never ``1e-05``, never a
float repr). The clientOrderId is derived from (decision_id, action_id), so a retried decision maps
to the same id (spec §8.1: identifiers derive from inputs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .intent import Intent
from .memo import frozen_builder
from .numbers import decimal_text

__all__ = ["OrderRequest", "build_request", "client_order_id"]


@dataclass(frozen=True)
class OrderRequest:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    client_order_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "params": dict(self.params), "client_order_id": self.client_order_id}

    @property
    def timestamp(self) -> int:
        return int(dict(self.params)["timestamp"])

    def sent_at(self, timestamp_ms: int) -> "OrderRequest":
        """The same request signed at ``timestamp_ms`` (the shell's send time: context.timestamp plus
        the monotonic time elapsed since the decision arrived)."""
        params = tuple((k, str(timestamp_ms) if k == "timestamp" else v) for k, v in self.params)
        return OrderRequest(self.method, self.path, params, self.client_order_id)


_request = frozen_builder(OrderRequest)  # OrderRequest(*values), every field given: the decision's hot path


def client_order_id(decision_id: str, action_id: str) -> str:
    """``ep4-`` + 32 hex chars: 36 chars, matches Binance's ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``."""
    digest = hashlib.sha256(f"{decision_id}\x00{action_id}".encode("utf-8")).hexdigest()
    return "ep4-" + digest[:32]


def build_request(
    intent: Intent, *, decision_id: str, action_id: str, timestamp: int, recv_window_ms: int, hedge_mode: bool
) -> OrderRequest:
    if intent.kind == "CANCEL":
        assert intent.symbol is not None, "Rule 4 refuses cancels across all symbols"
        params = (("symbol", intent.symbol), ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp)))
        return _request("DELETE", "/fapi/v1/allOpenOrders", params, None)
    assert intent.quantity is not None and intent.side and intent.order_type and intent.symbol
    cid = client_order_id(decision_id, action_id)
    p: list[tuple[str, str]] = [("symbol", intent.symbol), ("side", intent.side)]
    if hedge_mode:
        # hedge mode: positionSide is required and reduceOnly may not be sent (facts file: "Cannot be sent in Hedge Mode")
        p.append(("positionSide", intent.position_side or "BOTH"))
    p += [("type", intent.order_type), ("quantity", decimal_text(intent.quantity))]
    if intent.order_type == "LIMIT":
        assert intent.price is not None and intent.time_in_force
        p += [("price", decimal_text(intent.price)), ("timeInForce", intent.time_in_force)]
    if intent.reduce_only and not hedge_mode:
        p.append(("reduceOnly", "true"))
    p += [
        ("newClientOrderId", cid),
        ("newOrderRespType", "RESULT"),
        ("recvWindow", str(recv_window_ms)),
        ("timestamp", str(timestamp)),
    ]
    return _request("POST", "/fapi/v1/order", tuple(p), cid)
