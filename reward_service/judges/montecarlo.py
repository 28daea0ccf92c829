"""Monte-Carlo step values (Math-Shepherd's annotation, MM-PRM / OmegaPRM).

A step's value is the fraction of `samples` completions, sampled from the solution prefix that
ends with that step, whose final answer matches the gold answer. The last step's prefix is the
whole solution, so its value is the solution's own outcome (no sampling).

Completions come from any LLM of `reward_service.llm`: a local model directory through
`core.engine.VLLMEngine` (the policy itself, as the rollout actors serve it), an
OpenAI-compatible endpoint, or a ready `llm`. The prefix is the policy's prompt for the problem
followed by the response's text up to the end of the step, sent as text without added special
tokens, as the rollout actors send prompts. The prompt is `core.prompts.PromptFormat` with the
options `prompt_style`, `problem_template`, `prompt_instruction` and `prompt_system` (the
run's `prompt.style`, `.template`, `.instruction`, `.system`); their defaults give what the
rollout gives by default for that model: its chat template where it has one, else the plain
template. An endpoint has no tokenizer here, so its prompt is the plain template. Completions
are graded by `reward_service.grading.GradingPool` against the gold answer, which this judge
needs. A batch samples every prefix of every sample in one call and grades every completion in
one call.
"""
from __future__ import annotations

import json
from typing import Literal

from core.prompts import BOXED_INSTRUCTION, PROMPT_TEMPLATE, PromptFormat
from reward_service.grading import GradingPool
from reward_service.judges.base import Spans, StepJudgment, StepRequest
from reward_service.judges.llm_judge import LLMJudge, in_one_call, per_sample
from reward_service.judges.registry import register


def policy_prompt(options: dict, **settings) -> PromptFormat:
    """The policy's prompt format for the LLM the options choose (before any engine starts)."""
    if options.get("model"):
        return PromptFormat.for_model(options["model"], **settings)
    tokenizer = getattr(options.get("llm"), "tokenizer", None)
    if tokenizer is None and settings["style"] == "chat":
        raise ValueError("prompt_style 'chat' needs the policy's tokenizer: give its directory "
                         "as `model` (an endpoint's prompt is the plain problem_template)")
    return PromptFormat(tokenizer, **settings)


@register("montecarlo")
class MonteCarloJudge(LLMJudge):
    samples, temperature, max_tokens = 8, 1.0, 512

    def __init__(self, prompt_style: Literal["auto", "chat", "plain"] = "auto",
                 problem_template: str = PROMPT_TEMPLATE,
                 prompt_instruction: str | None = BOXED_INSTRUCTION,
                 prompt_system: str | None = None, grader: GradingPool | None = None,
                 grade_timeout_s: float = 5.0, **options):
        self.prompt_format = policy_prompt(options, style=prompt_style, template=problem_template,
                                           instruction=prompt_instruction, system=prompt_system)
        if options.get("model") or options.get("endpoint"):
            # The prefix is sent verbatim: no chat template, no added BOS (the rollout's way).
            options.setdefault("prompt_template", "{prompt}")
        super().__init__(**options)
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
        head = self.prompt_format(problem)
        return [head + response[:end] for _, end in spans[:-1]]

    def judge_batch(self, requests: list[StepRequest]) -> list[StepJudgment | Exception]:
        prefixes = per_sample(self._prefixes_of, requests)
        completions = self.sample(prefixes)
        # The grader sees the whole solution: an answer stated in the prefix counts too.
        pairs = per_sample(lambda r, groups: [
            (r.response[:end] + text, r.gold)
            for (_, end), group in zip(r.spans, groups) for text in group],  # one group per prefix
            requests, completions)
        grades = in_one_call(lambda batch: self.grader.grade_many(batch), pairs)
        return per_sample(self.judgment, requests, grades)

    def _prefixes_of(self, request: StepRequest) -> list[str]:
        if not request.gold:
            raise ValueError("the montecarlo judge needs the gold answer")
        return self.prefixes(request.problem, request.response, request.spans)

    def judgment(self, request: StepRequest, grades: list) -> StepJudgment:
        if not request.spans:
            return StepJudgment(scores=[], raw="")
        n = self.samples
        correct = [sum(g.correct for g in grades[i * n:(i + 1) * n])
                   for i in range(len(request.spans) - 1)]
        scores = [c / n for c in correct] + [1.0 if request.outcome_correct else 0.0]
        raw = json.dumps({"samples": n, "correct": correct, "last_step": "outcome"})
        return StepJudgment(scores=scores, raw=raw)

    def close(self) -> None:
        super().close()
        if self._own_grader and self._grader is not None:
            self._grader.close()
            self._grader = None
