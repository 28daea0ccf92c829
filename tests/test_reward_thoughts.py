import random

import pytest

from reward_service.steps import is_reflection
from reward_service.thoughts import (CORRECT, INCORRECT, UNCERTAIN, first_error_index,
                                     label_solution, label_steps, merge_thoughts, states_answer)

C, I, U = CORRECT, INCORRECT, UNCERTAIN


def _solution(texts, scores, correct, extracted=None, judge_labels=None):
    spans, pos = [], 0
    for t in texts:
        spans.append((pos, pos + len(t)))
        pos += len(t)
    return label_solution(spans, texts, scores, correct, extracted, judge_labels)


def test_correct_solution_labels_follow_scores():
    assert label_steps([1.0, 0.0, 1.0], True, ["a", "b", "c"], "5") == [C, I, C]


def test_reflection_step_is_correct_and_corrected_step_stays_incorrect():
    texts = ["3 * 4 = 13\n", "Wait, 3 * 4 = 13 is wrong; 3 * 4 = 12.\n", "So 12 + 1 = 13\n"]
    assert label_steps([0.0, 0.0, 1.0], True, texts, "13") == [I, C, C]
    assert label_steps([0.0, 0.0], True, ["x\n", "I made a mistake above.\n"], None) == [I, C]


# ---- interval verification (correct solutions) -------------------------------------------------

def test_interval_from_the_restated_claim_to_the_reflection_is_incorrect():
    # the tool judge scores `8 * 2 = 16` true: it is still built on the corrected 3 + 4 = 8
    texts = ["3 + 4 = 8\n", "8 * 2 = 16\n", "Wait, 3 + 4 = 7\n", "7 * 2 = 14\n"]
    for scores in ([0.0, 1.0, 1.0, 1.0], [1.0] * 4, [0.0, 1.0, 0.0, 1.0]):
        assert label_steps(scores, True, texts, "14") == [I, I, C, C], scores
    got = _solution(texts, [0.0, 1.0, 1.0, 1.0], True, "14")
    assert got.step_labels == [I, I, C, C]
    assert got.thought_spans == [(0, 21), (21, 48)] and got.thought_labels == [I, C]


def test_interval_starts_at_the_step_whose_claim_is_restated_not_a_later_one():
    texts = ["Let the sum be 3 + 4 = 8.\n", "Then 8 * 2 = 16.\n", "And 16 - 1 = 15.\n",
             "Hmm, wait, 3 + 4 = 7.\n", "So 7 * 2 = 14 and 14 - 1 = 13.\n"]
    assert label_steps([1.0] * 5, True, texts, "13") == [I, I, I, C, C]
    # a restatement with the same value confirms; it does not pick that step
    texts = ["3 + 4 = 7\n", "7 * 2 = 15\n", "Wait, 3 + 4 = 7, yes.\n", "7 * 2 = 14\n"]
    assert label_steps([1.0, 0.0, 1.0, 1.0], True, texts, "14") == [C, I, C, C]


def test_without_a_restated_claim_the_latest_low_scored_step_is_the_start():
    texts = ["a = 5\n", "b = 7\n", "c = 9\n", "d = 1\n", "Wait, that is off.\n", "e = 3\n"]
    assert label_steps([1.0, 0.2, 1.0, 1.0, 1.0, 1.0], True, texts, "3") == [C, I, I, I, C, C]
    # nothing scored low: the step just before the reflection
    assert label_steps([1.0] * 6, True, texts, "3") == [C, C, C, I, C, C]


def test_a_reflection_only_looks_back_to_the_previous_one():
    texts = ["3 + 4 = 8\n", "Wait, 3 + 4 = 7\n", "7 * 2 = 14\n", "10 - 1 = 9\n",
             "Hold on, 10 - 1 = 9 is fine\n", "so 9\n"]
    got = label_steps([0.0, 1.0, 1.0, 1.0, 1.0, 1.0], True, texts, "9")
    assert got == [I, C, C, I, C, C]


def test_reflections_are_correct_even_inside_a_later_interval_and_back_to_back():
    texts = ["2 + 2 = 5\n", "Wait, no.\n", "Wait, 2 + 2 = 4\n", "4 * 3 = 12\n"]
    assert label_steps([0.0, 1.0, 1.0, 1.0], True, texts, "12") == [I, C, C, C]
    assert label_steps([1.0], True, ["Wait, just 4.\n"], "4") == [C]


