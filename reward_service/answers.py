"""Final-answer extraction from a solution text.

Priority: the last `\\boxed{...}` (balanced braces), else a GSM8K `#### N` line, else the last
"The answer is N" / "answer: N". Every scan is linear in the text length.
"""
from __future__ import annotations

import re

_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_HASH_LINE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is\b|:)[ \t:]*", re.IGNORECASE)
# A number-like answer at the start of the phrase: sign, currency, digits with commas/decimals,
# an optional a/b fraction and percent sign.
_LEADING_NUMBER = re.compile(r"[-+−]?\\?\$?\s*\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?\s*(?:\\?%)?")
_MATH_WRAPPERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _last_boxed(text: str) -> str | None:
    start = max(text.rfind(opener) for opener in _BOX_OPENERS)
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None  # unbalanced: the box never closes


def _unwrap(answer: str) -> str:
    answer = answer.strip().rstrip(".").strip()
    for left, right in _MATH_WRAPPERS:
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left):len(answer) - len(right)].strip()
    return answer.rstrip(".").strip()


def _phrase_answer(rest: str) -> str | None:
    rest = rest.strip().lstrip("*").strip()  # "**Answer:** 5"
    number = _LEADING_NUMBER.match(rest)
    if number:
        return number.group(0).strip()
    # Not a number: take the first sentence, unwrapping $...$ math.
    sentence = re.split(r"\.(?:\s|$)", rest, maxsplit=1)[0]
    sentence = _unwrap(sentence)
    return sentence or None


def extract_answer(text: str) -> str | None:
    """The final answer stated in `text`, or None where it states none."""
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    hashes = _HASH_LINE.findall(text)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip()
    for match in reversed(list(_ANSWER_PHRASE.finditer(text))):
        line_end = text.find("\n", match.end())
        answer = _phrase_answer(text[match.end():line_end if line_end >= 0 else len(text)])
        if answer:
            return answer
    return None
