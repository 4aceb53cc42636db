"""cel-python's LALR parser, with its analysed tables cached per user (not in a shared temp dir).

Building the parser from ``celpy/cel.lark`` costs ~250 ms per process; loading the saved tables
~15 ms. The cache lives in ``$EP4_CACHE_DIR``, else ``$XDG_CACHE_HOME/ep4``, else ``~/.cache/ep4``
(created 0700), named by the sha256 of the grammar, the options and the lark and Python versions, and
written atomically. Any problem reading or writing it means the parser is built as usual; so does a
cache directory or entry that another user could have written (:func:`trusted_cache_dir`).
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

__all__ = ["cache_dir", "cel_parser", "trusted_cache_dir", "trusted_file"]

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


def trusted_cache_dir() -> Path | None:
    """:func:`cache_dir`, created 0700 if missing, when only this user can write it; else None (no
    cache). Its entries are pickles (lark's tables, engine.bundle_cache's bundles): reading one runs
    what its writer put there, so a directory another user can write (a shared ``/tmp`` path, a
    group-writable CI cache) is not read, nor written."""
    path = cache_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path if _only_mine(os.stat(path)) else None
    except (OSError, RuntimeError):  # no home directory, a file in the way, ...
        return None


def trusted_file(f: Any) -> bool:
    """An open cache entry that this user owns and nobody else can write (checked on the open file,
    so a name swapped after the check is not what is read)."""
    try:
        return _only_mine(os.fstat(f.fileno()))
    except OSError:
        return False


def _only_mine(st: os.stat_result) -> bool:
    if not hasattr(os, "getuid"):  # pragma: no cover - not a POSIX system: no owner to compare
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def cel_parser() -> lark.Lark:
    """The same parser celpy.celparser.CELParser builds (same grammar, options and callbacks)."""
    grammar = (Path(sys.modules["celpy.celparser"].__file__).parent / "cel.lark").read_text(encoding="utf-8")
    callbacks = {"IDENT": CELParser.ambiguous_literals}
    key = hashlib.sha256(
        "\n".join([grammar, repr(sorted(_OPTIONS.items())), lark.__version__, sys.version]).encode("utf-8")
    ).hexdigest()[:32]
    directory = trusted_cache_dir()
    if directory is None:  # no cache this user alone can write: build it every time
        return lark.Lark(grammar, lexer_callbacks=callbacks, **_OPTIONS)
    path = directory / f"cel-parser-{key}.lark"
    try:
        with open(path, "rb") as f:
            if trusted_file(f):
                # Lark.load() takes no options; _load() is what it calls, with the callbacks re-attached
                return lark.Lark.__new__(lark.Lark)._load(f, lexer_callbacks=callbacks)
    except Exception:  # missing, unreadable, stale or another lark: build it (and try to save it)
        pass
    parser = lark.Lark(grammar, lexer_callbacks=callbacks, **_OPTIONS)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cel-parser-")
        with os.fdopen(fd, "wb") as f:
            parser.save(f)
        os.replace(tmp, path)
    except OSError:
        pass
    return parser
