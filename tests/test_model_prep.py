"""The starting policy: the two warm-start stages are built once each and cached by what made them."""
from pathlib import Path

from transformers import AutoModelForCausalLM

from cluster.model_prep import prepare_model
from core.config import load_config
from core.datasets import load_dataset

ROOT = Path(__file__).resolve().parent.parent


class Bar:
    """Records what prepare_model shows on a progress bar."""
    made: list["Bar"] = []

    def __init__(self, label: str, total: int):
        self.label, self.total, self.updates, self.closed = label, total, [], False
        Bar.made.append(self)

    def update(self, done: int, postfix: str = "") -> None:
        self.updates.append((done, postfix))

    def close(self) -> None:
        self.closed = True


def _prepare(tmp_path, *overrides):
    cfg = load_config(ROOT / "configs/local.yaml", [
        f"model.cache_dir={tmp_path}", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
        "model.tiny.num_heads=2", "model.tiny.num_kv_heads=1", "data.synthetic.num_train=40",
        "warm_start.steps=3", "warm_start.batch_size=4", "warm_start.answer_only.steps=2", *overrides])
    rows = load_dataset("synthetic", synthetic=cfg.data.synthetic, split="train").rows
    logs: list[str] = []
    Bar.made = []
    return prepare_model(cfg, rows, logs.append, Bar), logs


def _weights(path: Path) -> dict:
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def test_answer_only_stage_trains_on_top_of_the_worked_stage_and_both_are_cached(tmp_path):
    final, logs = _prepare(tmp_path)
    assert final.name.startswith("warm-answer-only-")
    assert [line.split(":")[0] for line in logs if line.startswith("warm start")] == ["warm start"] * 2
    assert any("60% of solutions cut to the answer" in line for line in logs)
    # one progress bar per stage, moved after every step, closed at the end
    assert [(b.label, b.total, [d for d, _ in b.updates], b.closed) for b in Bar.made] == [
        ("warm start", 3, [1, 2, 3], True), ("answer-only", 2, [1, 2], True)]
    assert all(postfix.startswith("loss ") for b in Bar.made for _, postfix in b.updates)
    worked = next(p for p in tmp_path.iterdir() if p.name.startswith("warm-") and "answer-only" not in p.name
                  and "partial" not in p.name)
    trained, start = _weights(final), _weights(worked)
    assert trained.keys() == start.keys()
    assert any((trained[k] != start[k]).any() for k in trained)

    again, logs = _prepare(tmp_path)
    assert again == final and Bar.made == [] and all("reusing" in line for line in logs)

    # Another answer-only rate reuses the worked stage and builds only the second stage anew.
    other, logs = _prepare(tmp_path, "warm_start.answer_only.rate=0.3")
    assert other != final and other.name.startswith("warm-answer-only-")
    assert any(f"reusing {worked}" in line for line in logs)

    # Without the second stage the worked stage is the policy.
    only, _ = _prepare(tmp_path, "warm_start.answer_only.steps=0")
    assert only == worked
