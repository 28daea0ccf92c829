"""Show what would be rewarded: steps, scores, TP-GRPO labels, thoughts and their advantages.

    python -m reward_service score IN.jsonl OUT.jsonl [--judge NAME] [--splitter S]
                                   [--algorithm A] [--alpha X] [--beta X] [--model DIR] [-o K=V]

IN.jsonl has the layouts of `best-of-n`: one solution per row (`problem`, `response`, `answer`,
optional `problem_id`), or one problem per row with its solutions in `responses`; rows of one
`problem_id`, or without one of one problem text, are one problem's group. OUT.jsonl has one
row per solution, in input order: its `line`, `problem_id`, `outcome_correct`,
`extracted_answer`, `judge_error`, `trajectory_score`, `first_error_index`, `steps` and
`thoughts` (each with `start`, `end` (character spans into the response), `text` and `label`;
steps also carry their `score`). Where a group has two or more solutions, every step and
thought also carries its token `advantage` under `--algorithm` (each character counted as a
token; a thought's advantage is null where it varies inside the thought: see its steps).
Answers are graded as in training (`judge.require_answer`): a response that states no answer
is wrong. A bad input row is reported on stderr and kept in OUT with its `line` and `error`.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from reward_service.advantages import GroupSample, get_algorithm, group_advantages
from reward_service.best_of_n import (Candidate, add_scoring_arguments, group_by_problem,
                                      make_scorer, read_rows, score_all, scoring_options)
from reward_service.cli_io import atomic_output
from reward_service.verdict import Verdict


def _parts(text: str, spans, labels, advantages: np.ndarray | None, scores=None) -> list[dict]:
    out = []
    for k, ((a, b), label) in enumerate(zip(spans, labels)):
        part = {"start": a, "end": b, "text": text[a:b], "label": label}
        if scores is not None:
            part["score"] = scores[k]
        if advantages is not None:
            values = np.unique(advantages[a:b])
            part["advantage"] = float(values[0]) if len(values) == 1 else None
        out.append(part)
    return out


def scored_row(c: Candidate, v: Verdict, advantages: np.ndarray | None) -> dict:
    return {
        "line": c.line, "problem_id": c.name, "outcome_correct": v.outcome_correct,
        "extracted_answer": v.extracted_answer, "judge_error": v.judge_error,
        "trajectory_score": v.trajectory_score, "first_error_index": v.first_error_index,
        "steps": _parts(c.response, v.step_spans, v.step_labels, advantages, v.step_scores),
        "thoughts": _parts(c.response, v.thought_spans, v.thought_labels, advantages),
    }


def advantages_by_group(candidates: list[Candidate], verdicts: list[Verdict], algorithm: str,
                        alpha: float, beta: float) -> dict[int, np.ndarray]:
    """Per-character advantages of every candidate whose problem has two or more candidates."""
    out: dict[int, np.ndarray] = {}
    for indices in group_by_problem(candidates).values():
        if len(indices) < 2:
            continue
        group = [GroupSample.judged(verdicts[i], candidates[i].response,
                                    range(len(candidates[i].response))) for i in indices]
        out.update(zip(indices, group_advantages(algorithm, group, alpha=alpha, beta=beta)))
    return out


def check(args) -> dict:
    get_algorithm(args.algorithm)
    return scoring_options(args)


def run(args, options: dict) -> int:
    with atomic_output(args.output, inputs=[args.input]) as tmp:
        rows = read_rows(args.input)
        candidates = [c for _, entry in rows if not isinstance(entry, str) for c in entry]
        with make_scorer(args, options, require_answer=True) as scorer:
            verdicts = score_all(scorer, candidates)
        advantages = advantages_by_group(candidates, verdicts, args.algorithm, args.alpha,
                                         args.beta)
        k = 0
        with open(tmp, "w") as f:
            for lineno, entry in rows:
                if isinstance(entry, str):
                    f.write(json.dumps({"line": lineno, "error": entry}) + "\n")
                    continue
                for c in entry:
                    f.write(json.dumps(scored_row(c, verdicts[k], advantages.get(k))) + "\n")
                    k += 1
    errors = sum(v.judge_error is not None for v in verdicts)
    bad = sum(isinstance(entry, str) for _, entry in rows)
    print(f"scored {len(candidates)} solutions of {len(group_by_problem(candidates))} problems "
          f"({len(advantages)} in groups, advantages under {args.algorithm}); {errors} judge "
          f"errors; {bad} bad rows kept with their error -> {args.output}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="write each solution's steps, labels, thoughts and "
                                     "advantages (jsonl)")
    p.add_argument("input")
    p.add_argument("output")
    add_scoring_arguments(p)
    p.add_argument("--algorithm", default="tpgrpo", help="advantages of grouped rows (default "
                   "tpgrpo; see reward_service.advantages.known_algorithms())")
    p.add_argument("--alpha", type=float, default=1.0, help="the algorithm's alpha (default 1.0)")
    p.add_argument("--beta", type=float, default=0.75, help="reasonflux's beta (default 0.75)")
    p.set_defaults(check=check, run=run)
