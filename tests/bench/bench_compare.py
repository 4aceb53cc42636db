"""Benchmark: this working tree against an earlier revision, interleaved, in one run on one machine.

    .venv/bin/python tests/bench/bench_compare.py --before REV [--rounds 5]

The earlier revision is checked out in a temporary git worktree and run with this virtual
environment's Python (so both sides use the same libraries). Each round runs, for each side, in
alternating order: Rules 1-4 in-process as `ep4 bench --evaluator compiled` runs it (8,000 runs;
p10, p50, p99, min), a 20,000-line dry-run batch as one process, two one-decision processes, and
`tests/bench/bench_exchange.py --runs 150` (the side's own copy). Both trees are compiled to
bytecode first. Medians over the rounds are printed. A shared machine varies by tens of percent between runs; only figures from the same run
are compared, and the p10 is the steadiest in-process figure.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


# Rules 1-4 in-process, the context reused, as `ep4 bench --evaluator compiled` does it; run with the
# side's own engine (python -c puts the working directory first on sys.path)
PROBE = """
import time
from engine.paths import examples_dir
from engine.pipeline import Config, evaluate
from engine.cli.inputs import load_config_bundle, load_constraints, load_context
ex = examples_dir()
config = Config(load_config_bundle(None), load_constraints(None, None), "dry-run")
context = load_context(ex / "context.json")
decision = (ex / "decision-open-limit.json").read_text()
for _ in range(200):
    evaluate(decision, context, config)
s = []
for _ in range(8000):
    t0 = time.perf_counter_ns(); evaluate(decision, context, config); s.append(time.perf_counter_ns() - t0)
s.sort()
print(*(s[int(len(s) * q)] / 1000 for q in (0.10, 0.50, 0.99)), s[0] / 1000)
"""


def _measure(tree: Path, batch: Path, one: Path, out: dict[str, list[float]]) -> None:
    text = subprocess.run([PY, "-c", PROBE], cwd=tree, capture_output=True, text=True, check=True).stdout
    p10, p50, p99, low = (float(x) for x in text.split())
    out["p10"].append(p10)
    out["p50"].append(p50)
    out["p99"].append(p99)
    out["min"].append(low)
    context = str(ROOT / "examples" / "context.json")
    t0 = time.perf_counter()
    subprocess.run([PY, "-m", "engine.cli", "execute", str(batch), "--context", context, "--exchange", "dry-run"], cwd=tree,
                   stdout=subprocess.DEVNULL, check=True)
    out["batch"].append(20_000 / (time.perf_counter() - t0))
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run([PY, "-m", "engine.cli", "execute", str(one), "--context", context, "--exchange", "dry-run"], cwd=tree,
                       capture_output=True, check=True)
        out["one"].append((time.perf_counter() - t0) * 1000)
    text = subprocess.run([PY, "tests/bench/bench_exchange.py", "--runs", "150"], cwd=tree, capture_output=True, text=True, check=True).stdout
    e = re.search(r"fsynced audit\): median ([\d.]+) ms", text)
    b = re.search(r"order:\s+median ([\d.]+) ms", text)
    assert e is not None and b is not None, text
    out["exec"].append(float(e[1]))
    out["bare"].append(float(b[1]))
    out["overhead"].append(float(e[1]) - float(b[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, metavar="REV", help="the git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    keys = ("p10", "p50", "p99", "min", "batch", "one", "exec", "bare", "overhead")
    results: dict[str, dict[str, list[float]]] = {side: {k: [] for k in keys} for side in ("before", "after")}
    with tempfile.TemporaryDirectory(prefix="ep4-compare-") as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), args.before], cwd=ROOT, check=True)
        try:
            # both sides from bytecode, as pip gives installed packages (make bench does the same for this
            # tree): a fresh worktree has none, and where PYTHONDONTWRITEBYTECODE is set every process of it
            # would compile ep4's modules again (~150 ms of a one-decision process on this machine)
            for tree in (worktree, ROOT):
                subprocess.run([PY, "-m", "compileall", "-q", "engine", "exchange"], cwd=tree, check=True, stdout=subprocess.DEVNULL)
            example = json.loads((ROOT / "examples" / "decision-open-limit.json").read_text())
            batch, one = Path(tmp) / "batch.jsonl", Path(tmp) / "one.json"
            with batch.open("w") as f:
                for i in range(20_000):
                    example["decision_id"] = f"d-{i}"
                    f.write(json.dumps(example, separators=(",", ":")) + "\n")
            one.write_text(json.dumps(example))
            sides = {"before": worktree, "after": ROOT}
            for r in range(args.rounds):
                order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
                for side in order:
                    _measure(sides[side], batch, one, results[side])
                print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
    med = {side: {k: statistics.median(v) for k, v in results[side].items()} for side in results}
    b, a = med["before"], med["after"]
    print(f"{args.before} (before) vs this tree (after), {args.rounds} interleaved rounds, medians over rounds")
    print(f"  Rules 1-4 in-process, compiled, 8,000 runs: p10 {b['p10']:.1f} -> {a['p10']:.1f} us ({b['p10'] / a['p10']:.2f}x), "
          f"p50 {b['p50']:.1f} -> {a['p50']:.1f} us, p99 {b['p99']:.1f} -> {a['p99']:.1f} us, min {b['min']:.1f} -> {a['min']:.1f} us")
    print(f"  20,000-line dry-run batch, one process: {b['batch']:,.0f} -> {a['batch']:,.0f} decisions/s ({a['batch'] / b['batch']:.2f}x)")
    print(f"  one dry-run decision as a process: {b['one']:.0f} -> {a['one']:.0f} ms")
    print(f"  paper execution over loopback: {b['exec']:.2f} -> {a['exec']:.2f} ms; bare request {b['bare']:.2f} / {a['bare']:.2f} ms; "
          f"ep4 overhead {b['overhead']:.2f} -> {a['overhead']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
