"""Shared test helpers: the case corpus loader and syrupy snapshots under the top-level snapshots/."""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from engine.bundle import Bundle, load_bundle
from engine.cli.corpus import decision_text
from engine.cli.inputs import load_constraints
from engine.constraints import ConstraintsSnapshot
from engine.models import ExecutionContext, StateView
from engine.numbers import loads as exact_loads
from engine.paths import default_bundle_path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"

# The suite (and every ep4 process it starts) keeps the CEL parser tables and compiled bundles in a
# cache of its own: the hundreds of bundles it writes must not evict a user's entries, and a user's
# cache must not decide what the suite sees.
_CACHE = tempfile.mkdtemp(prefix="ep4-test-cache-")
os.environ["EP4_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


class TopLevelSnapshots(JSONSnapshotExtension):
    """One reviewable JSON file per snapshot, in snapshots/<test module>/."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(ROOT / "snapshots" / Path(test_location.filepath).stem)


@pytest.fixture
def snapshot(snapshot):  # noqa: F811 - syrupy's fixture, pointed at snapshots/
    return snapshot.use_extension(TopLevelSnapshots)


def merge(base: Any, patch: Any) -> Any:
    """Deep merge; lists are replaced; a ``null`` in the patch deletes the key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


@lru_cache(maxsize=None)
def bundle_at(relative: str | None) -> Bundle:
    return load_bundle(CASES / relative if relative else default_bundle_path())


@lru_cache(maxsize=1)
def default_constraints() -> ConstraintsSnapshot:
    return load_constraints(None, None)


def base_context() -> dict[str, Any]:
    return exact_loads((CASES / "_base" / "context.json").read_text())


def case_names() -> list[str]:
    return sorted(p.stem for p in CASES.glob("*.json"))


def load_case(name: str) -> dict[str, Any]:
    """Case data with exact decimals; the decision is kept as JSON text, exactly as written."""
    text = (CASES / f"{name}.json").read_text()
    case = exact_loads(text)
    case["decision"] = json.loads(text)["decision"]
    case["decision_text"] = decision_text(text)  # exactly as written (engine/cli/corpus.py reads it the same way)
    return case


def case_inputs(case: dict[str, Any]) -> tuple[Any, ExecutionContext, Bundle, ConstraintsSnapshot, StateView]:
    decision = case["decision"]
    raw = decision["raw_text"] if isinstance(decision, dict) and set(decision) == {"raw_text"} else case["decision_text"]
    context = ExecutionContext.model_validate(merge(base_context(), case.get("context_patch", {})))
    constraints = default_constraints()
    if "constraints_override" in case:
        dumped = constraints.model_dump(mode="json")
        dumped["symbols"] = merge(dumped["symbols"], case["constraints_override"])
        constraints = ConstraintsSnapshot.model_validate(dumped)
    state = StateView.model_validate(case.get("state", {}))
    return raw, context, bundle_at(case.get("bundle")), constraints, state
