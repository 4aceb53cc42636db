"""cel-python's LALR parser, with its analysed tables cached per user (not in a shared temp dir).

Building the parser from ``celpy/cel.lark`` costs ~250 ms per process; loading the saved tables
~15 ms. The cache lives in ``$EP4_CACHE_DIR``, else ``$XDG_CACHE_HOME/ep4``, else ``~/.cache/ep4``
(created 0700), named by the sha256 of the grammar, the options and the lark and Python versions, and
written atomically. Any problem reading or writing it means the parser is built as usual.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import lark
from celpy.celparser import CELParser

__all__ = ["cache_dir", "cel_parser"]

_OPTIONS: dict[str, Any] = dict(
    parser="lalr", start="expr", debug=True, g_regex_flags=re.M, propagate_positions=True,
    maybe_placeholders=False, priority="invert",
)


def cache_dir() -> Path:
    explicit = os.environ.get("EP4_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ep4"


def cel_parser() -> lark.Lark:
    """The same parser celpy.celparser.CELParser builds (same grammar, options and callbacks)."""
    grammar = (Path(sys.modules["celpy.celparser"].__file__).parent / "cel.lark").read_text(encoding="utf-8")
    callbacks = {"IDENT": CELParser.ambiguous_literals}
    key = hashlib.sha256(
        "\n".join([grammar, repr(sorted(_OPTIONS.items())), lark.__version__, sys.version]).encode("utf-8")
    ).hexdigest()[:32]
    path = cache_dir() / f"cel-parser-{key}.lark"
    try:
        with open(path, "rb") as f:
            # Lark.load() takes no options; _load() is what it calls, with the callbacks re-attached
            return lark.Lark.__new__(lark.Lark)._load(f, lexer_callbacks=callbacks)
    except Exception:  # missing, unreadable, stale or another lark: build it (and try to save it)
        pass
    parser = lark.Lark(grammar, lexer_callbacks=callbacks, **_OPTIONS)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cel-parser-")
        with os.fdopen(fd, "wb") as f:
            parser.save(f)
        os.replace(tmp, path)
    except OSError:
        pass
    return parser
