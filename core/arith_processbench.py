"""A ProcessBench of the embedded arithmetic task, with every first error known by construction.

Each problem of the task (held-out rows: `problem`, `answer` and the reference `solution`) gives
two samples in the policy's own style, one line per step:

    Step 1: 12 + 7 = 19
    Step 2: 19 * 3 = 57
    The answer is \\boxed{57}

one correct (label -1) and one with a single error at a step drawn uniformly (label = that
step), so the set is balanced. The error is one of `ERRORS`:

- `result`: the step states a wrong result (off by 1-3); later steps compute on from it;
- `operand`: the step starts from a number other than the previous result (or the problem's
  first number), and computes correctly from it;
- `right`: the step uses a number other than the problem's operand, and computes correctly.

Every later step is correct given what came before, so the labelled step is the first and only
error; the final answer is then wrong (`final_answer_correct` says so, checked, not assumed).
The `tool` judge can see only `result` errors (a claim that is false in itself); the other two
need the previous step or the problem, as the policy's own copying slips do.
"""
from __future__ import annotations

import random
import re
from typing import Callable

from core.arith_task import Step, apply_op, step_line

_STEP = re.compile(r"Step (\d+): (\d+) ([-+*/]) (\d+) = (-?\d+)")
_WAIT = re.compile(r"Wait, (\d+) ([-+*/]) (\d+) = (-?\d+)\.")


def chain_of(solution: str) -> list[Step]:
    """The correct chain of a reference solution (a slip's "Wait, ..." line gives the value)."""
    steps: list[Step] = []
    for line in solution.splitlines():
        if m := _STEP.fullmatch(line.strip()):
            left, op, right = int(m[2]), m[3], int(m[4])
            steps.append(Step(left, op, right, apply_op(left, op, right)))
        elif not _WAIT.fullmatch(line.strip()) and not line.startswith("The answer is"):
            raise ValueError(f"not a line of the arithmetic task's solutions: {line!r}")
    if not steps:
        raise ValueError("a solution without steps")
    return steps


def _replay(start: int, steps: list[Step], k: int, left: int, right: int, result: int | None) -> list[Step] | None:
    """The chain with step k as given (`result` None: computed) and every later step computed on
    from it; None where an operation stops being exact or goes negative."""
    out = list(steps[:k])
    value = left
    for i, s in enumerate(steps[k:], start=k):
        a, b = (left, right) if i == k else (value, s.right)
        try:
            c = result if i == k and result is not None else apply_op(a, s.op, b)
        except ValueError:
            return None
        if c < 0:
            return None
        out.append(Step(a, s.op, b, c))
        value = c
    return out


def _wrong_result(rng: random.Random, start: int, steps: list[Step], k: int) -> list[Step] | None:
    s = steps[k]
    for d in rng.sample([-3, -2, -1, 1, 2, 3], 6):
        if (chain := _replay(start, steps, k, s.left, s.right, s.result + d)) is not None:
            return chain
    return None


def _wrong_operand(rng: random.Random, start: int, steps: list[Step], k: int) -> list[Step] | None:
    s = steps[k]
    for d in rng.sample([-3, -2, -1, 1, 2, 3], 6):
        if s.left + d >= 0 and (chain := _replay(start, steps, k, s.left + d, s.right, None)) is not None:
            return chain
    return None


def _wrong_right(rng: random.Random, start: int, steps: list[Step], k: int) -> list[Step] | None:
    s = steps[k]
    for b in rng.sample(range(1, 10), 9):
        if b != s.right and (chain := _replay(start, steps, k, s.left, b, None)) is not None:
            return chain
    return None


# name -> makes the chain with one error at step k (None where it cannot be made there)
ERRORS: dict[str, Callable[[random.Random, int, list[Step], int], list[Step] | None]] = {
    "result": _wrong_result,
    "operand": _wrong_operand,
    "right": _wrong_right,
}


def render(steps: list[Step]) -> list[str]:
    """A chain as the policy writes it, one step per line, the answer stated last."""
    lines = [step_line(k, s.left, s.op, s.right, s.result) for k, s in enumerate(steps, start=1)]
    return [*lines, f"The answer is \\boxed{{{steps[-1].result}}}"]


def make_samples(rows: list[dict], seed: int = 0, errors: tuple[str, ...] = tuple(ERRORS)) -> list[dict]:
    """Two ProcessBench samples per row (one correct, one with a single error); rows need
    `problem`, `answer` and the reference `solution` of the arithmetic task."""
    unknown = sorted(set(errors) - set(ERRORS))
    if unknown or not errors:
        raise ValueError(f"errors must be a non-empty subset of {sorted(ERRORS)}, got {list(errors)}")
    rng = random.Random(f"arith-processbench-{seed}")
    samples = []
    for i, row in enumerate(rows):
        try:
            steps = chain_of(row["solution"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"row {i} ({row.get('prompt_id', '?')}): {e}") from None
        if str(steps[-1].result) != str(row["answer"]).strip():
            raise ValueError(f"row {i}: the solution's result {steps[-1].result} is not its answer {row['answer']}")
        start = steps[0].left
        base = {"problem": row["problem"], "answer": str(row["answer"]), "problem_id": row.get("prompt_id", str(i))}
        samples.append({**base, "id": f"{base['problem_id']}-correct", "steps": render(steps), "label": -1,
                        "final_answer_correct": True, "error": None})
        for kind, k in rng.sample([(e, k) for e in errors for k in range(len(steps))], len(errors) * len(steps)):
            wrong = ERRORS[kind](rng, start, steps, k)
            if wrong is not None:
                samples.append({**base, "id": f"{base['problem_id']}-{kind}{k}", "steps": render(wrong), "label": k,
                                "final_answer_correct": wrong[-1].result == steps[-1].result, "error": kind})
                break
        else:
            samples.pop()  # no error fits this chain: keep the set balanced
    return samples
