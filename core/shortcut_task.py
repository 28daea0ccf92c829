"""A synthetic task in which credit assignment matters: chains whose steps a solver may merge.

A problem is a chain of additions and subtractions on small integers, each operation named by
a letter:

    Start with 7, then a) + 5, b) - 3, c) + 4, d) - 6.

A solution works it line by line. At every line where two operations remain it decides, at one
token (the one after "Step a"), between working one operation and a *shortcut* that merges the
next two into one claim without writing the intermediate result:

    Step a,b: (7 + 5) - 3 = 9
    Step c: 9 + 4 = 13
    Step d: 13 - 6 = 7
    The answer is \\boxed{7}

The reference solution of a row works one operation per line; the warm start trains on those
first, so the policy can work a chain out. `habit_rows` rewrites them for the warm start's short
second stage: they merge at `rate` of the lines where two operations remain, and `slip_rate` of
the merges state a wrong result, followed at once by a reflection that works the two operations
out ("Wait, 7 + 5 = 12 and 12 - 3 = 9."); every answer stays right. The policy then has the habit
of merging, learnt briefly: its merged lines are wrong far more often than its careful ones, so
the shortcut is a habit it can drop rather than a skill it lacks. An error sits in one line,
where a false claim shows it, and the answer only says whether every line went right.

`write_solution` also writes the solutions a policy with given `Habits` would (wrong shortcuts
left standing, reflections after right ones), recording which lines are faulty, and
`read_solution` reads a policy's text back into the same terms.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SPLITS = ("train", "eval")
LABELS = "abcdefghij"
CAREFUL, SHORTCUT, REFLECTION, ANSWER, OTHER = "careful", "shortcut", "reflection", "answer", "other"


class ShortcutTaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: Literal["shortcut"] = "shortcut"
    num_train: int = Field(20000, ge=1)
    num_eval: int = Field(200, ge=1)
    min_ops: int = Field(4, ge=2)
    max_ops: int = Field(5, ge=2, le=len(LABELS))
    max_operand: int = Field(9, ge=2)
    max_value: int = Field(40, ge=2)  # cap on every value, the unwritten middle of a shortcut too
    slip_rate: float = Field(0.3, ge=0.0, le=1.0)  # habit_rows: merges stated wrong, then reflected
    seed: int = 0

    @model_validator(mode="after")
    def _ops_range(self) -> "ShortcutTaskConfig":
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) must be <= max_ops ({self.max_ops})")
        return self


# ---- problems -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Op:
    label: str
    op: str  # "+" or "-"
    right: int

    def apply(self, left: int) -> int:
        return left + self.right if self.op == "+" else left - self.right


def run(value: int, ops) -> int:
    """`value` after each of `ops` in turn."""
    for o in ops:
        value = o.apply(value)
    return value


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[Op, ...]

    @property
    def text(self) -> str:
        chain = ", ".join(f"{o.label}) {o.op} {o.right}" for o in self.ops)
        return f"Start with {self.start}, then {chain}."

    @property
    def answer(self) -> int:
        return run(self.start, self.ops)


def sample_problem(rng: random.Random, cfg: ShortcutTaskConfig) -> Problem:
    """Every value along the chain stays in [0, max_value]."""
    value = rng.randint(1, cfg.max_operand)
    start, ops = value, []
    for label in LABELS[:rng.randint(cfg.min_ops, cfg.max_ops)]:
        choices = [(op, b) for op in "+-" for b in range(1, cfg.max_operand + 1)
                   if 0 <= (value + b if op == "+" else value - b) <= cfg.max_value]
        op, b = rng.choice(choices)
        ops.append(Op(label, op, b))
        value = ops[-1].apply(value)
    return Problem(start, tuple(ops))


_PROBLEM = re.compile(r"Start with (\d+), then (.*)\.")
_PROBLEM_OP = re.compile(r"([a-j])\) ([+-]) (\d+)")


def parse_problem(text: str) -> Problem:
    """The problem `Problem.text` wrote; ValueError for any other text."""
    m = _PROBLEM.fullmatch(text.strip())
    ops = tuple(Op(label, op, int(b)) for label, op, b in _PROBLEM_OP.findall(m.group(2))) if m else ()
    if not ops or Problem(int(m.group(1)), ops).text != text.strip():
        raise ValueError(f"not a shortcut-task problem: {text!r}")
    return Problem(int(m.group(1)), ops)


# ---- solutions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Habits:
    """How often a solver does what, per line: the rates a policy shows, or the reference's."""
    shortcut: float  # merge, where two operations remain
    shortcut_error: float  # a merged claim is wrong
    careful_error: float = 0.0  # a one-operation claim is wrong
    reflect_wrong: float = 1.0  # a wrong merged claim is followed by a reflection
    reflect_right: float = 0.0  # a right merged claim is followed by one all the same


