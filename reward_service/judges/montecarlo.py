"""Monte-Carlo step values (Math-Shepherd's annotation, MM-PRM / OmegaPRM).

A step's value is the fraction of `samples` completions, sampled from the solution prefix that
ends with that step, whose final answer matches the gold answer. The last step's prefix is the
whole solution, so its value is the solution's own outcome (no sampling).

Completions come from any LLM of `reward_service.llm`: a local model directory through
`core.engine.VLLMEngine` (the policy itself, as the rollout actors serve it), an
OpenAI-compatible endpoint, or a ready `llm`. The prefix is `problem_template` (the policy's
rollout prompt by default) followed by the response's text up to the end of the step, sent as
text without added special tokens, as the rollout actors send prompts. Completions are graded
by `reward_service.grading.GradingPool` against the gold answer, which this judge needs.
"""
from __future__ import annotations

import json

from core.prompts import PROMPT_TEMPLATE
from reward_service.grading import GradingPool
from reward_service.judges.base import Spans, StepJudge, StepJudgment
from reward_service.judges.registry import register
from reward_service.llm import make_llm


@register("montecarlo")
class MonteCarloJudge(StepJudge):
    def __init__(self, samples: int = 8, temperature: float = 1.0, max_tokens: int = 512,
                 seed: int | None = 0, problem_template: str = PROMPT_TEMPLATE,
                 grader: GradingPool | None = None, grade_timeout_s: float = 5.0,
                 **llm_options):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if "{problem}" not in problem_template:
            raise ValueError("problem_template needs a {problem} placeholder")
        self.samples, self.temperature, self.max_tokens, self.seed = (
            samples, temperature, max_tokens, seed)
        self.problem_template = problem_template
        if llm_options.get("model") or llm_options.get("endpoint"):
            # The prefix is sent verbatim: no chat template, no added BOS (the rollout's way).
            llm_options.setdefault("prompt_template", "{prompt}")
        self.llm = make_llm(**llm_options)
        self._own_grader = grader is None
        self._grader = grader
        self._grade_timeout_s = grade_timeout_s

    @property
    def grader(self) -> GradingPool:
        if self._grader is None:  # started on first use: a judge that never grades spawns nothing
            self._grader = GradingPool(num_workers=1, timeout_s=self._grade_timeout_s)
        return self._grader

    def prefixes(self, problem: str, response: str, spans: Spans) -> list[str]:
        """The text every completion continues, one per step but the last."""
        head = self.problem_template.format(problem=problem.strip())
        return [head + response[:end] for _, end in spans[:-1]]

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        if not gold:
            raise ValueError("the montecarlo judge needs the gold answer")
        if not spans:
            return StepJudgment(scores=[], raw="")
        prefixes = self.prefixes(problem, response, spans)
        correct: list[int] = []
        if prefixes:
            groups = self.llm.generate(prefixes, n=self.samples, temperature=self.temperature,
                                       max_tokens=self.max_tokens, seed=self.seed)
            # The grader sees the whole solution: an answer stated in the prefix counts too.
            head_len = len(self.problem_template.format(problem=problem.strip()))
            pairs = [(prefix[head_len:] + text, gold)
                     for prefix, group in zip(prefixes, groups) for text in group]
            grades = self.grader.grade_many(pairs)
            n = self.samples
            correct = [sum(g.correct for g in grades[i * n:(i + 1) * n])
                       for i in range(len(prefixes))]
        scores = [c / self.samples for c in correct] + [1.0 if outcome_correct else 0.0]
        raw = json.dumps({"samples": self.samples, "correct": correct,
                          "last_step": "outcome"})
        return StepJudgment(scores=scores, raw=raw)

    def close(self) -> None:
        if self._own_grader and self._grader is not None:
            self._grader.close()
            self._grader = None
