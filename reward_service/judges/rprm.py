"""R-PRM (generative critique; arXiv 2503.21295): per step, K sampled critiques, each scored by
P(" Yes") against P(" No") as the next words after "Is the step correct (Yes/No)?", averaged.

Two phases, each one LLM call for every step of every sample in the batch: the critiques are
sampled, then every verdict is scored. The verdict is asked for, not sampled (critiques stop at
"Verification:"), so there is nothing for a malformed critique to break: any text, garbage
included, still gets a P(Yes); a reply without usable logprobs fails its sample.
"""
from __future__ import annotations

import json

from reward_service.judges.base import StepJudgment, StepRequest
from reward_service.judges.llm_judge import LLMJudge, in_one_call, per_sample
from reward_service.judges.prompts import (RPRM_CHOICES, RPRM_CRITIQUE, RPRM_STOP, RPRM_VERDICT,
                                           step_texts)
from reward_service.judges.registry import register
from reward_service.llm import renormalize


@register("rprm")
class RPRMJudge(LLMJudge):
    samples, temperature, max_tokens = 4, 0.7, 256

    def prompts(self, problem: str, texts: list[str]) -> list[str]:
        """One critique prompt per step, with the steps before it as context."""
        return [self.llm.format(RPRM_CRITIQUE.format(
                    problem=problem, previous="\n".join(texts[:i]) or "(none)", step=step))
                for i, step in enumerate(texts)]

    def judge_batch(self, requests: list[StepRequest]) -> list[StepJudgment | Exception]:
        prompts = per_sample(lambda r: self.prompts(r.problem, step_texts(r.response, r.spans)),
                             requests)
        critiques = self.sample(prompts, stop=RPRM_STOP)
        verdicts = per_sample(lambda ps, cs: [p + c + RPRM_VERDICT for p, group in zip(ps, cs)
                                              for c in group], prompts, critiques)
        logprobs = in_one_call(lambda batch: self.llm.choice_logprobs(batch, list(RPRM_CHOICES)),
                               verdicts)
        return per_sample(self.judgment, critiques, logprobs)

    def judgment(self, critiques: list[list[str]], logprobs: list[list[float]]) -> StepJudgment:
        if not critiques:
            return StepJudgment(scores=[], raw="")
        p_yes = [renormalize(lps)[0] for lps in logprobs]
        k = self.samples
        per_step = [p_yes[i * k:(i + 1) * k] for i in range(len(critiques))]
        scores = [sum(ps) / len(ps) for ps in per_step]
        raw = json.dumps({"critiques": critiques, "p_yes": per_step})
        return StepJudgment(scores=scores, raw=raw)
