"""A synthetic multi-step arithmetic task: the embedded default's data (DESIGN.md §6).

Every problem is a chain of 2-4 operations on small integers, evaluated left to right, so a
reference solution is one checkable line per operation:

    Step 1: 12 + 7 = 19
    Step 2: 19 * 3 = 56
    Wait, 19 * 3 = 57.
    Step 3: 57 - 5 = 52
    The answer is \\boxed{52}

A configurable share of reference steps carries a deliberate slip followed at once by a
"Wait, ..." line with the right value, so a warm-started policy produces the self-reflections
TP-GRPO's judge looks for. A slip never changes the final answer of reference data.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

OPS = ("+", "-", "*", "/")
SPLITS = ("train", "eval")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


class ArithTaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_train: int = Field(4000, ge=1)
    num_eval: int = Field(200, ge=1)
    min_ops: int = Field(2, ge=1)
    max_ops: int = Field(3, ge=1)
    max_operand: int = Field(9, ge=2)
    max_value: int = Field(60, ge=2)  # cap on every intermediate result, keeps numbers small
    word_problem_rate: float = Field(0.25, ge=0.0, le=1.0)
    slip_rate: float = Field(0.12, ge=0.0, le=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _ops_range(self) -> "ArithTaskConfig":
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) must be <= max_ops ({self.max_ops})")
        return self


@dataclass(frozen=True)
class Step:
    left: int
    op: str
    right: int
    result: int


def apply_op(left: int, op: str, right: int) -> int:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        if right == 0 or left % right:
            raise ValueError(f"{left} / {right} is not an exact division")
        return left // right
    raise ValueError(f"unknown operator {op!r}")


def _right_operands(value: int, op: str, cfg: ArithTaskConfig) -> list[int]:
    """Right operands that keep the result a non-negative integer within max_value."""
    candidates = range(1, cfg.max_operand + 1)
    if op == "+":
        return [b for b in candidates if value + b <= cfg.max_value]
    if op == "-":
        return [b for b in candidates if b <= value]
    if op == "*":  # x1 teaches nothing
        return [b for b in candidates if b >= 2 and value * b <= cfg.max_value]
    return [b for b in candidates if b >= 2 and value > 0 and value % b == 0]


def sample_chain(rng: random.Random, cfg: ArithTaskConfig) -> tuple[int, list[Step]]:
    start = rng.randint(1, cfg.max_operand)
    value, steps = start, []
    for _ in range(rng.randint(cfg.min_ops, cfg.max_ops)):
        choices = {op: _right_operands(value, op, cfg) for op in OPS}
        op = rng.choice([op for op, rights in choices.items() if rights])
        right = rng.choice(choices[op])
        result = apply_op(value, op, right)
        steps.append(Step(value, op, right, result))
        value = result
    return start, steps


# ---- problem text -------------------------------------------------------------------------

def expression_problem(start: int, steps: list[Step]) -> str:
    """'Compute (12 + 7) * 3 - 5.': brackets only where precedence would reorder the chain."""
    expr, top_level_additive = str(start), False
    for s in steps:
        if s.op in "*/" and top_level_additive:
            expr = f"({expr})"
        expr = f"{expr} {s.op} {s.right}"
        top_level_additive = s.op in "+-"
    return f"Compute {expr}."


_NAMES = ("Tom", "Ana", "Sam", "Mia", "Leo", "Zoe", "Max", "Ivy")
_ITEMS = ("apples", "coins", "cards", "stamps", "marbles", "books", "shells", "pens")
_CLAUSES = {
    "+": ("gets {b} more", "buys {b} more", "finds {b} more"),
    "-": ("gives away {b}", "loses {b}", "sells {b}"),
    "*": ("ends up with {b} times as many",),
    "/": ("splits them into {b} equal piles and keeps one pile",),
}


def word_problem(rng: random.Random, start: int, steps: list[Step]) -> str:
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    clauses = [rng.choice(_CLAUSES[s.op]).format(b=s.right) for s in steps]
    chain = ", ".join(clauses[:-1]) + (", then " if len(clauses) > 1 else "then ") + clauses[-1]
    return f"{name} has {start} {items}, {chain}. How many {items} does {name} have?"


# ---- reference solution -------------------------------------------------------------------

def step_line(k: int, left: int, op: str, right: int, result: int) -> str:
    return f"Step {k}: {left} {op} {right} = {result}"


def _slipped_value(rng: random.Random, true_value: int) -> int:
    wrong = [true_value + d for d in (-3, -2, -1, 1, 2, 3) if true_value + d >= 0]
    return rng.choice(wrong)


def reference_solution(rng: random.Random, steps: list[Step], slip_rate: float) -> str:
    lines = []
    for k, s in enumerate(steps, start=1):
        if rng.random() < slip_rate:
            lines.append(step_line(k, s.left, s.op, s.right, _slipped_value(rng, s.result)))
            lines.append(f"Wait, {s.left} {s.op} {s.right} = {s.result}.")
        else:
            lines.append(step_line(k, s.left, s.op, s.right, s.result))
    lines.append(f"The answer is \\boxed{{{steps[-1].result}}}")
    return "\n".join(lines)


def boxed_answer(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text`, or None."""
    found = _BOXED.findall(text)
    return found[-1].strip() if found else None


def is_correct(text: str, gold: str) -> bool:
    """A plain string check for tuning and smoke tests; the real grader lives in reward_service."""
    got = boxed_answer(text)
    return got is not None and got.replace(",", "") == str(gold).strip()


# ---- splits -------------------------------------------------------------------------------

def _generate(cfg: ArithTaskConfig, split: str, count: int, exclude: set[str]) -> list[dict]:
    rng = random.Random(f"arith-{cfg.seed}-{split}")  # str seeds are stable across runs
    rows: list[dict] = []
    seen = set(exclude)
    attempts, max_attempts = 0, 50 * count + 1000
    while len(rows) < count:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(
                f"could only make {len(rows)} distinct {split} problems of {count}; "
                "raise max_operand/max_ops/max_value or lower num_train/num_eval")
        start, steps = sample_chain(rng, cfg)
        use_words = rng.random() < cfg.word_problem_rate
        problem = word_problem(rng, start, steps) if use_words else expression_problem(start, steps)
        if problem in seen:
            continue
        seen.add(problem)
        rows.append({
            "prompt_id": f"arith-{split}-{len(rows):06d}",
            "problem": problem,
            "answer": str(steps[-1].result),
            "solution": reference_solution(rng, steps, cfg.slip_rate),
        })
    return rows


def make_split(cfg: ArithTaskConfig, split: str) -> list[dict]:
    """Rows {prompt_id, problem, answer, solution}; deterministic, eval and train disjoint."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    # Eval is drawn first and on its own seed, so it never depends on num_train.
    eval_rows = _generate(cfg, "eval", cfg.num_eval, exclude=set())
    if split == "eval":
        return eval_rows
    return _generate(cfg, "train", cfg.num_train, exclude={r["problem"] for r in eval_rows})
