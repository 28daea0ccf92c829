"""(gold, response) pairs for checking the grader against plain math-verify.

Golds are the MATH-500 answers and GSM8K final numbers committed in tests/data/ (see its
README): all 500 MATH-500 answers with every 10th reference solution, and the GSM8K test
solutions whose id is a multiple of 9; each distinct gold once. Each gold is stated in several
ways a model writes it
(boxed, "final answer is", "Answer:", several boxes, thousands separators, units and text,
decimals for fractions, a stray earlier box, GSM8K `####` lines, whole reference solutions,
number soup) and wrongly in as many ways (a changed number, another problem's answer, a right
box overruled by a wrong final phrase). Golds are also given as `$...$`, `\\boxed{...}` and
whole solutions. Every (gold, response) pair is listed once. Deterministic: the same list every
call.

`plain_verdicts(pairs)` is plain math-verify's verdict on each pair, `verify(parse(gold),
parse(response))` with its defaults, computed in a pool of processes.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import random
import re
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

# Shapes an extractor easily reads wrong, one pair each: (gold, response).
KNOWN_SHAPES = [
    ("1,-2", "So $x = \\boxed{1}$ or $x = \\boxed{-2}$."),
    ("\\{1,-2\\}", "The roots are \\boxed{1} and \\boxed{-2}"),
    ("14916", "The final answer is $14{,}916$"),
    ("10455", "First \\boxed{255}. Adding the rest, the total is 10,455.\n"
              "The final answer is $10,455$"),
    ("12", "Final Answer: She buys 12 apples, so the answer is twelve."),
    ("1,22", "\\boxed{1,22}"),
    ("1,22", "The answer is 1.22"),
    ("$1-\\frac{1}{\\mathrm{e}}$", "\\boxed{1-\\frac{1}{e}}"),
    ("$1-\\frac{1}{\\mathrm{e}}$", "The answer is $1-\\frac{1}{\\mathrm{e}}$"),
]

# Wrong answers that plain math-verify calls right: it reads a bare gold by its number patterns
# (`x=5` as 5, `1,-2` as 1). The grader reads such a gold whole (answers.gold_readings).
PLAIN_MISREADS = [
    ("x=5", "The answer is $\\boxed{-x=5}$"),
    ("1,-2", "So \\boxed{1}"),
    ("\\left( \\frac{3}{2}, -13 \\right)", "The answer is $\\boxed{-\\left( \\frac{3}{2}, -13 \\right)}$"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "The answer is $\\boxed{-(-\\infty, 2) \\cup (3, \\infty)}$"),
]


def _load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def math500_rows() -> list[dict]:
    """Every MATH-500 `answer` (and `unique_id`); every 10th row also has its `solution`."""
    return _load("grading_math500.jsonl")


def gsm8k_rows() -> list[dict]:
    """GSM8K test rows whose id is a multiple of 9: `id` and `answer` (the reference solution)."""
    return [r for r in _load("gsm8k_test_every3rd.jsonl") if r["id"] % 9 == 0]


def _bump(answer: str) -> str | None:
    """The answer with its last number changed by one; None if it has no number."""
    numbers = list(re.finditer(r"\d+", answer))
    if not numbers:
        return None
    last = numbers[-1]
    return answer[:last.start()] + str(int(last.group()) + 1) + answer[last.end():]


def _elements(answer: str) -> list[str]:
    """Top-level comma-separated parts of a tuple/set/list answer."""
    inner = answer.strip()
    if inner[:1] in "([" and inner[-1:] in ")]":
        inner = inner[1:-1]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return [p for p in parts if p] if len(parts) > 1 else []


def _thousands(number: str) -> list[str]:
    if not re.fullmatch(r"-?\d{4,}", number):
        return []
    grouped = f"{int(number):,}"
    return [grouped, grouped.replace(",", "{,}"), grouped.replace(",", "\\,"),
            grouped.replace(",", " ")]


def _decimal(answer: str) -> str | None:
    m = re.fullmatch(r"(-?)\\d?frac\{(\d+)\}\{(\d+)\}", answer)
    if not m or int(m.group(3)) == 0:
        return None
    value = int(m.group(2)) / int(m.group(3))
    return f"{m.group(1)}{value:.6f}".rstrip("0").rstrip(".")


def _stated(gold: str, rng: random.Random, other: str) -> list[tuple[str, str]]:
    """(kind, response) stating `gold`, right."""
    out = [
        ("boxed_inline", f"Thus the answer is $\\boxed{{{gold}}}$."),
        ("boxed_bare", f"Putting it together we get \\boxed{{{gold}}}"),
        ("final_answer_minerva", f"Final Answer: The final answer is ${gold}$. I hope it is correct."),
        ("answer_colon", f"Answer: ${gold}$"),
        ("stray_box_then_final", f"First $\\boxed{{{other}}}$ for the inner part.\n"
                                 f"The final answer is ${gold}$."),
        ("final_answer_sentence", f"Final Answer: the value asked for is ${gold}$, as shown."),
        ("units_text", f"The answer is ${gold}$ centimeters."),
        ("equation", f"Solving gives $x = {gold}$, so the answer is $x = {gold}$."),
        ("display_math", f"We conclude\n$$\n{gold}\n$$"),
    ]
    parts = _elements(gold)
    if parts:
        boxes = [f"\\boxed{{{p}}}" for p in parts]
        out.append(("several_boxes_comma", "The solutions are " + ", ".join(boxes) + "."))
        out.append(("several_boxes_and", "So " + " and ".join(boxes)))
    for sep in _thousands(gold):
        out.append(("thousands_final", f"The final answer is ${sep}$"))
        out.append(("thousands_boxed", f"so \\boxed{{{sep}}}"))
        out.append(("thousands_plain", f"She earns {sep} dollars in total.\n#### {sep}"))
    decimal = _decimal(gold)
    if decimal:
        out.append(("decimal_of_fraction", f"The answer is {decimal}"))
    if re.fullmatch(r"-?\d+", gold):
        out.append(("gsm8k_hash", f"She has 3 + 4 = 7 apples left.\n#### {gold}"))
        out.append(("number_soup", f"We try 3, 17 and 8 then 2 + 5 and {gold}"))
        out.append(("dollars", f"The answer is ${gold} dollars."))
        out.append(("answer_is_plain", f"The answer is {gold}"))
    rng.shuffle(out)
    return out


def _wrong(gold: str, rng: random.Random, other: str) -> list[tuple[str, str]]:
    """(kind, response) stating something else than `gold`."""
    bumped = _bump(gold)
    wrong = bumped if bumped is not None else other
    out = [
        ("wrong_boxed", f"Thus the answer is $\\boxed{{{wrong}}}$."),
        ("wrong_final", f"Final Answer: The final answer is ${wrong}$. I hope it is correct."),
        ("wrong_other_answer", f"Answer: ${other}$"),
        ("wrong_final_after_right_box", f"First $\\boxed{{{gold}}}$.\nThe final answer is ${wrong}$."),
        ("wrong_negated", f"The answer is $\\boxed{{-{gold}}}$"),
    ]
    parts = _elements(gold)
    if len(parts) > 1:
        out.append(("wrong_several_boxes_missing", f"So \\boxed{{{parts[0]}}}"))
    for sep in _thousands(bumped or ""):
        out.append(("wrong_thousands_final", f"The final answer is ${sep}$"))
    rng.shuffle(out)
    return out


def _gold_forms(gold: str) -> list[tuple[str, str]]:
    return [("gold_dollars", f"${gold}$"), ("gold_boxed", f"\\boxed{{{gold}}}")]


def agreement_pairs(per_gold_right: int = 3, per_gold_wrong: int = 2) -> list[dict]:
    """[{kind, gold, response}] over every committed MATH-500 and GSM8K answer."""
    rng = random.Random(20250729)
    math_rows = math500_rows()
    gsm_rows = gsm8k_rows()
    gsm_golds = [r["answer"].split("####")[-1].strip() for r in gsm_rows]
    golds = [r["answer"] for r in math_rows] + gsm_golds
    pairs = [{"kind": "known_shape", "gold": g, "response": r} for g, r in KNOWN_SHAPES]
    pairs += [{"kind": "wrong_misread_gold", "gold": g, "response": r} for g, r in PLAIN_MISREADS]
    seen = {(p["gold"], p["response"]) for p in pairs}

    def add(kind: str, gold: str, response: str) -> None:
        if (gold, response) not in seen:  # golds repeat in MATH-500 ("2", "3", ...)
            seen.add((gold, response))
            pairs.append({"kind": kind, "gold": gold, "response": response})

    for i, gold in enumerate(golds):
        if gold in golds[:i]:  # a repeated gold ("4" is 22 MATH-500 answers) adds nothing new
            continue
        other = golds[(i * 7 + 3) % len(golds)]
        if other == gold:
            other = golds[(i * 7 + 4) % len(golds)]
        for kind, response in _stated(gold, rng, other)[:per_gold_right]:
            add(kind, gold, response)
        for kind, response in _wrong(gold, rng, other)[:per_gold_wrong]:
            add(kind, gold, response)
        if i % 5 == 0:  # the gold itself written as `$...$` or `\boxed{...}`
            for kind, gold_form in _gold_forms(gold):
                add(kind, gold_form, f"Thus the answer is $\\boxed{{{gold}}}$.")
    for row in math_rows:  # whole reference solutions, as response and as gold
        if "solution" in row:
            add("math_solution", row["answer"], row["solution"])
            add("math_solution_as_gold", row["solution"], f"The answer is $\\boxed{{{row['answer']}}}$")
    for row, gold in zip(gsm_rows, gsm_golds):
        add("gsm8k_solution", gold, row["answer"])
        add("gsm8k_solution_as_gold", row["answer"], f"So she has {gold} left.\n#### {gold}")
        wrong = _bump(gold)
        if wrong is not None:
            add("gsm8k_solution_wrong", gold, re.sub(r"####.*$", f"#### {wrong}", row["answer"]))
    return pairs


def plain_verdicts(pairs: list[dict], workers: int = 2) -> list[bool]:
    """Plain math-verify's verdict on each pair, in `workers` processes (its own timeouts work
    there: each pair is verified in a process's main thread)."""
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_quiet) as pool:
        # Pairs of one gold stand together, so a chunk parses its gold once (`_parsed_gold`).
        return list(pool.map(_plain, [(p["gold"], p["response"]) for p in pairs], chunksize=50))


def _quiet() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)


@lru_cache(maxsize=64)
def _parsed_gold(gold: str) -> list:
    from math_verify import parse
    return parse(gold)


def _plain(pair: tuple[str, str]) -> bool:
    from math_verify import parse, verify
    gold, response = pair
    return bool(verify(_parsed_gold(gold), parse(response)))
