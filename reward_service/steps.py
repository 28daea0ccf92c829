"""Deterministic step splitters.

Each returns `(start, end)` character spans that partition the whole text: spans are in order,
cover every character exactly once and are never empty. A step begins at a non-whitespace
character (the first step begins at 0), so whitespace between steps belongs to the step before.

Every splitter (and the LLM segmenter) builds its spans with `spans_from_starts`, which also
starts a step at every reflection ("Wait, ...", "Hold on", "I made a mistake"): TP-GRPO judges a
reflection as a step of its own, so it must never share a step with the claim it corrects.
"""
from __future__ import annotations

import re
from typing import Callable

Spans = list[tuple[int, int]]
Splitter = Callable[[str], Spans]

_LINE_START = re.compile(r"^[ \t]*\S", re.MULTILINE)
_PARAGRAPH_START = re.compile(r"(?:\A|\n[ \t]*\n)\s*(\S)")
# "Step 3:" / "Step 3." (optionally "## Step 3:" or "**Step 3:**") at a word boundary.
_STEP_MARKER = re.compile(r"(?<!\S)(?:#{1,6}[ \t]*|\*\*)?Step[ \t]+\d+[ \t]*[:.](?!\d)")
# A reflection cue opening a sentence, after an optional step or list marker ("2. Wait", "Step 3:
# Hold on", "**Wait**"); and the admission that may sit anywhere in its sentence.
_CUE = re.compile(r"(?:(?:#{1,6}[ \t]*|\*\*)?(?:step[ \t]+)?\d{1,3}[ \t]*[:.)](?:\*\*)?[ \t]*)?"
                  r"[^\w\s]{0,3}[ \t]*(?:wait|actually|hmm,?[ \t]+wait|hold[ \t]+on)\b", re.IGNORECASE)
_ADMISSION = re.compile(r"\bI[ \t]+made[ \t]+a[ \t]+mistake\b", re.IGNORECASE)
# Where a sentence may begin: a line's first character, or after ". " / "! " / "? ".
_SENTENCE_START = re.compile(r"^[ \t]*(?=\S)|[.!?][ \t]+(?=\S)", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|\Z)|\n")


def is_reflection(step_text: str) -> bool:
    """Whether a step is a reflection: it opens with a cue, or admits a mistake."""
    return bool(_CUE.match(step_text.lstrip()) or _ADMISSION.search(step_text))


def reflection_starts(text: str) -> list[int]:
    """Where each reflection's sentence begins (its step or list marker included)."""
    starts, covered = [], -1
    for m in _SENTENCE_START.finditer(text):
        pos = m.end()
        if pos < covered:  # inside the marker + cue just matched ("2. Wait": not at "Wait")
            continue
        cue = _CUE.match(text, pos)
        end = _SENTENCE_END.search(text, pos)
        sentence_end = end.end() if end else len(text)
        if cue or _ADMISSION.search(text, pos, sentence_end):
            starts.append(pos)
            covered = cue.end() if cue else sentence_end
    return starts


def spans_from_starts(text: str, starts: list[int]) -> Spans:
    """Spans beginning at `starts` and at every reflection (deduplicated, sorted); the first
    always begins at 0."""
    if not text:
        return []
    first = _first_non_space(text, 0)  # leading whitespace belongs to the first step
    cuts = sorted({s for s in [*starts, *reflection_starts(text)] if first < s < len(text)})
    bounds = [0, *cuts, len(text)]
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def _first_non_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _line_starts(text: str) -> list[int]:
    return [_first_non_space(text, m.start()) for m in _LINE_START.finditer(text)]


def _paragraph_starts(text: str) -> list[int]:
    return [m.start(1) for m in _PARAGRAPH_START.finditer(text)]


def _marker_starts(text: str) -> list[int]:
    return [m.start() for m in _STEP_MARKER.finditer(text)]


def split_lines(text: str) -> Spans:
    """One step per non-blank line."""
    return spans_from_starts(text, _line_starts(text))


def split_blank_lines(text: str) -> Spans:
    """One step per paragraph (paragraphs are separated by blank lines)."""
    return spans_from_starts(text, _paragraph_starts(text))


def split_step_markers(text: str) -> Spans:
    """A step per "Step k:" marker; text before the first marker is a step of its own."""
    return spans_from_starts(text, _marker_starts(text))


def split_auto(text: str) -> Spans:
    """Step markers if there are at least 2, else paragraphs if at least 2, else lines."""
    for starts in (_marker_starts, _paragraph_starts):
        found = starts(text)
        if len(found) >= 2:
            return spans_from_starts(text, found)
    return split_lines(text)


SPLITTERS: dict[str, Splitter] = {
    "auto": split_auto,
    "lines": split_lines,
    "blank": split_blank_lines,
    "markers": split_step_markers,
}


def get_splitter(name: str, **options) -> Splitter:
    """A splitter by name. `llm` (TP-GRPO's LLM segmenter, `reward_service.segmenter`) takes
    options: its LLM (`model`, `endpoint` or `llm`), `max_tokens`, `min_aligned` and its
    deterministic `fallback`; the others take none."""
    check_splitter_options(name, options)
    if name == "llm":
        from reward_service.segmenter import llm_splitter  # late: it brings an LLM client
        return llm_splitter(**options)
    return SPLITTERS[name]


def check_splitter_options(name: str, options: dict) -> None:
    """ValueError naming an unknown splitter, or each unknown or mistyped option; builds
    nothing (the `llm` splitter's options are read from the signatures that take them)."""
    if name == "llm":
        from reward_service.options import check_options
        from reward_service.segmenter import option_sources
        check_options("splitter 'llm'", option_sources(options), options)
        if options.get("fallback", "auto") not in SPLITTERS:
            raise ValueError(f"splitter 'llm': fallback must be one of {sorted(SPLITTERS)}, "
                             f"got {options['fallback']!r}")
        return
    if name not in SPLITTERS:
        from reward_service.options import did_you_mean
        known = sorted([*SPLITTERS, "llm"])
        raise ValueError(f"unknown splitter {name!r}{did_you_mean(name, known)}; known: {known}")
    if options:
        raise ValueError(f"splitter {name!r} takes no options, got {sorted(options)}")
