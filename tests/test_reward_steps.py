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
