"""Best-of-N: per problem, pick one of N candidate solutions by its aggregated step scores.

    python -m reward_service best-of-n IN.jsonl [--judge NAME] [--aggregate min|last|product|mean]
                                                [--model DIR] [-o KEY=VALUE] [--json]

IN.jsonl holds either one row per candidate, `{"problem", "response", "answer"}` (with an
optional `problem_id`, a string or an integer; rows of the same `problem_id`, or without one (or
with null) of the same problem text, are one problem's candidates), or one row per problem,
`{"problem", "responses": [...], "answer"}` (`row_candidates` reads a row, for every scoring
command). Bad rows (not JSON, binary, a missing or mistyped field) are reported on stderr with
their line number and skipped. Each aggregation (all four unless `--aggregate` names one)
picks the candidate with the highest aggregated score (the first on ties); majority vote over
the extracted final answers is the baseline. Reported: the accuracy of every picker, the
oracle (any candidate correct) and the mean accuracy of a single candidate.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core.jsonl import read_jsonl
from reward_service.cli_io import CliError, starting, text_field
from reward_service.grading import GradingPool, check_settings, plain_number
from reward_service.judges.cli import add_judge_arguments, parse_judge_options
from reward_service.scorer import Scorer, check_options
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
    problem_id: str | None  # as the row gives it; None where it has none
    problem: str
    response: str
    answer: str | None
    line: int

    @property
    def group(self) -> tuple[str, str]:
        """Rows of one `problem_id` are one problem; rows without one, those of one text."""
        return ("text", self.problem) if self.problem_id is None else ("id", self.problem_id)

    @property
    def name(self) -> str:
        return self.problem if self.problem_id is None else self.problem_id


def row_candidates(row: dict, line: int, need_answer: bool = True) -> list[Candidate]:
    """The candidates of one input row (one `response`, or a `responses` list); a missing or
    mistyped field raises ValueError naming it. The row parser of every scoring command."""
    problem = text_field(row, "problem")
    answer = text_field(row, "answer", required=need_answer, number=True)
    pid = row.get("problem_id")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
        raise ValueError("problem_id must be a string or an integer")
    if "responses" in row:
        responses = row["responses"]
        if not isinstance(responses, list) or not responses or \
                not all(isinstance(r, str) for r in responses):
            raise ValueError("'responses' must be a non-empty list of strings")
    else:
        responses = [text_field(row, "response")]
    return [Candidate(None if pid is None else str(pid), problem, r, answer, line)
            for r in responses]


Row = tuple[int, "list[Candidate] | str"]  # a line number and its candidates, or why it is bad


def read_rows(path: str | Path, need_answer: bool = True) -> list[Row]:
    """Every row in file order, as its candidates or the reason it is bad (each bad row is
    reported on stderr)."""
    records = read_jsonl(path)
    good: list[Row] = []
    for lineno, row in records.rows:
        try:
            good.append((lineno, row_candidates(row, lineno, need_answer)))
        except ValueError as e:
            records.add_bad(lineno, str(e))
    records.bad.sort()
    records.report(lambda line: print(line, file=sys.stderr))
    return sorted(good + records.bad, key=lambda entry: entry[0])


def read_candidates(path: str | Path, need_answer: bool = True) -> tuple[list[Candidate], int]:
    """Candidates in file order and the number of bad rows (each reported on stderr); a file
    without a single usable row is a CliError."""
    rows = read_rows(path, need_answer)
    out = [c for _, entry in rows if not isinstance(entry, str) for c in entry]
    bad = sum(isinstance(entry, str) for _, entry in rows)
    if not out:
        raise CliError(f"{path}: no usable rows ({bad} bad)")
    return out, bad


def group_by_problem(candidates: list[Candidate]) -> dict[tuple[str, str], list[int]]:
    """Candidate indices per problem (`Candidate.group`), in first-seen order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault(c.group, []).append(i)
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


def scoring_options(args) -> dict:
    """Check every setting of a scoring command before any work (`--workers`, `--timeout`,
    the judge's options and `splitter_options`): a ValueError names the first problem. Returns
    the judge options."""
    check_settings(args.workers, args.timeout, names=("--workers", "--timeout"))
    options = parse_judge_options(args)
    check_options(args.judge, args.splitter, options)
    return options


@contextlib.contextmanager
def make_scorer(args, options: dict, require_answer: bool = False) -> Iterator[Scorer]:
    """The Scorer of `--judge` with its `options` (checked by `scoring_options`), grading with
    `--workers` processes; a judge that cannot start is a CliError naming it. Everything it
    started is stopped on the way out."""
    grader = GradingPool(num_workers=args.workers, timeout_s=args.timeout,
                         require_answer=require_answer)
    try:
        with starting(f"judge {args.judge!r}"):
            scorer = Scorer(judge=args.judge, splitter=args.splitter, grader=grader, **options)
    except BaseException:
        grader.close()
        raise
    try:
        yield scorer
    finally:
        scorer.close()
        grader.close()


def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", default="tool")
    p.add_argument("--splitter", default="auto")
    add_judge_arguments(p)
    p.add_argument("--workers", type=int, default=2, help="answer-grading processes")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per graded answer")


def run(args, options: dict) -> int:
    candidates, bad = read_candidates(args.input)
    aggregations = [args.aggregate] if args.aggregate else list(AGGREGATIONS)
    with make_scorer(args, options) as scorer:
        verdicts = score_all(scorer, candidates)
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
    p.set_defaults(check=scoring_options, run=run)
