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
decides: "fallback" (default) labels the steps by the same intrinsic signals read with rules
(`thoughts.is_reflection`: a reflection corrects the step before it; `thoughts.states_answer`:
a step whose result is the wrong answer matches it); "error" raises, so the sample gets a
`judge_error`.
"""
from __future__ import annotations

import json
import re

from reward_service.judges.base import Spans, StepJudge, StepJudgment
from reward_service.judges.prompts import TPGRPO_CORRECT, TPGRPO_WRONG, numbered_steps, step_texts
from reward_service.judges.registry import register
from reward_service.llm import make_llm
from reward_service.thoughts import CORRECT, INCORRECT, UNCERTAIN, is_reflection, states_answer

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
    """The intrinsic signals read with rules, for when no reply is readable."""
    if outcome_correct:
        return {i - 1 for i in range(1, len(texts)) if is_reflection(texts[i])}
    return {i for i, t in enumerate(texts) if states_answer(t, extracted)}


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


@register("tpgrpo")
class TPGRPOJudge(StepJudge):
    def __init__(self, samples: int = 1, temperature: float = 0.0, max_tokens: int = 512,
                 seed: int | None = 0, on_malformed: str = "fallback", **llm_options):
        if on_malformed not in ("fallback", "error"):
            raise ValueError(f"on_malformed must be 'fallback' or 'error', got {on_malformed!r}")
        self.samples, self.temperature, self.max_tokens = samples, temperature, max_tokens
        self.seed, self.on_malformed = seed, on_malformed
        self.llm = make_llm(**llm_options)

    def prompt(self, problem: str, texts: list[str], outcome_correct: bool,
               extracted: str | None) -> str:
        steps = numbered_steps(texts)
        if outcome_correct:
            return self.llm.format(TPGRPO_CORRECT.format(problem=problem, steps=steps))
        answer = f" ({extracted})" if extracted else ""
        return self.llm.format(TPGRPO_WRONG.format(problem=problem, steps=steps, answer=answer))

    def judge_steps(self, problem: str, response: str, spans: Spans, outcome_correct: bool,
                    extracted: str | None, gold: str | None = None) -> StepJudgment:
        if not spans:
            return StepJudgment(scores=[], labels=[], raw="")
        texts = step_texts(response, spans)
        prompt = self.prompt(problem, texts, outcome_correct, extracted)
        (replies,) = self.llm.generate([prompt], n=self.samples, temperature=self.temperature,
                                       max_tokens=self.max_tokens, seed=self.seed)
        parse = parse_correct if outcome_correct else parse_wrong
        votes = [v for v in (parse(r, len(texts)) for r in replies) if v is not None]
        fallback = None
        if not votes:
            if self.on_malformed == "error":
                raise ValueError(f"tpgrpo: no readable reply among {len(replies)}: "
                                 f"{replies[0][:200]!r}")
            fallback = sorted(fallback_flags(texts, outcome_correct, extracted))
            votes = [set(fallback)]
        scores, labels = fuse(votes, len(texts), outcome_correct)
        raw = json.dumps({"replies": replies, "parsed": len(votes) if fallback is None else 0,
                          "fallback_flags": fallback})
        return StepJudgment(scores=scores, labels=labels, raw=raw)
