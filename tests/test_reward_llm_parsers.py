"""Parsers of the generative judges on recorded good and malformed replies, and the score
fusion that follows them; the LLM segmenter's quote alignment."""
from __future__ import annotations

import pytest

from reward_service.judges import self_judge, tpgrpo
from reward_service.segmenter import align, parse_quotes
from reward_service.steps import get_splitter
from reward_service.thoughts import label_steps

GARBAGE = ["", "The solution looks fine to me.", "~Q\x02Z_*Z$qq d[oLPNZS}\x1b",
           "REFLECTION: WRONG", "MATCH 1", "\\boxed{", "none of the steps are wrong"]


@pytest.mark.parametrize("reply, expected", [
    ("Looking at the reflections.\nREFLECTION 2: WRONG 0-0; DEPENDENT 1\n", {0, 1}),
    ("**REFLECTION 4**: WRONG 1 - 2; DEPENDENT none", {1, 2}),
    ("REFLECTION 2: WRONG 0; DEPENDENT none\nREFLECTION 5: WRONG 3-4; DEPENDENT 6, 7", {0, 3, 4}),
    ("reflection 3: wrong 1 to 2", {1, 2}),
    ("REFLECTION 2: WRONG 0-99; DEPENDENT 7, 2", {0, 1, 3, 4, 5}),  # clipped; never the reflection
    ("NONE", set()),
    ("After checking: \n None. \n", set()),
])
def test_tpgrpo_correct_answer_replies(reply, expected):
    assert tpgrpo.parse_correct(reply, num_steps=6) == expected


@pytest.mark.parametrize("reply, expected", [
    ("MATCHES: 1, 2", {1, 2}),
    ("Steps 3 and 4 compute the wrong answer.\nMatches: 3, 4.", {3, 4}),
    ("MATCHES 0-2", {0, 1, 2}),
    ("MATCHES: none", set()),
    ("MATCHES: 9, 1", {1}),
])
def test_tpgrpo_wrong_answer_replies(reply, expected):
    assert tpgrpo.parse_wrong(reply, num_steps=6) == expected


@pytest.mark.parametrize("reply", GARBAGE)
def test_tpgrpo_malformed_replies_are_unreadable_not_errors(reply):
    assert tpgrpo.parse_correct(reply, 4) is None
    assert tpgrpo.parse_wrong(reply, 4) is None


def test_tpgrpo_huge_numbers_are_ignored_quickly():
    assert tpgrpo.parse_correct("REFLECTION 1: WRONG " + "9" * 5000, 4) == set()
    assert tpgrpo.parse_wrong("MATCHES: " + "7" * 5000, 4) == set()


def test_tpgrpo_fusion_is_a_vote_and_labels_follow_scores():
    scores, labels = tpgrpo.fuse([{0}, {0, 1}, set()], 3, outcome_correct=True)
    assert scores == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert labels == ["incorrect", "correct", "correct"]
    scores, labels = tpgrpo.fuse([{1}, {1}, {0}], 3, outcome_correct=False)
    assert scores == pytest.approx([0.5, 1 / 3, 0.5])  # unflagged = uncertain, never "correct"
    assert labels == ["uncertain", "incorrect", "uncertain"]


def test_tpgrpo_fallback_reads_the_intrinsic_signals_by_rule():
    steps = ["2 + 3 = 6.", "So 6 * 2 = 12.", "Wait, 2 + 3 = 5, not 6.", "5 * 2 = 10."]
    # The reflection restates step 0's claim: the interval 0..1 it corrects, not step 1 alone.
    assert tpgrpo.fallback_flags(steps, True, "10") == {0, 1}
    wrong = ["2 + 3 = 6.", "6 * 2 = 12.", "The answer is \\boxed{12}."]
    assert tpgrpo.fallback_flags(wrong, False, "12") == {1, 2}


