"""Self-PRM: a model (the policy itself, by default its directory) judges solutions with
ProcessBench's critic prompt and names the earliest wrong paragraph in `\\boxed{k}` (-1: none).

With `samples > 1` the critics vote: step i's score is the fraction of readable replies whose
earliest error lies after step i (or is -1), i.e. the probability that steps 0..i are all
right. The first step scored < 0.5 is then the majority's earliest error, ProcessBench's
prediction; the trajectory score is the fraction of replies that found no error.

A reply without a readable index in range does not vote. If none can be read, `on_malformed`
decides: "error" (default) raises, so the sample gets a `judge_error` (and a ProcessBench
prediction that counts as wrong); "accept" treats it as "no error found".
"""
from __future__ import annotations

import json
import re

from reward_service.judges.base import Spans, StepJudge, StepJudgment
from reward_service.judges.prompts import PROCESSBENCH_CRITIC, step_texts, tagged_paragraphs
from reward_service.judges.registry import register
from reward_service.llm import make_llm

_BOXED_INDEX = re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*(-?\d{1,6})\s*\}?\s*\}")


def parse_index(reply: str, num_steps: int) -> int | None:
    """The last `\\boxed{k}` of the reply if -1 <= k < num_steps, else None."""
    found = _BOXED_INDEX.findall(reply)
    if not found:
        return None
    k = int(found[-1])
    return k if -1 <= k < num_steps else None


def fuse(indices: list[int], num_steps: int) -> list[float]:
    return [sum(k == -1 or k > i for k in indices) / len(indices) for i in range(num_steps)]


@register("self")
class SelfJudge(StepJudge):
    def __init__(self, samples: int = 1, temperature: float = 0.0, max_tokens: int = 1024,
                 seed: int | None = 0, on_malformed: str = "error", **llm_options):
        if on_malformed not in ("error", "accept"):
            raise ValueError(f"on_malformed must be 'error' or 'accept', got {on_malformed!r}")
        self.samples, self.temperature, self.max_tokens = samples, temperature, max_tokens
        self.seed, self.on_malformed = seed, on_malformed
        self.llm = make_llm(**llm_options)

    def prompt(self, problem: str, texts: list[str]) -> str:
        return self.llm.format(PROCESSBENCH_CRITIC.format(
            problem=problem, tagged_response=tagged_paragraphs(texts)))

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        if not spans:
            return StepJudgment(scores=[], raw="")
        texts = step_texts(response, spans)
        (replies,) = self.llm.generate([self.prompt(problem, texts)], n=self.samples,
                                       temperature=self.temperature, max_tokens=self.max_tokens,
                                       seed=self.seed)
        indices = [k for k in (parse_index(r, len(texts)) for r in replies) if k is not None]
        if not indices:
            if self.on_malformed == "error":
                raise ValueError(f"self: no \\boxed{{index}} in range among {len(replies)} "
                                 f"replies: {replies[0][-200:]!r}")
            indices = [-1]
        scores = fuse(indices, len(texts))
        raw = json.dumps({"replies": replies, "indices": indices})
        return StepJudgment(scores=scores, raw=raw,
                            trajectory_score=sum(k == -1 for k in indices) / len(indices))
