"""The shortcut task: deterministic splits, honest reference solutions, faulty steps recorded,
read back as written, and found by the real tool judge."""
import random

import pytest
from pydantic import ValidationError

from core.arith_task import is_correct
from core.shortcut_task import (ANSWER, CAREFUL, REFLECTION, SHORTCUT, HabitCounts, Habits, Move,
                                ShortcutTaskConfig, habit_rows, make_split, parse_problem, read_solution,
                                sample_moves, sample_problem, write_solution)

CFG = ShortcutTaskConfig(num_train=1500, num_eval=150, min_ops=4, max_ops=6, seed=3)


def test_splits_are_deterministic_and_disjoint():
    train, ev = make_split(CFG, "train"), make_split(CFG, "eval")
    assert train == make_split(CFG, "train") and len(train) == 1500 and len(ev) == 150
    problems = {r["problem"] for r in train}
    assert len(problems) == len(train) and not problems & {r["problem"] for r in ev}
    assert make_split(CFG.model_copy(update={"num_train": 10}), "eval") == ev
    assert make_split(CFG.model_copy(update={"seed": 4}), "eval") != ev


def test_problems_stay_in_range_and_read_back():
    rng = random.Random(0)
    for _ in range(500):
        p = sample_problem(rng, CFG)
        assert CFG.min_ops <= len(p.ops) <= CFG.max_ops and 1 <= p.start <= CFG.max_operand
        value = p.start
        for o in p.ops:
            value = o.apply(value)
            assert 0 <= value <= CFG.max_value and 1 <= o.right <= CFG.max_operand
        assert parse_problem(p.text) == p
    for bad in ("Start with 7, then a) + 5, b) * 3.", "Start with 7, then a) + 5 b) - 3.", "Compute 2 + 3."):
        with pytest.raises(ValueError, match="not a shortcut-task problem"):
            parse_problem(bad)


def test_reference_solutions_work_one_operation_per_line():
    for row in make_split(CFG, "eval"):
        lines = read_solution(parse_problem(row["problem"]), row["solution"])
        assert [line.kind for line in lines] == [CAREFUL] * (len(lines) - 1) + [ANSWER]
        assert all(line.holds and line.follows for line in lines[:-1])
        assert is_correct(row["solution"], row["answer"]) and row["faulty_steps"] == []


def test_habit_rows_merge_at_the_rate_and_reflect_every_slip_which_they_record():
    rows = make_split(CFG, "train")
    habit = habit_rows(CFG, rows, 0.75, seed=0)
    assert habit == habit_rows(CFG, rows, 0.75, seed=0) and habit != habit_rows(CFG, rows, 0.75, seed=1)
    counts = HabitCounts()
    for row, before in zip(habit, rows):
        assert {k: v for k, v in row.items() if k not in ("solution", "faulty_steps")} == \
            {k: v for k, v in before.items() if k not in ("solution", "faulty_steps")}
        lines = read_solution(parse_problem(row["problem"]), row["solution"])
        counts.add(lines)
        assert lines[-1].kind == ANSWER and is_correct(row["solution"], row["answer"])
        assert all(line.follows for line in lines if line.kind in (CAREFUL, SHORTCUT))
        false = [k for k, line in enumerate(lines) if line.holds is False]
        assert row["faulty_steps"] == false
        assert all(lines[k].kind == SHORTCUT and lines[k + 1].kind == REFLECTION for k in false)
        assert sum(line.kind == REFLECTION for line in lines) == len(false)
    habits = counts.habits()
    assert counts.off_problem == 0 and counts.other_lines == 0
    assert habits.shortcut == pytest.approx(0.75, abs=0.03)
    assert habits.shortcut_error == pytest.approx(CFG.slip_rate, abs=0.03)
    assert habits.careful_error == 0 and habits.reflect_wrong == 1 and habits.reflect_right == 0


