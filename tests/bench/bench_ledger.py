"""Benchmark: one state view (what every paper or live decision reads from the ledger) against a
long ledger, with the ledger's partial indexes and, side by side in the same run, without them.

    .venv/bin/python tests/bench/bench_ledger.py [--rows 100000] [--runs 30]

The ledger holds --rows finished calls one minute apart (none of which arms the cooldown) and the
lookback window (the default bundle's 1 h) holds the last 61 of them. The figure is the
median time of `Ledger.view_with_refs` plus, as each process does once when it opens an executor,
the search for in-flight rows. "Without" drops the three partial indexes (as a ledger had them
before issue 6's third landing) in a copy of the same file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.ledger import Ledger  # noqa: E402

T0 = 1_764_028_800_000
LOOKBACK_MS = 3_600_000


def build(path: Path, rows: int) -> None:
    ledger = Ledger(path)
    db = ledger._db
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO executions (decision_id, action_id, action_type, symbol, timestamp, status, result, reason_code, "
        "attempted, opens, trace_id, input_digest, bundle_digest, constraints_digest, arms_cooldown) "
        "VALUES (?, 'a', 'ACTION_OPEN_POSITION', 'BTCUSDT', ?, 'DONE', 'SUCCESS', 'ORDER_ACCEPTED', 1, 1, 't', 'i', 'b', 'c', 0)",
        ((f"d-{i}", T0 + i * 60_000) for i in range(rows)),
    )
    db.execute("COMMIT")
    ledger.close()


def timed(ledger: Ledger, now: int, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        ledger.view_with_refs("d-x", "a", now, LOOKBACK_MS)
        ledger.in_flight_rows()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="ep4-ledger-") as tmp:
        with_dir, without_dir = Path(tmp) / "with", Path(tmp) / "without"
        build(with_dir, args.rows)
        shutil.copytree(with_dir, without_dir)
        with_ledger = Ledger(with_dir)
        without_ledger = Ledger(without_dir)
        for name in ("executions_attempted", "executions_arming", "executions_in_flight"):
            without_ledger._db.execute(f"DROP INDEX {name}")  # as the ledger was before
        now = T0 + (args.rows - 1) * 60_000
        window = len(with_ledger.view(None, None, now, LOOKBACK_MS).recent)
        assert window == len(without_ledger.view(None, None, now, LOOKBACK_MS).recent)
        samples: dict[str, list[float]] = {"with": [], "without": []}
        for i in range(5):  # interleaved rounds
            for side, ledger in (("with", with_ledger), ("without", without_ledger))[:: 1 if i % 2 == 0 else -1]:
                samples[side] += timed(ledger, now, args.runs)
        w, wo = statistics.median(samples["with"]), statistics.median(samples["without"])
        print(f"ledger of {args.rows:,} calls, {window} in the 1 h lookback; state view + in-flight search, "
              f"median of {5 * args.runs} each, interleaved")
        print(f"  without the partial indexes: {wo:.2f} ms")
        print(f"  with them:                   {w:.2f} ms ({wo / w:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
