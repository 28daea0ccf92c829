"""RolloutActor under real Ray: Arrow rollouts, weights through the object store, versions."""
from __future__ import annotations

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from actors.rollout import RolloutActor
from core.records import ROLLOUT_SCHEMA
from core.weights import pack, state_hash

pytestmark = pytest.mark.timeout(300)

PROMPTS = [
    {"prompt_id": "p0", "problem": "1+2", "prompt_text": "Q: 1+2=?\nA:", "gold_answer": "3"},
    {"prompt_id": "p1", "problem": "4*5", "prompt_text": "Q: 4*5=?\nA:", "gold_answer": "20",
     "group_id": "p1-retry"},
]


@pytest.fixture(scope="module")
def actor(tiny_model_dir):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    handle = RolloutActor.options(num_cpus=1).remote(
        str(tiny_model_dir), dtype="float32", max_model_len=256, kv_cache_gb=0.25)
    assert ray.get(handle.ready.remote(), timeout=180) is True
    yield handle
    ray.get(handle.shutdown.remote(), timeout=60)
    ray.shutdown()


def test_rollouts_and_weight_sync_through_the_object_store(actor, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    table = ray.get(actor.generate.remote(PROMPTS, n=3, max_tokens=8, temperature=1.0, seed=0), timeout=60)
    assert table.schema.equals(ROLLOUT_SCHEMA) and table.num_rows == 6
    rows = table.to_pylist()
    assert [r["sample_index"] for r in rows] == [0, 1, 2, 0, 1, 2]
    assert {r["policy_version"] for r in rows} == {0}
    assert rows[0]["group_id"].startswith("p0@v0") and len({r["group_id"] for r in rows[:3]}) == 1
    assert {r["group_id"] for r in rows[3:]} == {"p1-retry"}
    for r, p in zip(rows, [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3):
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

    table = ray.get(actor.generate.remote(PROMPTS[:1], n=2, max_tokens=4, temperature=1.0, seed=0), timeout=60)
    assert set(table.column("policy_version").to_pylist()) == {7}
    stats = ray.get(actor.stats.remote())
    assert stats["policy_version"] == 7 and stats["samples_generated"] == 8
    assert stats["tokens_generated"] > 0 and stats["last_sync_bytes"] > 0


def test_bad_prompt_is_a_clear_error(actor):
    with pytest.raises(ray.exceptions.RayTaskError, match="lacks fields"):
        ray.get(actor.generate.remote([{"prompt_id": "x"}], n=1, max_tokens=2), timeout=60)
