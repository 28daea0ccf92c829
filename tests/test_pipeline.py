"""How the pipeline deals work to judges, and a real batch through rollout → judges → buffer."""
from __future__ import annotations

import pytest
import ray

from actors.judge import JudgeWorker
from actors.rollout import RolloutWorker
from cluster.actor_group import ActorGroup
from cluster.buffer import create_buffer
from cluster.pipeline import Pipeline, Weights, judge_pieces, split_evenly
from core.config import load_config

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("num_rollout", range(1, 7))
@pytest.mark.parametrize("num_judges", range(1, 9))
def test_every_judge_gets_work_in_the_fewest_largest_calls(num_rollout, num_judges):
    for num_prompts in range(1, 40):
        chunks = split_evenly(list(range(num_prompts)), num_rollout)
        pieces = judge_pieces(chunks, num_judges)
        # every prompt in exactly one piece of its own chunk, in order
        assert [sorted(p for piece in ps for p in piece) for ps in pieces] == chunks
        calls = [piece for ps in pieces for piece in ps]
        assert all(calls)
        # dealt round-robin, as many calls as judges reach every judge (when there are enough prompts)
        assert len(calls) >= min(num_judges, num_prompts)
        # and no more calls than that takes: ceil(M / chunks) per chunk
        busy_chunks = sum(1 for c in chunks if c)
        assert all(len(ps) <= -(-num_judges // busy_chunks) for ps in pieces)
        sizes = [len(piece) for ps in pieces for piece in ps]
        assert max(sizes) - min(sizes) <= 1  # and as even as they can be


def test_a_prompt_drawn_twice_in_one_batch_is_two_groups():
    from cluster.train import to_prompts
    rows = [{"prompt_id": f"p{i}", "problem": f"{i} + 1", "answer": str(i + 1)} for i in (0, 1, 2, 0)]
    ids = [p["group_id"] for p in to_prompts(rows, "s3", str)]
    assert len(set(ids)) == 4  # a batch across an epoch boundary holds p0 twice
    assert ids == [p["group_id"] for p in to_prompts(rows, "s3", str)]  # a re-issue is the same group
    assert not set(ids) & {p["group_id"] for p in to_prompts(rows, "s4", str)}  # another sampling is not


PROMPTS = [{"prompt_id": f"p{i}", "group_id": f"g{i}", "problem": f"{i} + 1", "prompt_text": f"{i} + 1 =",
            "gold_answer": str(i + 1)} for i in range(6)]


@pytest.fixture(scope="module")
def engine(ray_local, tiny_model_dir):
    """One engine for the module (an engine's start is most of a test's time); the tests below
    leave it serving, except the last one, which kills it."""
    rollout = ActorGroup("rollout", RolloutWorker, 1, 300, {"num_cpus": 0}, args=(str(tiny_model_dir),),
                         kwargs=dict(dtype="float32", max_model_len=256, kv_cache_gb=0.25))
    yield rollout
    rollout.shutdown()


@pytest.fixture
def parts(engine):
    """A factory of (config, the engine's rollout group, judge group, buffer); judges and buffer
    are stopped after the test."""
    made = []

    def make(num_judges: int):
        cfg = load_config(None, ["rollout.num_actors=1", f"judge.num_actors={num_judges}",
                                 "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8",
                                 "trainer.call_timeout_s=300"])
        judges = ActorGroup("judge", JudgeWorker, num_judges, cfg.trainer.call_timeout_s, {"num_cpus": 0},
                            kwargs=dict(backend="tool"))
        buffer = create_buffer(2, 0, capacity_groups=12, algorithm="grpo", alpha=1.0)
        made.append((judges, buffer))
        return cfg, engine, judges, buffer

    yield make
    for judges, buffer in made:
        judges.shutdown()
        ray.kill(buffer)


def test_a_batch_from_one_engine_reaches_every_judge_and_each_group_the_buffer_once(parts):
    cfg, rollout, judges, buffer = parts(3)
    timeout = cfg.trainer.call_timeout_s
    pipeline = Pipeline(cfg, rollout, judges, buffer, Weights(), log=lambda _: None)
    batch = pipeline.submit(0, PROMPTS)
    ray.kill(judges.actors[1])  # one judge call fails; only it is re-issued
    summaries = pipeline.collect(batch)

    assert sorted(g for s in summaries for g in s["groups"]) == [f"g{i}" for i in range(6)]
    assert pipeline.restarts == {"rollout": 0, "judge": 1} and judges.names[1] == "judge-1-r1"
    judged = [s["samples"] for s in judges.get_all("stats")]
    assert judged[0] == judged[2] == 4, judged  # two groups of two samples each
    taken = ray.get(buffer.take.remote(6, 0, timeout), timeout=timeout)
    assert sorted(taken["group_ids"]) == [f"g{i}" for i in range(6)] and taken["num_samples"] == 12
    depth = ray.get(buffer.depth.remote(), timeout=timeout)
    assert depth["groups_added"] == 6 and depth["pending_groups"] == 0


def test_an_engine_that_dies_while_a_judge_is_replaced_is_replaced_too(parts):
    # Two faults close together: the engine passes the health check, then dies while the dead
    # judge's replacement starts, so reading its weights version fails. The run heals again.
    cfg, rollout, judges, buffer = parts(1)
    # a weights path, so that healing reads every engine's version
    pipeline = Pipeline(cfg, rollout, judges, buffer, Weights(send=lambda indices, version: None),
                        log=lambda _: None)
    create_judge = judges._create

    def create_judge_and_kill_the_engine(index):
        ray.kill(rollout.actors[0])
        return create_judge(index)

    judges._create = create_judge_and_kill_the_engine
    batch = pipeline.submit(0, PROMPTS)
    ray.kill(judges.actors[0])
    summaries = pipeline.collect(batch)

    assert sorted(g for s in summaries for g in s["groups"]) == [f"g{i}" for i in range(6)]
    assert pipeline.restarts == {"rollout": 1, "judge": 1}
    assert rollout.names == ["rollout-0-r1"] and judges.names == ["judge-0-r1"]
    taken = ray.get(buffer.take.remote(6, 0, cfg.trainer.call_timeout_s), timeout=cfg.trainer.call_timeout_s)
    assert sorted(taken["group_ids"]) == [f"g{i}" for i in range(6)] and taken["num_samples"] == 12
