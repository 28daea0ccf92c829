"""The tool-grounded judge (TaTToo-style): a step is checked by executing what it claims.

Every arithmetic claim in a step is evaluated exactly with sympy; a step with a false claim
scores 0.0, a step with only true claims or nothing checkable scores 1.0.

With `grounded`, a claim must also compute from known numbers: each number in its expression
appears in the problem or was stated by an earlier claim (its value or operands), or by an
earlier claim of the same step. A step that computes correctly from a number copied wrong (a
slip the claim alone cannot show) then scores 0.0 too. Off by default: solutions to word
problems use numbers the problem never states (7 days a week, 100 percent).
"""
from __future__ import annotations

import json
import re
from fractions import Fraction

from reward_service.judges.arithmetic import find_claims, normalize
from reward_service.judges.base import Spans, StepJudge, StepJudgment
from reward_service.judges.registry import register

_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


def numbers(text: str) -> set[Fraction]:
    """The numbers written in `text` (normalized as claims are), exactly; one longer than any
    claim reads (40 digits) is left out, as no claim can use it."""
    return {Fraction(n) for n in _NUMBER.findall(text) if len(n) <= 81}


@register("tool")
class ToolJudge(StepJudge):
    def __init__(self, max_step_chars: int = 20_000, grounded: bool = False):
        self.max_step_chars = max_step_chars  # longer steps are not parsed (scored unchecked)
        self.grounded = grounded

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        scores: list[float] = []
        false_claims: list[list[str]] = []
        ungrounded: list[list[str]] = []
        known = numbers(normalize(problem))
        for start, end in spans:
            step = response[start:end]
            claims = find_claims(step) if len(step) <= self.max_step_chars else []
            wrong = [f"{c.expression} = {c.value}" for c in claims if not c.holds]
            unknown = []
            for c in claims:
                used = numbers(c.expression)
                if self.grounded and not used <= known:
                    unknown.append(f"{c.expression}: {', '.join(str(n) for n in sorted(used - known))}")
                known |= used | numbers(c.value)
            scores.append(0.0 if wrong or unknown else 1.0)
            false_claims.append(wrong)
            ungrounded.append(unknown)
        raw = {"false_claims": false_claims, **({"ungrounded": ungrounded} if self.grounded else {})}
        return StepJudgment(scores=scores, raw=json.dumps(raw))
