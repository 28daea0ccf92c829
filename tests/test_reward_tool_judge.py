import json
import random
import re
from pathlib import Path

import pytest

from reward_service.judges import get_judge, known_judges
from reward_service.judges.arithmetic import find_claims
from reward_service.steps import split_lines

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _gsm8k_rows():
    path = DATA / "gsm8k_test.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data folder not mounted)")
    return [json.loads(line) for line in path.open()]


@pytest.mark.parametrize("text, expected", [
    ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.", [True, True]),
    ("She makes 9 * 2 = $<<9*2=18>>18 every day", [True, True]),
    ("48/2 = 24 and 12 + 7 = 19", [True, True]),
    ("12 + 7 = 20", [False]),
    ("10/3 = 3.33", [True]),
    ("1.5 + 1.5 = 3.1", [False]),
    ("2.5 * 2 = 4", [False]),
    ("a = 2 * 12 = 24 - 5 = 19", [True, True]),
    ("a = 2 * 12 = 25 = 25", [False]),
    ("1,200 * 2 = 2,400 dollars", [True]),
    ("20% of 50 = 10", [True]),
    ("10/50 = 20%", [True]),
    ("\\(1/3 \\times 18 = 6\\)", [True]),
    ("\\frac{1}{2} \\cdot 4 = 3", [False]),
    ("After Friday 3 1/2 - 2 = 1 1/2 hours", [True]),
    ("The fee is $350 000 x 5/100 = $17 500.", [True]),
    ("\\sqrt{16} = 4", [True]),
])
def test_claims_are_found_and_checked(text, expected):
    assert [c.holds for c in find_claims(text)] == expected


@pytest.mark.parametrize("text", [
    "3 apples + 2 = 5", "Day 2 = 10 miles", "x = 5", "2x + 3 = 7", "- 5 + 3 = 8",
    "\\boxed{\\dfrac{5^{5^{5^{5^5}}}}{2}} = 3", "9^9^9^9 = 1", "1/0 = 3", "((((= 2", "= = =",
    "\x00\ufffd<<>>==", "0" * 5000 + " + 1 = 1",
])
def test_weird_or_unparseable_text_never_raises_nor_flags(text):
    assert all(c.holds for c in find_claims(text))


def test_step_scores():
    judge = get_judge("tool")
    text = "Step one: 48/2 = 24.\nThen 24 + 7 = 30.\nNo numbers here.\n"
    spans = split_lines(text)
    j = judge.judge_steps("p", text, spans, False, "30")
    assert j.scores == [1.0, 0.0, 1.0]
    assert "24 + 7 = 30" in j.raw


def test_unknown_judge_lists_known_names():
    with pytest.raises(ValueError, match="tool"):
        get_judge("no-such-judge")
    assert "tool" in known_judges()


def test_gsm8k_reference_solutions_are_judged_correct():
    rows = _gsm8k_rows()
    judge = get_judge("tool")
    clean = 0
    for r in rows:
        spans = split_lines(r["answer"])
        clean += min(judge.judge_steps(r["problem"], r["answer"], spans, True, None).scores) >= 0.5
    assert clean / len(rows) >= 0.98


def _corrupt(solution: str, rng: random.Random) -> tuple[str, int] | None:
    """Change the result of one calculation (note and visible number); returns the new text
    and the character position of the change."""
    found = list(re.finditer(r"<<([^>\n]*)=(\d+)>>(\d+)\b", solution))
    found = [m for m in found if m.group(2) == m.group(3)]
    if not found:
        return None
    m = rng.choice(found)
    bad = str(int(m.group(2)) + rng.choice([1, 2, 7, 10]))
    return solution[:m.start()] + f"<<{m.group(1)}={bad}>>{bad}" + solution[m.end():], m.start()


def test_a_corrupted_calculation_is_found_at_its_step():
    rows = _gsm8k_rows()
    rng = random.Random(0)
    judge = get_judge("tool")
    found = tried = 0
    for r in rng.sample(rows, 300):
        clean_spans = split_lines(r["answer"])
        if min(judge.judge_steps("", r["answer"], clean_spans, True, None).scores) < 0.5:
            continue  # one of the few references with a slip of its own
        corrupted = _corrupt(r["answer"], rng)
        if corrupted is None:
            continue
        text, position = corrupted
        spans = split_lines(text)
        step = next(k for k, (a, b) in enumerate(spans) if a <= position < b)
        scores = judge.judge_steps(r["problem"], text, spans, True, None).scores
        tried += 1
        found += next((k for k, s in enumerate(scores) if s < 0.5), -1) == step
    assert tried > 200
    assert found / tried >= 0.98
