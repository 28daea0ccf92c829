"""The wire format of a collective weight transfer: the bucket planner and packed buckets."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from core.weights import ALIGN, pack_bucket, padded_nbytes, plan_buckets, unpack_bucket


def random_sizes(rng: random.Random) -> tuple[list[int], int]:
    limit = rng.choice([1, 16, 100, 4096, 2**20])
    n = rng.randint(0, 60)
    # zero-size tensors, tensors around the limit and far over it
    sizes = [rng.choice([0, rng.randint(1, limit), rng.randint(limit, 3 * limit), ALIGN * rng.randint(1, 50)])
             for _ in range(n)]
    return sizes, limit


def test_every_tensor_once_in_order_and_no_bucket_over_the_limit_unless_alone():
    rng = random.Random(0)
    for _ in range(3000):
        sizes, limit = random_sizes(rng)
        buckets = plan_buckets(sizes, limit)
        assert [i for b in buckets for i in b] == list(range(len(sizes)))  # each once, in order
        for b in buckets:
            total = sum(sizes[i] for i in b)
            assert len(b) >= 1 and (total <= limit or len(b) == 1), (sizes, limit, buckets)
        for b, nxt in zip(buckets, buckets[1:]):  # greedy: the next tensor did not fit
            assert sum(sizes[i] for i in b) + sizes[nxt[0]] > limit


def test_a_planner_limit_of_zero_is_an_error():
    with pytest.raises(ValueError, match="bucket limit"):
        plan_buckets([4], 0)


def test_packed_buckets_round_trip_mixed_dtypes_and_shapes():
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "odd.bf16": torch.randn(3, 5, generator=gen).to(torch.bfloat16),  # 30 bytes: next offset must realign
        "f32": torch.randn(7, generator=gen),
        "scalar.f16": torch.tensor(1.5, dtype=torch.float16),
        "empty": torch.empty(0, 4),
        "i64": torch.arange(5),
        "transposed": torch.randn(4, 6, generator=gen).t(),  # not contiguous on the sender
        "u8": torch.tensor([1, 2, 3], dtype=torch.uint8),
    }
    buf = pack_bucket(list(tensors.values()), torch.device("cpu"))
    assert buf.numel() == sum(padded_nbytes(t.dtype, t.shape) for t in tensors.values())
    out = unpack_bucket(buf, list(tensors), [t.dtype for t in tensors.values()], [tuple(t.shape) for t in tensors.values()])
    assert [name for name, _ in out] == list(tensors)
    for (name, got), want in zip(out, tensors.values()):
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want), name
        assert (got.data_ptr() - buf.data_ptr()) % ALIGN == 0


def test_a_tied_weight_travels_once_and_every_tensor_in_exactly_one_bucket(tiny_model_dir):
    """The learner's list of what to send (LearnerRank._state_entries, tied=False) on the tiny
    model, whose lm_head is tied to the embedding, planned into small buckets."""
    from transformers import AutoModelForCausalLM

    from learner.rank import LearnerRank

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    assert model.config.tie_word_embeddings and "lm_head.weight" in model.state_dict()
    rank = SimpleNamespace(engine=SimpleNamespace(module=model))
    entries = list(LearnerRank._state_entries(rank, tied=False))
    assert [n for n, _ in entries] == [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in dict(entries)
    sizes = [padded_nbytes(t.dtype, t.shape) for _, t in entries]
    limit = 64 * 1024
    buckets = plan_buckets(sizes, limit)
    assert len(buckets) > 5 and any(len(b) > 1 for b in buckets) and any(sizes[b[0]] > limit for b in buckets)
    assert sorted(i for b in buckets for i in b) == list(range(len(entries)))
