"""Benchmark: instructions per decision under valgrind's callgrind, exact where the clock is noisy.

    .venv/bin/python tests/bench/bench_instructions.py [--before REV] [--decisions 100] [--jobs 2]

A shared 2-core machine moves wall-clock figures by tens of percent from one process to the next;
the number of instructions one decision executes does not (the same inputs and PYTHONHASHSEED=0 give
the same count to within a few hundred in a million). Each scenario runs twice under callgrind, with 0
and with N decisions after the same set-up and warm-up; the difference divided by N is what one
decision costs (the set-up's objects frozen out of the cyclic collector first, so a collection
walks only what the decisions made). An instruction count is not a time (a cache miss costs more than an add), so a
change is confirmed on the clock too (tests/bench/bench_compare.py); but a difference of 1 % here
is a difference, where on the clock it is noise.

Scenarios (the default bundle unless said):
  bench    Rules 1-4 as `ep4 bench` runs them: the example decision, the context reused, empty state
  paper    Rules 1-4 as a paper or live execution runs them: a fresh context per decision (one open
           order), 220 records in state.recent (the relaxed bundle of tests/bench/bench_exchange.py)
  orders   the same with 200 open orders on another symbol in every context
  batch    one line of a dry-run batch as `ep4 execute FILE --exchange dry-run` runs it (read, state
           view, Rules 1-4, result text, record), the example decision with its id numbered

--before REV runs the same in a temporary git worktree of REV (with this virtual environment's
Python), side by side. Needs valgrind, which is not a Python package (`apt install valgrind`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SCENARIOS = ("bench", "paper", "orders", "batch")

# Each probe: set up, warm up (W decisions), then run N decisions (N from the environment). The
# inputs of all N are built before the first one runs, whatever N is, so only the decisions differ.
SETUP_BENCH = """
from engine.paths import examples_dir
from engine.pipeline import Config, evaluate
from engine.cli.inputs import load_config_bundle, load_constraints, load_context
ex = examples_dir()
config = Config(load_config_bundle(None), load_constraints(None, None), "dry-run")
context = load_context(ex / "context.json")
decision = (ex / "decision-open-limit.json").read_text()
for _ in range(50):
    evaluate(decision, context, config)
def run(n):
    for _ in range(n):
        evaluate(decision, context, config)
"""

SETUP_PAPER = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, "tests/bench")
from bench_exchange import relaxed_bundle
from engine.cli.inputs import load_constraints, load_context
from engine.pipeline import Config, evaluate
from engine.models import ExecutionContext, StateView, ExecutionRecord
config = Config(relaxed_bundle(Path(tempfile.mkdtemp(prefix="ep4-instr-"))), load_constraints(None, None), "paper")
base = load_context(Path("examples/context.json")).model_dump(mode="json")
base["account"]["positions"] = [{"symbol": "BTCUSDT", "quantity": "0", "leverage": 5, "margin_mode": "ISOLATED"}]
if ORDERS > 1:
    base["account"]["open_orders"] = [{"symbol": "ETHUSDT", "client_order_id": f"x{i}", "side": "BUY", "quantity": "0.01",
                                       "price": str(3000 + i)} for i in range(ORDERS)]
now, records, inputs = 1764028800000, [], []
for i in range(240 + LIMIT):
    now += 2000
    records.append(ExecutionRecord(decision_id=f"b-{i}", action_id="a", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT",
                                   result="SUCCESS", reason_code="ORDER_FILLED", timestamp=now - 1000, attempted=True, opens=True))
    context = ExecutionContext.model_validate({**base, "timestamp": now})
    state = StateView(recent=tuple(records[-220:]), last_execution_ms=records[-1].timestamp)
    text = json.dumps({"decision_id": f"b-{i}", "decision_code": "AUTHORIZED_ACTION", "action": {
        "type": "ACTION_OPEN_POSITION", "action_id": "a", "symbol": "BTCUSDT", "side": "LONG" if i % 2 == 0 else "SHORT",
        "quantity": "0.001", "order_type": "MARKET", "reduce_only": False}})
    inputs.append((text, context, state))
for text, context, state in inputs[:240]:
    assert evaluate(text, context, config, state).result is None
def run(n):
    for text, context, state in inputs[240:240 + n]:
        assert evaluate(text, context, config, state).result is None  # every one passes Rules 1-4
"""

