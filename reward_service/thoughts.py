"""TP-GRPO step labels and their merge into thoughts.

Labels: "correct" / "incorrect" for a solution with the right final answer; "incorrect"
(= matches the wrong answer) / "uncertain" for one with a wrong final answer.
"""
from __future__ import annotations

import re
from fractions import Fraction

from reward_service.answers import extract_answer

CORRECT, INCORRECT, UNCERTAIN = "correct", "incorrect", "uncertain"
_REFLECTION = re.compile(r"^\W*(?:wait\b|actually\b|hmm,? wait\b|hold on\b)|\bI made a mistake\b",
                         re.IGNORECASE)
# Where a step states a result: after "=", inside \boxed{}, after "####", "answer is", or the
# step's last number.
_RESULT_AFTER = re.compile(r"(?:=|####|answer\s*(?:is|:)|\\boxed\{)\s*\\?\$?\s*(-?[\d,]*\.?\d+)",
                           re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")


def is_reflection(step_text: str) -> bool:
    return bool(_REFLECTION.search(step_text))


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


def label_steps(scores: list[float], outcome_correct: bool, step_texts: list[str],
                extracted_answer: str | None) -> list[str]:
    """TP-GRPO labels from step scores, the outcome and the steps' text."""
    if outcome_correct:
        labels = [INCORRECT if s < 0.5 else CORRECT for s in scores]
        # A reflection ("Wait, ...") corrects the step before it: the reflection itself is
        # correct even when it quotes the wrong claim; the corrected step keeps its label.
        for i, text in enumerate(step_texts):
            if i > 0 and is_reflection(text):
                labels[i] = CORRECT
        return labels
    return [INCORRECT if s < 0.5 or states_answer(text, extracted_answer) else UNCERTAIN
            for s, text in zip(scores, step_texts)]


def merge_thoughts(spans: list[tuple[int, int]], labels: list[str]
                   ) -> tuple[list[tuple[int, int]], list[str]]:
    """Maximal runs of consecutive steps with the same label."""
    if len(spans) != len(labels):
        raise ValueError(f"{len(spans)} spans but {len(labels)} labels")
    thought_spans: list[tuple[int, int]] = []
    thought_labels: list[str] = []
    for (start, end), label in zip(spans, labels):
        if thought_labels and thought_labels[-1] == label:
            thought_spans[-1] = (thought_spans[-1][0], end)
        else:
            thought_spans.append((start, end))
            thought_labels.append(label)
    return thought_spans, thought_labels


def first_error_index(scores: list[float]) -> int:
    """The first step scored < 0.5, else -1 (ProcessBench semantics)."""
    return next((i for i, s in enumerate(scores) if s < 0.5), -1)
