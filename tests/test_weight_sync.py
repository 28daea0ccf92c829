"""Weight sync with real parts: 2 DeepSpeed ranks (ZeRO-3, gloo), 2 vLLM engines, local Ray.

One learner and one pipeline for the module; each test trains a step first, so the weights a
sync must deliver are new, and checks the served-weights hash of every engine against the
learner's. Faults are real: an engine that raises after the first bucket, one that ends its own
process there (tests/faulty_rollout.py). The buckets are small (64 KiB), so a transfer of the
tiny model takes about 30 broadcasts and the faults strike in mid-transfer.
"""
from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from cluster.actor_group import ActorError, ActorGroup
from cluster.pipeline import Pipeline, Weights
from cluster.train import over_collective, through_object_store
from core.config import load_config
from core.records import EXPERIENCE_SCHEMA, to_table
from core.weights import padded_nbytes
from learner.group import LearnerGroup, LearnerRankActor
from tests.faulty_rollout import FaultyRollout, Idle

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def parts(tiny_model_dir, tmp_path_factory):
    assert not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                       "TOKENIZERS_PARALLELISM": "false"}})
    faults = tmp_path_factory.mktemp("faults")
    ranks = ActorGroup("learner", LearnerRankActor, 2, TIMEOUT, {"num_cpus": 0})
    learner = LearnerGroup(ranks, str(tiny_model_dir), zero_stage=3, lr=1e-3, micro_batch_size=4, backend="gloo",
                           seed=0, weight_channel="gloo", weight_bucket_mb=1 / 16,
                           weight_timeout_s=10)
    rollout = ActorGroup("rollout", FaultyRollout, 2, TIMEOUT, {"num_cpus": 0}, args=(str(tiny_model_dir),),
                         kwargs=dict(dtype="float32", max_model_len=256, kv_cache_gb=0.25, weight_transfer="gloo",
                                     faults_dir=str(faults)))
    judges = ActorGroup("judge", Idle, 1, TIMEOUT, {"num_cpus": 0})
    log: list[str] = []
    pipeline = Pipeline(load_config(None), rollout, judges, None, Weights(), log=log.append)
    try:
        rollout.get_all("ready")
        yield SimpleNamespace(learner=learner, rollout=rollout, pipeline=pipeline, log=log, faults=faults)
    finally:
        for group in (learner, rollout, judges):
            group.shutdown()
        ray.shutdown()


def train(parts, seed: int) -> str:
    """One learner step on random rows; the learner's new weights hash."""
    rng = random.Random(seed)
    rows = []
    for i in range(8):
        prompt, response = [rng.randint(3, 90) for _ in range(4)], [rng.randint(3, 90) for _ in range(6)]
        rows.append(dict(prompt_id=f"p{i}", group_id=f"s{seed}g{i // 2}", sample_index=i % 2, policy_version=0,
                         input_ids=prompt + response, prompt_len=len(prompt), advantages=[1.0 - 2 * (i % 2)] * 6,
                         rollout_logprobs=[0.0] * 6, reward=float(i % 2 == 0), outcome_correct=i % 2 == 0,
                         num_thoughts=1))
    before = parts.learner.weights_hash()
    parts.learner.train_step([ray.put(to_table(rows, EXPERIENCE_SCHEMA))])
    after = parts.learner.weights_hash()
    assert after != before
    return after


def served(parts) -> tuple[list, list]:
    return parts.rollout.get_all("version"), parts.rollout.get_all("weights_hash")


def test_after_a_collective_sync_every_engine_serves_the_learners_weights(parts, tiny_model_dir):
    want = train(parts, 1)
    parts.pipeline.sync(Weights(over_collective(parts.learner, parts.rollout), 1))
    assert served(parts) == ([1, 1], [want, want])
    assert parts.log == [] and parts.pipeline.restarts["rollout"] == 0
    # every tensor once, the tied lm_head not at all: the bytes of the model's parameters
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    assert parts.learner.last_export_bytes == sum(padded_nbytes(p.dtype, p.shape) for p in model.parameters())


def test_a_failed_transfer_advances_no_version_and_its_engines_are_replaced(parts):
    want = train(parts, 2)
    send = over_collective(parts.learner, parts.rollout)
    generations = list(parts.rollout.generation)
    failing = parts.rollout.actor_name(1)
    (parts.faults / "1.raise").touch()
    with pytest.raises(ActorError, match=rf"learner\.send_weights on learner-0 failed: WeightTransferFailed: "
                                         rf".*{failing}: RuntimeError: stopped after the first bucket"):
        send([0, 1], 2)
    # Neither engine serves version 2, nor the version before: both hold part of the new weights
    # (the other one lost the broadcast when the sender stopped) and refuse to generate.
    assert parts.rollout.get_all("version") == [None, None]
    with pytest.raises(ActorError, match="incomplete weights"):
        parts.rollout.call(0, "generate", [{"prompt_id": "p", "problem": "1", "prompt_text": "1 + 1 =",
                                            "gold_answer": "2"}], n=1, max_tokens=2)
    # The learner ranks went through every ZeRO-3 gather together and still agree.
    assert len(set(parts.learner.weights_hashes())) == 1

    parts.pipeline.weights = Weights(send, 2)
    parts.pipeline.heal()  # what Pipeline.sync does after a failed send
    assert parts.rollout.generation == [g + 1 for g in generations]
    assert served(parts) == ([2, 2], [want, want])


def test_an_engine_killed_mid_transfer_is_replaced_and_every_engine_gets_the_current_weights(parts):
    want = train(parts, 3)
    generations, restarts = list(parts.rollout.generation), parts.pipeline.restarts["rollout"]
    killed = parts.rollout.actor_name(0)
    (parts.faults / "0.exit").touch()
    parts.pipeline.sync(Weights(over_collective(parts.learner, parts.rollout), 3))
    assert any(line.startswith("weight sync: ") and killed in line for line in parts.log), parts.log
    assert f"{killed} is gone; starting a replacement" in parts.log
    # the killed engine is replaced, the other one (cut off mid-transfer) too; the group is
    # formed again with the new engines and they serve the current weights
    assert parts.rollout.generation == [g + 1 for g in generations]
    assert parts.pipeline.restarts["rollout"] == restarts + 2
    assert served(parts) == ([3, 3], [want, want])

    # the group of the new engines carries the next sync as well
    want = train(parts, 4)
    parts.pipeline.sync(Weights(over_collective(parts.learner, parts.rollout), 4))
    assert served(parts) == ([4, 4], [want, want])
    assert parts.pipeline.restarts["rollout"] == restarts + 2


def test_the_object_store_path_serves_the_same_weights(parts):
    want = train(parts, 5)
    restarts = parts.pipeline.restarts["rollout"]
    parts.pipeline.sync(Weights(through_object_store(parts.learner, parts.rollout), 5))
    assert served(parts) == ([5, 5], [want, want])
    assert parts.pipeline.restarts["rollout"] == restarts
