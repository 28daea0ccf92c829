"""The per-sample verdict every judge produces; its fields are `core.records.VERDICT_FIELDS`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from core.records import VERDICT_FIELDS

Spans = list[tuple[int, int]]


@dataclass
class Verdict:
    outcome_correct: bool
    extracted_answer: str | None = None
    step_spans: Spans = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    step_labels: list[str] = field(default_factory=list)
    trajectory_score: float | None = None
    first_error_index: int = -1
    thought_spans: Spans = field(default_factory=list)
    thought_labels: list[str] = field(default_factory=list)
    judge_raw: str | None = None
    judge_error: str | None = None

    def to_row(self) -> dict:
        """A dict with exactly the verdict columns of the scored-record schema."""
        row = asdict(self)
        row["step_spans"] = [list(s) for s in self.step_spans]
        row["thought_spans"] = [list(s) for s in self.thought_spans]
        return {name: row[name] for name, _ in VERDICT_FIELDS}


def failed(error: str, outcome_correct: bool = False, extracted_answer: str | None = None) -> Verdict:
    """The verdict of a sample whose judging failed: no steps, `judge_error` set."""
    return Verdict(outcome_correct=outcome_correct, extracted_answer=extracted_answer,
                   judge_error=error)
