"""What the paper exchange core answers, before any transport turns it into HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Disruption", "PaperResponse", "json_response"]

# How the transport must misbehave instead of (or before) delivering the response.
Disruption = Literal["read_timeout", "drop"]


@dataclass(frozen=True)
class PaperResponse:
    """An HTTP response, plus the delay and disruption a fault asks the transport to apply."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay_ms: int = 0
    disruption: Disruption | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> PaperResponse:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return PaperResponse(status, {"content-type": "application/json", **(headers or {})}, body)