SETUP_BATCH = """
import importlib, io, json, sys
cli = importlib.import_module("engine.cli.main")  # engine.cli's own `main` is the function
example = json.loads(open("examples/decision-open-limit.json").read())
lines = []
for i in range(50 + LIMIT):
    example["decision_id"] = f"d-{i}"
    lines.append(json.dumps(example, separators=(",", ":")))
args = cli.build_parser().parse_args(["execute", "-", "--context", "examples/context.json", "--exchange", "dry-run"])
def run(n):
    sys.stdin = io.StringIO("\\n".join(lines[:50 + n]) + "\\n")
    out, sys.stdout = sys.stdout, io.StringIO()
    try:
        args.func(args)
    finally:
        sys.stdout = out
"""

PROBES = {
    "bench": SETUP_BENCH,
    "paper": "ORDERS = 1\n" + SETUP_PAPER,
    "orders": "ORDERS = 200\n" + SETUP_PAPER,
    "batch": SETUP_BATCH,
}


def _count(tree: Path, scenario: str, n: int, limit: int) -> int:
    """Instructions callgrind counts for the probe with ``n`` decisions."""
    # everything the set-up made is moved out of the collector's reach first (gc.freeze): a full
    # collection during the measured decisions then walks only what they made, not a heap whose size
    # differs between two trees (which moved one tree's count by a collection's worth, ~1 %)
    code = f"LIMIT = {limit}\n" + PROBES[scenario] + f"\nimport gc\ngc.collect()\ngc.freeze()\nrun({n})\n"
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PY, "-c", code],
                          cwd=tree, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{scenario} in {tree} failed:\n{done.stderr[-3000:]}")
    return int(found[1])


def _per_decision(tree: Path, scenario: str, n: int) -> int:
    # the batch's zero run still reads its 50 warm-up lines: N more lines are the difference
    return (_count(tree, scenario, n, n) - _count(tree, scenario, 0, n)) // n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="also measure this git revision, side by side")
    ap.add_argument("--decisions", type=int, default=100, help="decisions per measured run (default 100)")
    ap.add_argument("--scenario", choices=SCENARIOS, action="append", help="only these (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="callgrind runs at once (default 2)")
    args = ap.parse_args()
    if args.decisions < 1:
        ap.error("--decisions must be at least 1")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind); nothing measured", file=sys.stderr)
        return 2
    scenarios = args.scenario or list(SCENARIOS)
    subprocess.run([PY, "-m", "compileall", "-q", "engine", "exchange"], cwd=ROOT, check=True)  # as `make bench` does
    with tempfile.TemporaryDirectory(prefix="ep4-instr-") as tmp:
        sides = {"this tree": ROOT}
        if args.before:
            worktree = Path(tmp) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), args.before], cwd=ROOT, check=True)
            subprocess.run([PY, "-m", "compileall", "-q", "engine", "exchange"], cwd=worktree, check=True)
            sides = {args.before: worktree, **sides}
        try:
            for tree in sides.values():  # a first load fills the bundle cache, outside the counts
                subprocess.run([PY, "-c", SETUP_BENCH], cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), check=True)
            jobs = [(side, s) for s in scenarios for side in sides]
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                counts = dict(zip(jobs, pool.map(lambda job: _per_decision(sides[job[0]], job[1], args.decisions), jobs)))
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(Path(tmp) / "before")], cwd=ROOT, check=False)
    print(f"instructions per decision (callgrind, {args.decisions} decisions per run, PYTHONHASHSEED=0)")
    for s in scenarios:
        row = "  ".join(f"{side}: {counts[(side, s)]:>11,}" for side in sides)
        if args.before:
            before, after = counts[(args.before, s)], counts[("this tree", s)]
            row += f"  ({(after - before) / before:+.1%})"
        print(f"  {s:7} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
