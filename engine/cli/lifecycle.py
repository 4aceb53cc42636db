"""The parsers of ``ep4 certify``, ``ep4 diff``, ``ep4 cases`` and ``ep4 keys`` (issue 9).

Kept apart from :mod:`engine.cli.certify` so that building the parser (``ep4 --help``, and every
other command) does not import the bundle loader, CEL or pydantic: the command's module is imported
when the command runs (issue 6, start-up time).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["add_parsers"]


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from . import certify

        return int(getattr(certify, name)(args))

    run.__name__ = name
    return run


def add_parsers(sub: Any, add_evaluator: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("certify", help="run a case corpus against a bundle, compare with the pins, check or sign its certificate")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--cases", nargs="+", required=True, metavar="PATH", help="case files or directories (docs/certification.md)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--update", action="store_true", help="re-pin the cases whose outcome differs (after review)")
    p.add_argument("--sign", metavar="KEYFILE", help="write a new certificate signed with this Ed25519 key (ep4 keys new)")
    p.add_argument("--first-release", action="store_true",
                   help="with --sign: the bundle has no certificate yet (without it, --sign refuses to sign where no "
                        "certificate of the bundle can be read: the version rule needs the last one)")
    p.add_argument("--certificate", metavar="FILE", help="the certificate (default: BUNDLE with .cert.json)")
    p.add_argument("--approvers", metavar="FILE", help="approvers' public keys (default: $EP4_APPROVERS, else approvers.json next to the bundle)")
    p.add_argument("--outcomes-only", action="store_true", help="compare outcomes only; no certificate is read or written")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    add_evaluator(p)
    p.set_defaults(func=_lazy("cmd_certify"))

    p = sub.add_parser("diff", help="which cases or recorded decisions change outcome between two bundles")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--cases", nargs="+", metavar="PATH")
    p.add_argument("--audit", metavar="AUDIT.jsonl")
    p.add_argument("--state-dir", metavar="DIR", help="the ledger the records' state views name (default: the log's directory)")
    p.add_argument("--constraints", metavar="FILE", help="with --audit: the exchangeInfo the records were decided with "
                   "(default: the shipped sample; records decided under another are counted and said)")
    p.add_argument("--leverage-brackets", metavar="FILE", help="with --audit: the leverageBracket response to go with it")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.set_defaults(func=_lazy("cmd_diff"))

    p = sub.add_parser("cases", help="make certification cases: from an audit log, or at every limit of a bundle")
    cases_sub = p.add_subparsers(dest="cases_command", metavar="COMMAND")
    cases_sub.required = True
    from .boundary import add_parser as add_boundary_parser

    add_boundary_parser(cases_sub, add_evaluator)
    from .from_audit import add_parser as add_from_audit_parser

    add_from_audit_parser(cases_sub, add_evaluator)

    p = sub.add_parser("keys", help="approval keys")
    keys_sub = p.add_subparsers(dest="keys_command", metavar="COMMAND")
    keys_sub.required = True
    q = keys_sub.add_parser("new", help="a new Ed25519 approval key (private key to --out; the approvers entry on stdout)")
    q.add_argument("--out", required=True, metavar="KEYFILE")
    q.add_argument("--name", required=True, help="the approver's name, as the approvers file will list it")
    q.set_defaults(func=_lazy("cmd_keys_new"))