FALLBACK_CASES = [
    (["a = 3 + 4 = 8.", "b = a * 2 = 16.", "Wait, 3 + 4 = 7.", "b = 14.", "\\boxed{14}"], True, "14"),
    (["x = 5.", "y = x + 1 = 6.", "z = y * 2 = 12.", "Hold on, y = x + 2 = 7.", "z = 14.",
      "So \\boxed{14}"], True, "14"),
    (["12 + 7 = 19", "19 * 3 = 56", "Wait, 19 * 3 = 57.", "57 - 5 = 52", "Hmm, wait, 57 - 5 = 52 indeed.",
      "The answer is \\boxed{52}"], True, "52"),
    (["Wait, let me start over.", "2 * 3 = 6", "\\boxed{6}"], True, "6"),
    (["1 + 1 = 2", "2 + 2 = 4", "\\boxed{4}"], True, "4"),
    (["1 + 1 = 3", "3 + 2 = 5", "\\boxed{5}"], False, "5"),
    (["1 + 1 = 2", "Wait, I made a mistake somewhere.", "2 + 2 = 5", "so 5"], False, "5"),
    (["We need the total.", "It is 40 minutes."], False, None),
    (["10 / 2 = 5", "5 + 1 = 6", "Actually, 10 / 2 = 4.", "4 + 1 = 5", "\\boxed{5}"], True, "5"),
]


@pytest.mark.parametrize("texts, correct, extracted", FALLBACK_CASES)
def test_tpgrpo_fallback_scores_agree_with_the_labels_the_rules_give(texts, correct, extracted):
    """A sample judged by the fallback gets exactly the labels the rules give on their own, and
    a step scores < 0.5 exactly where it is labelled incorrect."""
    flags = tpgrpo.fallback_flags(texts, correct, extracted)
    scores, labels = tpgrpo.fuse([flags], len(texts), correct)
    by_rule = label_steps([1.0] * len(texts), correct, texts, extracted)
    assert label_steps(scores, correct, texts, extracted, labels) == by_rule
    assert [s < 0.5 for s in scores] == [label == "incorrect" for label in by_rule]


@pytest.mark.parametrize("reply, expected", [
    ("Paragraph 1 multiplies wrongly, so the earliest error is 1.\n\n\\boxed{1}", 1),
    ("All paragraphs are right. \\boxed{-1}", -1),
    ("\\boxed{ 0 }", 0),
    ("\\boxed{\\text{2}}", 2),
    ("First I thought \\boxed{2}, but it is \\boxed{0}.", 0),  # the last box decides
    ("\\boxed{7}", None),  # out of range for 3 paragraphs
    ("\\boxed{1.5}", None),
    ("\\boxed{-2}", None),
    ("\\boxed{" + "9" * 5000 + "}", None),
] + [(g, None) for g in GARBAGE])
def test_self_critic_index(reply, expected):
    assert self_judge.parse_index(reply, num_steps=3) == expected


def test_segmenter_quotes_and_alignment():
    text = ("Janet has 16 eggs.\nShe eats  three for\nbreakfast, so 16 - 3 = 13.\n\n"
            "Then 13 * 2 = 26 dollars.")
    reply = ('Here are the steps:\n1. "Janet has 16 eggs"\n2. She eats three for breakfast...\n'
             "Step 3: Then 13 * 2 = 26\n4. a\n5. not in the text at all\n")
    quotes = parse_quotes(reply)
    assert quotes[1:4] == ["Janet has 16 eggs", "She eats three for breakfast", "Then 13 * 2 = 26"]
    starts, found = align(text, quotes)
    assert found == 3  # "a" is too short to trust, the last quote is absent
    assert starts == [0, text.index("She"), text.index("Then")]


def test_alignment_is_in_order_and_at_word_starts():
    text = "x = 2. Then x + 1 = 3. Then x + 2 = 4."
    starts, found = align(text, ["Then x + 2 = 4", "Then x + 1 = 3"])
    assert (starts, found) == ([text.index("Then x + 2")], 1)  # the second quote lies before
    assert align("prefixThen more words", ["Then more words"]) == ([], 0)


def test_splitter_registry():
    with pytest.raises(ValueError, match="takes no options"):
        get_splitter("lines", model="x")
    with pytest.raises(ValueError, match="exactly one of"):
        get_splitter("llm")
    with pytest.raises(ValueError, match="llm"):
        get_splitter("nope")
