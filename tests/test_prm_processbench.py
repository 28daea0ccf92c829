"""The arithmetic ProcessBench: every labelled step is the first and only error, by construction,
checked by re-computing each chain here; balanced; readable by reward_service.processbench; and
the tool judge (exact on false claims) finds exactly the `result` errors."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from core.arith_processbench import ERRORS, chain_of, make_samples, render
from core.arith_task import ArithTaskConfig, apply_op, make_split
from reward_service.judges import get_judge
from reward_service.processbench import evaluate, load_samples

ROWS = make_split(ArithTaskConfig(num_train=1, num_eval=300, max_ops=4, word_problem_rate=0.3, slip_rate=0.3), "eval")
STEP = re.compile(r"Step (\d+): (\d+) ([-+*/]) (\d+) = (-?\d+)")
OPERAND = re.compile(r"(\d+) ([-+*/]) (\d+)")


def problem_chain(problem: str, answer: str) -> tuple[int, list[tuple[str, int]]]:
    """The start and (op, operand) pairs an expression problem states, read from its text."""
    expr = problem.removeprefix("Compute ").rstrip(".").replace("(", "").replace(")", "")
    tokens = expr.split()
    return int(tokens[0]), [(tokens[i], int(tokens[i + 1])) for i in range(1, len(tokens), 2)]


def first_wrong(sample: dict) -> int:
    """The first step that is wrong given the problem and the steps before it (-1: none)."""
    lines = sample["steps"]
    start, ops = problem_chain(sample["problem"], sample["answer"])
    value = start
    for k, line in enumerate(lines[:-1]):
        m = STEP.fullmatch(line)
        left, op, right, result = int(m[2]), m[3], int(m[4]), int(m[5])
        if (left, op, right) != (value, *ops[k]) or result != apply_op(left, op, right):
            return k
        value = result
    return -1 if lines[-1] == f"The answer is \\boxed{{{value}}}" else len(lines) - 1


@pytest.fixture(scope="module")
def samples():
    return make_samples([r for r in ROWS if r["problem"].startswith("Compute")], seed=3)


def test_the_label_is_the_first_error_and_the_rest_follows_from_it(samples):
    assert len(samples) > 300
    for s in samples:
        assert first_wrong(s) == s["label"], s
        if s["label"] >= 0:  # every later step computes on correctly from what it was given
            lines = [STEP.fullmatch(x) for x in s["steps"][:-1]]
            for prev, cur in zip(lines[s["label"]:], lines[s["label"] + 1:]):
                assert int(cur[2]) == int(prev[5]) and int(cur[5]) == apply_op(int(cur[2]), cur[3], int(cur[4]))
            assert s["steps"][-1] == f"The answer is \\boxed{{{lines[-1][5]}}}"
            assert s["final_answer_correct"] == (lines[-1][5] == s["answer"])


def test_balanced_every_kind_and_position(samples):
    labels = Counter(s["label"] == -1 for s in samples)
    assert labels[True] == labels[False]
    kinds = Counter(s["error"] for s in samples if s["label"] >= 0)
    assert set(kinds) == set(ERRORS) and min(kinds.values()) > 0.2 * labels[False]
    assert {s["label"] for s in samples} >= {-1, 0, 1, 2, 3}
    assert sum(s["final_answer_correct"] for s in samples if s["label"] >= 0) <= 0.05 * labels[False]


def test_word_problems_and_slipped_references_are_read(samples):
    words = [r for r in ROWS if not r["problem"].startswith("Compute")]
    slipped = [r for r in ROWS if "Wait," in r["solution"]]
    assert words and slipped
    for r in words + slipped:
        assert f"\\boxed{{{r['answer']}}}" in render(chain_of(r["solution"]))[-1]
    assert len(make_samples(words, seed=1)) >= len(words)


def test_deterministic_and_seeded():
    rows = ROWS[:40]
    assert make_samples(rows, seed=5) == make_samples(rows, seed=5)
    assert make_samples(rows, seed=5) != make_samples(rows, seed=6)


def test_bad_rows_are_errors_naming_the_row():
    with pytest.raises(ValueError, match="row 1"):
        make_samples([ROWS[0], {**ROWS[1], "solution": "Step 1: 2 + 2 = 4\nso it is 4"}])
    with pytest.raises(ValueError, match="errors must be"):
        make_samples(ROWS[:2], errors=("typo",))


def test_the_processbench_reader_takes_it_and_the_tool_judge_sees_exactly_the_false_claims(samples, tmp_path):
    path = tmp_path / "arith.json"
    path.write_text(json.dumps(samples))
    loaded = load_samples(path)
    judge = get_judge("tool")
    by_kind = {kind: [s for s in loaded if s["error"] == kind] for kind in (None, *ERRORS)}
    assert evaluate(judge, by_kind[None])["acc_correct"] == 1.0
    assert evaluate(judge, by_kind["result"])["acc_erroneous"] == 1.0
    # a wrong operand with a true claim is invisible to a claim checker (it needs the context)
    assert evaluate(judge, by_kind["operand"])["acc_erroneous"] == 0.0
    assert evaluate(judge, by_kind["right"])["acc_erroneous"] == 0.0
