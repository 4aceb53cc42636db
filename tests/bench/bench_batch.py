"""Benchmark: `ep4 execute` of a large decisions file in dry-run, as one process, as a CI job runs it.

    .venv/bin/python tests/bench/bench_batch.py [--lines 100000]

Writes a JSON Lines file of distinct decisions (the shipped example with its ids numbered), runs
`ep4 execute FILE --context examples/context.json --exchange dry-run` once, and reports decisions per
second and the child's peak resident memory. Every line must come back as one result.
Also times `ep4 --help` and `ep4 execute` of one decision as processes (median of 5).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EP4 = [sys.executable, "-m", "engine.cli"]


def timed(argv: list[str], runs: int = 5) -> float:
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    args = ap.parse_args()
    if args.lines < 1:
        ap.error("--lines must be at least 1")
    example = json.loads((ROOT / "examples" / "decision-open-limit.json").read_text())
    with tempfile.TemporaryDirectory(prefix="ep4-batch-") as tmp:
        path = Path(tmp) / "decisions.jsonl"
        with path.open("w") as f:
            for i in range(args.lines):
                example["decision_id"] = f"d-{i}"
                f.write(json.dumps(example, separators=(",", ":")) + "\n")
        out = Path(tmp) / "results.jsonl"
        argv = EP4 + ["execute", str(path), "--context", "examples/context.json", "--exchange", "dry-run"]
        t0 = time.perf_counter()
        with out.open("w") as sink:
            subprocess.run(argv, cwd=ROOT, check=True, stdout=sink)
        took = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with out.open() as f:
            results = sum(1 for _ in f)
        if results != args.lines:
            print(f"FAILED: {results} results for {args.lines} decisions", file=sys.stderr)
            return 1
        one = Path(tmp) / "one.json"
        one.write_text(json.dumps(example))
        help_ms = timed(EP4 + ["--help"])
        one_ms = timed(EP4 + ["execute", str(one), "--context", "examples/context.json", "--exchange", "dry-run"])
    print(f"ep4 execute, {args.lines} decisions in dry-run, one process: {took:.1f} s, "
          f"{args.lines / took:,.0f} decisions/s, peak RSS {rss_mb:.0f} MB")
    print(f"as processes (median of 5): ep4 --help {help_ms:.0f} ms; ep4 execute of one decision {one_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
