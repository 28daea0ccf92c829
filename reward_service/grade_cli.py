"""Grade a JSON-lines file: every row's `response` against its gold `answer`.

    python -m reward_service grade IN.jsonl OUT.jsonl [--workers N] [--timeout S]

OUT has one row per non-blank line of IN, in the same order: the input row plus `line` (its line
number in IN), `correct`, `extracted` (the answer as math-verify read it) and `error` (null, or
why the row could not be graded: `timeout`, `too_long`, `gold_unparsable`, ...). A bad line (not
UTF-8, not JSON, not an object, no string `response`, no string or number `answer`) is kept in
OUT with `correct: false` and `error: "bad row: ..."`, and reported on stderr. The settings and
OUT are checked before any work; OUT may not be IN and is written through a temporary file, so
an interrupted run leaves an earlier OUT as it was.
"""
from __future__ import annotations

import json
import sys

from core.jsonl import read_jsonl
from reward_service.cli_io import atomic_output, text_field
from reward_service.grading import Grade, GradingPool, check_settings


def _progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"\rgraded {done}/{total}", end="\n" if done == total else "", file=sys.stderr,
              flush=True)


def response_and_gold(row: dict) -> tuple[str, str]:
    """A row's (response, gold answer); a missing or mistyped field raises, naming it."""
    return text_field(row, "response"), text_field(row, "answer", number=True)


def _line(row: dict, lineno: int, correct: bool, extracted: str | None, error: str | None) -> str:
    fields = {"line": lineno, "correct": correct, "extracted": extracted, "error": error}
    try:
        return json.dumps({**row, **fields})
    except (ValueError, RecursionError) as e:  # a row JSON could read but not write back
        return json.dumps({**fields, "error": f"bad row: cannot be written back ({e})"})


def check(args) -> None:
    check_settings(args.workers, args.timeout, names=("--workers", "--timeout"))


def run(args, checked: None) -> int:
    with atomic_output(args.output, inputs=[args.input]) as tmp:
        records = read_jsonl(args.input)
        good: list[tuple[int, dict, tuple[str, str]]] = []
        parsed = dict(records.rows)
        for lineno, row in records.rows:
            try:
                good.append((lineno, row, response_and_gold(row)))
            except ValueError as e:
                records.add_bad(lineno, str(e))
        records.report(lambda line: print(line, file=sys.stderr), limit=20)
        with GradingPool(num_workers=args.workers, timeout_s=args.timeout) as pool:
            grades = pool.grade_many([pair for _, _, pair in good], progress=_progress)
            timeouts = pool.timeouts
        out: dict[int, str] = {}
        for (lineno, row, _), g in zip(good, grades):
            out[lineno] = _line(row, lineno, g.correct, g.extracted, g.error)
        for lineno, why in records.bad:
            out[lineno] = _line(parsed.get(lineno, {}), lineno, False, None, f"bad row: {why}")
        with open(tmp, "w") as f:
            f.writelines(out[lineno] + "\n" for lineno in sorted(out))
    _summary(grades, timeouts, len(records.bad), args.output)
    return 0


def _summary(grades: list[Grade], timeouts: int, bad: int, output: str) -> None:
    correct = sum(g.correct for g in grades)
    errors = sum(g.error is not None and g.error != "timeout" for g in grades)
    print(f"{correct}/{len(grades)} correct, {timeouts} timeouts, {errors} grading errors, "
          f"{bad} bad rows kept with their error -> {output}", file=sys.stderr)


def add_parser(sub) -> None:
    p = sub.add_parser("grade", help="grade rows with 'response' and 'answer' (jsonl)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--workers", type=int, default=2, help="grading processes (default 2)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds per answer before its worker is killed (default 5)")
    p.set_defaults(check=check, run=run)
