import logging

import pytest
from grading_pairs import agreement_pairs

from reward_service.answers import (SCAN_CHARS, extract_answer, extraction_configs,
                                    first_candidate, gold_readings, stated_candidate)
from reward_service.grading_worker import read_prediction


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Every other distinct response and gold of the agreement set short enough to be read
    in-process (~1,300 texts)."""
    pairs = agreement_pairs()
    found = {t for p in pairs for t in (p["response"], p["gold"]) if len(t) <= SCAN_CHARS}
    return sorted(found)[::2]


def _parse(text: str, anchored: bool = False) -> list:
    from math_verify import parse
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return parse(text, list(extraction_configs(anchored)))


def test_first_candidate_is_what_math_verify_reads(texts):
    """On ~1,300 varied texts: the same text as math-verify's match, and where it is a plain
    integer, math-verify's value is that integer."""
    from sympy import Integer
    integers = 0
    for text in texts:
        parsed, candidate = _parse(text), first_candidate(text)
        if candidate is None:
            assert parsed == [], text
            continue
        if parsed and isinstance(parsed[-1], str) and candidate.text:
            assert candidate.text == parsed[-1], text
        if candidate.integer is not None:
            integers += 1
            assert parsed[0] == Integer(candidate.integer), text
    assert len(texts) > 1200 and integers > 500


def test_extract_answer_is_what_the_grader_reads_as_a_stated_answer(texts):
    """`stated_candidate` (in-process) against the worker's math-verify parse under
    `require_answer`: the same texts state an answer, and it is the same answer."""
    stated = 0
    for text in texts:
        parsed = read_prediction(text, require_answer=True)
        if stated_candidate(text) is None:
            assert parsed == [] and extract_answer(text) is None, text
            continue
        stated += 1
        if parsed and isinstance(parsed[-1], str):
            assert extract_answer(text) == parsed[-1], text
    assert stated > 1000


def test_the_shapes_models_write():
    assert extract_answer("The final answer is $14{,}916$") == "14,916"
    assert extract_answer("First \\boxed{255}.\nThe final answer is $10,455$") == "10,455"
    assert extract_answer("Final Answer: She buys 12 apples, so the answer is twelve.") == "12"
    assert extract_answer("So $x = \\boxed{1}$ or $x = \\boxed{-2}$.") == "1 and -2"
    assert extract_answer("She makes 9 * 2 = $18.\n#### 1,234") == "1234"
    assert extract_answer("the answer is $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_answer("The answer is 3. Wait, no: the answer is 4.") == "4"


def test_no_stated_answer_is_none():
    assert extract_answer("I think 42 is nice") is None
    assert extract_answer("7 3 12 9 14 2 + 5") is None
    assert extract_answer("We conclude\n$$\n\\frac{1}{2}\n$$") is None
    assert extract_answer("") is None
    assert stated_candidate("She has 18.\n#### 18").integer == 18
    assert stated_candidate("so \\boxed{18}").integer == 18
    assert stated_candidate("She has 18 apples.") is None


def test_gold_readings():
    assert gold_readings("2\\sqrt{5}") == ["\\boxed{2\\sqrt{5}}", "2\\sqrt{5}"]
    assert gold_readings("(6,31,-1)")[0] == "\\boxed{(6,31,-1)}"
    for written in ["1,22", "1,000", "18", "-3.5", "18 dollars", "5\\%", "$18", "\\boxed{5}",
                    "$\\frac{1}{2}$", "Work it out.\n#### 72"]:
        assert gold_readings(written) == [written]
    assert gold_readings("\\$18.90")[0] == "\\boxed{\\$18.90}"  # `\$` is a dollar sign, not math


def test_long_adversarial_text_is_read_from_its_end():
    # math-verify's patterns take time quadratic in the length of such text; only the last
    # SCAN_CHARS characters are read (pytest's timeout guards this test).
    assert extract_answer("\\( a " * 200_000 + "so \\boxed{5}") == "5"
    assert extract_answer("{" * 200_000 + "\\boxed{" + "{" * 100_000) is None
