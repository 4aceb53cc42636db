"""The ``ep4`` command line and what only it needs: reading input files, opening the exchange side,
the example session, and ``ep4 explain``. With the ledger and the audit writer, this is the part of
``engine/`` allowed to do I/O (files, clock, network through ``exchange/``)."""

from .main import build_parser, main, reason_codes_markdown, run

__all__ = ["build_parser", "main", "reason_codes_markdown", "run"]
