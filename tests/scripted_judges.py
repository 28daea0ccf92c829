"""Judges registered for tests (names starting with "test-"): what a real judge does wrong.

Import as `tests.scripted_judges` everywhere, so each is registered once per process."""
from __future__ import annotations

from reward_service.judges import StepJudge, StepJudgment, register


@register("test-exploding")
class ExplodingJudge(StepJudge):
    """Scores every step 1.0, but raises on a response containing "boom"."""

    def judge_steps(self, problem, response, spans, outcome_correct, extracted, gold=None):
        if "boom" in response:
            raise RuntimeError("judge exploded")
        return StepJudgment(scores=[1.0] * len(spans))


@register("test-counting")
class CountingJudge(StepJudge):
    """Scores every step 1.0 and counts the samples it was asked to judge."""
    judged = 0

    def judge_steps(self, problem, response, spans, outcome_correct, extracted, gold=None):
        type(self).judged += 1
        return StepJudgment(scores=[1.0] * len(spans))


@register("test-broken")
class BrokenJudge(StepJudge):
    """A judge with a bug: it cannot be built."""

    def __init__(self):
        raise RuntimeError("a bug in the judge's constructor")
