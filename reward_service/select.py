"""Offline data selection (ReasonFlux-PRM): score trajectories, keep the top K, write parquet.

    python -m reward_service select IN.jsonl OUT.parquet --top-k K [--judge NAME]
                                    [--aggregate mean] [--overall] [--model DIR] [-o KEY=VALUE]

IN.jsonl has the layouts of `best-of-n` (one row per trajectory, or `responses` lists); the
`answer` is optional here (without it `outcome_correct` is null, and a judge that needs the gold
answer reports a judge error for that row). A trajectory's score is its step scores aggregated
(`--aggregate`, mean by default: ReasonFlux's r̂). By default the K best trajectories *of each
problem* are kept; `--overall` keeps the K best of the whole file instead. Trajectories whose
judging failed are never kept. Ties keep file order. OUT.parquet has one row per kept
trajectory: problem_id, problem, response, answer, score, rank (1 = best, within its problem or
overall), step_scores, outcome_correct, extracted_answer, judge. OUT is checked before any work
(it may not be IN), written to a temporary file and renamed over OUT only when complete.
"""
from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq

from reward_service.best_of_n import (AGGREGATIONS, add_scoring_arguments, aggregate,
                                      group_by_problem, make_scorer, read_candidates, score_all,
                                      scoring_options, unscored)
from reward_service.cli_io import atomic_output

SCHEMA = pa.schema([
    ("problem_id", pa.string()),
    ("problem", pa.string()),
    ("response", pa.string()),
    ("answer", pa.string()),
    ("score", pa.float64()),
    ("rank", pa.int32()),
    ("step_scores", pa.list_(pa.float64())),
    ("outcome_correct", pa.bool_()),
    ("extracted_answer", pa.string()),
    ("judge", pa.string()),
])


def top_k(scores: list[float | None], pools: list[list[int]], k: int) -> list[tuple[int, int]]:
    """(index, rank) of the k best-scored items of each pool, best first; None is never kept."""
    kept: list[tuple[int, int]] = []
    for pool in pools:
        ranked = sorted((i for i in pool if scores[i] is not None), key=lambda i: -scores[i])
        kept.extend((i, rank) for rank, i in enumerate(ranked[:k], 1))
    return kept


def check(args) -> dict:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    return scoring_options(args)


def run(args, options: dict) -> int:
    with atomic_output(args.output, inputs=[args.input]) as tmp:  # OUT is checked first
        candidates, bad = read_candidates(args.input, need_answer=False)
        with make_scorer(args, options) as scorer:
            verdicts = score_all(scorer, candidates)
        scores = [None if unscored(v) else aggregate(v.step_scores, args.aggregate)
                  for v in verdicts]
        groups = group_by_problem(candidates)
        pools = [list(range(len(candidates)))] if args.overall else list(groups.values())
        kept = top_k(scores, pools, args.top_k)
        rows = []
        for i, rank in kept:
            c, v = candidates[i], verdicts[i]
            rows.append({
                "problem_id": c.name, "problem": c.problem, "response": c.response,
                "answer": c.answer, "score": scores[i], "rank": rank,
                "step_scores": [float(s) for s in v.step_scores],
                "outcome_correct": v.outcome_correct if c.answer is not None else None,
                "extracted_answer": v.extracted_answer, "judge": args.judge,
            })
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), str(tmp))
    failed = sum(s is None for s in scores)
    print(f"kept {len(rows)} of {len(candidates)} trajectories ({len(groups)} problems, top "
          f"{args.top_k} {'overall' if args.overall else 'per problem'}); {failed} judge errors, "
          f"{bad} bad rows skipped -> {args.output}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("select", help="keep the top-K trajectories by step scores (parquet)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--top-k", type=int, required=True)
    p.add_argument("--overall", action="store_true",
                   help="keep the K best of the whole file (default: K per problem)")
    p.add_argument("--aggregate", choices=sorted(AGGREGATIONS), default="mean")
    add_scoring_arguments(p)
    p.set_defaults(check=check, run=run)
