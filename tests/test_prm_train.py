"""A PRM trained for real (Ray, two DeepSpeed ranks over gloo, ZeRO-2) on stepwise parquet; the
directory it writes is a Qwen2ForProcessRewardModel that the step_classifier judge serves
through vLLM's pooling runner, with the scores a transformers forward pass gives."""
from __future__ import annotations

import json
from contextlib import ExitStack

import pyarrow.parquet as pq
import pytest
import ray
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2Model

from core.arith_processbench import make_samples
from core.arith_task import ArithTaskConfig, make_split
from core.config import load_config
from core.stepwise import to_table
from learner.prm import SEPARATOR
from reward_service.judges.base import StepRequest
from reward_service.judges.step_classifier import StepClassifierJudge
from reward_service.processbench import join_steps
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(900)
MARK = " !!"  # a wrong step says so: the tiny random backbone learns that within a few dozen steps


def marked_rows(num_problems: int, seed: int) -> list[dict]:
    """Stepwise rows from the arithmetic ProcessBench: steps before the first error are right
    (soft label 0.875), the rest wrong (0.0) and marked."""
    rows = make_split(ArithTaskConfig(num_train=1, num_eval=num_problems, word_problem_rate=0.0, seed=seed), "eval")
    out = []
    for s in make_samples(rows, seed):
        right = [s["label"] == -1 or k < s["label"] for k in range(len(s["steps"]))]
        out.append({"prompt": s["problem"], "completions": [x if ok else x + MARK for x, ok in zip(s["steps"], right)],
                    "labels": right, "soft_labels": [0.875 if ok else 0.0 for ok in right],
                    "problem_id": s["id"], "outcome_correct": s["label"] == -1})
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    from cluster import prm_train

    tmp = tmp_path_factory.mktemp("prm")
    data = tmp / "labels.parquet"
    pq.write_table(to_table(marked_rows(120, seed=0)), data)
    cfg = load_config(ROOT / "configs/local.yaml", [
        "name=prm", f"trainer.output_dir={tmp}", f"prm.data={data}", f"prm.init={tiny_model_dir}",
        "prm.steps=40", "prm.batch_size=32", "prm.micro_batch_size=16", "prm.lr=3.0e-3", "prm.warmup=5",
        "prm.val_fraction=0.2", "learner.num_ranks=2", "learner.zero_stage=2"])
    try:
        with ExitStack() as started:
            summary = prm_train.run(cfg, False, started)
    finally:
        ray.shutdown()
    return cfg, summary


def test_training_learns_the_step_labels(trained):
    _, summary = trained
    before, after = summary["val_before"], summary["val_after"]
    assert summary["held_out"] > 20 and summary["bad_rows"] == 0
    assert after["step_accuracy"] >= 0.95 and after["step_accuracy"] > before["step_accuracy"] + 0.1
    assert after["step_ce"] < before["step_ce"]


def test_the_directory_is_a_qwen_process_reward_model(trained):
    cfg, summary = trained
    out = cfg.run_dir / "prm"
    assert summary["output"] == str(out) and not list(cfg.run_dir.glob(".prm.partial*"))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForProcessRewardModel"] and config["num_labels"] == 2
    names = set(load_file(str(out / "model.safetensors")))
    backbone = {f"model.{k}" for k in Qwen2Model.from_pretrained(str(out)).state_dict()}
    assert names == backbone | {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"}
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert SEPARATOR in tokenizer.all_special_tokens


def _reference(out, ids: list[int], sep: int) -> list[float]:
    """Qwen2.5-Math-PRM's reference computation: the backbone, then score.0, ReLU, score.2 and a
    softmax at the separators."""
    backbone = Qwen2Model.from_pretrained(str(out), dtype=torch.float32).eval()
    w = load_file(str(out / "model.safetensors"))
    with torch.no_grad():
        hidden = backbone(torch.tensor([ids])).last_hidden_state[0]
        inner = torch.relu(hidden @ w["score.0.weight"].T + w["score.0.bias"])
        probs = torch.softmax(inner @ w["score.2.weight"].T + w["score.2.bias"], -1)
    return probs[torch.tensor(ids) == sep, 1].tolist()


def test_the_step_classifier_judge_serves_it_and_matches_transformers(trained):
    cfg, _ = trained
    out = cfg.run_dir / "prm"
    judge = StepClassifierJudge(model=str(out), dtype="float32", kv_cache_gb=0.1)
    try:
        assert judge.style == "classifier" and judge.step_tag == SEPARATOR
        rows = marked_rows(12, seed=7)  # problems the PRM never saw
        requests = [StepRequest(r["prompt"], *join_steps(r["completions"]), r["outcome_correct"], None) for r in rows]
        judged = judge.judge_batch(requests)
        for r, q, j in zip(rows, requests, judged):
            ids = judge.token_ids(q.problem, q.response, q.spans)
            assert j.scores == pytest.approx(_reference(out, ids, judge.step_tag_id), abs=1e-4)
            assert [s >= 0.5 for s in j.scores] == r["labels"]  # what it learned, served by vLLM
    finally:
        judge.close()
