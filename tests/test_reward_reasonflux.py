"""The ReasonFlux blend r = (1-β)·r_out + β·r̂, standardized in the group: values by hand, and a
failed judging never ranks a sample above the judged samples of its outcome."""
import math
import random

import numpy as np
import pytest

from cluster.experience import group_experience
from core.config import load_config
from reward_service.advantages import GroupSample, group_advantages, reasonflux_rewards


def _s(correct, n, scores=(), trajectory=None):
    offsets = list(range(0, 4 * n, 4))
    spans = [(4 * i, 4 * i + 4) for i in range(len(scores))]
    return GroupSample(correct, n, offsets, "abcd" * max(n, len(scores)), step_spans=spans,
                       step_scores=list(scores), trajectory_score=trajectory)


def _group():
    return [
        _s(True, 3, [1.0, 0.5]),
        _s(False, 2, [0.2]),
        _s(True, 2, [0.9, 0.3], trajectory=0.4),
        _s(False, 2),  # judging failed: takes the lowest r̂ of the judged wrong samples, 0.2
    ]


def test_blend_by_hand():
    # r̂ = [0.75, 0.2, 0.6 + 0.5 * 0.4 = 0.8, 0.2]; r = 0.5 * r_out + 0.5 * r̂
    rewards = reasonflux_rewards(_group(), alpha=0.5, beta=0.5)
    np.testing.assert_allclose(rewards, [0.875, 0.1, 0.9, 0.1], rtol=1e-12)
    # mean 1.975 / 4 = 0.49375; population variance 0.62046875 / 4 = 0.1551171875
    std = math.sqrt(0.1551171875) + 1e-6
    expected = [(r - 0.49375) / std for r in (0.875, 0.1, 0.9, 0.1)]
    adv = group_advantages("reasonflux", _group(), alpha=0.5, beta=0.5)
    assert [a.shape for a in adv] == [(3,), (2,), (2,), (2,)]
    for a, e in zip(adv, expected):
        np.testing.assert_allclose(a, [e] * len(a), rtol=1e-6)
    assert expected[0] == pytest.approx(0.96801, abs=1e-4)


def test_beta_zero_is_grpo_and_beta_one_is_the_process_reward():
    grpo = group_advantages("grpo", _group())
    for a, b in zip(group_advantages("reasonflux", _group(), beta=0.0), grpo):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # β = 1, α = 0: r = r̂ = mean step score
    assert reasonflux_rewards(_group(), alpha=0.0, beta=1.0) == pytest.approx([0.75, 0.2, 0.6, 0.2])


def test_failed_judging_takes_the_lowest_judged_peer_or_zero():
    group = [_s(True, 1), _s(True, 1, [0.9]), _s(True, 1, [0.3]), _s(False, 1), _s(False, 1)]
    # correct failed: min(0.9, 0.3) = 0.3; no judged wrong sample: 0
    assert reasonflux_rewards(group, alpha=1.0, beta=1.0) == pytest.approx([0.3, 0.9, 0.3, 0, 0])
    # nobody judged: every r̂ is 0, so the advantages are GRPO's (up to the ε in the std)
    nobody = [_s(True, 2), _s(False, 2), _s(False, 1)]
    for a, b in zip(group_advantages("reasonflux", nobody), group_advantages("grpo", nobody)):
        np.testing.assert_allclose(a, b, rtol=1e-4)


def test_a_failed_judging_never_ranks_above_judged_samples_of_its_outcome():
    rng = random.Random(0)
    for _ in range(2000):
        group = []
        for _ in range(rng.randint(1, 8)):
            correct = rng.random() < 0.5
            if rng.random() < 0.3:
                group.append(_s(correct, 2))
                continue
            scores = [rng.choice([0.0, 1.0, rng.random()]) for _ in range(rng.randint(1, 5))]
            group.append(_s(correct, 2, scores, rng.choice([None, rng.random()])))
        alpha, beta = rng.uniform(0, 3), rng.random()
        rewards = reasonflux_rewards(group, alpha, beta)
        adv = [a[0] for a in group_advantages("reasonflux", group, alpha=alpha, beta=beta)]
        for i, s in enumerate(group):
            if s.step_scores:
                continue
            for j, t in enumerate(group):
                if t.step_scores and t.outcome_correct == s.outcome_correct:
                    assert rewards[i] <= rewards[j] + 1e-12
                    assert adv[i] <= adv[j] + 1e-6


def test_default_beta_is_reasonflux_value():
    # β = 0.75 (ReasonFlux-PRM's setting): r = 0.25 * 1 + 0.75 * 0.75 for the first sample.
    assert reasonflux_rewards(_group(), alpha=1.0, beta=0.75)[0] == pytest.approx(0.8125)
    assert load_config(overrides=["algorithm.name=reasonflux"]).algorithm.beta == 0.75


def test_training_path_passes_beta_and_the_trajectory_score():
    rows = [{"prompt_id": "p", "group_id": "g", "sample_index": i, "policy_version": 0,
             "prompt_token_ids": [1], "response_token_ids": [5] * s.num_tokens,
             "response_text": s.response_text,
             "token_char_offsets": s.token_char_offsets, "rollout_logprobs": [-1.0] * s.num_tokens,
             "outcome_correct": s.outcome_correct, "thought_spans": [], "thought_labels": [],
             "step_spans": [list(x) for x in s.step_spans], "step_scores": s.step_scores,
             "step_labels": [], "trajectory_score": s.trajectory_score}
            for i, s in enumerate(_group())]
    got = group_experience(rows, "reasonflux", alpha=0.5, beta=0.5)
    want = group_advantages("reasonflux", _group(), alpha=0.5, beta=0.5)
    for row, a in zip(got, want):
        np.testing.assert_allclose(row["advantages"], a, rtol=1e-6)
    assert [row["reward"] for row in got] == pytest.approx([0.875, 0.1, 0.9, 0.1])
    cfg = load_config(overrides=["algorithm.name=reasonflux", "algorithm.beta=0.3"])
    assert cfg.algorithm.beta == 0.3
