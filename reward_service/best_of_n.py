"""Best-of-N: per problem, pick one of N candidate solutions by its aggregated step scores.

    python -m reward_service best-of-n IN.jsonl [--judge NAME] [--aggregate min|last|product|mean]
                                                [--model DIR] [-o KEY=VALUE] [--json]

IN.jsonl holds either one row per candidate, `{"problem", "response", "answer"}` (with an
optional `problem_id`; rows of the same `problem_id`, or without one of the same problem text,
are one problem's candidates), or one row per problem, `{"problem", "responses": [...],
"answer"}`. Each aggregation (all four unless `--aggregate` names one) picks the candidate with
the highest aggregated score (the first on ties); majority vote over the extracted final
answers is the baseline. Reported: the accuracy of every picker, the oracle (any candidate
correct) and the mean accuracy of a single candidate.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from reward_service.grading import GradingPool, plain_number
from reward_service.judges.cli import add_judge_arguments, judge_options
from reward_service.scorer import Scorer
from reward_service.verdict import Verdict

AGGREGATIONS = {
    "min": min,
    "last": lambda s: s[-1],
    "product": math.prod,
    "mean": lambda s: sum(s) / len(s),
}


def aggregate(scores: list[float], how: str) -> float:
    """One number per solution; a solution without steps has nothing to trust: 0."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; known: {sorted(AGGREGATIONS)}")
    return float(AGGREGATIONS[how](scores)) if scores else 0.0


@dataclass
class Candidate:
    problem_id: str
    problem: str
    response: str
    answer: str | None
    line: int


def _text(row: dict, key: str, required: bool) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "answer":
        return str(value)  # a numeric gold answer in JSON
    if not isinstance(value, str):
        raise ValueError(f"needs a string field {key!r}")
    return value


def read_candidates(path: str | Path, need_answer: bool = True) -> tuple[list[Candidate], int]:
    """Candidates in file order and the number of bad rows (each reported on stderr)."""
    out: list[Candidate] = []
    bad = 0
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            problem = _text(row, "problem", True)
            answer = _text(row, "answer", need_answer)
            pid = str(row.get("problem_id", problem))
            if "responses" in row:
                responses = row["responses"]
                if not isinstance(responses, list) or not responses or \
                        not all(isinstance(r, str) for r in responses):
                    raise ValueError("'responses' must be a non-empty list of strings")
            else:
                responses = [_text(row, "response", True)]
            out.extend(Candidate(pid, problem, r, answer, lineno) for r in responses)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            bad += 1
            print(f"{path}:{lineno}: skipped ({e})", file=sys.stderr)
    return out, bad


def group_by_problem(candidates: list[Candidate]) -> dict[str, list[int]]:
    """Candidate indices per problem id, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault(c.problem_id, []).append(i)
    return groups


def score_all(scorer: Scorer, candidates: list[Candidate], chunk: int = 16) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for start in range(0, len(candidates), chunk):
        part = candidates[start:start + chunk]
        verdicts.extend(scorer.score_many([{"problem": c.problem, "response_text": c.response,
                                            "gold_answer": c.answer or ""} for c in part]))
        done = len(verdicts)
        print(f"\rscored {done}/{len(candidates)}", end="\n" if done == len(candidates) else "",
              file=sys.stderr, flush=True)
    return verdicts


def unscored(v: Verdict) -> bool:
    """Judging failed (a grading problem alone still leaves the steps scored)."""
    return v.judge_error is not None and not v.step_spans


def pick_by_score(verdicts: list[Verdict], how: str) -> int | None:
    """Index of the best-scored verdict (first on ties); None if none was scored."""
    best, best_score = None, -math.inf
    for i, v in enumerate(verdicts):
        if unscored(v):
            continue
        score = aggregate(v.step_scores, how)
        if score > best_score:
            best, best_score = i, score
    return best


def _answer_key(answer: str) -> str:
    number = plain_number(answer)
    return f"#{number}" if number is not None else "".join(answer.split())


def majority_vote(verdicts: list[Verdict]) -> int | None:
    """A candidate whose extracted answer is the most common one (the earliest on ties)."""
    keys = [_answer_key(v.extracted_answer) if v.extracted_answer else None for v in verdicts]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == top)


def evaluate(candidates: list[Candidate], verdicts: list[Verdict], aggregations: list[str]
             ) -> dict:
    groups = group_by_problem(candidates)
    hits = Counter()
    oracle = 0
    for indices in groups.values():
        group = [verdicts[i] for i in indices]
        for how in aggregations:
            chosen = pick_by_score(group, how)
            hits[how] += chosen is not None and group[chosen].outcome_correct
        chosen = majority_vote(group)
        hits["majority"] += chosen is not None and group[chosen].outcome_correct
        oracle += any(v.outcome_correct for v in group)
    n = max(len(groups), 1)
    return {
        "problems": len(groups),
        "candidates": len(candidates),
        "accuracy": {name: hits[name] / n for name in [*aggregations, "majority"]},
        "oracle": oracle / n,
        "mean_candidate_accuracy": sum(v.outcome_correct for v in verdicts) / max(len(verdicts), 1),
        "judge_errors": sum(unscored(v) for v in verdicts),
    }


def make_scorer(args) -> tuple[Scorer, GradingPool]:
    grader = GradingPool(num_workers=args.workers, timeout_s=args.timeout)
    try:
        return Scorer(judge=args.judge, splitter=args.splitter, grader=grader,
                      **judge_options(args)), grader
    except BaseException:
        grader.close()
        raise


def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", default="tool")
    p.add_argument("--splitter", default="auto")
    add_judge_arguments(p)
    p.add_argument("--workers", type=int, default=2, help="answer-grading processes")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per graded answer")


def run(args) -> int:
    candidates, bad = read_candidates(args.input)
    aggregations = [args.aggregate] if args.aggregate else list(AGGREGATIONS)
    scorer, grader = make_scorer(args)
    try:
        verdicts = score_all(scorer, candidates)
    finally:
        grader.close()
    report = {**evaluate(candidates, verdicts, aggregations), "bad_rows": bad}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['problems']} problems, {report['candidates']} candidates, {bad} bad rows "
          f"skipped, {report['judge_errors']} judge errors (judge {args.judge})")
    for name, acc in report["accuracy"].items():
        print(f"{name:10s} accuracy {acc:.3f}")
    print(f"{'oracle':10s} accuracy {report['oracle']:.3f}   (any candidate correct)")
    print(f"{'single':10s} accuracy {report['mean_candidate_accuracy']:.3f}   (mean candidate)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("best-of-n", help="pick one of N solutions per problem by step scores")
    p.add_argument("input")
    add_scoring_arguments(p)
    p.add_argument("--aggregate", choices=sorted(AGGREGATIONS),
                   help="report only this aggregation (default: all four)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)
