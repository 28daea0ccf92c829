"""The interface every step judge implements.

A judge scores the steps of solutions. `judge_steps` judges one sample; `judge_batch` judges
many and is what the Scorer calls. A judge implements either one and gets the other: a judge
that scores a sample at a time implements `judge_steps`; a model-backed judge implements
`judge_batch` to send the work of all samples of a call to its model in one batch. A failure
is per sample: `judge_batch` returns the exception in that sample's place, so one bad sample
never costs the others.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

Spans = list[tuple[int, int]]


@dataclass
class StepJudgment:
    scores: list[float]  # one per step, in [0, 1]; < 0.5 means the step is wrong
    labels: list[str] | None = None  # per-step thought labels, where the judge gives them
    raw: str = ""  # what the judge said, for audit
    trajectory_score: float | None = None


@dataclass
class StepRequest:
    """One sample to judge: its steps are `spans` into `response`."""
    problem: str
    response: str
    spans: Spans
    outcome_correct: bool
    extracted: str | None  # the final answer the solution states, if any
    gold: str | None = None  # the reference answer; judges that do not need it ignore it


class StepJudge:
    """Base class of the registered judges."""

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        if type(self).judge_batch is StepJudge.judge_batch:
            raise NotImplementedError(f"{type(self).__name__} implements neither judge_steps "
                                      "nor judge_batch")
        (judgment,) = self.judge_batch([StepRequest(problem, response, spans, outcome_correct,
                                                    extracted, gold)])
        if isinstance(judgment, Exception):
            raise judgment
        return judgment

    def judge_batch(self, requests: list[StepRequest]) -> list[StepJudgment | Exception]:
        out: list[StepJudgment | Exception] = []
        for r in requests:
            try:
                out.append(self.judge_steps(r.problem, r.response, r.spans, r.outcome_correct,
                                            r.extracted, gold=r.gold))
            except Exception as e:  # this sample's failure, reported in its place
                out.append(e)
        return out

    def close(self) -> None:
        """Release the judge's model or processes (a no-op for judges that hold none)."""

    @classmethod
    def option_sources(cls, options: dict) -> list:
        """What takes this judge's options, for checking them before anything is built
        (`registry.check_judge_options`): the constructors up the class tree, as far as each
        passes its `**options` on. A judge whose options go further adds what takes them."""
        sources = []
        for klass in cls.__mro__[:-1]:  # object's own __init__ takes nothing
            init = vars(klass).get("__init__")
            if init is None:
                continue
            sources.append(init)
            params = inspect.signature(init).parameters.values()
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return sources
