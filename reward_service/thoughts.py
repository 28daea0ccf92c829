"""TP-GRPO step labels and their merge into thoughts (DESIGN.md §4).

Labels: "correct" / "incorrect" for a solution with the right final answer; "incorrect"
(= matches the wrong answer) / "uncertain" for one with a wrong final answer.

The same rules hold whichever judge scored the steps. A judge's own labels (the LLM `tpgrpo`
judge), or else its scores (< 0.5), say which steps it blames; the rules below are then applied
on top, so a judge can add blame but never lift it from a step the rules blame:
- correct answer: a reflection is a step of its own and correct. It corrects an interval: from
  the step whose claim it restates with another value (the same left-hand expression), else the
  latest blamed step, else the step just before it (looking back only to the previous
  reflection), up to the reflection; every step of that interval is incorrect (interval
  verification: the steps built on the corrected one are wrong too, even where true in
  isolation). Every other step the judge does not blame is correct.
- wrong answer: a step the judge blames or that states the wrong answer matches it (incorrect);
  the rest are uncertain. The final thought always carries the outcome (incorrect), so a
  truncated or answerless wrong solution is never free.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from reward_service.answers import extract_answer
from reward_service.judges.arithmetic import find_claims
from reward_service.steps import is_reflection

CORRECT, INCORRECT, UNCERTAIN = "correct", "incorrect", "uncertain"
LABELS = (CORRECT, INCORRECT, UNCERTAIN)
Spans = list[tuple[int, int]]
# Where a step states a result: after "=", inside \boxed{}, after "####", "answer is", or the
# step's last number.
_RESULT_AFTER = re.compile(r"(?:=|####|answer\s*(?:is|:)|\\boxed\{)\s*\\?\$?\s*(-?[\d,]*\.?\d+)",
                           re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")

__all__ = ["CORRECT", "INCORRECT", "UNCERTAIN", "LABELS", "SolutionLabels", "first_error_index",
           "label_solution", "label_steps", "merge_thoughts", "states_answer"]


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", "").replace("$", "").strip())
    except (ValueError, ZeroDivisionError):
        return None


def states_answer(step_text: str, answer: str | None) -> bool:
    """Whether the step's result is `answer` (whole numbers compared by value, not substring)."""
    if not answer:
        return False
    target = _number(answer)
    if target is None:  # a non-numeric answer: a whole-token occurrence in the step's result
        boxed = extract_answer(step_text)
        return boxed is not None and boxed.replace(" ", "") == answer.replace(" ", "")
    results = [m.group(1) for m in _RESULT_AFTER.finditer(step_text)]
    numbers = _NUMBER.findall(step_text)
    if numbers:
        results.append(numbers[-1])
    return any(_number(r) == target for r in results)


def _claims(text: str) -> set[tuple[str, str]]:
    """(left-hand expression, value) of each arithmetic claim, whitespace removed."""
    return {("".join(c.expression.split()), "".join(c.value.split())) for c in find_claims(text)}


def _corrected_step(i: int, texts: list[str], blamed: list[bool], window_start: int) -> int | None:
    """The first step of the interval that reflection `i` corrects (see the module doc)."""
    window = range(i - 1, window_start - 1, -1)
    restated = _claims(texts[i])
    if restated:
        for j in window:
            if any(lhs == l2 and v != v2 for lhs, v in _claims(texts[j]) for l2, v2 in restated):
                return j
    return next((j for j in window if blamed[j]), window[0] if len(window) else None)


def _base_blame(scores: list[float], judge_labels: list[str] | None) -> list[bool]:
    if judge_labels is None:
        return [s < 0.5 for s in scores]
    if len(judge_labels) != len(scores):
        raise ValueError(f"judge gave {len(judge_labels)} labels for {len(scores)} steps")
    for k, label in enumerate(judge_labels):
        if label not in LABELS:
            raise ValueError(f"judge label of step {k}: unknown label {label!r}; known: {LABELS}")
    return [label == INCORRECT for label in judge_labels]


def _raw_labels(scores: list[float], outcome_correct: bool, texts: list[str],
                extracted: str | None, judge_labels: list[str] | None) -> list[str]:
    """Per-step labels before the final-thought rule."""
    blamed = _base_blame(scores, judge_labels)
    if not outcome_correct:
        return [INCORRECT if b or states_answer(t, extracted) else UNCERTAIN
                for b, t in zip(blamed, texts)]
    labels = [INCORRECT if b else CORRECT for b in blamed]
    reflections = [i for i, t in enumerate(texts) if is_reflection(t)]
    previous = -1
    for i in reflections:
        start = _corrected_step(i, texts, blamed, previous + 1)
        if start is not None:
            labels[start:i] = [INCORRECT] * (i - start)
        previous = i
    for i in reflections:
        labels[i] = CORRECT
    return labels


def _final_blamed(labels: list[str], outcome_correct: bool) -> list[str]:
    """A wrong solution's last unit (step or thought) carries the outcome: incorrect."""
    if outcome_correct or not labels:
        return list(labels)
    return [*labels[:-1], INCORRECT]


def label_steps(scores: list[float], outcome_correct: bool, step_texts: list[str],
                extracted_answer: str | None, judge_labels: list[str] | None = None) -> list[str]:
    """TP-GRPO labels with each step its own thought."""
    raw = _raw_labels(scores, outcome_correct, step_texts, extracted_answer, judge_labels)
    return _final_blamed(raw, outcome_correct)


def merge_thoughts(spans: Spans, labels: list[str]) -> tuple[Spans, list[str]]:
    """Maximal runs of consecutive steps with the same label."""
    if len(spans) != len(labels):
        raise ValueError(f"{len(spans)} spans but {len(labels)} labels")
    thought_spans: Spans = []
    thought_labels: list[str] = []
    for (start, end), label in zip(spans, labels):
        if thought_labels and thought_labels[-1] == label:
            thought_spans[-1] = (thought_spans[-1][0], end)
        else:
            thought_spans.append((start, end))
            thought_labels.append(label)
    return thought_spans, thought_labels


@dataclass
class SolutionLabels:
    step_labels: list[str]  # each step its own thought (the `tpgrpo_steps` ablation)
    thought_spans: Spans  # maximal runs of equally labelled steps (`tpgrpo`)
    thought_labels: list[str]


def label_solution(spans: Spans, texts: list[str], scores: list[float], outcome_correct: bool,
                   extracted_answer: str | None, judge_labels: list[str] | None = None
                   ) -> SolutionLabels:
    """Step labels, thoughts and thought labels of one judged solution.

    The two granularities differ only in the final-thought rule of a wrong solution: its final
    thought is the trailing run of uncertain steps (all blamed), its final step just that step.
    """
    raw = _raw_labels(scores, outcome_correct, texts, extracted_answer, judge_labels)
    thought_spans, thought_labels = merge_thoughts(spans, raw)
    thought_spans, thought_labels = merge_thoughts(
        thought_spans, _final_blamed(thought_labels, outcome_correct))
    return SolutionLabels(_final_blamed(raw, outcome_correct), thought_spans, thought_labels)


def first_error_index(scores: list[float]) -> int:
    """The first step scored < 0.5, else -1 (ProcessBench semantics)."""
    return next((i for i, s in enumerate(scores) if s < 0.5), -1)
