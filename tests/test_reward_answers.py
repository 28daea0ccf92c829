from reward_service.answers import extract_answer


def test_last_boxed_with_nested_braces_wins():
    text = "first \\boxed{1} then \\boxed{\\frac{3}{\\sqrt{4}}}. The answer is 7"
    assert extract_answer(text) == "\\frac{3}{\\sqrt{4}}"


def test_unclosed_box_falls_back_to_other_forms():
    assert extract_answer("\\boxed{12 and then\n#### 5") == "5"


def test_gsm8k_hash_line():
    assert extract_answer("She makes 9 * 2 = $18.\n#### 1,234") == "1,234"


def test_answer_phrases_case_insensitive():
    assert extract_answer("So THE ANSWER IS $18.") == "$18"
    assert extract_answer("Final answer: -3.50 dollars") == "-3.50"
    assert extract_answer("the answer is $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_answer("The answer is 3/4.") == "3/4"


def test_last_phrase_wins_and_none_when_absent():
    assert extract_answer("The answer is 3. Wait, no: the answer is 4.") == "4"
    assert extract_answer("I think 42 is nice") is None
    assert extract_answer("") is None


def test_long_text_is_fast():
    import time
    text = "{" * 200_000 + "\\boxed{" + "{" * 100_000
    t0 = time.monotonic()
    extract_answer(text)
    assert time.monotonic() - t0 < 2.0
