"""The grader against plain math-verify, `verify(parse(gold), parse(response))` with defaults,
on ~2,400 distinct, varied (gold, response) pairs built from the committed MATH-500 and GSM8K
answers (tests/grading_pairs.py). The grader may be right where plain math-verify is wrong,
never the reverse, except for the pairs listed in EXCEPTIONS (each with its reason; README
"Grading").
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from grading_pairs import PLAIN_MISREADS, agreement_pairs, plain_verdicts

from reward_service.answers import stated_candidate
from reward_service.grading import GradingPool, settle_in_process

ROOT = Path(__file__).resolve().parents[1]
# (gold, response) where the grader says wrong and plain math-verify says right, and why.
EXCEPTIONS: dict[tuple[str, str], str] = {
    PLAIN_MISREADS[0]: "plain reads the gold `x=5` as the number 5, which -x=5 (x = -5) also gives",
    PLAIN_MISREADS[1]: "plain reads the gold `1,-2` as 1; the answer misses the root -2",
    PLAIN_MISREADS[2]: "plain reads the gold point as its last number, -13, which the negated point also ends with",
    PLAIN_MISREADS[3]: "plain reads the gold interval as the number 2, which the negated interval also holds",
}


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return agreement_pairs()


@pytest.fixture(scope="module")
def plain(pairs) -> list[bool]:
    """Plain math-verify's verdicts (its own 5 s timeouts), in a pool of 2 processes."""
    return plain_verdicts(pairs)


def _agreement(pairs, plain, graded, label) -> set[tuple[str, str]]:
    """Prints the agreement both ways; returns the pairs the grader gets wrong and plain right.
    Where the grader is right and plain is not, the answer is a right one (no `wrong_*` kind)."""
    worse = {(p["gold"], p["response"]) for p, a, b in zip(pairs, plain, graded) if a and not b}
    better = Counter(p["kind"] for p, a, b in zip(pairs, plain, graded) if b and not a)
    right, graded_right, more = sum(plain), sum(graded), sum(better.values())
    kept = (right - len(worse)) / max(right, 1)
    shared = (graded_right - more) / max(graded_right, 1)
    print(f"\n{label}: {len(pairs)} pairs; plain math-verify right on {right}, grader on "
          f"{graded_right}; of plain's right the grader keeps {kept:.4f} ({len(worse)} lost); "
          f"of the grader's right plain has {shared:.4f} ({more} more, by kind: {dict(better)})")
    assert not [kind for kind in better if kind.startswith("wrong")], better
    return worse


def test_the_set_is_large_and_varied(pairs, plain):
    kinds = Counter(p["kind"] for p in pairs)
    assert len(pairs) >= 2000 and len(kinds) >= 30
    assert 0.3 < sum(plain) / len(pairs) < 0.7  # right and wrong answers both well represented


def test_cli_grades_never_worse_than_plain_math_verify(tmp_path, pairs, plain):
    src, dst = tmp_path / "pairs.jsonl", tmp_path / "graded.jsonl"
    src.write_text("".join(json.dumps({"id": i, "response": p["response"], "answer": p["gold"]}) + "\n"
                           for i, p in enumerate(pairs)))
    # A generous limit: a loaded test machine must not turn slow rows into timeouts.
    out = subprocess.run([sys.executable, "-m", "reward_service", "grade", str(src), str(dst),
                          "--workers", "2", "--timeout", "120"],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(pairs)))  # row for row
    assert [r["error"] for r in rows if r["error"] not in (None, "gold_unparsable")] == []
    worse = _agreement(pairs, plain, [r["correct"] for r in rows], "grade CLI")
    assert worse == set(EXCEPTIONS)


def test_in_process_grades_equal_plain_math_verify(pairs, plain):
    settled = [(p, v, settle_in_process(p["response"], p["gold"])) for p, v in zip(pairs, plain)]
    settled = [(p, v, g) for p, v, g in settled if g is not None]
    assert len(settled) >= 500  # GSM8K-style integers and integer boxes never reach a worker
    assert [(p["gold"], p["response"]) for p, v, g in settled if g.correct != v] == []


def test_required_answer_loses_only_unstated_answers(pairs, plain):
    """RL's grading: right only where the response states its answer (answers.stated_candidate)."""
    with GradingPool(num_workers=2, timeout_s=120, require_answer=True) as pool:
        grades = pool.grade_many([(p["response"], p["gold"]) for p in pairs])
    worse = _agreement(pairs, plain, [g.correct for g in grades], "require_answer")
    unstated = [stated_candidate(p["response"]) is None for p in pairs]
    assert 100 < sum(unstated) < len(pairs) / 4  # number soup, bare display math
    assert not any(g.correct for g, u in zip(grades, unstated) if u)
    assert worse - set(EXCEPTIONS) <= {(p["gold"], p["response"]) for p, u in zip(pairs, unstated) if u}
