"""The processbench CLI: the whole file is validated before any judging (a bad sample is one
`error:` line naming it), samples are judged in batches, a judge failure costs one sample, and
the metric is ProcessBench's own, checked against its evaluation code on many random cases."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from reward_service.__main__ import main
from reward_service.judges import StepJudge, StepJudgment, register
from reward_service.processbench import metrics

pytestmark = pytest.mark.timeout(300)

GOOD = [{"id": "a", "problem": "p", "steps": ["2 + 2 = 4", "4 * 3 = 13", "so 13"], "label": 1,
         "final_answer_correct": False},
        {"id": "b", "problem": "p", "steps": ["2 + 2 = 4", "so 4"], "label": -1,
         "final_answer_correct": True},
        {"id": "c", "problem": "p", "steps": ["1 + 1 = 3", "so 3"], "label": 0}]


@register("test-pb-scripted")
class ScriptedJudge(StepJudge):
    """Scores from the response: a step containing "bad" scores 0; "boom" raises; "nan" gives
    a NaN score. Counts its batches."""
    batches: list[int] = []

    def judge_batch(self, requests):
        type(self).batches.append(len(requests))
        return super().judge_batch(requests)

    def judge_steps(self, problem, response, spans, outcome_correct, extracted, gold=None):
        if "boom" in response:
            raise RuntimeError("judge exploded")
        steps = [response[a:b] for a, b in spans]
        return StepJudgment(scores=[math.nan if "nan" in s else 0.0 if "bad" in s else 1.0
                                    for s in steps])


def _write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _run(capsys, *args):
    ScriptedJudge.batches.clear()
    code = main(["processbench", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("field, value, phrase", [
    ("label", 99, "label must be an integer in [-1, 1], got 99"),
    ("label", -5, "got -5"),
    ("label", 0.7, "got 0.7"),
    ("label", True, "got True"),
    ("label", "0", "got '0'"),
    ("label", "abc", "got 'abc'"),
    ("label", None, "got None"),
    ("problem", 7, "problem must be a string"),
    ("steps", [], "steps must be a non-empty list of strings"),
    ("steps", ["a", 3], "steps must be a non-empty list of strings"),
    ("steps", "a\n\nb", "steps must be a non-empty list of strings"),
    ("final_answer_correct", "yes", "final_answer_correct must be true or false"),
])
def test_a_bad_sample_is_an_error_before_any_judging(tmp_path, capsys, field, value, phrase):
    bad = {"problem": "q", "steps": ["x", "y"], "label": 0, field: value}
    path = _write(tmp_path / "pb.json", GOOD + [bad, {"problem": "q"}])
    code, out, err = _run(capsys, path, "--judge", "test-pb-scripted")
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "sample 3" in lines[0] and phrase in lines[0]
    assert "sample 4" in lines[0] and "label" in lines[0]  # every bad sample is named
    assert ScriptedJudge.batches == []  # nothing was judged


@pytest.mark.parametrize("content, phrase", [
    ("{not json", "not valid JSON"),
    (b"\x00\xff\xfe binary", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"problem": "p"}', "a JSON list of samples"),
    ("[1, 2]", "sample 0: not a JSON object"),
    ("[]", "no samples"),
])
def test_a_bad_file_is_one_error_line(tmp_path, capsys, content, phrase):
    path = tmp_path / "pb.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = _run(capsys, str(path), "--judge", "tool")
    assert code != 0 and len(err.strip().splitlines()) == 1 and phrase in err, err
    assert err.startswith("error: ")


def test_a_missing_file_and_a_bad_judge_are_one_error_line(tmp_path, capsys):
    for args, phrase in [([str(tmp_path / "nope.json")], "no such file"),
                         ([_write(tmp_path / "ok.json", GOOD), "--judge", "tpgrpp"],
                          "did you mean 'tpgrpo'"),
                         ([_write(tmp_path / "ok.json", GOOD), "-o", "max_step_char=3"],
                          "unknown option 'max_step_char'")]:
        code, out, err = _run(capsys, *args)
        assert code != 0 and err.startswith("error: ") and phrase in err, err
        assert len(err.strip().splitlines()) == 1


def test_jsonl_input_and_its_bad_lines(tmp_path, capsys):
    lines = [json.dumps(s) for s in GOOD]
    path = _write(tmp_path / "pb.jsonl", "\n".join(lines) + "\n")
    code, out, err = _run(capsys, path, "--judge", "tool", "--json")
    assert code == 0, err
    assert json.loads(out)["subsets"]["pb"]["n"] == 3
    broken = _write(tmp_path / "broken.jsonl", "\n".join([lines[0], "[[[", lines[1]]) + "\n")
    code, out, err = _run(capsys, broken, "--judge", "tool")
    assert code != 0 and "line 2" in err and "not valid JSON" in err


def test_samples_are_judged_in_batches_and_failures_cost_one_sample(tmp_path, capsys):
    samples = []
    for i in range(40):
        kind = i % 4
        steps = {0: ["fine", "bad", "x"], 1: ["fine", "ok"], 2: ["boom", "x"], 3: ["nan", "x"]}[kind]
        samples.append({"problem": f"p{i}", "steps": steps, "label": 1 if kind == 0 else -1})
    path = _write(tmp_path / "many.json", samples)
    code, out, err = _run(capsys, path, "--judge", "test-pb-scripted", "--json")
    assert code == 0, err
    assert ScriptedJudge.batches == [16, 16, 8]
    s = json.loads(out)["subsets"]["many"]
    # kind 0 predicted right (10 erroneous), kind 1 right, kinds 2-3 judge errors (wrong)
    assert s["judge_errors"] == 20 and s["acc_erroneous"] == 1.0 and s["acc_correct"] == 1 / 3


def _processbench_reference(predicted, labels):
    """ProcessBench's evaluation code: match = prediction == label, accuracies in percent."""
    data = [{"label": y, "match": p == y} for p, y in zip(predicted, labels)]
    data1 = [e for e in data if e["label"] != -1]
    data2 = [e for e in data if e["label"] == -1]
    acc1 = np.mean([e["match"] for e in data1]) * 100
    acc2 = np.mean([e["match"] for e in data2]) * 100
    with np.errstate(invalid="ignore"):  # 0 / 0 when both are 0: nan, as in their code
        return acc1, acc2, 2 * acc1 * acc2 / (acc1 + acc2)


def test_metric_agrees_with_processbench_on_random_cases():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(2, 60)
        labels = [-1, 0] + [rng.randint(-1, 9) for _ in range(n - 2)]
        predicted = [rng.choice([y, y, rng.randint(-1, 9), None]) for y in labels]
        ours = metrics(predicted, labels)
        acc1, acc2, f1 = _processbench_reference(predicted, labels)
        assert ours["acc_erroneous"] * 100 == pytest.approx(acc1)
        assert ours["acc_correct"] * 100 == pytest.approx(acc2)
        if acc1 + acc2 > 0:
            assert ours["f1"] * 100 == pytest.approx(f1)
        else:  # 0/0 is nan in their code; the harmonic mean of two zeros is 0 here
            assert ours["f1"] == 0.0
    # A file with only one kind of sample: that accuracy is undefined (nan in theirs).
    assert metrics([0, -1], [-1, -1])["acc_erroneous"] is None
