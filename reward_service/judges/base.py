"""The interface every step judge implements."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Spans = list[tuple[int, int]]


@dataclass
class StepJudgment:
    scores: list[float]  # one per step, in [0, 1]; < 0.5 means the step is wrong
    labels: list[str] | None = None  # per-step thought labels, where the judge gives them
    raw: str = ""  # what the judge said, for audit
    trajectory_score: float | None = None


class StepJudge(Protocol):
    """A judge whose class sets `needs_gold = True` is also called with `gold=` (the reference
    answer); every other judge is called without it."""

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None) -> StepJudgment:
        ...
