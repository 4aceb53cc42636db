"""The execution history the temporal and frequency gates read, held in memory.

The ledger (engine/ledger.py) persists the same records; both build the :class:`StateView` the
pure core receives, so the view is an explicit input (spec §8.1). ``recent`` holds the *attempted*
records (exchange calls made, or that a dry-run would have made) within the lookback: what the
frequency gates count, bounded by those very gates, so the view stays small however long the run.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .models import ExecutionRecord, StateView

__all__ = ["MemoryState", "arms_cooldown", "merge_views"]


def arms_cooldown(record: ExecutionRecord) -> bool:
    """Spec §6.3: a FAILED_SAFE starts the cooldown, except the cooldown gate's own refusal
    (otherwise a host that keeps asking would extend the cooldown for ever). Ledger.view() says the
    same in SQL."""
    return record.result == "FAILED_SAFE" and record.reason_code != "COOLDOWN_ACTIVE"


@dataclass
class MemoryState:
    """This run's records (dry-run), indexed so a view costs O(log n + what it returns): the
    (decision_id, action_id) keys for duplicates, the attempted records in time order for the
    frequency gates, and the times of attempts and of cooldown-arming failures."""

    keys: set[tuple[str, str]] = field(default_factory=set)
    attempted: list[ExecutionRecord] = field(default_factory=list)
    attempt_times: list[int] = field(default_factory=list)
    failure_times: list[int] = field(default_factory=list)

    def add(self, record: ExecutionRecord) -> None:
        self.keys.add((record.decision_id, record.action_id))
        if record.attempted:
            bisect.insort(self.attempted, record, key=_time)
            _insert_time(self.attempt_times, record.timestamp)
        if arms_cooldown(record):
            _insert_time(self.failure_times, record.timestamp)

    def view(self, decision_id: str | None, action_id: str | None, now_ms: int, lookback_ms: int) -> StateView:
        key = (decision_id, action_id)
        lo = bisect.bisect_left(self.attempted, now_ms - lookback_ms, key=_time)
        hi = bisect.bisect_right(self.attempted, now_ms, key=_time)
        return StateView(
            executed=(key,) if key in self.keys else (),
            recent=tuple(self.attempted[lo:hi]),
            last_execution_ms=_latest(self.attempt_times, now_ms),
            last_failed_safe_ms=_latest(self.failure_times, now_ms),
        )


def _time(record: ExecutionRecord) -> int:
    return record.timestamp


def _insert_time(times: list[int], t: int) -> None:
    i = bisect.bisect_left(times, t)
    if i == len(times) or times[i] != t:
        times.insert(i, t)


def _latest(times: list[int], now_ms: int) -> int | None:
    i = bisect.bisect_right(times, now_ms)
    return times[i - 1] if i else None


def merge_views(a: StateView, b: StateView) -> StateView:
    """One view from two sources (e.g. the ledger and this run's in-memory dry-run records)."""

    def latest(x: int | None, y: int | None) -> int | None:
        return max(v for v in (x, y) if v is not None) if (x is not None or y is not None) else None

    return StateView(
        executed=tuple(sorted(set(a.executed) | set(b.executed))),
        recent=tuple(sorted(a.recent + b.recent, key=lambda r: r.timestamp)),
        last_execution_ms=latest(a.last_execution_ms, b.last_execution_ms),
        last_failed_safe_ms=latest(a.last_failed_safe_ms, b.last_failed_safe_ms),
    )