@dataclass(frozen=True)
class Move:
    """One line: merge the next two operations or not, state the result off by `error`, then
    (after a merge) reflect by working the two operations out."""
    merge: bool
    error: int = 0
    reflect: bool = False


@dataclass
class Solution:
    text: str
    line_spans: list[tuple[int, int]]  # each line with its newline: the `lines` splitter's steps
    faulty_lines: list[int]  # lines whose own claim is false
    correct: bool  # the final answer is the problem's
    kinds: list[str] = field(default_factory=list)  # CAREFUL / SHORTCUT / REFLECTION / ANSWER per line


def _line(ops: tuple[Op, ...], left: int, claimed: int) -> str:
    if len(ops) == 1:
        return f"Step {ops[0].label}: {left} {ops[0].op} {ops[0].right} = {claimed}"
    a, b = ops
    return f"Step {a.label},{b.label}: ({left} {a.op} {a.right}) {b.op} {b.right} = {claimed}"


def _reflection(ops: tuple[Op, ...], left: int) -> str:
    parts = [f"{run(left, ops[:k])} {o.op} {o.right} = {run(left, ops[:k + 1])}" for k, o in enumerate(ops)]
    return f"Wait, {' and '.join(parts)}."


def write_solution(problem: Problem, moves: list[Move]) -> Solution:
    """The solution that takes `moves`, one per line until the chain is done (a merge where one
    operation remains works that one); a wrong result left standing is carried on."""
    lines, kinds, faulty = [], [], []
    value, i = problem.start, 0
    for move in moves:
        if i >= len(problem.ops):
            break
        ops = problem.ops[i: i + (2 if move.merge else 1)]
        truth = run(value, ops)
        if move.error:
            faulty.append(len(lines))
        lines.append(_line(ops, value, truth + move.error))
        kinds.append(SHORTCUT if len(ops) == 2 else CAREFUL)
        if move.reflect and len(ops) == 2:
            lines.append(_reflection(ops, value))
            kinds.append(REFLECTION)
            value = truth
        else:
            value = truth + move.error
        i += len(ops)
    if i < len(problem.ops):
        raise ValueError(f"{len(moves)} moves do not finish a chain of {len(problem.ops)} operations")
    lines.append(f"The answer is \\boxed{{{value}}}")
    kinds.append(ANSWER)
    text = "\n".join(lines)
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    return Solution(text, list(zip(starts, [*starts[1:], len(text)])), faulty, value == problem.answer, kinds)


def _slip(rng: random.Random, truth: int) -> int:
    """A wrong result close to `truth`, not negative where `truth` is not: the offset to add."""
    offsets = (-3, -2, -1, 1, 2, 3)
    return rng.choice([d for d in offsets if truth + d >= 0] or offsets)


def sample_moves(rng: random.Random, problem: Problem, habits: Habits) -> list[Move]:
    """The moves of one solution drawn from `habits`, line by line."""
    moves, value, i = [], problem.start, 0
    while i < len(problem.ops):
        merge = i + 1 < len(problem.ops) and rng.random() < habits.shortcut
        ops = problem.ops[i: i + (2 if merge else 1)]
        truth = run(value, ops)
        wrong = rng.random() < (habits.shortcut_error if merge else habits.careful_error)
        error = _slip(rng, truth) if wrong else 0
        reflect = merge and rng.random() < (habits.reflect_wrong if wrong else habits.reflect_right)
        moves.append(Move(merge, error, reflect))
        value = truth if reflect else truth + error
        i += len(ops)
    return moves


def habit_rows(cfg: ShortcutTaskConfig, rows: list[dict], rate: float, seed: int) -> list[dict]:
    """`rows` with solutions that merge at `rate` of the lines where they can, `cfg.slip_rate` of
    the merges stated wrong and reflected at once (every answer stays right); deterministic."""
    rng = random.Random(f"shortcut-habit-{seed}")
    habits = Habits(shortcut=rate, shortcut_error=cfg.slip_rate)
    out = []
    for row in rows:
        problem = parse_problem(row["problem"])
        solution = write_solution(problem, sample_moves(rng, problem, habits))
        out.append(dict(row, solution=solution.text, faulty_steps=solution.faulty_lines))
    return out


# ---- reading a policy's solution ----------------------------------------------------------

_STEP = re.compile(r"Step ([a-j])(?:,([a-j]))?: (?:\((-?\d+) ([+-]) (\d+)\) ([+-]) (\d+)|(-?\d+) ([+-]) (\d+))"
                   r" = (-?\d+)")
_ANSWER = re.compile(r"The answer is \\boxed\{(-?\d+)\}")
_RESULT = re.compile(r"= (-?\d+)")


