"""Benchmark: loading the default bundle, from its files and from the compiled-bundle cache, each in
fresh processes (imports done before the clock starts), interleaved.

    .venv/bin/python tests/bench/bench_load.py [--runs 9]

"from files" is engine.bundle.load_bundle (YAML with positions, CEL parse, checks, planning);
"cached" is engine.bundle_cache.load_bundle_cached on a warm entry (read, verify the includes'
bytes, unpickle, plan the trees again from the kept code). A private cache directory is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, time
from engine.bundle import load_bundle
from engine.bundle_cache import load_bundle_cached, _fingerprint
path = sys.argv[1]
if sys.argv[2] == "files":
    t0 = time.perf_counter(); load_bundle(path); t1 = time.perf_counter()
else:
    t0 = time.perf_counter(); load_bundle_cached(path); t1 = time.perf_counter()
print((t1 - t0) * 1000)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    bundle = str(ROOT / "policies" / "binance-perp-default.yaml")
    took: dict[str, list[float]] = {"files": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="ep4-load-") as tmp:
        env = {**os.environ, "EP4_CACHE_DIR": tmp}
        subprocess.run([sys.executable, "-c", PROBE, bundle, "cached"], cwd=ROOT, env=env, check=True, capture_output=True)  # warm
        for _ in range(args.runs):
            for how in ("files", "cached"):
                out = subprocess.run([sys.executable, "-c", PROBE, bundle, how], cwd=ROOT, env=env, check=True,
                                     capture_output=True, text=True).stdout
                took[how].append(float(out))
    f, c = statistics.median(took["files"]), statistics.median(took["cached"])
    print(f"default bundle load, fresh process each, {args.runs} runs interleaved (medians): "
          f"from files {f:.1f} ms, from the cache {c:.1f} ms ({f / c:.1f}x); min {min(took['files']):.1f} / {min(took['cached']):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
