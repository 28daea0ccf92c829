import pytest

from reward_service.steps import SPLITTERS, get_splitter, split_auto, split_blank_lines, \
    split_lines, split_step_markers

TEXTS = [
    "", "x", "   \n\n", "\n\n  lead\nnext", "a\nb\n\n  c\n", "one line without newline",
    "Intro words\nStep 1: add\nStep 2. multiply\n\nStep 3: done\n",
    "p1 line\np1b\n\n\np2\n\n", "Step 1: a Step 2: b Step 3: c", "tabs\t\n\t\nend\t",
]


def _check_partition(text, spans):
    if not text:
        assert spans == []
        return
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (a, b), (c, _) in zip(spans, spans[1:]):
        assert b == c
    for i, (a, b) in enumerate(spans):
        assert a < b
        if i > 0:
            assert not text[a].isspace()  # whitespace belongs to the step before


@pytest.mark.parametrize("name", sorted(SPLITTERS))
@pytest.mark.parametrize("text", TEXTS)
def test_every_splitter_partitions_the_text(name, text):
    _check_partition(text, SPLITTERS[name](text))


def _pieces(text, spans):
    return [text[a:b] for a, b in spans]


def test_lines_attach_blank_lines_to_the_step_before():
    assert _pieces("a\nb\n\n  c\n", split_lines("a\nb\n\n  c\n")) == ["a\n", "b\n\n  ", "c\n"]


def test_blank_lines_make_paragraphs():
    t = "p1 line\np1b\n\n\np2\n\n"
    assert _pieces(t, split_blank_lines(t)) == ["p1 line\np1b\n\n\n", "p2\n\n"]


def test_step_markers_with_preamble():
    t = "Intro\nStep 1: x\n**Step 2.** y\n## Step 3: z"
    assert _pieces(t, split_step_markers(t)) == ["Intro\n", "Step 1: x\n", "**Step 2.** y\n",
                                                   "## Step 3: z"]
    assert split_step_markers("Step 1.5 is not a marker") == [(0, 24)]


def test_auto_prefers_markers_then_paragraphs_then_lines():
    markers = "Step 1: a\n\nmore\nStep 2: b"
    assert _pieces(markers, split_auto(markers)) == ["Step 1: a\n\nmore\n", "Step 2: b"]
    paragraphs = "a\nb\n\nc"
    assert _pieces(paragraphs, split_auto(paragraphs)) == ["a\nb\n\n", "c"]
    lines = "a\nb\nStep 1: c"
    assert _pieces(lines, split_auto(lines)) == ["a\n", "b\n", "Step 1: c"]


def test_unknown_splitter_names_the_known_ones():
    with pytest.raises(ValueError, match="auto"):
        get_splitter("nope")



# ---- reflections start their own step, whatever the splitter --------------------------------

REFLECTION_EXAMPLE = ("Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 56\nWait, 19 * 3 = 57.\n"
                      "Step 3: 57 - 5 = 52\nThe answer is \\boxed{52}")
REFLECTION_TEXTS = [
    REFLECTION_EXAMPLE,
    "12 + 7 = 19. 19 * 3 = 56. Wait, 19 * 3 = 57. So 57 - 5 = 52.",  # mid-line, after a sentence
    "First 12 + 7 = 19 and 19 * 3 = 56.\n\nHmm, wait, 19 * 3 = 57!\nSo 52.\n\nDone.",
    "a = 2\n  Actually, a = 3.\nb = a + 1? Hold on: b = 4.\nOh, I made a mistake above.",
    "Wait, start over.\nWAIT. Again",
    "1. 3 + 4 = 8\n2. Wait, 3 + 4 = 7\n3. 7 * 2 = 14",
]


@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_the_reflection_example_gets_its_own_step_in_every_splitter(name):
    pieces = _pieces(REFLECTION_EXAMPLE, get_splitter(name)(REFLECTION_EXAMPLE))
    assert any(p.startswith("Wait, 19 * 3 = 57.\n") for p in pieces), pieces
    assert not any("= 56" in p and "Wait" in p for p in pieces), pieces


@pytest.mark.parametrize("name", sorted(SPLITTERS))
@pytest.mark.parametrize("text", TEXTS + REFLECTION_TEXTS)
def test_reflection_cuts_keep_the_partition(name, text):
    _check_partition(text, get_splitter(name)(text))


def test_a_reflection_after_a_sentence_end_is_cut_there():
    text = REFLECTION_TEXTS[1]
    assert _pieces(text, split_lines(text)) == [
        "12 + 7 = 19. 19 * 3 = 56. ", "Wait, 19 * 3 = 57. So 57 - 5 = 52."]
    text = REFLECTION_TEXTS[3]
    assert _pieces(text, split_blank_lines(text)) == [
        "a = 2\n  ", "Actually, a = 3.\nb = a + 1? ", "Hold on: b = 4.\n",
        "Oh, I made a mistake above."]


def test_a_reflection_keeps_its_list_or_step_marker():
    text = REFLECTION_TEXTS[5]
    assert _pieces(text, split_auto(text)) == ["1. 3 + 4 = 8\n", "2. Wait, 3 + 4 = 7\n",
                                                "3. 7 * 2 = 14"]
    text = "Step 1: 3 + 4 = 8\nStep 2: Wait, 3 + 4 = 7.\nStep 3: 7 * 2 = 14"
    assert _pieces(text, split_step_markers(text)) == [
        "Step 1: 3 + 4 = 8\n", "Step 2: Wait, 3 + 4 = 7.\n", "Step 3: 7 * 2 = 14"]


def test_words_that_merely_contain_a_cue_are_not_reflections():
    text = "We await the result. Actual numbers: 3.\nHoldon is a name. So, wait"
    assert _pieces(text, split_lines(text)) == ["We await the result. Actual numbers: 3.\n",
                                                 "Holdon is a name. So, wait"]


def test_llm_segmenter_output_gets_the_same_reflection_cuts():
    class OneQuote:  # an LLM that finds a single step: everything
        def format(self, prompt):
            return prompt

        def generate(self, prompts, **kw):
            return [["1. Step 1: 12 + 7"]]

    split = get_splitter("llm", llm=OneQuote())
    assert _pieces(REFLECTION_EXAMPLE, split(REFLECTION_EXAMPLE)) == [
        "Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 56\n",
        "Wait, 19 * 3 = 57.\nStep 3: 57 - 5 = 52\nThe answer is \\boxed{52}"]
    assert split.fallbacks == 0
