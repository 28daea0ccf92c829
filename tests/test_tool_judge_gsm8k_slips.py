"""The tool judge on GSM8K reference solutions with one stated result changed.

A stated result is the number after `=` that closes a computation written out in the prose
(`16 - 3 - 4 = <<16-3-4=9>>9 duck eggs`); results that only the calculator note computes
(`She has <<16-3-4=9>>9 eggs`) state nothing to check once the notes are gone. One such result
per solution is changed, so the wrong step is known by construction, and the judge is scored
with ProcessBench's metric: on the changed solutions, the first flagged step must be the
changed one; on the intact ones, nothing may be flagged. Model outputs carry no calculator
notes, so the notes are stripped; with them kept (and changed too) the check is easier.
"""
import ast
import json
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

from reward_service.judges import get_judge
from reward_service.processbench import metrics
from reward_service.steps import split_lines
from reward_service.thoughts import first_error_index

# The rows of the GSM8K test split whose id is a multiple of 3 (OpenAI grade-school-math, MIT),
# with their id and reference solution (`answer`, calculator notes and "#### N" included).
GSM8K = Path(__file__).resolve().parent / "data" / "gsm8k_test_every3rd.jsonl"
NOTE = re.compile(r"<<[^<>\n]*>>")
RESULT = re.compile(r"=[ \t]*\$?[ \t]*<<([^<>\n=]*)=([^<>\n=]*)>>(\d[\d,]*(?:\.\d+)?)")
# The prose before a result states its computation: two numbers with an operator between them
# (and perhaps words: "2 cats * 4 legs/cat").
COMPUTATION = re.compile(r"\d[^=\d]*?(?:[-+*/×÷–−]|\sx\s|\\times)[^=\d]*?\d")


def _exact(expr: str) -> Fraction | None:
    """The value of a calculator note's arithmetic, or None if it is not plain arithmetic."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(ast.get_source_segment(src, node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(ast.dump(node))
    src = expr.replace(",", "").strip()
    try:
        return value(ast.parse(src, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError):
        return None


OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
       ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def stated_results(solution: str) -> list[re.Match]:
    """The results a solution states after a computation written out in its prose."""
    found = []
    for m in RESULT.finditer(solution):
        shown = Fraction(m.group(3).replace(",", ""))
        if _exact(m.group(1)) is None or _exact(m.group(2)) != shown:
            continue  # not plain arithmetic, or a note whose result is not the number shown
        line_start = solution.rfind("\n", 0, m.start()) + 1
        prose = NOTE.sub("", solution[line_start:m.start()]).rsplit("=", 1)[-1]
        if COMPUTATION.search(prose):
            found.append(m)
    return found


def _changed(shown: str, exact: bool, rng: random.Random) -> str:
    """Another number in the format of `shown`, off by one or more units of its last digit
    (by two or more where `shown` is rounded, so the change is never a rounding)."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    unit = Fraction(1, 10 ** decimals)
    old = Fraction(shown.replace(",", ""))
    new = old + rng.choice([1, 2, 10] if exact else [2, 10]) * rng.choice([-1, 1]) * unit
    if new <= 0:
        new = 2 * old + unit
    return f"{float(new):,.{decimals}f}" if "," in shown else f"{float(new):.{decimals}f}"


def perturb(solution: str, rng: random.Random, keep_notes: bool) -> tuple[str, int] | None:
    """The solution with one stated result changed, and the index of the changed step."""
    results = stated_results(solution)
    if not results:
        return None
    m = rng.choice(results)
    exact = _exact(m.group(1)) == Fraction(m.group(3).replace(",", ""))
    new = _changed(m.group(3), exact, rng)
    note_start = solution.index("<<", m.start())
    text = (solution[:note_start] + f"<<{m.group(1)}={new.replace(',', '')}>>" + new
            + solution[m.end():])
    position = note_start
    if not keep_notes:
        text, position = NOTE.sub("", text), len(NOTE.sub("", solution[:note_start]))
    step = next(k for k, (a, b) in enumerate(split_lines(text)) if a <= position < b)
    return text, step


def first_flagged(judge, text: str) -> int:
    return first_error_index(judge.judge_steps("", text, split_lines(text), True, None).scores)


def measure(rows: list[dict], keep_notes: bool, seed: int = 0) -> dict:
    """ProcessBench metrics of the tool judge on the intact and the changed solutions."""
    judge, rng = get_judge("tool"), random.Random(seed)
    predicted, labels = [], []
    for row in rows:
        intact = row["answer"] if keep_notes else NOTE.sub("", row["answer"])
        predicted.append(first_flagged(judge, intact))
        labels.append(-1)
        changed = perturb(row["answer"], rng, keep_notes)
        if changed is not None:
            predicted.append(first_flagged(judge, changed[0]))
            labels.append(changed[1])
    return metrics(predicted, labels)


@pytest.mark.parametrize("keep_notes, found", [(False, 0.95), (True, 0.99)],
                         ids=["notes-stripped", "notes-kept"])
def test_a_changed_result_is_found_at_its_step_and_intact_solutions_pass(keep_notes, found):
    rows = [json.loads(line) for line in GSM8K.open()]
    result = measure(rows, keep_notes)
    assert result["n"] - len(rows) >= 300  # changed solutions: most rows state a result
    assert result["acc_erroneous"] >= found, result
    assert result["acc_correct"] >= 0.98, result
