"""Command line: grade a jsonl file, evaluate a judge on ProcessBench, Best-of-N, data selection.

    python -m reward_service grade IN.jsonl OUT.jsonl [--workers N --timeout S]
    python -m reward_service processbench FILE.json... --judge tool [--json]
    python -m reward_service processbench FILE.json... --judge rprm --model DIR [-o samples=4]
    python -m reward_service best-of-n IN.jsonl [--judge NAME --aggregate min|last|product|mean]
    python -m reward_service select IN.jsonl OUT.parquet --top-k K [--judge NAME] [--overall]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reward_service import best_of_n
from reward_service import select as selection
from reward_service.grading import GradingPool
from reward_service.judges import get_judge
from reward_service.judges.cli import add_judge_arguments, judge_options
from reward_service.processbench import evaluate_file


def _progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"\rgraded {done}/{total}", end="\n" if done == total else "", file=sys.stderr,
              flush=True)


def grade_file(args) -> int:
    rows, bad = [], 0
    for lineno, line in enumerate(Path(args.input).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row.get("response"), str) or not isinstance(row.get("answer"), str):
                raise ValueError("needs string fields 'response' and 'answer'")
            rows.append(row)
        except (ValueError, AttributeError) as e:
            bad += 1
            print(f"{args.input}:{lineno}: skipped ({e})", file=sys.stderr)
    with GradingPool(num_workers=args.workers, timeout_s=args.timeout) as pool:
        grades = pool.grade_many([(r["response"], r["answer"]) for r in rows], progress=_progress)
        timeouts = pool.timeouts
    with open(args.output, "w") as out:
        for row, g in zip(rows, grades):
            out.write(json.dumps({**row, "correct": g.correct, "extracted": g.extracted,
                                  "error": g.error}) + "\n")
    correct = sum(g.correct for g in grades)
    print(f"{correct}/{len(rows)} correct, {timeouts} timeouts, {bad} bad rows skipped",
          file=sys.stderr)
    return 0


def processbench(args) -> int:
    judge = get_judge(args.judge, **judge_options(args))
    subsets = {Path(f).stem: evaluate_file(judge, f) for f in args.files}
    mean_f1 = sum(s["f1"] for s in subsets.values()) / len(subsets)
    if args.json:
        print(json.dumps({"subsets": subsets, "mean_f1": mean_f1}))
    else:
        for name, s in subsets.items():
            print(f"{name:28s} n={s['n']:5d} acc_erroneous={s['acc_erroneous']:.3f} "
                  f"acc_correct={s['acc_correct']:.3f} f1={s['f1']:.3f}"
                  + (f" judge_errors={s['judge_errors']}" if s.get("judge_errors") else ""))
        print(f"mean f1 {mean_f1:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reward_service")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade rows with 'response' and 'answer'")
    g.add_argument("input")
    g.add_argument("output")
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--timeout", type=float, default=5.0)
    g.set_defaults(run=grade_file)
    p = sub.add_parser("processbench", help="evaluate a step judge on ProcessBench files")
    p.add_argument("files", nargs="+")
    p.add_argument("--judge", default="tool")
    add_judge_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=processbench)
    best_of_n.add_parser(sub)
    selection.add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
