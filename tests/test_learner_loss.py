"""The policy loss and the batching that feeds it: pure torch, no distributed setup."""
from __future__ import annotations

import math

import pytest
import torch

from core.records import EXPERIENCE_SCHEMA, sample_key, to_table
from learner.batching import collate, concat_tables, micro_batches, rows_of, shard_rows
from learner.loss import policy_loss, token_logprobs


def _inputs(seed: int = 0, shape=(3, 5)):
    g = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(shape, generator=g) * 3
    advantages = torch.randn(shape, generator=g)
    mask = (torch.rand(shape, generator=g) > 0.3).float()
    mask[0, 0] = 1.0
    return logprobs, advantages, mask


def test_token_logprobs_match_log_softmax_of_next_token():
    logits = torch.randn(2, 4, 7)
    ids = torch.randint(0, 7, (2, 4))
    out = token_logprobs(logits, ids)
    assert out.shape == (2, 3)
    want = torch.log_softmax(logits[1, 2], -1)[ids[1, 3]]
    assert torch.allclose(out[1, 2], want)


def test_on_policy_loss_is_minus_mean_advantage_and_kl_zero():
    logprobs, adv, mask = _inputs()
    ref = logprobs.clone()
    loss, stats = policy_loss(logprobs, logprobs.clone(), adv, mask, ref_logprobs=ref, kl_coef=0.5)
    assert loss.item() == pytest.approx(-(adv * mask).sum().item() / mask.sum().item(), abs=1e-6)
    assert stats["ratio"].item() == pytest.approx(1.0)
    assert stats["kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert stats["kl_ref"].item() == pytest.approx(0.0, abs=1e-7)
    assert stats["clip_frac"].item() == 0.0


def test_clipping_stops_gradient_beyond_the_trust_region():
    old = torch.zeros(1, 4)
    # ratios 1.5 (pos adv, clipped), 0.5 (neg adv, clipped), 1.1 (inside), 0.5 (pos adv: unclipped side)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.5]])).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    loss, stats = policy_loss(new, old, adv, torch.ones(1, 4), clip_eps=0.2)
    loss.backward()
    grad = new.grad[0]
    assert grad[0] == 0 and grad[1] == 0  # pushed past 1 +/- eps in the advantage's direction
    assert grad[2] < 0 and grad[3] < 0  # still inside (or on the pessimistic side): keeps pushing up
    assert stats["clip_frac"].item() == pytest.approx(0.5)
    # per token max(-A r, -A clip(r)): -1.2, 0.8, -1.1, -0.5
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 1.1 - 0.5) / 4, abs=1e-6)


def test_masked_tokens_do_not_count():
    logprobs, adv, mask = _inputs(seed=1)
    old = logprobs - 0.3
    loss, _ = policy_loss(logprobs, old, adv, mask)
    garbage = torch.where(mask > 0, logprobs, torch.full_like(logprobs, -1e4))
    garbage_adv = torch.where(mask > 0, adv, torch.full_like(adv, 1e6))
    loss2, stats2 = policy_loss(garbage, old, garbage_adv, mask)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    assert math.isfinite(stats2["ratio"].item())


def test_num_tokens_normalizer_lets_shards_sum_to_the_global_mean():
    logprobs, adv, mask = _inputs(seed=2, shape=(4, 6))
    old = logprobs + 0.1
    whole, _ = policy_loss(logprobs, old, adv, mask)
    total = mask.sum()
    parts = [policy_loss(logprobs[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], num_tokens=total)[0]
             for i in (0, 2)]
    assert sum(p.item() for p in parts) == pytest.approx(whole.item(), rel=1e-6)


def test_kl_to_reference_is_positive_and_pulls_towards_it():
    logprobs, adv, mask = _inputs(seed=3)
    ref = logprobs - 0.5
    lp = logprobs.clone().requires_grad_(True)
    zero_adv = torch.zeros_like(adv)
    loss, stats = policy_loss(lp, logprobs, zero_adv, mask, ref_logprobs=ref, kl_coef=1.0)
    assert stats["kl_ref"].item() > 0 and loss.item() > 0
    loss.backward()
    assert (lp.grad[mask > 0] > 0).all()  # descending lowers logprobs towards the lower reference


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="one shape"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))


# ---- batching ---------------------------------------------------------------------------------

def _table(n: int, bad_row: int | None = None):
    rows = []
    for i in range(n):
        prompt, response = [5 + i, 6, 7], [8 + i] * (1 + i % 3)
        adv = [float(i)] * len(response)
        if i == bad_row:
            adv = adv + [0.0]
        rows.append(dict(prompt_id=f"p{i // 2}", group_id=f"g{i // 2}", sample_index=i % 2, policy_version=i,
                         input_ids=prompt + response, prompt_len=len(prompt), advantages=adv,
                         rollout_logprobs=[-1.0] * len(response), reward=i / 10, outcome_correct=False,
                         num_thoughts=1))
    return to_table(rows, EXPERIENCE_SCHEMA)


def test_shards_cover_every_row_once_with_equal_micro_batch_counts():
    rows = rows_of(concat_tables([_table(4), _table(3)]))
    shards = [shard_rows(rows, r, 3) for r in range(3)]
    assert {len(s) for s in shards} == {3}  # 7 rows over 3 ranks: padded to 3 each
    keys = [r.key for s in shards for r in s if r.key is not None]
    assert sorted(keys) == sorted(r.key for r in rows) and len(keys) == 7
    counts = {len(micro_batches(s, 2, pad_id=0)) for s in shards}
    assert counts == {2}
    padding = [r for s in shards for r in s if r.key is None]
    assert padding and all(collate([r], 0).response_mask.sum() == 0 for r in padding)


def test_rewards_travel_with_their_rows_and_padding_carries_none():
    rows = rows_of(concat_tables([_table(5)]))
    assert [r.reward for r in rows] == pytest.approx([i / 10 for i in range(5)])
    shards = [shard_rows(rows, r, 2) for r in range(2)]
    trained = sorted(r.reward for s in shards for r in s if r.key is not None)
    assert trained == pytest.approx([i / 10 for i in range(5)])  # the padding row is not reported


def test_collate_aligns_advantages_with_response_tokens():
    rows = rows_of(_table(3))
    mb = collate(rows, pad_id=0)
    row = rows[2]  # prompt 3 tokens, response 3 tokens
    assert mb.input_ids.shape == (3, 6)
    assert mb.response_mask[2].tolist() == [0, 0, 1, 1, 1]  # logprob j predicts token j + 1
    assert mb.advantages[2, 2:].tolist() == row.advantages
    assert mb.attention_mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    assert rows[0].key == sample_key("g0", 0)


def test_malformed_row_is_a_clear_error_naming_it():
    with pytest.raises(ValueError, match=r"row 2 \(g1#0\)"):
        rows_of(_table(3, bad_row=2))


@pytest.mark.parametrize("column, value", [("advantages", float("nan")), ("advantages", float("inf")),
                                           ("rollout_logprobs", float("nan")),
                                           ("rollout_logprobs", float("-inf"))])
def test_a_non_finite_advantage_or_rollout_logprob_is_refused_naming_the_sample(column, value):
    table = _table(4)
    rows = table.to_pylist()
    rows[3][column] = rows[3][column][:-1] + [value]
    with pytest.raises(ValueError, match=rf"row 3 \(g1#1\).*non-finite {column}"):
        rows_of(to_table(rows, EXPERIENCE_SCHEMA))
