"""JudgeWorker.score against the plain construction: every rollout row plus its Scorer verdict."""
from __future__ import annotations

import pyarrow as pa
import pytest

from actors.judge import JudgeWorker
from benchmarks.judging import make_rows
from core.records import ROLLOUT_SCHEMA, SCORED_SCHEMA, to_table
from reward_service.scorer import Scorer


@pytest.fixture(scope="module")
def worker():
    w = JudgeWorker(backend="tool", grader_workers=1)
    yield w
    w.shutdown()


def varied_rows(count: int) -> list[dict]:
    """Reference solutions (slips, reflections, every fourth answer wrong), G=4 per group, plus
    rows a policy also writes: empty, answerless, truncated mid-step."""
    rows = make_rows(count)
    for i, r in enumerate(rows):
        r["group_id"], r["sample_index"], r["policy_version"] = f"g{i // 4}", i % 4, i // 8
    for r, text in zip(rows[1::7], ["", "no answer at all", "Step 1: 3 + 4 = 7\n\nStep 2: 7 *", "\\boxed{}"]):
        r["response_text"] = text
    return rows


def expected_table(rows: list[dict], worker: JudgeWorker) -> pa.Table:
    verdicts = Scorer(judge="tool", grader=worker.grader).score_many(rows)  # the worker's grading settings
    return pa.Table.from_pylist([{**r, **v.to_row()} for r, v in zip(rows, verdicts)], schema=SCORED_SCHEMA)


def test_scored_table_and_summary_match_the_scorer_row_by_row(worker):
    rows = varied_rows(96)
    groups = sorted({r["group_id"] for r in rows})[1::2]  # every other group, in a table of all
    chosen = [r for r in rows if r["group_id"] in groups]
    summary, table = worker.score(to_table(rows, ROLLOUT_SCHEMA), groups)
    want = expected_table(chosen, worker)
    assert table.schema == SCORED_SCHEMA
    assert table.to_pylist() == want.to_pylist()
    got = table.to_pylist()
    assert summary["samples"] == len(chosen) == table.num_rows
    assert summary["groups"] == {g: {"count": 4, "version": int(g[1:]) // 2} for g in groups}
    assert summary["correct"] == sum(r["outcome_correct"] for r in got)
    assert summary["judge_errors"] == sum(r["judge_error"] is not None for r in got)
    assert summary["thoughts"] == sum(len(r["thought_spans"]) for r in got) > 0
    assert summary["response_tokens"] == sum(len(r["response_token_ids"]) for r in got)
    assert summary["started"] <= summary["ended"] and summary["judge_seconds"] >= 0


def test_whole_table_when_no_groups_are_named(worker):
    rows = varied_rows(16)
    summary, table = worker.score(to_table(rows, ROLLOUT_SCHEMA))
    assert table.to_pylist() == expected_table(rows, worker).to_pylist() and summary["samples"] == 16


def test_a_group_missing_from_the_table_is_named(worker):
    rows = varied_rows(8)
    with pytest.raises(ValueError, match=r"no samples of groups \['g9'\]"):
        worker.score(to_table(rows, ROLLOUT_SCHEMA), ["g0", "g9"])
