"""The execution history the temporal and frequency gates read, held in memory.

The ledger (engine/ledger.py) persists the same records; both build the :class:`StateView` the
pure core receives, so the view is an explicit input (spec §8.1). ``recent`` holds the *attempted*
records (exchange calls made, or that a dry-run would have made) within the lookback: what the
frequency gates count, bounded by those very gates, so the view stays small however long the run.
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field

from .models import ExecutionRecord, StateView

__all__ = ["MemoryState", "arms_cooldown", "merge_views"]


# The operator's own refusals: the cooldown is for failures, not for a switch the operator flipped.
_NEVER_ARM = frozenset({"TRADING_HALTED", "TRADING_REDUCE_ONLY"})


def arms_cooldown(
    result: str, rule: int | None, timestamp: int, state: StateView, cooldown_ms: int, armed_by: frozenset[int],
    reason_code: str = "",
) -> bool:
    """Spec §6.3: a FAILED_SAFE starts the enforced cooldown when its rule is one the bundle lists in
    ``postFailure.cooldownArmedBy`` (default: every rule, as the spec reads) and no cooldown is
    already running: a refusal during a cooldown never moves its end, or a host that keeps asking
    would extend it for ever (pure: decided from the state view the decision was evaluated with).

    A failure of Rules 5-6 (an exchange call that failed, or whose outcome is unknown) starts a new
    cooldown even during one: the calls a cooldown lets through (cancels, reduce-only orders;
    gates/temporal.yaml) can fail too, and an order left in doubt then is as much a reason to wait as
    the first one was. Asking again cannot produce such a failure; only the exchange can. (A
    write-ahead that could not be made, STATE_UNAVAILABLE, has no ledger row to carry it.)"""
    if result != "FAILED_SAFE" or rule not in armed_by or reason_code in _NEVER_ARM:
        return False
    if rule in _CALL_RULES:
        return True
    running = state.last_failed_safe_ms is not None and timestamp - state.last_failed_safe_ms < cooldown_ms
    return not running


_CALL_RULES = frozenset({5, 6})


@dataclass
class MemoryState:
    """This run's records (dry-run), indexed so a view costs O(log n + what it returns): the
    (decision_id, action_id) keys for duplicates, the attempted records in time order for the
    frequency gates, and the times of attempts and of cooldown-arming failures."""

    keys: set[tuple[str, str]] = field(default_factory=set)
    attempted: list[ExecutionRecord] = field(default_factory=list)
    attempt_times: list[int] = field(default_factory=list)
    failure_times: list[int] = field(default_factory=list)
    # the last view handed out: a view with the same contents is that (immutable) object again, so
    # what is kept with it (its canonical text for the input digest, its CEL values) is reused
    _last: StateView | None = field(default=None, repr=False, compare=False)

    def add(self, record: ExecutionRecord, *, arms: bool) -> None:
        self.keys.add((record.decision_id, record.action_id))
        if record.attempted:
            bisect.insort(self.attempted, record, key=_time)
            _insert_time(self.attempt_times, record.timestamp)
        if arms:
            _insert_time(self.failure_times, record.timestamp)

    def view(self, decision_id: str | None, action_id: str | None, now_ms: int, lookback_ms: int) -> StateView:
        key = (decision_id, action_id)
        lo = bisect.bisect_left(self.attempted, now_ms - lookback_ms, key=_time)
        hi = bisect.bisect_right(self.attempted, now_ms, key=_time)
        executed = (key,) if key in self.keys else ()
        recent = tuple(self.attempted[lo:hi])
        last_execution_ms = self.attempt_times[-1] if self.attempt_times else None
        last_failed_safe_ms = self.failure_times[-1] if self.failure_times else None
        last = self._last
        if (last is not None and last.executed == executed and last.last_execution_ms == last_execution_ms
                and last.last_failed_safe_ms == last_failed_safe_ms and len(last.recent) == len(recent)
                and all(map(operator.is_, last.recent, recent))):
            return last  # the same contents: the records are the very objects, the rest equal values
        self._last = StateView(
            executed=executed, recent=recent, last_execution_ms=last_execution_ms, last_failed_safe_ms=last_failed_safe_ms,
        )
        return self._last


def _time(record: ExecutionRecord) -> int:
    return record.timestamp


def _insert_time(times: list[int], t: int) -> None:
    i = bisect.bisect_left(times, t)
    if i == len(times) or times[i] != t:
        times.insert(i, t)


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