def test_written_moves_by_hand():
    p = parse_problem("Start with 7, then a) + 5, b) - 3, c) + 4, d) - 6.")
    wrong = write_solution(p, [Move(True, error=1), Move(False), Move(False)])
    assert wrong.text == ("Step a,b: (7 + 5) - 3 = 10\nStep c: 10 + 4 = 14\nStep d: 14 - 6 = 8\n"
                          "The answer is \\boxed{8}")
    assert wrong.faulty_lines == [0] and not wrong.correct
    assert wrong.kinds == [SHORTCUT, CAREFUL, CAREFUL, ANSWER]
    assert [wrong.text[a:b] for a, b in wrong.line_spans][1] == "Step c: 10 + 4 = 14\n"
    fixed = write_solution(p, [Move(False), Move(True, error=-2, reflect=True), Move(False)])
    assert fixed.text.split("\n")[1:3] == ["Step b,c: (12 - 3) + 4 = 11", "Wait, 12 - 3 = 9 and 9 + 4 = 13."]
    assert fixed.faulty_lines == [1] and fixed.correct
    detour = write_solution(p, [Move(True, reflect=True), Move(True)])
    assert detour.faulty_lines == [] and detour.correct and detour.kinds[1] == REFLECTION
    assert write_solution(p, [Move(False)] * 3 + [Move(True)]).correct  # a merge of the last one works it
    with pytest.raises(ValueError, match="do not finish"):
        write_solution(p, [Move(False)])


@pytest.mark.parametrize("habits", [Habits(0.7, 0.4, 0.05, 0.3, 0.1), Habits(0.2, 0.6, 0.2, 0.0, 0.5)])
def test_habits_drawn_are_the_habits_read_back(habits):
    rng = random.Random(1)
    counts = HabitCounts()
    for _ in range(3000):
        p = sample_problem(rng, CFG)
        solution = write_solution(p, sample_moves(rng, p, habits))
        lines = read_solution(p, solution.text)
        assert [k for k, line in enumerate(lines) if line.holds is False] == solution.faulty_lines
        assert [line.kind for line in lines] == solution.kinds
        assert solution.correct == is_correct(solution.text, str(p.answer))
        counts.add(lines)
    got = counts.habits()
    for name in ("shortcut", "shortcut_error", "careful_error", "reflect_wrong", "reflect_right"):
        assert getattr(got, name) == pytest.approx(getattr(habits, name), abs=0.03), name


def test_lines_a_policy_may_write_are_read_for_what_they_are():
    p = parse_problem("Start with 7, then a) + 5, b) - 3, c) + 4.")
    lines = read_solution(p, "Step a: 7 + 5 = 12\nStep c: 12 + 4 = 16\nhello\nStep b,c: (16 - 3) + 4 = 17")
    assert [line.kind for line in lines] == [CAREFUL, CAREFUL, "other", SHORTCUT]
    assert [line.follows for line in lines if line.kind != "other"] == [True, False, False]
    assert [line.decision for line in lines] == [True, True, False, False]


def test_config_checks():
    with pytest.raises(ValidationError, match="min_ops"):
        ShortcutTaskConfig(min_ops=5, max_ops=4)
    with pytest.raises(ValidationError):
        ShortcutTaskConfig(slip_rate=1.5)
    with pytest.raises(ValueError, match="split must be"):
        make_split(CFG, "test")


def test_the_tool_judge_blames_exactly_the_faulty_steps(grader):
    """On varied solutions with wrong shortcuts, wrong careful steps and reflections, the tool
    judge scores < 0.5 exactly the recorded faulty lines, and the grader agrees on the outcome."""
    from reward_service.scorer import Scorer
    from reward_service.thoughts import INCORRECT

    rng = random.Random(7)
    scorer = Scorer("tool", "lines", grader=grader)
    rows, solutions = [], []
    for _ in range(300):
        p = sample_problem(rng, CFG)
        s = write_solution(p, sample_moves(rng, p, Habits(0.6, 0.5, 0.15, 0.4, 0.2)))
        rows.append({"problem": p.text, "response_text": s.text, "gold_answer": str(p.answer)})
        solutions.append(s)
    verdicts = scorer.score_many(rows)
    assert sum(bool(s.faulty_lines) for s in solutions) > 100
    for s, v in zip(solutions, verdicts):
        assert v.judge_error is None
        assert v.step_spans == s.line_spans
        assert [k for k, x in enumerate(v.step_scores) if x < 0.5] == s.faulty_lines, s.text
        assert v.first_error_index == (s.faulty_lines[0] if s.faulty_lines else -1)
        assert v.outcome_correct == s.correct
        if s.correct:  # a corrected shortcut is an incorrect thought of a right solution
            assert {k for k, lab in enumerate(v.step_labels) if lab == INCORRECT} >= set(s.faulty_lines)
