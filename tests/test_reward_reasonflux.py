"""The ReasonFlux blend r = (1-β)·r_out + β·r̂, standardized in the group: values by hand."""
import math

import numpy as np
import pytest

from cluster.experience import group_experience
from core.config import load_config
from reward_service.advantages import GroupSample, group_advantages, reasonflux_rewards


def _group():
    return [
        GroupSample(True, 3, [0, 4, 8], step_spans=[(0, 4), (4, 12)], step_scores=[1.0, 0.5]),
        GroupSample(False, 2, [0, 4], step_spans=[(0, 8)], step_scores=[0.2]),
        GroupSample(True, 2, [0, 4], step_spans=[(0, 4), (4, 8)], step_scores=[0.9, 0.3],
                    trajectory_score=0.4),
        GroupSample(False, 2, [0, 4]),  # judging failed: no step scores, outcome only
    ]


def test_blend_by_hand():
    # r̂ = [0.75, 0.2, 0.6 + 0.5 * 0.4 = 0.8, -]; r = 0.5 * r_out + 0.5 * r̂, the last r_out = 0.
    rewards = reasonflux_rewards(_group(), alpha=0.5, beta=0.5)
    np.testing.assert_allclose(rewards, [0.875, 0.1, 0.9, 0.0], rtol=1e-12)
    # mean 1.875 / 4 = 0.46875; population variance 0.70671875 / 4 = 0.1766796875
    std = math.sqrt(0.1766796875) + 1e-6
    expected = [(0.875 - 0.46875) / std, (0.1 - 0.46875) / std,
                (0.9 - 0.46875) / std, (0.0 - 0.46875) / std]
    adv = group_advantages("reasonflux", _group(), alpha=0.5, beta=0.5)
    assert [a.shape for a in adv] == [(3,), (2,), (2,), (2,)]
    for a, e in zip(adv, expected):
        np.testing.assert_allclose(a, [e] * len(a), rtol=1e-6)
    assert expected[0] == pytest.approx(0.96650, abs=1e-4)


def test_beta_zero_is_grpo_and_beta_one_is_the_process_reward():
    grpo = group_advantages("grpo", _group())
    for a, b in zip(group_advantages("reasonflux", _group(), beta=0.0), grpo):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # β = 1, α = 0: r = r̂ = mean step score (the failed sample keeps its outcome, 0)
    assert reasonflux_rewards(_group(), alpha=0.0, beta=1.0) == pytest.approx([0.75, 0.2, 0.6, 0.0])


def test_default_beta_is_reasonflux_value():
    # β = 0.75 (ReasonFlux-PRM's setting): r = 0.25 * 1 + 0.75 * 0.75 for the first sample.
    assert reasonflux_rewards(_group(), alpha=1.0, beta=0.75)[0] == pytest.approx(0.8125)
    assert load_config(overrides=["algorithm.name=reasonflux"]).algorithm.beta == 0.75


def test_training_path_passes_beta_and_the_trajectory_score():
    rows = [{"prompt_id": "p", "group_id": "g", "sample_index": i, "policy_version": 0,
             "prompt_token_ids": [1], "response_token_ids": [5] * s.num_tokens,
             "token_char_offsets": s.token_char_offsets, "rollout_logprobs": [-1.0] * s.num_tokens,
             "outcome_correct": s.outcome_correct, "thought_spans": [], "thought_labels": [],
             "step_spans": [list(x) for x in s.step_spans], "step_scores": s.step_scores,
             "trajectory_score": s.trajectory_score} for i, s in enumerate(_group())]
    got = group_experience(rows, "reasonflux", alpha=0.5, beta=0.5)
    want = group_advantages("reasonflux", _group(), alpha=0.5, beta=0.5)
    for row, a in zip(got, want):
        np.testing.assert_allclose(row["advantages"], a, rtol=1e-6)
    cfg = load_config(overrides=["algorithm.name=reasonflux", "algorithm.beta=0.3"])
    assert cfg.algorithm.beta == 0.3