def test_judge_labels_are_the_base_and_the_interval_rule_still_holds():
    texts = ["3 + 4 = 8\n", "8 * 2 = 16\n", "Wait, 3 + 4 = 7\n", "7 * 2 = 14\n"]
    # an LLM judge that flagged only the first step; a reflection it labelled incorrect
    got = _solution(texts, [0.0, 1.0, 0.0, 1.0], True, "14", judge_labels=[I, C, I, C])
    assert got.step_labels == [I, I, C, C]
    # an LLM judge that flagged a step no rule would have: kept
    got = _solution(texts, [1.0, 1.0, 1.0, 0.0], True, "14", judge_labels=[C, C, C, I])
    assert got.step_labels == [I, I, C, I]
    with pytest.raises(ValueError, match="step 1.*'maybe'"):
        _solution(texts, [1.0] * 4, True, "14", judge_labels=[C, "maybe", C, C])
    with pytest.raises(ValueError, match="3 labels for 4 steps"):
        _solution(texts, [1.0] * 4, True, "14", judge_labels=[C, C, C])


# ---- wrong solutions --------------------------------------------------------------------------

def test_wrong_solution_marks_steps_that_state_the_wrong_answer():
    texts = ["There are 12 + 3 = 15 cats.\n", "Half of them is 7.\n", "So 115 cats in all.\n",
             "The answer is 18.\n"]
    assert label_steps([1.0, 1.0, 1.0, 1.0], False, texts, "18") == [U, U, U, I]
    # whole numbers, not substrings: 180 and 1.8 are not 18
    assert not states_answer("we get 180 apples and 1.85 kg", "18")
    assert states_answer("4 * 4.5 = $18.00 in total, so", "18")


def test_non_numeric_wrong_answer_matches_its_box():
    assert states_answer("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")
    assert not states_answer("so \\boxed{\\frac{1}{3}}", "\\frac{1}{2}")


def test_a_wrong_solutions_final_thought_is_always_blamed():
    # truncated: nothing states an answer, nothing scored low
    texts = ["12 + 7 = 19\n", "19 * 3 = 57\n", "57 - 5 = "]
    got = _solution(texts, [1.0, 1.0, 1.0], False, None)
    assert got.thought_labels == [I] and got.thought_spans == [(0, 33)]
    assert got.step_labels == [U, U, I]  # each step its own thought: the final step
    # a low-scored step earlier, then an answerless tail: the tail is the final thought
    got = _solution(["7 + 1 = 9\n", "ok\n", "so\n"], [0.0, 1.0, 1.0], False, "3")
    assert got.thought_labels == [I] and got.step_labels == [I, U, I]
    # an uncertain run before a final thought that matches the wrong answer stays uncertain
    got = _solution(["a\n", "b\n", "so 18\n"], [1.0, 1.0, 1.0], False, "18")
    assert got.thought_labels == [U, I] and got.step_labels == [U, U, I]
    # a judge's own labels get the same rule
    got = _solution(["a\n", "b\n"], [0.5, 0.5], False, None, judge_labels=[U, U])
    assert got.thought_labels == [I] and got.step_labels == [U, I]


def test_correct_solutions_have_no_final_rule():
    got = _solution(["a\n", "b\n"], [1.0, 1.0], True, "3")
    assert got.thought_labels == [C] and got.step_labels == [C, C]


def test_labels_are_well_formed_on_random_solutions():
    rng = random.Random(0)
    pool = ["3 + 4 = 8\n", "8 * 2 = 16\n", "Wait, 3 + 4 = 7\n", "7 * 2 = 14\n", "so 14\n",
            "Hmm, wait.\n", "x\n", "The answer is 12.\n", "I made a mistake.\n"]
    for _ in range(300):
        texts = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
        scores = [rng.choice([0.0, 0.3, 0.5, 1.0]) for _ in texts]
        correct = rng.random() < 0.5
        got = _solution(texts, scores, correct, "12")
        allowed = {C, I} if correct else {U, I}
        assert set(got.step_labels) <= allowed and set(got.thought_labels) <= allowed
        assert got.thought_spans[0][0] == 0 and got.thought_spans[-1][1] == sum(map(len, texts))
        assert all(a != b for a, b in zip(got.thought_labels, got.thought_labels[1:]))
        if not correct:
            assert got.step_labels[-1] == I and got.thought_labels[-1] == I
        else:
            assert all(lab == C for t, lab in zip(texts, got.step_labels) if is_reflection(t))


def test_merge_thoughts_makes_maximal_runs():
    spans = [(0, 3), (3, 5), (5, 9), (9, 10)]
    assert merge_thoughts(spans, [C, C, I, C]) == ([(0, 5), (5, 9), (9, 10)], [C, I, C])
    assert merge_thoughts([], []) == ([], [])


def test_first_error_index():
    assert first_error_index([1.0, 0.7, 0.2, 0.0]) == 2
    assert first_error_index([1.0, 0.5]) == -1
    assert first_error_index([]) == -1
