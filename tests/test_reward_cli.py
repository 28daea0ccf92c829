import json
import subprocess
import sys
from pathlib import Path

import pytest

from reward_service.processbench import join_steps, metrics

ROOT = Path(__file__).resolve().parents[1]


def test_processbench_metrics_by_hand():
    # erroneous: labels 1, 2, 0 -> predicted right twice; correct: two, one predicted right
    m = metrics(predicted=[1, 2, -1, -1, 3], labels=[1, 2, 0, -1, -1])
    assert m["acc_erroneous"] == pytest.approx(2 / 3)
    assert m["acc_correct"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert metrics([0], [-1])["f1"] == 0.0


def test_join_steps_spans_partition_the_text():
    text, spans = join_steps(["a = 1", "b", "c"])
    assert [text[a:b] for a, b in spans] == ["a = 1\n\n", "b\n\n", "c"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "reward_service", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_processbench_cli_json(tmp_path):
    data = [
        {"problem": "p", "steps": ["2 + 2 = 4", "4 * 3 = 13", "so 13"], "label": 1},
        {"problem": "p", "steps": ["2 + 2 = 4", "so 4"], "label": -1},
        {"problem": "p", "steps": ["Let x be the count.", "x is 4"], "label": 0},
    ]
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data))
    out = _run("processbench", str(path), "--judge", "tool", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    s = result["subsets"]["tiny"]
    assert s["acc_erroneous"] == 0.5 and s["acc_correct"] == 1.0
    assert result["mean_f1"] == pytest.approx(2 * 0.5 / 1.5)


def test_grade_cli_reports_and_skips_bad_rows(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join([
        json.dumps({"id": 1, "response": "#### 18", "answer": "18"}),
        "{not json",
        json.dumps({"id": 2, "response": "\\boxed{\\frac{1}{2}}", "answer": "0.5"}),
        json.dumps({"id": 3, "response": 5, "answer": "5"}),
        json.dumps({"id": 4, "response": "The answer is 7", "answer": "#### 8"}),
    ]) + "\n")
    out = _run("grade", str(src), str(dst), "--workers", "1", "--timeout", "5")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [(r["id"], r["correct"]) for r in rows] == [(1, True), (2, True), (4, False)]
    assert rows[0]["extracted"] == "18" and rows[0]["error"] is None
    assert "2 bad rows skipped" in out.stderr and "in.jsonl:2" in out.stderr
