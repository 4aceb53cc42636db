"""The one error type of the CEL layer's load-time stages (check, plan): a message at a position."""

from __future__ import annotations

__all__ = ["PositionedError"]


class PositionedError(ValueError):
    """A problem in an expression, with its 1-based line and column inside the expression text."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
