"""The per-user compiled-bundle cache (engine/bundle_cache.py, issue 6): a cached bundle is the bundle
its files give, and any change to those files (or a damaged entry) means a load from the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import engine.bundle_cache as cache
from conftest import CASES, ROOT
from engine.bundle import BundleError, load_bundle
from engine.pipeline import Config, evaluate, result_json


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("EP4_CACHE_DIR", str(directory))
    monkeypatch.delenv("EP4_BUNDLE_CACHE", raising=False)
    return directory


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    """policies/ and gates/ copied, so the test can edit them."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    shutil.copytree(ROOT / "gates", tmp_path / "gates")
    return tmp_path / "policies" / "binance-perp-default.yaml"


def _loads_from_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = cache.load_bundle

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(cache, "load_bundle", counting)
    return calls


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("bundle-*.pickle"))


def test_a_cached_bundle_decides_exactly_as_the_loaded_one(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _loads_from_files(monkeypatch)
    path = ROOT / "policies" / "binance-perp-default.yaml"
    first = cache.load_bundle_cached(path)
    second = cache.load_bundle_cached(path)
    assert len(calls) == 1 and len(_entries(cache_dir)) == 1  # the second came from the cache
    fresh = load_bundle(path)
    for b in (first, second):
        assert (b.name, b.version, b.digest, b.sources, b.path, b.params) == (fresh.name, fresh.version, fresh.digest, fresh.sources, fresh.path, fresh.params)
        assert [(g.id, g.expression.source, g.source) for g in b.risk_gates + b.constraint_checks] == \
               [(g.id, g.expression.source, g.source) for g in fresh.risk_gates + fresh.constraint_checks]
    # every case of the corpus pinned to the default bundle, both evaluators on a share of them (the
    # interpreter is built lazily from the cached tree)
    from engine.cli.corpus import case_inputs as corpus_inputs
    from engine.cli.corpus import load_corpus
    from engine.cli.inputs import load_constraints

    constraints0 = load_constraints(None, None)
    checked = 0
    for case in load_corpus([str(CASES)]).cases:
        if case.own_bundle:
            continue
        raw, context, constraints, state = corpus_inputs(case, constraints0)
        for evaluator in ("compiled", "interpreter") if checked % 25 == 0 else ("compiled",):
            got = result_json(evaluate(raw, context, Config(second, constraints, "dry-run", evaluator=evaluator), state).result)
            want = result_json(evaluate(raw, context, Config(fresh, constraints, "dry-run", evaluator=evaluator), state).result)
            assert got == want, case.name
        checked += 1
    assert checked > 1000


def test_an_edited_include_or_bundle_is_loaded_from_its_files(cache_dir: Path, bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _loads_from_files(monkeypatch)
    before = cache.load_bundle_cached(bundle_copy)
    cache.load_bundle_cached(bundle_copy)
    assert len(calls) == 1
    library = bundle_copy.parent.parent / "gates" / "health.yaml"
    library.write_text(library.read_text().replace("<= params.max_api_latency_ms", "< params.max_api_latency_ms"))
    after = cache.load_bundle_cached(bundle_copy)
    assert len(calls) == 2 and after.sources != before.sources
    gate = after.gate("health.api-latency")
    assert gate is not None and "< params.max_api_latency_ms" in gate.expression.text and "<=" not in gate.expression.text
    bundle_copy.write_text(bundle_copy.read_text() + "\n# a comment\n")
    cache.load_bundle_cached(bundle_copy)
    assert len(calls) == 3
    monkeypatch.setattr(cache, "_FINGERPRINT", ["another ep4"])  # ep4's code (or cel-python) changed
    cache.load_bundle_cached(bundle_copy)
    assert len(calls) == 4


def test_a_damaged_entry_or_a_bundle_with_problems_is_never_used(cache_dir: Path, bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _loads_from_files(monkeypatch)
    good = cache.load_bundle_cached(bundle_copy)
    (entry,) = _entries(cache_dir)
    entry.write_bytes(entry.read_bytes()[:1000])  # torn
    assert cache.load_bundle_cached(bundle_copy).digest == good.digest and len(calls) == 2
    entry.write_bytes(b"not a pickle")
    assert cache.load_bundle_cached(bundle_copy).digest == good.digest and len(calls) == 3
    bundle_copy.write_text(bundle_copy.read_text().replace("version: 1.1.0", "version: [oops"))
    for _ in range(2):
        with pytest.raises(BundleError):
            cache.load_bundle_cached(bundle_copy)
    assert len(_entries(cache_dir)) == 1  # only the good one


def test_the_cache_can_be_turned_off_and_is_bounded(cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EP4_BUNDLE_CACHE", "0")
    cache.load_bundle_cached(ROOT / "policies" / "binance-perp-default.yaml")
    assert not cache_dir.exists() or not _entries(cache_dir)
    monkeypatch.delenv("EP4_BUNDLE_CACHE")
    monkeypatch.setattr(cache, "_KEEP", 3)
    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text()
    text = text.replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    for i in range(5):
        path = tmp_path / f"b{i}.yaml"
        path.write_text(text)
        cache.load_bundle_cached(path)
    assert len(_entries(cache_dir)) == 3
    assert oct(cache_dir.stat().st_mode & 0o777) == "0o700"


def test_the_cli_uses_the_cache(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli.main import main

    args = ["execute", str(ROOT / "examples" / "decision-open-limit.json"), "--context", str(ROOT / "examples" / "context.json"),
            "--exchange", "dry-run"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert len(_entries(cache_dir)) == 1
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert json.loads(first)["reason_code"] == "DRY_RUN"
    assert CASES.is_dir()


def test_an_include_changed_while_the_bundle_loads_is_not_cached_as_current(
        cache_dir: Path, bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = bundle_copy.parent.parent / "gates" / "health.yaml"
    real = cache.load_bundle
    calls: list[str] = []

    def load_then_edit(path):
        calls.append(str(path))
        bundle = real(path)
        if len(calls) == 1:  # the file changes after the loader read it, before the entry is written
            library.write_text(library.read_text().replace("<= params.max_api_latency_ms", "< params.max_api_latency_ms"))
        return bundle

    monkeypatch.setattr(cache, "load_bundle", load_then_edit)
    cache.load_bundle_cached(bundle_copy)
    again = cache.load_bundle_cached(bundle_copy)
    assert len(calls) == 2  # the entry named the bytes that were compiled, not the edited file
    gate = again.gate("health.api-latency")
    assert gate is not None and "<=" not in gate.expression.text


# --- a restored expression's tree and error nodes stay pickled bytes until first needed -----------

import pickle  # noqa: E402
import threading  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cel_grammar import Grammar, activations, compile_for_test, outcome  # noqa: E402
from engine.cel import _Deferred  # noqa: E402

_GRAMMAR = Grammar()


def _restored(expression):
    return pickle.loads(pickle.dumps(expression, protocol=pickle.HIGHEST_PROTOCOL))


@settings(max_examples=400, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(text=st.sampled_from(["bool", "num", "any"]).flatmap(lambda k: _GRAMMAR.expr(k, 3)), activation=activations())
def test_a_restored_expression_gives_what_the_compiled_one_gives(text: str, activation: dict) -> None:
    """Values and error texts, on both evaluators, from a restored expression whose nodes are loaded
    by that very evaluation, and from one restored twice without ever being loaded in between."""
    expression = compile_for_test(text)
    if expression is None:
        return
    for evaluator in ("compiled", "interpreter"):
        want = outcome(expression, activation, evaluator)
        once = _restored(expression)
        assert isinstance(once._tree, _Deferred) and once._tree._loaded is None
        twice = _restored(once)
        assert once._tree._loaded is None  # pickling it again took its bytes as they were
        assert outcome(once, activation, evaluator) == want, (text, evaluator)
        assert outcome(twice, activation, evaluator) == want, (text, evaluator)


def test_the_bundle_decides_on_its_fast_paths_without_loading_a_tree(cache_dir: Path) -> None:
    path = ROOT / "policies" / "binance-perp-default.yaml"
    cache.load_bundle_cached(path)
    bundle = cache.load_bundle_cached(path)
    gates = bundle.risk_gates + bundle.constraint_checks
    from engine.cli.inputs import load_constraints, load_context

    context = load_context(ROOT / "examples" / "context.json")
    raw = (ROOT / "examples" / "decision-open-limit.json").read_text()
    result = evaluate(raw, context, Config(bundle, load_constraints(None, None), "dry-run")).result
    assert result.reason_code == "DRY_RUN" and len(result.gate_trace) == len(gates)
    assert all(isinstance(g.expression._tree, _Deferred) and g.expression._tree._loaded is None for g in gates)
    # an evaluation error names nodes: they are loaded for that gate only, and are the very
    # sub-trees of the tree loaded with them
    gate = gates[0]
    from engine.cel import CelEvaluationError

    with pytest.raises(CelEvaluationError, match="undeclared reference"):
        gate.expression.evaluate({})
    tree, nodes = gate.expression._tree._loaded
    subtrees = {id(t) for t in tree.iter_subtrees()}
    assert nodes and all(id(n) in subtrees for n in nodes.values() if isinstance(n, type(tree)))
    assert all(gate.expression._plan.namespace[name] is node for name, node in nodes.items())
    assert all(g.expression._tree._loaded is None for g in gates[1:])


def test_threads_that_first_need_the_nodes_together_agree(cache_dir: Path) -> None:
    from engine.cel import FieldSpec, compile_expression, to_cel

    expression = compile_expression("m.missing > 1 || false", {"m": FieldSpec("map", item=FieldSpec("any"))})
    activation = {"m": to_cel({"n": None})}
    want = outcome(expression, activation, "compiled")
    assert want[0] == "error" and "missing" in want[1]
    for _ in range(20):
        restored = _restored(expression)
        start = threading.Barrier(4)
        got: list[tuple[str, str]] = []

        def run() -> None:
            start.wait()
            got.append(outcome(restored, activation, "compiled"))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == [want] * 4


def test_a_cache_that_others_can_write_is_neither_read_nor_written(cache_dir: Path, bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry is a pickle: reading one runs what its writer put there. A cache directory that group or
    others can write (EP4_CACHE_DIR=/tmp/shared, mode 1777), or an entry file they can write, is not
    trusted (review: a tampered entry in such a directory raised the bundle's ceilings behind a valid
    certificate). The bundle is then loaded from its files."""
    import os
    import pickle

    from engine.cel.grammar import trusted_cache_dir

    calls = _loads_from_files(monkeypatch)
    good = cache.load_bundle_cached(bundle_copy)
    (entry,) = _entries(cache_dir)
    assert trusted_cache_dir() == cache_dir and len(calls) == 1
    # a tampered entry: the same bundle with the position ceiling raised
    stored = pickle.loads(entry.read_bytes())
    stored["bundle"].params["max_position_qty"] = ("per_symbol_decimal", {"BTCUSDT": "500", "ETHUSDT": "8000"})
    entry.write_bytes(pickle.dumps(stored))
    assert cache.load_bundle_cached(bundle_copy).params["max_position_qty"][1]["BTCUSDT"] == "500"  # this user's own: trusted
    entry.chmod(0o666)  # an entry others can write: not read, replaced by a load from the files
    loaded = cache.load_bundle_cached(bundle_copy)
    assert loaded.params == good.params and len(calls) == 2 and (entry.stat().st_mode & 0o777) == 0o600
    entry.write_bytes(pickle.dumps(stored))
    cache_dir.chmod(0o1777)  # a directory others can write: no cache at all
    try:
        assert trusted_cache_dir() is None
        assert cache.load_bundle_cached(bundle_copy).params == good.params and len(calls) == 3
        entry.unlink()
        cache.load_bundle_cached(bundle_copy)
        assert _entries(cache_dir) == [] and len(calls) == 4  # nothing written there either
    finally:
        cache_dir.chmod(0o700)
    assert os.stat(cache_dir).st_uid == os.getuid()
