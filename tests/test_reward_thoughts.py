from reward_service.thoughts import first_error_index, label_steps, merge_thoughts, states_answer


def test_correct_solution_labels_follow_scores():
    assert label_steps([1.0, 0.0, 1.0], True, ["a", "b", "c"], "5") == \
        ["correct", "incorrect", "correct"]


def test_reflection_step_is_correct_and_corrected_step_stays_incorrect():
    texts = ["3 * 4 = 13\n", "Wait, 3 * 4 = 13 is wrong; 3 * 4 = 12.\n", "So 12 + 1 = 13\n"]
    labels = label_steps([0.0, 0.0, 1.0], True, texts, "13")
    assert labels == ["incorrect", "correct", "correct"]
    assert label_steps([0.0, 0.0], True, ["x\n", "I made a mistake above.\n"], None) == \
        ["incorrect", "correct"]


def test_wrong_solution_marks_steps_that_state_the_wrong_answer():
    texts = ["There are 12 + 3 = 15 cats.\n", "Half of them is 7.\n", "So 115 cats in all.\n",
             "The answer is 18.\n"]
    labels = label_steps([1.0, 1.0, 1.0, 1.0], False, texts, "18")
    assert labels == ["uncertain", "uncertain", "uncertain", "incorrect"]
    # whole numbers, not substrings: 180 and 1.8 are not 18
    assert not states_answer("we get 180 apples and 1.85 kg", "18")
    assert states_answer("4 * 4.5 = $18.00 in total, so", "18")
    assert label_steps([0.0, 1.0], False, ["7 + 1 = 9\n", "ok\n"], "3") == ["incorrect", "uncertain"]


def test_non_numeric_wrong_answer_matches_its_box():
    assert states_answer("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")
    assert not states_answer("so \\boxed{\\frac{1}{3}}", "\\frac{1}{2}")


def test_merge_thoughts_makes_maximal_runs():
    spans = [(0, 3), (3, 5), (5, 9), (9, 10)]
    labels = ["correct", "correct", "incorrect", "correct"]
    assert merge_thoughts(spans, labels) == ([(0, 5), (5, 9), (9, 10)],
                                              ["correct", "incorrect", "correct"])
    assert merge_thoughts([], []) == ([], [])


def test_first_error_index():
    assert first_error_index([1.0, 0.7, 0.2, 0.0]) == 2
    assert first_error_index([1.0, 0.5]) == -1
    assert first_error_index([]) == -1
