"""Step-labelled data in TRL's stepwise-supervision layout: written as parquet, read back as it was
written (TRL's three columns with TRL's types, the soft labels beside them); TRL-style sets
without the extra columns are read too; a bad row is left out with where and why."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.stepwise import STEPWISE_SCHEMA, label_row, read_stepwise, to_table

RESPONSE = "Step 1: 2 + 3 = 5\nStep 2: 5 * 2 = 11\nThe answer is \\boxed{11}"
SCORED = {"problem": "Compute (2 + 3) * 2.", "prompt_id": "p1", "gold_answer": "10", "response_text": RESPONSE,
          "step_spans": [[0, 18], [18, 37], [37, len(RESPONSE)]], "step_scores": [0.625, 0.0, 0.0],
          "outcome_correct": False}


def test_a_judged_solution_becomes_one_row_and_round_trips_through_parquet(tmp_path):
    row = label_row(SCORED, "montecarlo", threshold=0.0)
    assert row["completions"] == ["Step 1: 2 + 3 = 5", "Step 2: 5 * 2 = 11", "The answer is \\boxed{11}"]
    assert row["labels"] == [True, False, False] and row["soft_labels"] == [0.625, 0.0, 0.0]
    assert (row["prompt"], row["problem_id"], row["gold"], row["judge"]) == ("Compute (2 + 3) * 2.", "p1", "10",
                                                                             "montecarlo")
    assert label_row(SCORED, "montecarlo", threshold=0.7)["labels"] == [False, False, False]
    other = label_row({**SCORED, "step_scores": [1.0, 1.0, 0.0]}, "tool", 0.5)
    path = tmp_path / "labels.parquet"
    pq.write_table(to_table([row, other]), path)

    schema = pq.read_schema(path)
    # TRL's PRM datasets (trl-lib/prm800k, trl-lib/math_shepherd): a string and two sequences
    assert schema.field("prompt").type == pa.string()
    assert schema.field("completions").type == pa.list_(pa.string())
    assert schema.field("labels").type == pa.list_(pa.bool_())
    back = read_stepwise(path)
    assert back.bad == [] and back.rows == [row, other]


def test_trl_style_rows_without_the_extra_columns(tmp_path):
    rows = [{"prompt": "What is 2 + 2?", "completions": ["2 + 2 = 4", "So 4."], "labels": [True, True]},
            {"prompt": "What is 3 * 3?", "completions": ["3 * 3 = 6", "So 6."], "labels": [0, 0]}]
    for path in (tmp_path / "trl.jsonl", tmp_path / "trl.parquet"):
        if path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            pq.write_table(pa.Table.from_pylist(rows[:1]), path)
        got = read_stepwise(path).rows
        assert got[0]["soft_labels"] == [1.0, 1.0] and got[0]["outcome_correct"] is True
        if len(got) > 1:
            assert got[1]["labels"] == [False, False] and got[1]["soft_labels"] == [0.0, 0.0]
            assert got[1]["outcome_correct"] is False


@pytest.mark.parametrize("bad, why", [
    ({"prompt": "p", "completions": ["a", "b"], "labels": [True]}, "one label per step"),
    ({"prompt": "p", "completions": ["a"], "labels": [0.7]}, "booleans"),
    ({"prompt": "p", "completions": [], "labels": []}, "non-empty list"),
    ({"prompt": "p", "completions": ["a", "  "], "labels": [True, True]}, "non-empty strings"),
    ({"prompt": "", "completions": ["a"], "labels": [True]}, "prompt"),
    ({"prompt": "p", "completions": ["a"], "labels": [True], "soft_labels": [1.5]}, "soft_labels"),
    ({"prompt": "p", "completions": ["a"], "labels": [True], "soft_labels": [float("nan")]}, "soft_labels"),
    ({"prompt": "p", "completions": ["a"], "labels": [True], "soft_labels": [True]}, "soft_labels"),
])
def test_a_bad_row_costs_that_row_and_says_where_and_why(tmp_path, bad, why):
    good = {"prompt": "p", "completions": ["a"], "labels": [True]}
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\nnot json\n" + json.dumps(good) + "\n")
    got = read_stepwise(path)
    assert len(got.rows) == 2
    assert [where for where, _ in got.bad] == ["line 2", "line 3"]
    assert why in got.bad[0][1] and "JSON" in got.bad[1][1]


def test_a_file_without_trls_columns_is_an_error_naming_them(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "steps": [["a"]]}), path)
    with pytest.raises(ValueError, match="completions, labels"):
        read_stepwise(path)
    with pytest.raises(FileNotFoundError):
        read_stepwise(tmp_path / "missing.parquet")
    assert STEPWISE_SCHEMA.names[:3] == ["prompt", "completions", "labels"]
