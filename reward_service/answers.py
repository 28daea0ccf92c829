"""The answer a text states, read the way math-verify reads it, without parsing it.

math-verify's `parse` tries its extraction patterns by priority (0 and 50: "final answer is";
50: `\\boxed{}`; 100 and 200: "answer:" / "answer ..."; 300: any LaTeX or number, the
"no anchor" fallback) and, within one priority, the rightmost match first. `first_candidate`
runs the same patterns (math-verify's own tables) and normalizes the winner as math-verify
does, but never turns it into sympy, so it cannot hang in sympy. Some of those patterns take
time quadratic in the text length on adversarial text: callers bound the length
(`SCAN_CHARS`) or run them in a killable worker.

A text *states* an answer (`stated_candidate`, `extract_answer`) when one of math-verify's anchored
patterns matches (its `try_extract_without_anchor=False` configs: `\\boxed{}`, "final answer is",
"answer:"), or else when it has a GSM8K `#### N` line. Number soup with neither states nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import groupby

SCAN_CHARS = 2_000  # most text read in-process (adversarial text: ~0.3 s of regex on 2 busy cores)
_MAX_DIGITS = 100  # a longer integer goes to math-verify (and Python's int limit is 4,300)
_INTEGER = re.compile(r"-?\d+")
_HASH_LINE = re.compile(r"####[ \t]*([^\n]*\S)")
_NOT_BARE = ("$", "\\(", "\\[", "\\boxed", "\\fbox", "####", "\n")  # marked math, or a solution
# A number as math-verify's own number pattern reads it (thousands groups, a decimal point or
# comma), optionally a percent sign or unit words after it.
_NUMBER_WITH_UNIT = re.compile(r"\s*[-+]?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)"
                               r"\s*(?:\\?%|[A-Za-z]+(?: [A-Za-z]+)*)?\s*")


@dataclass(frozen=True)
class Candidate:
    """The match math-verify tries first."""
    text: str  # as math-verify normalizes it: boxed content, digits without separators
    integer: int | None  # its value where math-verify reads a plain integer, else None


@lru_cache(maxsize=None)
def extraction_configs(anchored: bool) -> tuple:
    """math-verify's default extraction targets (LaTeX, then expressions); `anchored` keeps
    only the patterns tied to an answer marker."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig
    return (LatexExtractionConfig(try_extract_without_anchor=not anchored),
            ExprExtractionConfig(try_extract_without_anchor=not anchored))


@lru_cache(maxsize=None)
def _priority_groups(anchored: bool) -> list[list[tuple]]:
    """[(pattern, config), ...] per priority, in math-verify's order."""
    from math_verify.parser import get_extraction_regexes
    patterns = [(pattern, config, priority)
                for table, config in get_extraction_regexes(extraction_configs(anchored))
                for pattern, priority in table]
    patterns.sort(key=lambda p: p[2])  # stable, as in math-verify
    return [[(p, c) for p, c, _ in group] for _, group in groupby(patterns, key=lambda p: p[2])]


def first_candidate(text: str, anchored: bool = False) -> Candidate | None:
    """What math-verify's `parse(text)` reads first (None: nothing matches, `parse` gives [])."""
    for group in _priority_groups(anchored):
        matches = [(m, config) for pattern, config in group for m in pattern.finditer(text)]
        if matches:  # rightmost end first, then leftmost start, ties in pattern order
            match, config = max(matches, key=lambda mc: (mc[0].end(), -mc[0].start()))
            return _candidate(match, config)
    return None


def gsm8k_answer(text: str) -> str | None:
    """What follows the last `####` (GSM8K's answer line), or None."""
    found = _HASH_LINE.findall(text)
    return found[-1] if found else None


def gold_readings(gold: str) -> list[str]:
    """The texts math-verify parses for a gold answer, best first. A bare LaTeX answer (MATH's
    `2\\sqrt{5}`, `p - q`, `(6,31,-1)`) is read whole, as `\\boxed{...}`: plain math-verify
    would read `2\\sqrt{5}` as 2 and `1,-2` as 1. A gold that marks its math ($...$, \\boxed{}),
    a whole solution and a plain number (`1,22`, `1,000`, `18 dollars`) are read as written."""
    bare = not any(marker in gold.replace("\\$", "") for marker in _NOT_BARE)  # `\$`: a dollar sign
    if not bare or _NUMBER_WITH_UNIT.fullmatch(gold):
        return [gold]
    return ["\\boxed{" + gold.strip() + "}", gold]


def stated_candidate(text: str) -> Candidate | None:
    """What math-verify reads as the answer `text` states: its first anchored match, else the
    first match in a GSM8K `####` line; None where the text states no answer."""
    candidate = first_candidate(text, anchored=True)
    if candidate is None and (tail := gsm8k_answer(text)) is not None:
        candidate = first_candidate(tail)
    return candidate


def extract_answer(text: str) -> str | None:
    """The final answer `text` states, as math-verify normalizes it; None where it states none.
    Reads the last `SCAN_CHARS` characters, where a final answer stands."""
    candidate = stated_candidate(text[-SCAN_CHARS:]) if text else None
    return candidate.text if candidate is not None and candidate.text else None


def _integer(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) and len(text) <= _MAX_DIGITS else None


def _candidate(match: re.Match, config) -> Candidate:
    from math_verify import LatexExtractionConfig
    groups = match.groupdict()
    if isinstance(config, LatexExtractionConfig):
        return _latex_candidate(groups, config)
    # As math_verify.parser.extract_expr: a number loses its separators and leading zeros.
    integer = next((v for k, v in groups.items() if k.startswith("integer") and v), "")
    decimal = next((v for k, v in groups.items() if k.startswith("decimal") and v), "")
    if not (integer or decimal):
        return Candidate(groups.get("expr") or "", None)
    digits = integer.translate(str.maketrans("", "", ", ")).lstrip("0") or "0"
    number = digits + decimal.replace(",", ".")
    plain = not decimal and not groups.get("percent")
    return Candidate(number, _integer(number) if plain else None)


def _latex_candidate(groups: dict, config) -> Candidate:
    # As math_verify.parser.extract_latex: every LaTeX group normalized; a bare `\boxed{...}`
    # match keeps its last box (and those joined to it by "and", "or", ",").
    from latex2sympy2_extended.latex2sympy2 import normalize_latex
    found = [next(((v, k) for k, v in groups.items() if k.startswith(prefix) and v), None)
             for prefix in ["first_latex", *(f"next{i}_latex" for i in range(1, 6))]]
    found = [f for f in found if f is not None]
    texts, percent = [], False
    for latex, name in found:
        prefix, kind = name.split("_")[0], name.split("_")[1]
        norm = config.normalization_config
        if kind == "latexBoxed":
            norm = replace(norm, boxed="last")
        texts.append(normalize_latex(latex, config=norm))
        percent = percent or bool(groups.get(f"{prefix}_percent"))
    if not texts:
        return Candidate("", None)
    single = len(texts) == 1 and not percent
    return Candidate(" and ".join(texts) if len(texts) > 1 else texts[0],
                     _integer(texts[0]) if single else None)
