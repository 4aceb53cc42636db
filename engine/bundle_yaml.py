"""Reading a bundle or gate library's YAML with positions (engine.bundle's loader).

Kept apart from :mod:`engine.bundle` so that ruamel.yaml is imported only when YAML is read: a
bundle loaded from the compiled-bundle cache (engine.bundle_cache) never needs it (issue 6, "import
what a command needs when it needs it").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from .bundle import MAX_FILE_BYTES
from .errors import BundleError, Problem
from .numbers import DecimalParseError, parse_decimal


class _ExactConstructor(RoundTripConstructor):
    """YAML floats become exact Decimals built from their source text."""


def _construct_decimal(constructor: Any, node: Any) -> Any:
    text = node.value.replace("_", "")
    try:
        return parse_decimal(text)
    except DecimalParseError:
        return _NonFinite(node.value)


class _NonFinite(str):
    """A YAML float that is not a finite decimal (.inf, .nan); refused by validation."""


_ExactConstructor.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


class _NoAliasComposer(Composer):
    """Anchors and aliases are refused: a few hundred bytes of nested aliases expand to gigabytes
    (a "billion laughs"), and a bundle a risk officer reviews should say everything where it is used."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            raise ComposerError(None, None, "anchors (&) and aliases (*) are not allowed in bundles", event.start_mark)
        return super().compose_node(parent, index)


class _Source:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        try:
            if not path.exists():
                raise FileNotFoundError
            if not path.is_file():
                raise BundleError([Problem(self.name, 1, 1, "not a regular file")])
            if path.stat().st_size > MAX_FILE_BYTES:
                raise BundleError([Problem(self.name, 1, 1, f"larger than {MAX_FILE_BYTES} bytes; not a bundle")])
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise BundleError([Problem(self.name, 1, 1, f"larger than {MAX_FILE_BYTES} bytes; not a bundle")])
            self.text = data.decode("utf-8")
            self.sha256 = "sha256:" + hashlib.sha256(data).hexdigest()
        except FileNotFoundError:
            raise BundleError([Problem(self.name, 1, 1, "file not found")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError([Problem(self.name, 1, 1, f"cannot read: {exc}")]) from None
        self.lines = self.text.splitlines()
        yaml = YAML(typ="rt")
        yaml.Constructor = _ExactConstructor
        yaml.Composer = _NoAliasComposer
        try:
            self.root = yaml.load(self.text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise BundleError([Problem(self.name, line, col, f"invalid YAML: {exc.problem or exc}", self.line_text(line))]) from None
        except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
            raise BundleError([Problem(self.name, 1, 1, f"invalid YAML: {exc}")]) from None

    def line_text(self, line: int) -> str:
        return self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""

    def position(self, loc: tuple[Any, ...]) -> tuple[int, int]:
        """1-based (line, col) of the node at ``loc`` (or of the closest parent that exists)."""
        node, best = self.root, (1, 1)
        for key in loc:
            if isinstance(node, CommentedMap) and key in node:
                best = _lc(node.lc.key(key))
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
                best = _lc(node.lc.item(key))
                node = node[key]
            else:
                break
        return best

    def value_origin(self, mapping: CommentedMap, key: str) -> tuple[int, int, bool]:
        """Where the text of a scalar value starts: (line, col, is_block)."""
        line0, col0 = mapping.lc.value(key)
        value = mapping[key]
        if isinstance(value, (LiteralScalarString, FoldedScalarString)):
            first = line0 + 1
            while first < len(self.lines) and not self.lines[first].strip():
                first += 1
            text = self.lines[first] if first < len(self.lines) else ""
            return first + 1, len(text) - len(text.lstrip(" ")) + 1, True
        char = self.lines[line0][col0] if line0 < len(self.lines) and col0 < len(self.lines[line0]) else ""
        return line0 + 1, col0 + 1 + (1 if char in "\"'" else 0), False


def _lc(pair: Any) -> tuple[int, int]:
    return (pair[0] + 1, pair[1] + 1)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, _NonFinite):
        return float("nan")  # refused below as not a finite decimal
    if isinstance(node, str):
        return str(node)
    return node


def _validate(model: type[BaseModel], src: _Source) -> tuple[Any, list[Problem]]:
    if not isinstance(src.root, CommentedMap):
        return None, [Problem(src.name, 1, 1, "expected a YAML mapping at the top level")]
    # a file that does not even say it is a bundle or gate library (an include pointing at the wrong
    # file, a secret) is described by position only: its lines are never echoed
    own = src.root.get("kind") in ("PolicyBundle", "GateLibrary")
    try:
        return model.model_validate(_plain(src.root)), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:50]:
            loc = tuple(err["loc"])
            line, col = src.position(loc)
            path = ".".join(str(p) for p in loc) or "(document)"
            problems.append(Problem(src.name, line, col, f"{path}: {err['msg']}", src.line_text(line) if own else ""))
        if not own:
            problems.insert(0, Problem(src.name, 1, 1, "not an ep4 bundle or gate library (no kind: PolicyBundle / GateLibrary)"))
        return None, problems