@dataclass(frozen=True)
class LineReport:
    kind: str  # CAREFUL / SHORTCUT / REFLECTION / ANSWER / OTHER
    decision: bool = False  # a step line written where two operations remained
    holds: bool | None = None  # a step line's claim is arithmetically true
    follows: bool | None = None  # a step line works the problem's next operations on the value so far


def read_solution(problem: Problem, text: str) -> list[LineReport]:
    """What each line of a policy's solution does, in the task's terms."""
    out, value, i = [], problem.start, 0
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        m = _STEP.fullmatch(line)
        if m is None:
            kind = REFLECTION if line.startswith("Wait") else ANSWER if _ANSWER.fullmatch(line) else OTHER
            restated = _RESULT.findall(line) if kind == REFLECTION else []
            value = int(restated[-1]) if restated else value  # a reflection's result is carried on
            out.append(LineReport(kind))
            continue
        first, second = m.group(1), m.group(2)
        if second:
            left, op1, b1, op2, b2, claimed = m.group(3, 4, 5, 6, 7, 11)
            ops = [Op(first, op1, int(b1)), Op(second, op2, int(b2))]
        else:
            left, op1, b1, claimed = m.group(8, 9, 10, 11)
            ops = [Op(first, op1, int(b1))]
        follows = int(left) == value and ops == list(problem.ops[i: i + len(ops)])
        out.append(LineReport(SHORTCUT if second else CAREFUL, decision=i + 1 < len(problem.ops),
                              holds=run(int(left), ops) == int(claimed), follows=follows))
        value, i = int(claimed), i + len(ops)
    return out


@dataclass
class HabitCounts:
    """Line counts over many solutions, and the `Habits` they show."""
    decisions: int = 0
    shortcuts: int = 0
    shortcuts_wrong: int = 0
    careful: int = 0
    careful_wrong: int = 0
    reflected_wrong: int = 0
    reflected_right: int = 0
    off_problem: int = 0  # step lines that do not work the problem's next operations
    other_lines: int = 0

    def add(self, lines: list[LineReport]) -> None:
        for k, line in enumerate(lines):
            reflected = k + 1 < len(lines) and lines[k + 1].kind == REFLECTION
            if line.kind == SHORTCUT:
                self.shortcuts += 1
                self.shortcuts_wrong += not line.holds
                self.reflected_wrong += reflected and not line.holds
                self.reflected_right += reflected and bool(line.holds)
            elif line.kind == CAREFUL:
                self.careful += 1
                self.careful_wrong += not line.holds
            elif line.kind == OTHER:
                self.other_lines += 1
            if line.kind in (SHORTCUT, CAREFUL):
                self.decisions += line.decision
                self.off_problem += not line.follows

    def habits(self) -> Habits:
        def rate(n: int, d: int) -> float:
            return n / d if d else 0.0
        right = self.shortcuts - self.shortcuts_wrong
        return Habits(shortcut=rate(self.shortcuts, self.decisions),
                      shortcut_error=rate(self.shortcuts_wrong, self.shortcuts),
                      careful_error=rate(self.careful_wrong, self.careful),
                      reflect_wrong=rate(self.reflected_wrong, self.shortcuts_wrong),
                      reflect_right=rate(self.reflected_right, right))


# ---- splits -------------------------------------------------------------------------------

def _generate(cfg: ShortcutTaskConfig, split: str, count: int, exclude: set[str]) -> list[dict]:
    rng = random.Random(f"shortcut-{cfg.seed}-{split}")  # str seeds are stable across runs
    rows: list[dict] = []
    seen = set(exclude)
    attempts, max_attempts = 0, 50 * count + 1000
    while len(rows) < count:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(f"could only make {len(rows)} distinct {split} problems of {count}; "
                             "raise max_operand/max_ops/max_value or lower num_train/num_eval")
        problem = sample_problem(rng, cfg)
        if problem.text in seen:
            continue
        seen.add(problem.text)
        solution = write_solution(problem, [Move(merge=False)] * len(problem.ops))
        rows.append({"prompt_id": f"shortcut-{split}-{len(rows):06d}", "problem": problem.text,
                     "answer": str(problem.answer), "solution": solution.text,
                     "faulty_steps": solution.faulty_lines})
    return rows


def make_split(cfg: ShortcutTaskConfig, split: str) -> list[dict]:
    """Rows {prompt_id, problem, answer, solution, faulty_steps}; deterministic, eval and train
    disjoint. The solution works one operation per line; `faulty_steps` (the lines, i.e. steps of
    the `lines` splitter, whose claim is false) is empty until `habit_rows` rewrites it."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    eval_rows = _generate(cfg, "eval", cfg.num_eval, exclude=set())
    if split == "eval":
        return eval_rows
    return _generate(cfg, "train", cfg.num_train, exclude={r["problem"] for r in eval_rows})
