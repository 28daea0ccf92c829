"""best-of-n and select CLIs on small jsonl files, with the tool judge (exact on arithmetic)."""
import json

import pyarrow.parquet as pq
import pytest

from reward_service.__main__ import main
from reward_service.best_of_n import aggregate, majority_vote
from reward_service.judges import StepJudge, StepJudgment, register
from reward_service.verdict import Verdict

pytestmark = pytest.mark.timeout(300)

# Problem "ducks" (gold 18): A and B agree on the wrong 20 (a false first step), C is right.
A = "16 - 3 - 4 = 10\n10 * 2 = 20\n#### 20"
B = "16 - 4 - 3 = 10\n10 * 2 = 20\n#### 20"
C = "16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18"
# Problem "sum" (gold 5), one row holding both candidates.
D = "2 + 3 = 5\n#### 5"
E = "2 + 3 = 6\n#### 6"


@register("test-bon-exploding")
class ExplodingJudge(StepJudge):
    def judge_steps(self, problem, response, spans, outcome_correct, extracted, gold=None):
        if "boom" in response:
            raise RuntimeError("judge exploded")
        return StepJudgment(scores=[1.0] * len(spans))


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


@pytest.fixture
def bon_file(tmp_path):
    return _write(tmp_path / "bon.jsonl", [
        {"problem_id": "ducks", "problem": "How many dollars?", "response": A, "answer": "18"},
        {"problem_id": "ducks", "problem": "How many dollars?", "response": B, "answer": "18"},
        "{not json",
        {"problem_id": "ducks", "problem": "How many dollars?", "response": C, "answer": "18"},
        {"problem": "What is 2 + 3?", "responses": [D, E], "answer": 5},
        {"problem": "no answer", "response": "1 + 1 = 2"},
    ])


def test_aggregations_and_majority_vote():
    assert [aggregate([0.0, 1.0, 1.0], h) for h in ("min", "last", "product", "mean")] == \
        [0.0, 1.0, 0.0, pytest.approx(2 / 3)]
    assert aggregate([], "mean") == 0.0
    verdicts = [Verdict(False, "20"), Verdict(False, "20.0"), Verdict(True, "18"), Verdict(False)]
    assert majority_vote(verdicts) == 0  # 20 and 20.0 are one answer
    assert majority_vote([Verdict(True, "5"), Verdict(False, "6")]) == 0  # tie: the earliest
    assert majority_vote([Verdict(False)]) is None


def test_best_of_n_reports_each_aggregation_and_majority(bon_file, capsys):
    assert main(["best-of-n", bon_file, "--workers", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["problems"] == 2 and report["candidates"] == 5 and report["bad_rows"] == 2
    # ducks: min/product/mean pick C; last ties at 1.0 and keeps the first (A); majority is 20.
    # sum: every picker finds D (a tie in last / majority keeps the earliest).
    assert report["accuracy"] == {"min": 1.0, "last": 0.5, "product": 1.0, "mean": 1.0,
                                  "majority": 0.5}
    assert report["oracle"] == 1.0 and report["mean_candidate_accuracy"] == pytest.approx(0.4)
    assert report["judge_errors"] == 0
    assert ":3: skipped" in err and ":6: skipped" in err and "scored 5/5" in err

    assert main(["best-of-n", bon_file, "--workers", "1", "--aggregate", "last"]) == 0
    out = capsys.readouterr().out
    assert "last       accuracy 0.500" in out and "majority   accuracy 0.500" in out
    assert "min " not in out and "2 bad rows skipped" in out


def test_best_of_n_skips_candidates_whose_judging_failed(tmp_path, capsys):
    path = _write(tmp_path / "f.jsonl", [
        {"problem": "p", "response": "boom\n#### 1", "answer": "2"},
        {"problem": "p", "response": "x\n#### 2", "answer": "2"},
    ])
    assert main(["best-of-n", path, "--judge", "test-bon-exploding", "--workers", "1",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["judge_errors"] == 1 and report["accuracy"]["min"] == 1.0


def test_select_keeps_top_k_per_problem_and_overall(bon_file, tmp_path, capsys):
    out = str(tmp_path / "top.parquet")
    assert main(["select", bon_file, out, "--top-k", "1", "--workers", "1"]) == 0
    rows = pq.read_table(out).to_pylist()
    # mean scores: A, B 2/3; C 1; D 1, E 1/2; the row without an answer 1 (not graded: null)
    assert [r["response"] for r in rows] == [C, D, "1 + 1 = 2"]
    assert [r["rank"] for r in rows] == [1, 1, 1]
    assert [r["outcome_correct"] for r in rows] == [True, True, None]
    assert rows[0]["step_scores"] == [1.0, 1.0, 1.0] and rows[0]["judge"] == "tool"
    assert rows[1]["problem_id"] == "What is 2 + 3?" and rows[1]["answer"] == "5"
    assert "kept 3 of 6 trajectories" in capsys.readouterr().err

    assert main(["select", bon_file, out, "--top-k", "4", "--overall", "--workers", "1",
                 "--aggregate", "min"]) == 0
    rows = pq.read_table(out).to_pylist()
    # min scores: A 0, B 0, C 1, D 1, E 0, no-answer 1; ties keep file order.
    assert [r["response"] for r in rows] == [C, D, "1 + 1 = 2", A]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["score"] for r in rows] == [1.0, 1.0, 1.0, 0.0]


def test_select_never_keeps_a_failed_trajectory(tmp_path, capsys):
    path = _write(tmp_path / "f.jsonl", [{"problem": "p", "responses": ["boom", "fine"]}])
    out = str(tmp_path / "t.parquet")
    assert main(["select", path, out, "--top-k", "2", "--judge", "test-bon-exploding",
                 "--workers", "1"]) == 0
    assert [r["response"] for r in pq.read_table(out).to_pylist()] == ["fine"]
    assert "1 judge errors" in capsys.readouterr().err
