"""The errors ep4 reports to a person (exit 2 with one message), and the execution modes.

Kept apart from the modules that raise them so the command line can catch them without importing
the engine (``ep4 --help`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "AuditError", "BundleError", "InputError", "LedgerError", "Problem"]

MODES = ("dry-run", "paper", "binance-testnet", "binance")


class InputError(ValueError):
    """A user input that cannot be used; the message says what, where and what to do."""


class LedgerError(RuntimeError):
    """The ledger cannot be opened or written; nothing was sent."""


class AuditError(RuntimeError):
    """The audit log cannot be written; the caller must not report an outcome as recorded."""


@dataclass(frozen=True)
class Problem:
    """One problem in a bundle or gate library, at file:line:col."""

    file: str
    line: int
    column: int
    message: str
    text: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.message}" + (f"\n    {self.text}" if self.text else "")


class BundleError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
