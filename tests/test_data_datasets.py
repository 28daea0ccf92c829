"""Dataset loading (synthetic, GSM8K jsonl, bad rows in jsonl and parquet) and the resumable stream."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.arith_task import ArithTaskConfig
from core.datasets import FieldMap, PromptStream, final_answer, load_dataset

GSM8K = Path(__file__).resolve().parent / "data" / "gsm8k_test_head40.jsonl"  # the first 40 rows


def test_synthetic_spec_uses_the_arith_task():
    cfg = ArithTaskConfig(num_train=40, num_eval=10)
    data = load_dataset("synthetic", synthetic=cfg, split="eval")
    assert len(data.rows) == 10 and data.skipped == []
    assert set(data.rows[0]) == {"prompt_id", "problem", "answer", "solution"}


def test_gsm8k_jsonl_reduces_answers_and_keeps_the_text():
    data = load_dataset(str(GSM8K))
    assert len(data.rows) == 40 and data.skipped == []
    first = data.rows[0]
    assert first["answer"] == "18"
    assert first["solution"].endswith("#### 18") and "16 - 3 - 4" in first["solution"]
    assert first["problem"].startswith("Janet")
    assert len({r["prompt_id"] for r in data.rows}) == 40
    assert all(r["answer"] and "####" not in r["answer"] for r in data.rows)


def test_final_answer():
    assert final_answer("so 3 + 4 = 7\n#### 1,000") == "1000"
    assert final_answer("#### -5") == "-5"
    assert final_answer(" \\frac{1}{2} ") == "\\frac{1}{2}"


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_jsonl_rows_are_reported_and_skipped(tmp_path):
    lines = [
        json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}),
        json.dumps({"question": "", "answer": "#### 1"}),                     # empty problem
        json.dumps({"answer": "#### 3"}),                                     # missing problem
        '{"question": "broken", "answer": ',                                   # not JSON
        json.dumps({"question": ["a", "list"], "answer": "#### 5"}),           # wrong type
        json.dumps({"question": "What is 3 * 3?", "answer": 9}),               # numeric answer is fine
        json.dumps({"question": "Half of 8?", "answer": "#### "}),             # nothing after ####
    ]
    data = load_dataset(str(_write_jsonl(tmp_path / "mixed.jsonl", lines)))
    assert [r["problem"] for r in data.rows] == ["What is 2 + 2?", "What is 3 * 3?"]
    assert [r["answer"] for r in data.rows] == ["4", "9"]
    assert [i for i, _ in data.skipped] == [1, 2, 3, 4, 6]
    reasons = dict(data.skipped)
    assert "empty" in reasons[1] and "missing" in reasons[2]
    assert "JSON" in reasons[3] and "list" in reasons[4]
    assert data.num_skipped == 5


def test_bad_parquet_rows_and_field_map(tmp_path):
    table = pa.table({
        "prompt": ["1 + 1?", None, "   ", "5 - 2?"],
        "gold": ["2", "7", "3", "3"],
        "other": ["a", "b", "c", "d"],
    })
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    data = load_dataset(str(path), fields=FieldMap(problem="prompt", answer="gold"))
    assert [(r["problem"], r["answer"]) for r in data.rows] == [("1 + 1?", "2"), ("5 - 2?", "3")]
    assert [i for i, _ in data.skipped] == [1, 2]
    with pytest.raises(ValueError, match="fields.problem"):
        load_dataset(str(path))  # no default problem column: a config error naming the field
    with pytest.raises(ValueError, match="'nope'"):
        load_dataset(str(path), fields=FieldMap(problem="nope", answer="gold"))


def test_unusable_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "missing.jsonl"))
    bad = _write_jsonl(tmp_path / "all_bad.jsonl", [json.dumps({"problem": "", "answer": "1"})])
    with pytest.raises(ValueError, match="no usable rows"):
        load_dataset(str(bad))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported"):
        load_dataset(str(tmp_path / "x.csv"))


def _ids(batches):
    return [[r["prompt_id"] for r in b] for b in batches]


def test_prompt_stream_epochs_and_resume():
    rows = [{"prompt_id": str(i)} for i in range(10)]
    stream = PromptStream(rows, batch_size=4, seed=7)
    first_epoch = [r["prompt_id"] for b in [stream.next_batch(), stream.next_batch()] for r in b]
    assert len(set(first_epoch)) == 8 and first_epoch != [str(i) for i in range(8)]
    crossing = stream.next_batch()  # 2 rows left in epoch 0, then 2 from epoch 1
    assert set(first_epoch) | {r["prompt_id"] for r in crossing[:2]} == {str(i) for i in range(10)}
    assert stream.epoch == 1

    saved = json.loads(json.dumps(stream.state_dict()))  # survives a checkpoint round trip
    expected = _ids([stream.next_batch() for _ in range(5)])
    resumed = PromptStream(rows, batch_size=4, seed=0)
    resumed.load_state_dict(saved)
    assert _ids([resumed.next_batch() for _ in range(5)]) == expected

    other_epoch = PromptStream(rows, batch_size=10, seed=7)
    assert _ids([other_epoch.next_batch()]) != _ids([other_epoch.next_batch()])  # reshuffled
    assert _ids([PromptStream(rows, 10, seed=7).next_batch()]) == _ids([PromptStream(rows, 10, seed=7).next_batch()])
    with pytest.raises(ValueError, match="rows"):
        PromptStream(rows[:5], batch_size=2).load_state_dict(saved)
