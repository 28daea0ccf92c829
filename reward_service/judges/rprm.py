"""R-PRM (generative critique; arXiv 2503.21295): per step, K sampled critiques, each scored by
P(" Yes") against P(" No") as the next words after "Is the step correct (Yes/No)?", averaged.

All steps' critiques are sampled in one batch, then every verdict is scored in one batch.
The verdict is asked for, not sampled (critiques stop at "Verification:"), so there is nothing
for a malformed critique to break: any text, garbage included, still gets a P(Yes).
"""
from __future__ import annotations

import json

from reward_service.judges.base import Spans, StepJudge, StepJudgment
from reward_service.judges.prompts import (RPRM_CHOICES, RPRM_CRITIQUE, RPRM_STOP, RPRM_VERDICT,
                                           step_texts)
from reward_service.judges.registry import register
from reward_service.llm import choice_probs, make_llm


@register("rprm")
class RPRMJudge(StepJudge):
    def __init__(self, samples: int = 4, temperature: float = 0.7, max_tokens: int = 256,
                 seed: int | None = 0, **llm_options):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.samples, self.temperature, self.max_tokens, self.seed = (
            samples, temperature, max_tokens, seed)
        self.llm = make_llm(**llm_options)

    def prompts(self, problem: str, texts: list[str]) -> list[str]:
        """One critique prompt per step, with the steps before it as context."""
        return [self.llm.format(RPRM_CRITIQUE.format(
                    problem=problem, previous="\n".join(texts[:i]) or "(none)", step=step))
                for i, step in enumerate(texts)]

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        if not spans:
            return StepJudgment(scores=[], raw="")
        prompts = self.prompts(problem, step_texts(response, spans))
        critiques = self.llm.generate(prompts, n=self.samples, temperature=self.temperature,
                                      max_tokens=self.max_tokens, stop=RPRM_STOP, seed=self.seed)
        verdicts = [p + c + RPRM_VERDICT for p, group in zip(prompts, critiques) for c in group]
        p_yes = [yes for yes, _ in choice_probs(self.llm, verdicts, list(RPRM_CHOICES))]
        k = self.samples
        per_step = [p_yes[i * k:(i + 1) * k] for i in range(len(prompts))]
        scores = [sum(ps) / len(ps) for ps in per_step]
        raw = json.dumps({"critiques": critiques, "p_yes": per_step})
        return StepJudgment(scores=scores, raw=raw)
