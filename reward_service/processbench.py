"""ProcessBench evaluation of any step judge: predicted first error vs the labelled one.

    python -m reward_service processbench FILE.json... [--judge NAME] [--model DIR] [-o K=V]
                                                       [--json]

A file holds ProcessBench samples (`problem`, `steps`, `label`: the index of the earliest wrong
step or -1, optional `final_answer_correct` and `id`) as a JSON list (ProcessBench's layout) or
as JSON lines. The whole file is checked before anything is judged: a sample whose label is not
an integer in [-1, len(steps) - 1] (a bool, a float, a string), whose problem is not a string or
whose steps are not a non-empty list of strings is an error naming it, and nothing is judged.

The judge sees each sample's steps joined by blank lines (each step one span), in batches
(`judge_batch`). The prediction is the first step scored < 0.5 (-1 if none), ProcessBench's
reading of a PRM; a judge failure, or scores that are not one finite number in [0, 1] per step,
is a prediction that is never right, counted in `judge_errors`.

The metric is ProcessBench's (its evaluation code): the accuracy on the erroneous samples
(label != -1), the accuracy on the correct ones (label == -1), and F1, their harmonic mean.
Where ProcessBench's numpy code gives nan, here an accuracy over no samples is None and F1 is 0
(scikit-learn's zero_division convention), so a report is always valid JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.jsonl import read_jsonl
from reward_service.cli_io import CliError, starting
from reward_service.judges import get_judge
from reward_service.judges.base import StepJudge, StepJudgment, StepRequest
from reward_service.judges.cli import add_judge_arguments, judge_options
from reward_service.scorer import checked_scores
from reward_service.thoughts import first_error_index

STEP_SEPARATOR = "\n\n"
_SHOWN = 5  # bad samples named in the error, at most


def join_steps(steps: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The steps as one text and each step's span in it (separators belong to the step before)."""
    text, spans = "", []
    for i, step in enumerate(steps):
        piece = step + (STEP_SEPARATOR if i < len(steps) - 1 else "")
        spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans


def sample_problems(sample) -> list[str]:
    """What is wrong with one sample (nothing: an empty list)."""
    if not isinstance(sample, dict):
        return ["not a JSON object"]
    problems = []
    if not isinstance(sample.get("problem"), str):
        problems.append("problem must be a string")
    steps = sample.get("steps")
    steps_ok = isinstance(steps, list) and steps and all(isinstance(s, str) for s in steps)
    if not steps_ok:
        problems.append("steps must be a non-empty list of strings")
    if "label" not in sample:
        problems.append("label is missing")
    else:
        label = sample["label"]
        top = len(steps) - 1 if steps_ok else None
        if type(label) is not int or label < -1 or (top is not None and label > top):
            where = f" in [-1, {top}]" if top is not None else ""
            problems.append(f"label must be an integer{where}, got {label!r}")
    if not isinstance(sample.get("final_answer_correct", False), bool):
        problems.append(f"final_answer_correct must be true or false, got "
                        f"{sample['final_answer_correct']!r}")
    return problems


def load_samples(path: str | Path) -> list[dict]:
    """Every sample of the file, all checked; any problem is one CliError naming the samples."""
    path = Path(path)
    if path.suffix == ".jsonl":
        records = read_jsonl(path, objects=False)
        if records.bad:
            shown = "; ".join(f"line {n}: {why}" for n, why in records.bad[:_SHOWN])
            raise CliError(f"{path}: {shown}")
        samples, where = [row for _, row in records.rows], [f" (line {n})" for n, _ in records.rows]
    else:
        try:
            samples = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise CliError(f"{path}: no such file") from None
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise CliError(f"{path}: not valid JSON ({' '.join(str(e).split())})") from None
        if not isinstance(samples, list):
            raise CliError(f"{path}: expected a JSON list of samples, got a JSON "
                           f"{type(samples).__name__}")
        where = [""] * len(samples)
    if not samples:
        raise CliError(f"{path}: no samples")
    bad = [f"sample {i}{where[i]}: {', '.join(problems)}" for i, s in enumerate(samples)
           for problems in [sample_problems(s)] if problems]
    if bad:
        more = f"; and {len(bad) - _SHOWN} more bad samples" if len(bad) > _SHOWN else ""
        raise CliError(f"{path}: {'; '.join(bad[:_SHOWN])}{more}")
    return samples


