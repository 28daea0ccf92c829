"""TP-GRPO's generative PRM: step labels from intrinsic signals (arXiv 2507.23317).

Correct final answer: the LLM locates self-reflections, traces each back to the interval of
steps it corrects and marks the steps that depend on them; those are "incorrect", every other
step "correct". Wrong final answer: the steps that match the wrong answer are "incorrect", the
rest "uncertain". The labels are `reward_service.thoughts`' labels, so the advantages of
`reward_service.advantages` consume them directly.

With `samples > 1` the flags are a vote: a step's score is 1 - (fraction of parsed replies
that flag it), capped at 0.5 for wrong-answer solutions (an unflagged step there is uncertain,
not correct); a step is labelled "incorrect" exactly when its score is < 0.5.

A reply the parser cannot read does not vote. If no reply can be read, `on_malformed`
decides: "fallback" (default) flags the steps that `reward_service.thoughts`' rules alone label
incorrect (the same intrinsic signals read by rule: the interval a reflection corrects, the
steps stating the wrong answer), so the scores agree with the labels the Scorer gives; "error"
raises, so the sample gets a `judge_error`.
"""
from __future__ import annotations

import json
import re
from typing import Literal

from reward_service.judges.base import StepJudgment, StepRequest
from reward_service.judges.llm_judge import OnePromptJudge, one_of
from reward_service.judges.prompts import TPGRPO_CORRECT, TPGRPO_WRONG, numbered_steps
from reward_service.judges.registry import register
from reward_service.thoughts import CORRECT, INCORRECT, UNCERTAIN, label_steps

_NONE = re.compile(r"^\W*none\W*$", re.IGNORECASE | re.MULTILINE)
# Numbers are capped at 6 digits: a garbage reply must not make int() parse 10^5 digits.
_REFLECTION = re.compile(r"REFLECTION\W*(\d{1,6})\W*WRONG\W*([^;\n]*)(?:;\s*DEPENDENT\W*([^\n]*))?",
                         re.IGNORECASE)
_MATCHES = re.compile(r"MATCHES\s*:?\s*([^\n]*)", re.IGNORECASE)
_RANGE = re.compile(r"(\d{1,6})\s*(?:-|–|to|\.\.)\s*(\d{1,6})|(\d{1,6})")


def _indices(text: str, num_steps: int) -> set[int]:
    """Step indices in "3, 5-7, 9" (ranges inclusive); out-of-range numbers are ignored."""
    found: set[int] = set()
    for a, b, single in _RANGE.findall(text or ""):
        lo, hi = (int(a), int(b)) if a else (int(single), int(single))
        found.update(i for i in range(min(lo, hi), min(max(lo, hi), num_steps - 1) + 1))
    return found


def parse_correct(reply: str, num_steps: int) -> set[int] | None:
    """Steps flagged in a correct-answer reply; None if the reply follows neither format."""
    flagged: set[int] = set()
    matched = False
    for m in _REFLECTION.finditer(reply):
        matched = True
        reflection = int(m.group(1))
        wrong = _indices(m.group(2), num_steps) | _indices(m.group(3) or "", num_steps)
        flagged |= {i for i in wrong if i != reflection}  # a reflection is never its own error
    if matched:
        return flagged
    return set() if _NONE.search(reply) else None


def parse_wrong(reply: str, num_steps: int) -> set[int] | None:
    """Steps that match the wrong answer; None if there is no "MATCHES:" line."""
    m = _MATCHES.search(reply)
    if m is None:
        return None
    return _indices(m.group(1), num_steps)


def fallback_flags(texts: list[str], outcome_correct: bool, extracted: str | None) -> set[int]:
    """The steps the rules alone label incorrect, for when no reply is readable."""
    labels = label_steps([1.0] * len(texts), outcome_correct, texts, extracted)
    return {i for i, label in enumerate(labels) if label == INCORRECT}


def fuse(votes: list[set[int]], num_steps: int, outcome_correct: bool
         ) -> tuple[list[float], list[str]]:
    """Scores and labels from the flag sets of the parsed replies (see the module doc)."""
    scores, labels = [], []
    for i in range(num_steps):
        score = 1.0 - sum(i in v for v in votes) / len(votes)
        if not outcome_correct:
            score = min(score, 0.5)
        scores.append(score)
        labels.append(INCORRECT if score < 0.5 else (CORRECT if outcome_correct else UNCERTAIN))
    return scores, labels


OnMalformed = Literal["fallback", "error"]


@register("tpgrpo")
class TPGRPOJudge(OnePromptJudge):
    samples, temperature, max_tokens = 1, 0.0, 512

    def __init__(self, on_malformed: OnMalformed = "fallback", **options):
        self.on_malformed = one_of("on_malformed", on_malformed, OnMalformed)
        super().__init__(**options)

    def prompt(self, request: StepRequest, texts: list[str]) -> str:
        steps = numbered_steps(texts)
        if request.outcome_correct:
            return self.llm.format(TPGRPO_CORRECT.format(problem=request.problem, steps=steps))
        answer = f" ({request.extracted})" if request.extracted else ""
        return self.llm.format(TPGRPO_WRONG.format(problem=request.problem, steps=steps,
                                                   answer=answer))

    def judgment(self, request: StepRequest, texts: list[str], replies: list[str]) -> StepJudgment:
        parse = parse_correct if request.outcome_correct else parse_wrong
        votes = [v for v in (parse(r, len(texts)) for r in replies) if v is not None]
        fallback = None
        if not votes:
            if self.on_malformed == "error":
                raise ValueError(f"tpgrpo: no readable reply among {len(replies)}: "
                                 f"{replies[0][:200]!r}")
            fallback = sorted(fallback_flags(texts, request.outcome_correct, request.extracted))
            votes = [set(fallback)]
        scores, labels = fuse(votes, len(texts), request.outcome_correct)
        raw = json.dumps({"replies": replies, "parsed": len(votes) if fallback is None else 0,
                          "fallback_flags": fallback})
        return StepJudgment(scores=scores, labels=labels, raw=raw)
