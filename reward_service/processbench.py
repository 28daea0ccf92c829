"""ProcessBench evaluation of any step judge: predicted first error vs the labelled one."""
from __future__ import annotations

import json
from pathlib import Path

from reward_service.judges.base import StepJudge
from reward_service.thoughts import first_error_index

STEP_SEPARATOR = "\n\n"


def join_steps(steps: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The steps as one text and each step's span in it (separators belong to the step before)."""
    text, spans = "", []
    for i, step in enumerate(steps):
        piece = step + (STEP_SEPARATOR if i < len(steps) - 1 else "")
        spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans


def predict_first_error(judge: StepJudge, sample: dict) -> int:
    text, spans = join_steps(sample["steps"])
    judgment = judge.judge_steps(sample["problem"], text, spans,
                                 bool(sample.get("final_answer_correct", False)), None)
    return first_error_index(judgment.scores)


def metrics(predicted: list[int], labels: list[int]) -> dict:
    """acc on erroneous samples (label != -1), on correct ones (label == -1), and their F1."""
    err = [p == y for p, y in zip(predicted, labels) if y != -1]
    ok = [p == y for p, y in zip(predicted, labels) if y == -1]
    acc_err = sum(err) / len(err) if err else 0.0
    acc_ok = sum(ok) / len(ok) if ok else 0.0
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
    return {"n": len(labels), "acc_erroneous": acc_err, "acc_correct": acc_ok, "f1": f1}


def evaluate_file(judge: StepJudge, path: str | Path) -> dict:
    samples = json.loads(Path(path).read_text())
    predicted, judge_errors = [], 0
    for i, sample in enumerate(samples):
        if not (isinstance(sample, dict) and isinstance(sample.get("problem"), str)
                and isinstance(sample.get("steps"), list) and "label" in sample):
            raise ValueError(f"{path}: sample {i} is malformed; need problem, steps, label")
        try:
            predicted.append(predict_first_error(judge, sample))
        except Exception:  # a judge failure costs this sample (a prediction that is never right)
            predicted.append(None)
            judge_errors += 1
    return {**metrics(predicted, [int(s["label"]) for s in samples]), "judge_errors": judge_errors}
