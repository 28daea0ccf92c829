"""`python -m reward_service score`: what a user sees is what training would reward."""
from __future__ import annotations

import json

import pytest

from reward_service.__main__ import main

REFLECTION = ("Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 56\nWait, 19 * 3 = 57.\n"
              "Step 3: 57 - 5 = 52\nThe answer is \\boxed{52}")
WRONG = "Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 57\nStep 3: 57 - 5 = 53\nThe answer is \\boxed{53}"
PROBLEM = "Compute (12 + 7) * 3 - 5."
R = 0.5 / (0.5 + 1e-6)  # the standardized outcome of a half-correct group


def _write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return str(path)


def _run(*args):
    return main(["score", *map(str, args), "--workers", "1"])


def _read(path):
    return [json.loads(l) for l in open(path)]


@pytest.fixture
def two_rows(tmp_path):
    return _write(tmp_path / "in.jsonl", [
        {"problem_id": "p1", "problem": PROBLEM, "response": REFLECTION, "answer": "52"},
        {"problem_id": "p1", "problem": PROBLEM, "response": WRONG, "answer": 52},
    ])


def test_the_reflection_is_its_own_correct_thought_and_advantages_follow_the_table(
        two_rows, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert _run(two_rows, out) == 0
    right, wrong = _read(out)
    assert right["line"] == 1 and right["outcome_correct"] and right["judge_error"] is None
    assert [s["text"] for s in right["steps"]][2] == "Wait, 19 * 3 = 57.\n"
    assert [(s["label"], s["score"]) for s in right["steps"]] == [
        ("correct", 1.0), ("incorrect", 0.0), ("correct", 1.0), ("correct", 1.0)]
    thoughts = right["thoughts"]
    assert [t["label"] for t in thoughts] == ["correct", "incorrect", "correct"]
    assert thoughts[2]["text"].startswith("Wait, 19 * 3 = 57.\n")
    assert all(REFLECTION[t["start"]:t["end"]] == t["text"] for t in thoughts)
    # tpgrpo, acc_G = 0.5, α = 1: r̂ | r̂ − 0.5 | r̂
    assert [t["advantage"] for t in thoughts] == pytest.approx([R, R - 0.5, R], rel=1e-6)
    assert [s["advantage"] for s in right["steps"]] == pytest.approx([R, R - 0.5, R, R], rel=1e-6)
    assert not wrong["outcome_correct"] and wrong["extracted_answer"] == "53"
    assert [(t["label"], t["advantage"]) for t in wrong["thoughts"]] == [
        ("uncertain", 0.0), ("incorrect", pytest.approx(-R, rel=1e-6))]
    assert "scored 2 solutions of 1 problems" in capsys.readouterr().err


def test_algorithm_and_alpha_choose_the_advantages(two_rows, tmp_path):
    out = tmp_path / "out.jsonl"
    assert _run(two_rows, out, "--algorithm", "grpo") == 0
    right, wrong = _read(out)
    assert [t["advantage"] for t in right["thoughts"]] == pytest.approx([R] * 3, rel=1e-6)
    assert _run(two_rows, out, "--algorithm", "tpgrpo_static", "--alpha", "2") == 0
    right, _ = _read(out)
    assert right["thoughts"][1]["advantage"] == pytest.approx(R - 2, rel=1e-6)


def test_a_single_solution_of_a_problem_gets_labels_but_no_advantage(tmp_path):
    path = _write(tmp_path / "in.jsonl", [{"problem": PROBLEM, "response": REFLECTION,
                                           "answer": "52"}])
    out = tmp_path / "out.jsonl"
    assert _run(path, out) == 0
    (row,) = _read(out)
    assert row["problem_id"] == PROBLEM and [t["label"] for t in row["thoughts"]][1] == "incorrect"
    assert all("advantage" not in t for t in row["thoughts"] + row["steps"])


def test_bad_rows_are_reported_and_kept_row_for_row(tmp_path, capsys):
    good = {"problem": PROBLEM, "response": REFLECTION, "answer": "52"}
    path = _write(tmp_path / "in.jsonl", [
        good, "{not json", {"problem": PROBLEM, "answer": "52"}, "",
        {**good, "problem_id": True}, {**good, "answer": None}, good])
    out = tmp_path / "out.jsonl"
    assert _run(path, out) == 0
    rows = _read(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 5, 6, 7]
    assert [("error" in r) for r in rows] == [False, True, True, True, True, False]
    assert "not valid JSON" in rows[1]["error"] and "'response'" in rows[2]["error"]
    assert "problem_id" in rows[3]["error"] and "'answer'" in rows[4]["error"]
    err = capsys.readouterr().err
    assert ":2: skipped (not valid JSON" in err and ":3: skipped (needs a string field 'response')" in err
    assert "4 bad rows kept" in err
    # the two good rows are one problem's group, both correct: r̂ = 0, the detour −α·acc_G = −1
    assert rows[0]["thoughts"][1]["advantage"] == pytest.approx(-1.0, rel=1e-6)


@pytest.mark.parametrize("case", ["same file", "unknown algorithm", "unknown judge",
                                  "missing input", "missing folder", "bad judge option"])
def test_every_error_is_one_line_and_a_non_zero_exit(two_rows, tmp_path, capsys, case):
    before = open(two_rows).read()
    out = tmp_path / "out.jsonl"
    args = {"same file": [two_rows, two_rows],
            "unknown algorithm": [two_rows, out, "--algorithm", "ppo"],
            "unknown judge": [two_rows, out, "--judge", "nope"],
            "missing input": [tmp_path / "none.jsonl", out],
            "missing folder": [two_rows, tmp_path / "no" / "out.jsonl"],
            "bad judge option": [two_rows, out, "-o", "not_an_option=1"]}[case]
    assert _run(*args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert {"same file": "is the input file", "unknown algorithm": "tpgrpo_steps",
            "unknown judge": "nope", "missing input": "no such file",
            "missing folder": "does not exist", "bad judge option": "not_an_option"}[case] in err[0]
    assert open(two_rows).read() == before and not out.exists()


def test_a_truncated_solution_is_graded_and_blamed_as_in_training(tmp_path):
    truncated = "Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 57\nStep 3: 57 - 5 ="
    path = _write(tmp_path / "in.jsonl", [
        {"problem": PROBLEM, "response": REFLECTION, "answer": "52"},
        {"problem": PROBLEM, "response": truncated, "answer": "52"}])
    out = tmp_path / "out.jsonl"
    assert _run(path, out) == 0
    _, row = _read(out)
    assert not row["outcome_correct"] and row["extracted_answer"] is None
    assert [s["label"] for s in row["steps"]] == ["uncertain", "uncertain", "incorrect"]
    assert [(t["label"], t["advantage"]) for t in row["thoughts"]] == [
        ("incorrect", pytest.approx(-R, rel=1e-6))]


def test_a_row_of_responses_is_one_problems_group(tmp_path):
    """best-of-n's layout: the solutions of one problem in one row, each its own OUT row."""
    path = _write(tmp_path / "in.jsonl", [
        {"problem": PROBLEM, "responses": [REFLECTION, WRONG], "answer": 52},
        {"problem": PROBLEM, "responses": "not a list", "answer": 52}])
    out = tmp_path / "out.jsonl"
    assert _run(path, out) == 0
    right, wrong, bad = _read(out)
    assert (right["line"], wrong["line"], bad["line"]) == (1, 1, 2) and "'responses'" in bad["error"]
    assert right["outcome_correct"] and not wrong["outcome_correct"]
    assert [t["advantage"] for t in right["thoughts"]] == pytest.approx([R, R - 0.5, R], rel=1e-6)


def test_a_problem_id_and_a_problem_text_that_are_equal_are_two_problems(tmp_path):
    path = _write(tmp_path / "in.jsonl", [
        {"problem_id": PROBLEM, "problem": "Another problem.", "response": REFLECTION,
         "answer": "52"},
        {"problem": PROBLEM, "response": WRONG, "answer": "52"}])
    out = tmp_path / "out.jsonl"
    assert _run(path, out) == 0
    first, second = _read(out)
    assert first["problem_id"] == second["problem_id"] == PROBLEM
    assert all("advantage" not in t for t in first["thoughts"] + second["thoughts"])
