"""Benchmark: one state view (what every paper or live decision reads from the ledger) against a
long ledger, with the ledger's partial indexes and, side by side in the same run, without them.

    .venv/bin/python tests/bench/bench_ledger.py [--rows 100000] [--runs 30]

The ledger holds --rows finished calls one minute apart (none of which arms the cooldown) and the
lookback window (the default bundle's 1 h) holds the last 61 of them. The figure is the
median time of `Ledger.view_with_refs` reading its window whole (as a process's first view does)
plus, as each process does once when it opens an executor, the search for in-flight rows. "Without" drops the three partial indexes (as a ledger had them
before issue 6's third landing) in a copy of the same file.

Second part: state views as one process's executions make them, each after a write-ahead row and
its outcome, with --window calls in the lookback: the window kept between views (this ledger)
against the window read whole for every view (as before issue 6's fourth landing; forced here by
dropping the kept window before each view), interleaved.
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
        ledger._window = None  # a process's first view: the window read whole (the second part keeps it)
        t0 = time.perf_counter()
        ledger.view_with_refs("d-x", "a", now, LOOKBACK_MS)
        ledger.in_flight_rows()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def executions(ledger: Ledger, start: int, step_ms: int, steps: int, *, whole: bool) -> list[float]:
    """ms per state view, each after one write-ahead row and its outcome ``step_ms`` later."""
    from engine.models import ExecutionRecord

    out = []
    for i in range(steps):
        ts = start + i * step_ms
        record = ExecutionRecord(decision_id=f"e-{ts}", action_id="a", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT",
                                 result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN", timestamp=ts, attempted=True, opens=True)
        ledger.write_ahead(record, client_order_id=None, trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c")
        ledger.complete(record.model_copy(update={"result": "SUCCESS", "reason_code": "ORDER_FILLED"}), arms=False)
        if whole:
            ledger._window = None
        t0 = time.perf_counter()
        ledger.view_with_refs(f"e-{ts + step_ms}", "a", ts + step_ms, LOOKBACK_MS)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--window", type=int, default=400, help="calls in the lookback for the second part")
    args = ap.parse_args()
    if args.rows < 1 or args.runs < 1 or args.window < 1:
        ap.error("--rows, --runs and --window must be at least 1")
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
    with tempfile.TemporaryDirectory(prefix="ep4-ledger-") as tmp:
        step = LOOKBACK_MS // args.window
        sides = {"kept": Ledger(Path(tmp) / "kept"), "whole": Ledger(Path(tmp) / "whole")}
        start = T0
        for ledger in sides.values():  # fill the lookback first
            executions(ledger, start, step, args.window, whole=True)
        start += args.window * step
        samples = {"kept": [], "whole": []}
        for i in range(6):  # interleaved rounds
            for side in ("kept", "whole")[:: 1 if i % 2 == 0 else -1]:
                samples[side] += executions(sides[side], start, step, args.runs, whole=side == "whole")
            start += args.runs * step
        k, wh = statistics.median(samples["kept"]), statistics.median(samples["whole"])
        print(f"state views after each execution, {args.window} calls in the lookback, median of {6 * args.runs} each, interleaved")
        print(f"  window read whole every view: {wh:.3f} ms")
        print(f"  window kept between views:    {k:.3f} ms ({wh / k:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
