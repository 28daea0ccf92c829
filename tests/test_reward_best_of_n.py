"""best-of-n and select CLIs on small jsonl files, with the tool judge (exact on arithmetic)."""
import json

import pyarrow.parquet as pq
import pytest

from reward_service.__main__ import main
from reward_service.best_of_n import aggregate, majority_vote
from reward_service.verdict import Verdict
from tests.scripted_judges import CountingJudge

pytestmark = pytest.mark.timeout(300)

# Problem "ducks" (gold 18): A and B agree on the wrong 20 (a false first step), C is right.
A = "16 - 3 - 4 = 10\n10 * 2 = 20\n#### 20"
B = "16 - 4 - 3 = 10\n10 * 2 = 20\n#### 20"
C = "16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18"
# Problem "sum" (gold 5), one row holding both candidates.
D = "2 + 3 = 5\n#### 5"
E = "2 + 3 = 6\n#### 6"


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
    assert main(["best-of-n", path, "--judge", "test-exploding", "--workers", "1",
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
    assert main(["select", path, out, "--top-k", "2", "--judge", "test-exploding",
                 "--workers", "1"]) == 0
    assert [r["response"] for r in pq.read_table(out).to_pylist()] == ["fine"]
    assert "1 judge errors" in capsys.readouterr().err


def test_a_null_problem_id_means_absent(tmp_path, capsys):
    path = _write(tmp_path / "f.jsonl", [
        {"problem_id": None, "problem": "What is 2 + 3?", "response": D, "answer": "5"},
        {"problem_id": None, "problem": "How many dollars?", "response": C, "answer": "18"},
        {"problem_id": None, "problem": "What is 1 + 1?", "response": "1 + 1 = 2\n#### 2",
         "answer": "2"},
        {"problem": "What is 2 + 3?", "response": E, "answer": "5"},
        {"problem_id": 7, "problem": "What is 2 + 3?", "response": E, "answer": "5"},
    ])
    assert main(["best-of-n", path, "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # Rows 1 and 4 share the problem text; rows 2 and 3 are problems of their own; row 5 is
    # problem 7, whatever its text.
    assert report["problems"] == 4 and report["candidates"] == 5


def test_a_problem_id_that_is_not_a_string_or_integer_is_a_bad_row(tmp_path, capsys):
    path = _write(tmp_path / "f.jsonl", [
        {"problem_id": {"a": 1}, "problem": "p", "response": D, "answer": "5"},
        {"problem_id": True, "problem": "p", "response": D, "answer": "5"},
        {"problem_id": "x", "problem": "p", "response": D, "answer": "5"},
    ])
    assert main(["best-of-n", path, "--workers", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["bad_rows"] == 2
    assert ":1: skipped (problem_id must be a string or an integer)" in err and ":2: skipped" in err


def test_binary_and_deeply_nested_lines_are_reported_bad_rows(tmp_path, capsys):
    path = tmp_path / "f.jsonl"
    good = json.dumps({"problem": "What is 2 + 3?", "response": D, "answer": "5"}).encode()
    path.write_bytes(b"\n".join([good, b"\x00\xff\xfe binary", b"[" * 100_000 + b"]" * 100_000,
                                 good]) + b"\n")
    for args in (["best-of-n", str(path), "--json"],
                 ["select", str(path), str(tmp_path / "o.parquet"), "--top-k", "1"]):
        assert main([*args, "--workers", "1"]) == 0
        err = capsys.readouterr().err
        assert ":2: skipped (not UTF-8" in err and ":3: skipped (JSON nested too deeply)" in err


def _one_error_line(capsys) -> str:
    """The one `error:` line, the last on stderr (after any bad rows reported as skipped)."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and all("skipped (" in x for x in lines[:-1]), err
    return lines[-1]


def test_select_refuses_its_input_as_output_and_checks_before_judging(bon_file, tmp_path, capsys):
    before = open(bon_file).read()
    CountingJudge.judged = 0
    args = ["--top-k", "1", "--judge", "test-counting", "--workers", "1"]
    assert main(["select", bon_file, bon_file, *args]) != 0
    assert "is the input file" in _one_error_line(capsys)
    assert open(bon_file).read() == before
    assert main(["select", bon_file, str(tmp_path / "no" / "such" / "o.parquet"), *args]) != 0
    assert "does not exist" in _one_error_line(capsys)
    assert CountingJudge.judged == 0


def test_select_replaces_its_output_only_when_complete(bon_file, tmp_path, capsys):
    out = tmp_path / "top.parquet"
    out.write_text("an earlier result")
    all_bad = _write(tmp_path / "bad.jsonl", ["{not json", {"problem": 3}])
    assert main(["select", all_bad, str(out), "--top-k", "1", "--workers", "1"]) != 0
    assert "no usable rows" in _one_error_line(capsys)
    assert out.read_text() == "an earlier result"
    assert main(["select", bon_file, str(out), "--top-k", "1", "--workers", "1"]) == 0
    assert len(pq.read_table(str(out))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "bon.jsonl", "top.parquet"]


@pytest.mark.parametrize("args, phrase", [
    (["best-of-n", "MISSING"], "no such file"),
    (["best-of-n", "BON", "--judge", "tpgrpp"], "did you mean 'tpgrpo'"),
    (["best-of-n", "BON", "-o", "max_step_char=3"], "unknown option 'max_step_char'"),
    (["best-of-n", "BON", "-o", "novalue"], "expected KEY=VALUE"),
    (["best-of-n", "BON", "--judge", "rprm"], "exactly one of"),
    (["select", "BON", "OUT", "--top-k", "0"], "--top-k must be >= 1"),
    (["select", "MISSING", "OUT", "--top-k", "1"], "no such file"),
])
def test_cli_errors_are_one_line(bon_file, tmp_path, capsys, args, phrase):
    names = {"BON": bon_file, "MISSING": str(tmp_path / "missing.jsonl"),
             "OUT": str(tmp_path / "o.parquet")}
    assert main([names.get(a, a) for a in args] + ["--workers", "1"]) != 0
    assert phrase in _one_error_line(capsys)
