"""Certification corpora on disk (imperative shell): finding, reading and re-pinning cases.

A case is one JSON file: the whole pure input of one evaluation and its pinned outcome
(docs/certification.md). A corpus is any set of case files and directories; inside a directory,
paths with a part starting with ``_`` or ``.`` are not cases (``_base/context.json`` is the base
context that ``context_patch`` patches).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..constraints import ConstraintsSnapshot
from ..errors import InputError
from ..models import ExecutionContext, StateView
from ..numbers import canonical_json
from ..numbers import loads as exact_loads

__all__ = ["Case", "Corpus", "CorpusError", "case_inputs", "decision_text", "load_corpus", "overridden", "merge", "write_pin"]

MAX_CASE_BYTES = 1 << 20


class CorpusError(InputError):
    """A corpus that cannot be used: the message names the file and what is wrong (exit 2)."""


@dataclass
class Case:
    name: str  # path under its corpus root, without .json
    path: Path
    data: dict[str, Any]
    base: Path | None  # the _base directory whose context.json context_patch patches

    @property
    def expect(self) -> dict[str, Any] | None:
        e = self.data.get("expect")
        return e if isinstance(e, dict) else None

    @property
    def own_bundle(self) -> str | None:
        return self.data.get("bundle")


@dataclass
class Corpus:
    roots: list[str]
    cases: list[Case]
    digest: str
    files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case, why)


def merge(base: Any, patch: Any) -> Any:
    """RFC 7396-style merge patch (null deletes), lists replaced whole."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return patch
    out = dict(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def _is_case(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.suffix == ".json" and not any(p.startswith(("_", ".")) for p in parts)


def load_corpus(paths: Iterable[str]) -> Corpus:
    """Every case under ``paths`` (files or directories), sorted by name, and the corpus digest:
    sha256 over each case's and base file's name and bytes (pins included: re-pinning is a change)."""
    roots = list(paths)
    cases: list[Case] = []
    names: set[str] = set()
    hashed: dict[str, str] = {}
    for given in roots:
        root = Path(given)
        if root.is_file():
            files, top = [root], root.parent
        elif root.is_dir():
            files, top = sorted(p for p in root.rglob("*.json") if _is_case(p, root)), root
            for base in sorted(root.rglob("_base/*.json")):
                hashed[f"{root.name}/{base.relative_to(root)}"] = _sha(base)
        else:
            raise CorpusError(f"--cases {given}: no such file or directory")
        for path in files:
            name = str(path.relative_to(top).with_suffix("")) if root.is_dir() else path.stem
            if name in names:
                raise CorpusError(f"{path}: a second case named {name!r} (two corpora with the same layout?)")
            base = _find_base(path)
            names.add(name)
            cases.append(Case(name, path, _read_case(path), base))
            hashed[f"{root.name if root.is_dir() else ''}/{name}.json"] = _sha(path)
            if base is not None:  # a base above the given path (a sub-directory of a corpus) counts too
                hashed.setdefault(f"{root.name if root.is_dir() else ''}/{os.path.relpath(base / 'context.json', top)}",
                                  _sha(base / "context.json"))
    if not cases:
        raise CorpusError(f"no cases in {', '.join(roots)} (a case is a .json file; see docs/certification.md)")
    cases.sort(key=lambda c: c.name)
    digest = "sha256:" + hashlib.sha256("".join(f"{k}\n{v}\n" for k, v in sorted(hashed.items())).encode()).hexdigest()
    return Corpus(roots, cases, digest, files=len(hashed))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_case(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CASE_BYTES:
            raise CorpusError(f"{path}: larger than {MAX_CASE_BYTES} bytes; not a case")
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except CorpusError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise CorpusError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or "decision" not in data:
        raise CorpusError(f"{path}: a case is a JSON object with at least \"decision\" (see docs/certification.md)")
    unknown = set(data) - {"description", "decision", "context", "context_patch", "state", "constraints", "leverage_brackets",
                           "constraints_override", "bundle", "expect", "source"}
    if unknown:
        raise CorpusError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    if "bundle" in data:  # the bundle the case is pinned to, relative to the case file
        own = data["bundle"]
        if not isinstance(own, str) or not own:
            raise CorpusError(f"{path}: \"bundle\" must be the path of a bundle file, relative to the case file (got {own!r})")
        try:
            exists = (path.parent / own).is_file()
        except (OSError, ValueError) as exc:  # a name too long, a directory it may not look into, a NUL byte
            raise CorpusError(f"{path}: pinned to the bundle {own[:80]!r}, which cannot be looked up ({exc})") from None
        if not exists:
            # it would be skipped by every run (no bundle is that file), its pin checked by none
            raise CorpusError(f"{path}: pinned to the bundle {own}, which is not a file ({path.parent / own})")
    data["_text"] = text
    return data


def _find_base(path: Path) -> Path | None:
    """The nearest ``_base/context.json`` in the case's directory or any directory above it (so a
    sub-directory of a corpus can be given on its own)."""
    d = path.resolve().parent
    while True:
        if (d / "_base" / "context.json").is_file():
            return d / "_base"
        if d == d.parent:
            return None
        d = d.parent


@lru_cache(maxsize=64)
def _base_context(base: Path) -> dict[str, Any]:
    return exact_loads((base / "context.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=64)
def _constraints_file(path: str, brackets: str | None) -> ConstraintsSnapshot:
    from .inputs import load_constraints

    return load_constraints(path, brackets)


_WS = " \t\r\n"


def decision_text(text: str, key: str = "decision") -> str:
    """The text of a case's top-level ``decision`` value, exactly as the file writes it (never
    re-encoded: ``0.010`` stays ``0.010``, a 30-digit number keeps its 30 digits)."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in _WS:
            i += 1
        return i

    i = skip(0)
    if text[i:i + 1] != "{":
        raise ValueError("a case is a JSON object")
    i = skip(i + 1)
    while i < len(text) and text[i] != "}":
        name, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i:i + 1] != ":":
            raise ValueError(f"expected ':' at character {i}")
        start = skip(i + 1)
        _, end = decoder.raw_decode(text, start)
        if name == key:
            return text[start:end]
        i = skip(end)
        if text[i:i + 1] == ",":
            i = skip(i + 1)
    raise ValueError(f"no {key!r} in the case")


_VALIDATED: dict[tuple[type, str], Any] = {}


def _validated(model: Any, data: Any) -> Any:
    """``model.model_validate(data)``, one immutable object per distinct input: cases of a corpus
    share contexts and state views, and what ep4 derives from a context once (its CEL values, its
    canonical JSON) is kept with the object, as for a host that reuses its context."""
    key = (model, canonical_json(data))
    hit = _VALIDATED.get(key)
    if hit is None:
        if len(_VALIDATED) > 4096:
            _VALIDATED.clear()
        hit = _VALIDATED[key] = model.model_validate(data)
    return hit


_OVERRIDDEN: dict[tuple[int, str], tuple[ConstraintsSnapshot, ConstraintsSnapshot]] = {}


def overridden(constraints: ConstraintsSnapshot, override: Any) -> ConstraintsSnapshot:
    """The snapshot with a case's ``constraints_override`` (exact values) merged in; one object per
    distinct override (cases share them), so its digest is computed once."""
    key = (id(constraints), canonical_json(override))
    held = _OVERRIDDEN.get(key)
    if held is None or held[0] is not constraints:
        if len(_OVERRIDDEN) > 1024:
            _OVERRIDDEN.clear()
        dumped = constraints.model_dump(mode="json")
        dumped["symbols"] = merge(dumped["symbols"], override)
        held = _OVERRIDDEN[key] = (constraints, ConstraintsSnapshot.model_validate(dumped))
    return held[1]


def case_inputs(case: Case, default_constraints: ConstraintsSnapshot) -> tuple[str, ExecutionContext, ConstraintsSnapshot, StateView]:
    """(decision text, context, constraints, state) of a case; CorpusError naming the case if unusable."""
    d = case.data
    try:
        exact = exact_loads(d["_text"])  # numbers as exact decimals, from the text as written
        decision = d["decision"]
        if isinstance(decision, dict) and set(decision) == {"raw_text"}:
            raw = decision["raw_text"]
        else:
            raw = decision_text(d["_text"])  # exactly as written: a JSON number keeps its digits
        if "context" in d:
            context_data = exact["context"]
        else:
            if case.base is None:
                raise CorpusError(f"{case.path}: no \"context\" and no _base/context.json above it to patch")
            context_data = merge(_base_context(case.base), exact.get("context_patch", {}))
        context = _validated(ExecutionContext, context_data)
        if "constraints" in d:
            where = case.path.parent
            brackets = str(where / d["leverage_brackets"]) if d.get("leverage_brackets") else None
            constraints = _constraints_file(str(where / d["constraints"]), brackets)
        else:
            constraints = default_constraints
        if "constraints_override" in d:
            constraints = overridden(constraints, exact["constraints_override"])
        state = _validated(StateView, exact.get("state", {}))
    except CorpusError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydantic / JSON / input errors: the case is unusable, say which and why
        first = str(exc).strip().splitlines()
        raise CorpusError(f"{case.path}: unusable case: {type(exc).__name__}: {' '.join(first[:3])}") from None
    return raw, context, constraints, state


def write_pin(case: Case, outcome: dict[str, Any]) -> None:
    """Replace the case's ``expect`` with ``outcome`` (appended when absent), leaving the rest of
    the file as written; atomically (temp file + rename)."""
    text = case.data["_text"]
    pin = json.dumps(outcome, indent=1, ensure_ascii=False).replace("\n", "\n ")
    key = '\n "expect": '
    at = text.find(key)
    if at >= 0:
        start = at + len(key)
        _, end = json.JSONDecoder().raw_decode(text, start)
        new = text[:start] + pin + text[end:]
    else:
        close = text.rstrip().rfind("}")
        body = text[:close].rstrip()
        new = body + ("," if not body.endswith("{") else "") + key + pin + "\n}" + text[close + 1:]
    json.loads(new)  # never write a broken case
    tmp = case.path.with_name(f".{case.path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(case.path)
    case.data = {**json.loads(new), "_text": new}
