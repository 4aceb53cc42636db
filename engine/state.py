"""The execution history the temporal and frequency gates read, held in memory.

The ledger (engine/ledger.py) persists the same records; both build the :class:`StateView` the
pure core receives, so the view is an explicit input (spec §8.1).
"""

from __future__ import annotations

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
    records: list[ExecutionRecord] = field(default_factory=list)

    def add(self, record: ExecutionRecord) -> None:
        self.records.append(record)

    def view(self, decision_id: str | None, action_id: str | None, now_ms: int, lookback_ms: int) -> StateView:
        key = (decision_id, action_id)
        executed = tuple({(r.decision_id, r.action_id) for r in self.records if (r.decision_id, r.action_id) == key})
        recent = tuple(r for r in self.records if now_ms - lookback_ms <= r.timestamp <= now_ms)
        attempted = [r.timestamp for r in self.records if r.attempted and r.timestamp <= now_ms]
        failed = [r.timestamp for r in self.records if arms_cooldown(r) and r.timestamp <= now_ms]
        return StateView(
            executed=executed,
            recent=recent,
            last_execution_ms=max(attempted) if attempted else None,
            last_failed_safe_ms=max(failed) if failed else None,
        )


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
