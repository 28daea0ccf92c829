"""Credit-assignment metrics on cases computed by hand."""
import math

import numpy as np
import pytest

from reward_service.advantages import GroupSample
from reward_service.credit import CreditTable, credit_tables, faulty_tokens, judged_sample
from reward_service.thoughts import CORRECT, INCORRECT, UNCERTAIN
from reward_service.verdict import Verdict

# 0.25·log2(2) + 0.25·log2(2/3) + 0.5·log2(4/3): the joint [[1/4, 1/4], [0, 1/2]] and its transpose
MI_QUARTERS = 0.25 + 0.25 * math.log2(2 / 3) + 0.5 * math.log2(4 / 3)


def test_perfect_separation_gives_all_the_information():
    t = CreditTable()
    t.add(np.array([-1.0, -0.5, 0.0, 2.0]), np.array([True, True, False, False]))
    assert (t.faulty_blamed, t.sound_spared) == (1.0, 1.0)
    assert t.mutual_information == pytest.approx(1.0)
    assert t.information_share == pytest.approx(1.0)


def test_a_sign_independent_of_correctness_gives_none():
    t = CreditTable()
    t.add(np.array([-1.0, -1.0, 1.0, 1.0]), np.array([True, False, True, False]))
    assert (t.faulty_blamed, t.sound_spared) == (0.5, 0.5)
    assert t.mutual_information == pytest.approx(0.0, abs=1e-12)


def test_partial_blame_by_hand():
    # faulty tokens: one blamed, one spared; sound tokens: both spared
    t = CreditTable()
    t.add(np.array([-1.0, 0.0, 0.0, 3.0]), np.array([True, True, False, False]))
    assert (t.faulty_blamed, t.sound_spared) == (0.5, 1.0)
    assert t.mutual_information == pytest.approx(MI_QUARTERS)
    assert t.information_share == pytest.approx(MI_QUARTERS / 1.0)


def test_zero_advantage_is_spared_and_tables_accumulate():
    t = CreditTable()
    t.add(np.zeros(3), np.array([True, False, False]))
    t.add(np.array([-2.0]), np.array([True]))
    assert t.summary()["faulty_tokens"] == 2 and t.summary()["sound_tokens"] == 2
    assert t.faulty_blamed == 0.5 and t.sound_spared == 1.0


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="3 advantages but 2 token labels"):
        CreditTable().add(np.zeros(3), np.zeros(2, dtype=bool))


def test_no_faulty_tokens_leaves_the_share_undefined():
    t = CreditTable()
    t.add(np.array([1.0, -1.0]), np.array([False, False]))
    assert math.isnan(t.faulty_blamed) and math.isnan(t.information_share)
    assert t.mutual_information == 0.0


def test_whitespace_between_steps_belongs_to_the_step_before():
    text = "ab\ncd"
    sample = GroupSample(True, 5, [0, 1, 2, 3, 4], text)
    assert faulty_tokens(sample, [(3, 5)]).tolist() == [False, False, False, True, True]
    assert faulty_tokens(sample, [(0, 3)]).tolist() == [True, True, True, False, False]


def _sample(correct: bool, labels: list[str]) -> GroupSample:
    # two steps of 5 one-character tokens each
    text = "x = 1" + "y = 2"
    spans = [(0, 5), (5, 10)]
    return GroupSample(correct, 10, list(range(10)), text, thought_spans=spans, thought_labels=labels,
                       step_spans=spans, step_scores=[1.0 if lab != INCORRECT else 0.0 for lab in labels],
                       step_labels=labels)


def test_group_by_hand_tpgrpo_blames_only_the_faulty_step_grpo_the_whole_wrong_solution():
    # A right solution and a wrong one whose second step is faulty: r̂ᵒ = +1 and -1.
    # tpgrpo: wrong solution [0 (uncertain), -1 (incorrect)]; grpo: -1 on all of it.
    group = [(_sample(True, [CORRECT, CORRECT]), []),
             (_sample(False, [UNCERTAIN, INCORRECT]), [(5, 10)])]
    tables = credit_tables([group], ["tpgrpo", "grpo"])
    tp, grpo = tables["tpgrpo"], tables["grpo"]
    assert (tp.faulty_blamed, tp.sound_spared) == (1.0, 1.0)
    h_faulty = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 5 faulty tokens of 20
    assert tp.mutual_information == pytest.approx(h_faulty) and tp.information_share == pytest.approx(1.0)
    assert grpo.faulty_blamed == 1.0 and grpo.sound_spared == pytest.approx(10 / 15)
    assert grpo.mutual_information == pytest.approx(MI_QUARTERS)  # joint [[1/4, 0], [1/4, 1/2]]
    assert grpo.information_share == pytest.approx(MI_QUARTERS / h_faulty)


def test_an_all_correct_group_with_a_corrected_detour():
    # Both right: grpo gives 0 everywhere (spares the detour); tpgrpo gives -α·acc_G = -1 to it.
    group = [(_sample(True, [INCORRECT, CORRECT]), [(0, 5)]), (_sample(True, [CORRECT, CORRECT]), [])]
    tables = credit_tables([group], ["tpgrpo", "tpgrpo_static", "grpo"], alpha=1.0)
    assert tables["grpo"].faulty_blamed == 0.0 and tables["grpo"].mutual_information == 0.0
    for name in ("tpgrpo", "tpgrpo_static"):
        assert tables[name].faulty_blamed == 1.0 and tables[name].sound_spared == 1.0


def test_judged_sample_carries_the_verdict():
    v = Verdict(outcome_correct=False, step_spans=[(0, 3), (3, 5)], step_scores=[1.0, 0.0],
                step_labels=[UNCERTAIN, INCORRECT], thought_spans=[(0, 3), (3, 5)],
                thought_labels=[UNCERTAIN, INCORRECT])
    s = judged_sample(v, "ab\ncd", [0, 1, 2, 3, 4])
    assert s.num_tokens == 5 and s.thought_labels == [UNCERTAIN, INCORRECT] and not s.outcome_correct
    assert s.step_scores == [1.0, 0.0] and s.response_text == "ab\ncd"
