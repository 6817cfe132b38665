"""The budget guard: planner steps, dollars and wall-clock seconds per ticket.

Dollars count every model call of the ticket (from the `usage` the steps append), not only the
planner's. A model call is made only if its worst case still fits what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from graph.context import Context
from graph.state import State


@dataclass(frozen=True)
class Budget:
    """What one ticket may still spend."""

    max_planner_steps: int
    max_cost_usd: float
    max_seconds: float
    spent_usd: float
    planner_steps: int
    elapsed_s: float

    @classmethod
    def of(cls, state: State, ctx: Context, clock: Callable[[], float] = time.time) -> Budget:
        """The budget as it stands for this state."""
        started = state.get("started_at")
        elapsed = 0.0
        if started:
            elapsed = max(0.0, clock() - datetime.fromisoformat(started).timestamp())
        return cls(
            max_planner_steps=ctx.max_planner_steps, max_cost_usd=ctx.max_cost_usd,
            max_seconds=ctx.max_seconds,
            spent_usd=sum(u["cost"] for u in state.get("usage") or []),
            planner_steps=len(state.get("planner_steps") or []), elapsed_s=elapsed,
        )

    @property
    def remaining_usd(self) -> float:
        """Dollars left for this ticket."""
        return max(0.0, self.max_cost_usd - self.spent_usd)

    def allows_cost(self, worst_case_usd: float) -> bool:
        """Whether a call whose worst case is `worst_case_usd` may be made."""
        return worst_case_usd <= self.remaining_usd + 1e-12

    def exhausted(self) -> str | None:
        """Which limit is spent (`steps`, `dollars`, `seconds`), or None."""
        if self.planner_steps >= self.max_planner_steps:
            return "steps"
        if self.spent_usd >= self.max_cost_usd:
            return "dollars"
        if self.elapsed_s >= self.max_seconds:
            return "seconds"
        return None

    def describe(self) -> dict:
        """The spend so far, for the review payload and the audit trail."""
        return {"planner_steps": self.planner_steps, "spent_usd": round(self.spent_usd, 6),
                "elapsed_s": round(self.elapsed_s, 3), "max_planner_steps": self.max_planner_steps,
                "max_cost_usd": self.max_cost_usd, "max_seconds": self.max_seconds}
