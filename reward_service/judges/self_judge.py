"""Self-PRM: a model (the policy itself, by default its directory) judges solutions with
ProcessBench's critic prompt and names the earliest wrong paragraph in `\\boxed{k}` (-1: none).

With `samples > 1` the critics vote as in ProcessBench's own evaluation: the prediction is the
most common index (`Counter.most_common`), and on a tie the index given first, which is the
order `most_common` keeps, so the judge predicts exactly what ProcessBench would. The step
scores follow the vote: 1.0 before the voted index, 0.0 from it on (all 1.0 for -1), so the
first step scored < 0.5 is the prediction; the trajectory score is the fraction of readable
replies that found no error.

A reply without a readable index in range does not vote (ProcessBench counts any boxed text as a
vote, which can only ever be a wrong prediction). If no reply can be read, `on_malformed`
decides: "error" (default) raises, so the sample gets a `judge_error` (and a ProcessBench
prediction that counts as wrong); "accept" treats it as "no error found".
"""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Literal

from reward_service.judges.base import StepJudgment, StepRequest
from reward_service.judges.llm_judge import OnePromptJudge, one_of
from reward_service.judges.prompts import PROCESSBENCH_CRITIC, tagged_paragraphs
from reward_service.judges.registry import register

_BOXED_INDEX = re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*(-?\d{1,6})\s*\}?\s*\}")
OnMalformed = Literal["error", "accept"]


def parse_index(reply: str, num_steps: int) -> int | None:
    """The last `\\boxed{k}` of the reply if -1 <= k < num_steps, else None."""
    found = _BOXED_INDEX.findall(reply)
    if not found:
        return None
    k = int(found[-1])
    return k if -1 <= k < num_steps else None


def vote(indices: list[int]) -> int:
    """The most common index; on a tie, the one given first (as `Counter.most_common` orders)."""
    return Counter(indices).most_common(1)[0][0]


def step_scores(first_error: int, num_steps: int) -> list[float]:
    return [1.0 if first_error == -1 or i < first_error else 0.0 for i in range(num_steps)]


@register("self")
class SelfJudge(OnePromptJudge):
    samples, temperature, max_tokens = 1, 0.0, 1024

    def __init__(self, on_malformed: OnMalformed = "error", **options):
        self.on_malformed = one_of("on_malformed", on_malformed, OnMalformed)
        super().__init__(**options)

    def prompt(self, request: StepRequest, texts: list[str]) -> str:
        return self.llm.format(PROCESSBENCH_CRITIC.format(
            problem=request.problem, tagged_response=tagged_paragraphs(texts)))

    def judgment(self, request: StepRequest, texts: list[str], replies: list[str]) -> StepJudgment:
        indices = [k for k in (parse_index(r, len(texts)) for r in replies) if k is not None]
        if not indices:
            if self.on_malformed == "error":
                raise ValueError(f"self: no \\boxed{{index}} in range among {len(replies)} "
                                 f"replies: {replies[0][-200:]!r}")
            indices = [-1]
        first_error = vote(indices)
        raw = json.dumps({"replies": replies, "indices": indices, "vote": first_error})
        return StepJudgment(scores=step_scores(first_error, len(texts)), raw=raw,
                            trajectory_score=indices.count(-1) / len(indices))
