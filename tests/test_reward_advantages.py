import numpy as np
import pytest

from reward_service.advantages import ALGORITHMS, GroupSample, group_advantages, outcome_reward

R = 0.5 / (0.5 + 1e-6)  # standardized outcome of a half-correct group


def _sample(correct, labels, offsets, num_tokens=None, scores=None):
    spans = [(10 * i, 10 * i + 10) for i in range(len(labels))]
    return GroupSample(outcome_correct=correct, num_tokens=num_tokens or len(offsets),
                       token_char_offsets=offsets, thought_spans=spans, thought_labels=labels,
                       step_spans=spans if scores is not None else [], step_scores=scores or [])


def _mixed_group():
    return [
        # correct, a detour in the middle; the last token (EOS) has no text of its own
        _sample(True, ["correct", "incorrect"], [0, 5, 10, 15], num_tokens=5),
        _sample(True, ["correct"], [0, 5]),
        _sample(False, ["uncertain", "incorrect"], [0, 10, 15]),
        _sample(False, [], [0, 4, 8]),  # judging failed: outcome reward only
    ]


def test_registry_and_outcome_reward():
    assert set(ALGORITHMS) == {"grpo", "tpgrpo", "tpgrpo_static", "step_grpo", "reasonflux"}
    assert outcome_reward(_mixed_group()) == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="grpo"):
        group_advantages("nope", _mixed_group())


def test_grpo_gives_every_token_the_standardized_outcome():
    adv = group_advantages("grpo", _mixed_group())
    assert [a.dtype for a in adv] == [np.float32] * 4
    np.testing.assert_allclose(adv[0], [R] * 5, rtol=1e-6)
    np.testing.assert_allclose(adv[2], [-R] * 3, rtol=1e-6)


def test_tpgrpo_matches_the_table_by_hand():
    alpha = 0.8
    adv = group_advantages("tpgrpo", _mixed_group(), alpha=alpha)
    acc = 0.5
    # correct: correct thought r̂, incorrect thought r̂ − α·acc (the EOS takes the last label)
    np.testing.assert_allclose(adv[0], [R, R, R - alpha * acc, R - alpha * acc, R - alpha * acc],
                               rtol=1e-6)
    np.testing.assert_allclose(adv[1], [R, R], rtol=1e-6)
    # wrong: uncertain 0, matches-the-wrong-answer r̂
    np.testing.assert_allclose(adv[2], [0.0, -R, -R], rtol=1e-6)
    np.testing.assert_allclose(adv[3], [-R] * 3, rtol=1e-6)


def test_tpgrpo_static_uses_a_constant_penalty():
    adv = group_advantages("tpgrpo_static", _mixed_group(), alpha=0.8)
    np.testing.assert_allclose(adv[0], [R, R, R - 0.8, R - 0.8, R - 0.8], rtol=1e-6)


def test_all_correct_group_still_penalizes_detours():
    group = [_sample(True, ["correct", "incorrect", "correct"], [0, 10, 20]),
             _sample(True, ["correct"], [0, 3])]
    adv = group_advantages("tpgrpo", group, alpha=1.0)
    np.testing.assert_allclose(adv[0], [0.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(adv[1], [0.0, 0.0], atol=1e-6)
    assert all(np.all(a == 0) for a in group_advantages("grpo", group))


def test_all_wrong_group_gives_no_signal():
    group = [_sample(False, ["uncertain", "incorrect"], [0, 10]), _sample(False, ["incorrect"], [0])]
    assert all(np.all(a == 0) for a in group_advantages("tpgrpo", group))


def test_step_grpo_sums_standardized_rewards_of_later_steps():
    group = [_sample(True, ["correct", "correct"], [0, 12, 15], scores=[1.0, 0.0]),
             _sample(False, ["uncertain", "uncertain"], [0, 11], scores=[1.0, 1.0])]
    flat = np.array([1.0, 0.0, 1.0, 1.0])
    z = (flat - flat.mean()) / (flat.std() + 1e-6)
    adv = group_advantages("step_grpo", group)
    np.testing.assert_allclose(adv[0], [z[0] + z[1], z[1], z[1]], rtol=1e-5)
    np.testing.assert_allclose(adv[1], [z[2] + z[3], z[3]], rtol=1e-5)
    assert z[0] + z[1] == pytest.approx(1 / np.sqrt(3) - np.sqrt(3), rel=1e-4)


def test_mismatched_lengths_are_a_clear_error():
    bad = GroupSample(True, 2, [0, 1], thought_spans=[(0, 2)], thought_labels=[])
    with pytest.raises(ValueError, match="sample 0"):
        group_advantages("tpgrpo", [bad])
