"""The tool-grounded judge (TaTToo-style): a step is checked by executing what it claims.

Every arithmetic claim in a step is evaluated exactly with sympy; a step with a false claim
scores 0.0, a step with only true claims or nothing checkable scores 1.0.
"""
from __future__ import annotations

import json

from reward_service.judges.arithmetic import find_claims
from reward_service.judges.base import Spans, StepJudge, StepJudgment
from reward_service.judges.registry import register


@register("tool")
class ToolJudge(StepJudge):
    def __init__(self, max_step_chars: int = 20_000):
        self.max_step_chars = max_step_chars  # longer steps are not parsed (scored unchecked)

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        scores: list[float] = []
        false_claims: list[list[str]] = []
        for start, end in spans:
            step = response[start:end]
            claims = find_claims(step) if len(step) <= self.max_step_chars else []
            wrong = [f"{c.expression} = {c.value}" for c in claims if not c.holds]
            scores.append(0.0 if wrong else 1.0)
            false_claims.append(wrong)
        raw = json.dumps({"false_claims": false_claims})
        return StepJudgment(scores=scores, raw=raw)
