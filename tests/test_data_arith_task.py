"""The synthetic arithmetic task: deterministic, disjoint splits, true steps, honest slips."""
import operator
import re
from fractions import Fraction

import pytest
import sympy
from pydantic import ValidationError

from core.arith_task import ArithTaskConfig, apply_op, boxed_answer, is_correct, make_split
from core.prompts import format_prompt

STEP = re.compile(r"^Step (\d+): (\d+) ([-+*/]) (\d+) = (\d+)$")
WAIT = re.compile(r"^Wait, (\d+) ([-+*/]) (\d+) = (\d+)\.$")
CFG = ArithTaskConfig(num_train=600, num_eval=150, min_ops=2, max_ops=4, slip_rate=0.3, seed=3)


_EXACT = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _exact_value(left: str, op: str, right: str) -> Fraction:
    return _EXACT[op](Fraction(int(left)), Fraction(int(right)))


def test_splits_are_deterministic_and_disjoint():
    train, again = make_split(CFG, "train"), make_split(CFG, "train")
    assert train == again
    ev = make_split(CFG, "eval")
    assert len(train) == 600 and len(ev) == 150
    train_problems = {r["problem"] for r in train}
    assert len(train_problems) == len(train), "duplicate problems inside train"
    assert not train_problems & {r["problem"] for r in ev}
    assert len({r["prompt_id"] for r in train + ev}) == len(train) + len(ev)
    # eval must not move when only the train size changes
    assert make_split(CFG.model_copy(update={"num_train": 50}), "eval") == ev
    assert make_split(CFG.model_copy(update={"seed": 4}), "eval") != ev


def test_every_step_is_true_unless_slipped_and_then_corrected():
    slips = 0
    for row in make_split(CFG, "train") + make_split(CFG, "eval"):
        lines = row["solution"].split("\n")
        assert lines[-1] == f"The answer is \\boxed{{{row['answer']}}}"
        expected_k, carried, i = 1, None, 0
        while i < len(lines) - 1:
            m = STEP.match(lines[i])
            assert m, f"not a step line: {lines[i]!r} in {row}"
            k, left, op, right, claimed = m.groups()
            assert int(k) == expected_k
            if carried is not None:
                assert int(left) == carried, "a step must continue from the last true value"
            truth = _exact_value(left, op, right)
            assert truth.denominator == 1 and truth >= 0
            if truth != int(claimed):  # a slip: the very next line is its reflection
                slips += 1
                w = WAIT.match(lines[i + 1])
                assert w and w.groups()[:3] == (left, op, right), f"slip without Wait: {row}"
                assert _exact_value(*w.groups()[:3]) == int(w.group(4))
                i += 1
            carried = int(truth)
            expected_k, i = expected_k + 1, i + 1
        assert CFG.min_ops <= expected_k - 1 <= CFG.max_ops
        assert str(carried) == row["answer"]
        assert is_correct(row["solution"], row["answer"])
    assert slips > 0


def test_problem_text_has_the_same_value_as_the_solution():
    for row in make_split(CFG, "eval"):
        if row["problem"].startswith("Compute "):
            assert sympy.sympify(row["problem"][len("Compute "):-1]) == int(row["answer"])
        else:
            assert row["problem"].endswith("?")
    operands = [int(n) for r in make_split(CFG, "eval") for n in re.findall(r"\d+", r["problem"])]
    assert max(operands) <= CFG.max_operand


def test_slip_rate_zero_means_clean_solutions_and_rate_is_roughly_honoured():
    clean = make_split(CFG.model_copy(update={"slip_rate": 0.0}), "train")
    assert not any("Wait" in r["solution"] for r in clean)
    some = make_split(CFG.model_copy(update={"slip_rate": 0.12}), "train")
    steps = sum(r["solution"].count("Step ") for r in some)
    waits = sum(r["solution"].count("Wait,") for r in some)
    assert 0.06 < waits / steps < 0.2


def test_config_errors_are_clear():
    with pytest.raises(ValidationError):
        ArithTaskConfig(min_ops=4, max_ops=2)
    with pytest.raises(ValidationError):
        ArithTaskConfig(nonsense=1)
    with pytest.raises(ValueError, match="split"):
        make_split(CFG, "test")
    with pytest.raises(ValueError, match="distinct"):
        make_split(ArithTaskConfig(num_train=300, num_eval=10, min_ops=1, max_ops=1, max_operand=2,
                                   word_problem_rate=0.0), "train")


def test_helpers():
    assert apply_op(12, "/", 4) == 3
    with pytest.raises(ValueError):
        apply_op(7, "/", 2)
    assert boxed_answer("x \\boxed{3} y \\boxed{ 42 }") == "42"
    assert boxed_answer("no box") is None
    assert format_prompt(" Compute 1 + 2. ") == "Problem: Compute 1 + 2.\nSolution:\n"