def request(sample: dict) -> StepRequest:
    text, spans = join_steps(sample["steps"])
    return StepRequest(sample["problem"], text, spans,
                       bool(sample.get("final_answer_correct", False)), None)


def prediction(judgment: StepJudgment | Exception, num_steps: int, threshold: float | None = None) -> int | None:
    """The predicted first error, or None where the judge failed (never a right prediction).
    The first step scored < 0.5, or, given `threshold`, the first a label job would call wrong
    (score <= threshold)."""
    if isinstance(judgment, Exception):
        return None
    try:
        scores, _ = checked_scores(judgment, num_steps)
    except ValueError:
        return None
    if threshold is None:
        return first_error_index(scores)
    return next((i for i, s in enumerate(scores) if s <= threshold), -1)


def predict(judge: StepJudge, samples: list[dict], batch_size: int = 16) -> list[int | None]:
    predicted: list[int | None] = []
    for start in range(0, len(samples), batch_size):
        chunk = [request(s) for s in samples[start:start + batch_size]]
        judged = judge.judge_batch(chunk)
        if len(judged) != len(chunk):
            raise RuntimeError(f"judge gave {len(judged)} results for {len(chunk)} samples")
        predicted.extend(prediction(j, len(r.spans)) for r, j in zip(chunk, judged))
        print(f"\rjudged {len(predicted)}/{len(samples)}", end="\n" if
              len(predicted) == len(samples) else "", file=sys.stderr, flush=True)
    return predicted


def metrics(predicted: list[int | None], labels: list[int]) -> dict:
    """acc on erroneous samples (label != -1), on correct ones (label == -1), and their F1."""
    err = [p == y for p, y in zip(predicted, labels) if y != -1]
    ok = [p == y for p, y in zip(predicted, labels) if y == -1]
    acc_err = sum(err) / len(err) if err else None
    acc_ok = sum(ok) / len(ok) if ok else None
    f1 = 0.0
    if acc_err and acc_ok:
        f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok)
    return {"n": len(labels), "acc_erroneous": acc_err, "acc_correct": acc_ok, "f1": f1}


def evaluate(judge: StepJudge, samples: list[dict]) -> dict:
    predicted = predict(judge, samples)
    return {**metrics(predicted, [s["label"] for s in samples]),
            "judge_errors": sum(p is None for p in predicted)}


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def check(args) -> tuple[dict, dict[str, list[dict]]]:
    """The judge's options and every file's samples, all checked before anything is judged."""
    return judge_options(args), {Path(f).stem: load_samples(f) for f in args.files}


def run(args, checked: tuple[dict, dict[str, list[dict]]]) -> int:
    options, files = checked
    with starting(f"judge {args.judge!r}"):
        judge = get_judge(args.judge, **options)
    try:
        subsets = {name: evaluate(judge, samples) for name, samples in files.items()}
    finally:
        judge.close()
    mean_f1 = sum(s["f1"] for s in subsets.values()) / len(subsets)
    if args.json:
        print(json.dumps({"subsets": subsets, "mean_f1": mean_f1}))
        return 0
    for name, s in subsets.items():
        print(f"{name:28s} n={s['n']:5d} acc_erroneous={_share(s['acc_erroneous'])} "
              f"acc_correct={_share(s['acc_correct'])} f1={s['f1']:.3f}"
              + (f" judge_errors={s['judge_errors']}" if s["judge_errors"] else ""))
    print(f"mean f1 {mean_f1:.3f}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("processbench", help="evaluate a step judge on ProcessBench files")
    p.add_argument("files", nargs="+", help="ProcessBench subsets (.json lists or .jsonl)")
    p.add_argument("--judge", default="tool")
    add_judge_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(check=check, run=run)
