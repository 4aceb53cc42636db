"""Benchmark: `ep4 certify` over a generated 10,000-case corpus, with --jobs 1 and --jobs 2, in one run.

    .venv/bin/python tests/bench/bench_certify.py [--cases 10000] [--runs 3]

The corpus is the committed boundary corpus (tests/cases/boundary) repeated with fresh decision ids
until it holds --cases cases, pinned once with `ep4 certify --update --outcomes-only`. Each figure
is the median over --runs of the whole command as CI runs it (a fresh process: start-up, bundle
load, reading the corpus, running every case, comparing with the pins), and of the corpus run alone
(the cases/s `ep4 certify` prints). The runs of the two job counts are interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EP4 = str(Path(sys.executable).with_name("ep4"))
BUNDLE = str(ROOT / "policies" / "binance-perp-default.yaml")


def build(out: Path, count: int) -> int:
    src = ROOT / "tests" / "cases" / "boundary"
    shutil.copytree(src / "_base", out / "_base")
    cases = sorted(p for p in src.rglob("*.json") if "_base" not in p.parts)
    n = 0
    while n < count:
        for p in cases:
            if n >= count:
                break
            doc = json.loads(p.read_text())
            doc["decision"]["decision_id"] = f"d-{n}"
            doc.pop("expect", None)
            (out / f"{n:06d}.json").write_text(json.dumps(doc, indent=1))
            n += 1
    return n


def certify(corpus: Path, jobs: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    p = subprocess.run([EP4, "certify", BUNDLE, "--cases", str(corpus), "--outcomes-only", "--jobs", str(jobs), "--no-progress"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"certify failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    rate = float(re.search(r"\(([\d,]+) cases/s", p.stdout).group(1).replace(",", ""))
    return wall, rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        n = build(corpus, args.cases)
        t0 = time.perf_counter()
        pin = subprocess.run([EP4, "certify", BUNDLE, "--cases", str(corpus), "--outcomes-only", "--update", "--jobs", "2", "--no-progress"],
                             capture_output=True, text=True)
        if pin.returncode != 0:
            raise SystemExit(pin.stdout[-2000:] + pin.stderr[-2000:])
        print(f"corpus: {n} cases generated and pinned in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs")
        results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for _ in range(args.runs):
            for jobs in (1, 2):
                results[jobs].append(certify(corpus, jobs))
        for jobs, rs in results.items():
            wall = statistics.median(w for w, _ in rs)
            rate = statistics.median(r for _, r in rs)
            print(f"--jobs {jobs}: whole command median {wall:.2f} s ({n / wall:,.0f} cases/s end to end); "
                  f"corpus run {rate:,.0f} cases/s ({rate / jobs:,.0f} per job)")
        ratio = statistics.median(w for w, _ in results[1]) / statistics.median(w for w, _ in results[2])
        print(f"--jobs 2 vs --jobs 1, whole command: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
