"""`make fuzz`: generated hostile inputs against the four readers; every answer precise and quick.

    python tests/fuzz.py [--count 1000000] [--seed 20261127] [--jobs N]

Targets (the count is split between them): decision JSON (evaluate must return a result, never
raise), context JSON (a validation error or a context; a context must then evaluate), bundle YAML
(a BundleError or a bundle) and CEL text (a CelCompileError or an expression whose evaluation gives a
value or a CelEvaluationError). Inputs are mutations of real ones (fields replaced by random JSON,
removed, repeated; numbers made huge, tiny or long; lone surrogates, Unicode digits, deep nesting,
YAML anchors) plus free-form text. Prints the counts, the slowest answer and the peak memory; exit 1
on any traceback or any answer slower than 1 s. An answer's time is the CPU time the reader spent on
it (`time.process_time`), so that a busy machine does not fail the run, less the garbage collector's
pauses during it (their length follows the whole heap, hypothesis's included, not the input; they
are measured with `gc.callbacks` and printed: the longest, and the slowest answer with them); the
slowest wall time is printed too. `--jobs N` splits the count over N processes (seeds SEED, SEED+1, ...); a
progress line goes to stderr every 50,000 inputs.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cel_grammar import STR_LITERALS, Grammar, activations  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
SLOW_S = 1.0

NASTY_STRINGS = ["", " ", "\\ud800", "\\udfff", "٠.٠١", "０.０１０", "0.01\\n", "1e999999999", "-1e-999999999", "NaN",
                 "Infinity", "0x10", "1_000", "9" * 120, "0." + "0" * 90 + "1", "\\u2028", "AUTHORIZED_ACTION", "BTCUSDT"]
NASTY_NUMBERS = ["1e999999999", "1e-70", "1e61", "-0", "0.30000000000000004", "1" + "0" * 150, "1e5000", "-1"]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.sampled_from(NASTY_STRINGS),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)


def _mutate(doc: dict, draw) -> str:
    """A real document, damaged at the text level and at the value level."""
    data = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(0, 3))):
        node, key = data, None
        path = []
        while isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        choice = draw(st.integers(0, 3))
        if choice == 0:
            del parent[key]
        else:
            parent[key] = draw(json_value)
    text = json.dumps(data)
    trick = draw(st.integers(0, 7))
    if trick == 1 and '"quantity"' in text:
        text = text.replace('"quantity"', '"quantity": ' + draw(st.sampled_from(NASTY_NUMBERS)) + ', "quantity"', 1)
    elif trick == 2:
        text = text.replace('"decision_code"', '"decision_code": "HOLD", "decision_code"', 1)
    elif trick == 3:
        text = "[" * draw(st.sampled_from([10, 1000, 100_000])) + text
    elif trick == 4:
        text = text[: draw(st.integers(0, len(text)))]
    elif trick == 5:
        text = text.replace("1764028800000", draw(st.sampled_from(NASTY_NUMBERS)))
    return text


@st.composite
def mutated(draw, doc: dict) -> str:
    return _mutate(doc, draw)


PROGRESS_EVERY = 50_000
BATCH = 5_000  # inputs per target per hypothesis run (see run.batch)


class Tally:
    def __init__(self, label: str = "") -> None:
        self.label = label
        self.counts: dict[str, int] = {}
        self.slowest = (0.0, "", "")
        self.slowest_wall = (0.0, "", "")
        self.failures: list[str] = []
        self.started = time.monotonic()
        self.where = ""
        # the garbage collector's pauses: their length follows the whole process heap (hypothesis's
        # included), not the input being answered, so they are measured apart
        self.gc_total = 0.0
        self.gc_longest = 0.0
        self.slowest_with_gc = (0.0, "", "")
        self._gc_started: float | None = None
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict) -> None:
        # a collection that starts at the recursion limit (a deeply nested input) can make this
        # callback fail on entry: a pause is only subtracted when both of its ends were seen, so a
        # missed end counts the pause in the answer, never the other way round
        if phase == "start":
            self._gc_started = time.process_time()
        elif self._gc_started is not None:
            pause = time.process_time() - self._gc_started
            self._gc_started = None
            self.gc_total += pause
            self.gc_longest = max(self.gc_longest, pause)

    def __getstate__(self) -> dict:  # a worker's tally goes back to the parent
        return {k: v for k, v in self.__dict__.items() if k != "_gc_started"}

    def time(self, target: str, text: str, fn) -> None:
        c0, w0, g0 = time.process_time(), time.perf_counter(), self.gc_total
        try:
            fn()
        except Exception:
            self.failures.append(f"{target} ({self.where} --targets {target}): {text[:200]!r}\n{traceback.format_exc(limit=6)}")
            print(f"fuzz{self.label}: FAILED {self.failures[-1]}", file=sys.stderr, flush=True)
        with_gc, wall = time.process_time() - c0, time.perf_counter() - w0
        took = with_gc - (self.gc_total - g0)
        self.counts[target] = self.counts.get(target, 0) + 1
        if with_gc > self.slowest_with_gc[0]:
            self.slowest_with_gc = (with_gc, target, text[:300])
        if took > self.slowest[0]:
            self.slowest = (took, target, text[:300])
        if wall > self.slowest_wall[0]:
            self.slowest_wall = (wall, target, text[:120])
        if took > SLOW_S:
            self.failures.append(f"{target} ({self.where} --targets {target}): {took:.2f} s CPU for {text[:200]!r}")
            print(f"fuzz{self.label}: FAILED {self.failures[-1]}", file=sys.stderr, flush=True)
        done = sum(self.counts.values())
        if done % PROGRESS_EVERY == 0:
            print(f"fuzz{self.label}: {done} inputs, {time.monotonic() - self.started:.0f} s, "
                  f"{len(self.failures)} failures", file=sys.stderr, flush=True)

    def merge(self, other: "Tally") -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.slowest = max(self.slowest, other.slowest)
        self.slowest_wall = max(self.slowest_wall, other.slowest_wall)
        self.slowest_with_gc = max(self.slowest_with_gc, other.slowest_with_gc)
        self.gc_total += other.gc_total
        self.gc_longest = max(self.gc_longest, other.gc_longest)
        self.failures += other.failures


TARGETS = ("decision", "context", "bundle", "cel")


def run(count: int, seed_value: int, label: str = "", targets: tuple[str, ...] = TARGETS, first_batch: int = 0) -> Tally:
    from engine.bundle import load_bundle
    from engine.cel import CelCompileError, CelEvaluationError, compile_expression
    from engine.cli.inputs import load_config_bundle, load_constraints, load_context
    from engine.errors import BundleError
    from engine.models import ExecutionContext
    from engine.numbers import loads
    from engine.pipeline import Config, evaluate
    from pydantic import ValidationError
    from cel_grammar import environment

    tally = Tally(label)
    config = Config(load_config_bundle(None), load_constraints(None, None), "dry-run")
    context = load_context(EX / "context.json")
    decision_doc = json.loads((EX / "decision-open-limit.json").read_text())
    context_doc = json.loads((EX / "context.json").read_text())
    bundle_text = (ROOT / "policies" / "binance-perp-default.yaml").read_text().replace("../gates/", str(ROOT / "gates") + "/").replace(
        "includeRoot: ..", f"includeRoot: {ROOT}")
    variables = environment()[0]
    grammar = Grammar()
    tmp = Path(__import__("tempfile").mkdtemp(prefix="ep4-fuzz-"))
    per = max(1, count // len(targets))

    def decision_target(text: str) -> None:
        result = evaluate(text, context, config).result
        assert result is not None and result.reason_code
        result.model_dump_json()  # the result can be written out

    def context_target(text: str) -> None:
        try:
            ctx = ExecutionContext.model_validate(loads(text))
        except (ValueError, ValidationError, RecursionError):
            return
        evaluate(json.dumps(decision_doc), ctx, config).result.model_dump_json()

    def bundle_target(text: str) -> None:
        path = tmp / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_bundle(path)
        except BundleError as exc:
            assert exc.problems and all(p.line >= 1 for p in exc.problems)

    def cel_target(text: str, activation) -> None:
        try:
            expression = compile_expression(text, variables, require_bool=False)
        except CelCompileError:
            return
        for evaluator in ("compiled", "interpreter"):
            try:
                expression.evaluate(activation, evaluator)
            except CelEvaluationError:
                pass

    def batch(batch_seed: int, n: int) -> None:
        """n inputs per target from one seed. Hypothesis keeps every example it tried in memory
        for the life of a @given test, so a million in one would grow the heap (and the garbage
        collector's pauses, which land in some answer's time): batches keep both flat."""
        common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), max_examples=n)

        @seed(batch_seed)
        @settings(**common)
        @given(mutated(decision_doc))
        def decisions(text) -> None:
            tally.time("decision", text, lambda: decision_target(text))

        @seed(batch_seed)
        @settings(**common)
        @given(mutated(context_doc))
        def contexts(text) -> None:
            tally.time("context", text, lambda: context_target(text))

        @seed(batch_seed)
        @settings(**common)
        @given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["x", "  - &a [*a]", "*b", ": :", "\t", "\\ud800", "'", "{", "include: [/dev/zero]", "expression: '((((('"])), max_size=3))
        def bundles(edits) -> None:
            lines = bundle_text.splitlines()
            for where, what in edits:
                lines.insert(min(where, len(lines)), what)
            text = "\n".join(lines)
            tally.time("bundle", f"the shipped bundle with lines inserted (line index, text): {edits!r}", lambda: bundle_target(text))

        @seed(batch_seed)
        @settings(**common)
        @given(st.one_of(st.sampled_from(["bool", "num", "any"]).flatmap(lambda k: grammar.expr(k, 3)),
                         st.text(alphabet="()[]{}!|&<>=+-*/%.,?:\"' 0123456789abcxyz_" + "".join(s[1:2] for s in STR_LITERALS), max_size=40)),
               activations())
        def cel(text, activation) -> None:
            tally.time("cel", text, lambda: cel_target(text, activation))

        for name, target in zip(TARGETS, (decisions, contexts, bundles, cel)):
            if name in targets:
                target()

    done, index = 0, first_batch
    while done < per:
        tally.where = f"seed {seed_value}, batch {index}: reproduce with --seed {seed_value} --first-batch {index} --count {BATCH}"
        n = min(BATCH, per - done)
        batch(seed_value * 100_003 + index, n)
        gc.collect()
        done, index = done + n, index + 1
    return tally


def _job(args: tuple[int, int, str, tuple[str, ...], int]) -> Tally:
    return run(*args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of " + ", ".join(TARGETS))
    ap.add_argument("--first-batch", type=int, default=0, help="start at this batch (to reproduce a failure)")
    args = ap.parse_args()
    targets = tuple(t for t in args.targets.split(",") if t)
    if not targets or set(targets) - set(TARGETS):
        ap.error(f"--targets: a comma-separated subset of {', '.join(TARGETS)}")
    if args.count < len(targets) * max(1, args.jobs):
        ap.error("--count must be at least 4 per job")
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    t0 = time.monotonic()
    if args.jobs == 1:
        tally = run(args.count, args.seed, targets=targets, first_batch=args.first_batch)
    else:
        from concurrent.futures import ProcessPoolExecutor
        shares = [args.count // args.jobs + (1 if i < args.count % args.jobs else 0) for i in range(args.jobs)]
        tally = Tally()
        with ProcessPoolExecutor(args.jobs) as pool:
            for part in pool.map(_job, [(n, args.seed + i, f"[{i}]", targets, args.first_batch) for i, n in enumerate(shares)]):
                tally.merge(part)
    took = time.monotonic() - t0
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    total = sum(tally.counts.values())
    seeds = str(args.seed) if args.jobs == 1 else f"{args.seed}..{args.seed + args.jobs - 1}"
    print(f"fuzz: {total} inputs in {took:.0f} s ({', '.join(f'{k} {v}' for k, v in tally.counts.items())}); "
          f"seed {seeds}, {args.jobs} job(s)")
    print(f"slowest answer {tally.slowest[0] * 1000:.1f} ms CPU ({tally.slowest[1]}), "
          f"slowest wall {tally.slowest_wall[0] * 1000:.1f} ms ({tally.slowest_wall[1]}); "
          f"peak memory {peak:.0f} MB per process")
    print(f"slowest input: {tally.slowest[2][:300]!r}")
    print(f"with the collector's pauses: slowest {tally.slowest_with_gc[0] * 1000:.1f} ms CPU ({tally.slowest_with_gc[1]}); "
          f"longest pause {tally.gc_longest * 1000:.1f} ms, {tally.gc_total:.0f} s in all")
    print(f"tracebacks or answers over {SLOW_S:.0f} s: {len(tally.failures)}")
    for f in tally.failures[:20]:
        print("FAILED", f)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
