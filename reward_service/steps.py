"""Deterministic step splitters.

Each returns `(start, end)` character spans that partition the whole text: spans are in order,
cover every character exactly once and are never empty. A step begins at a non-whitespace
character (the first step begins at 0), so whitespace between steps belongs to the step before.
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


def spans_from_starts(text: str, starts: list[int]) -> Spans:
    """Spans beginning at `starts` (deduplicated, sorted); the first always begins at 0."""
    if not text:
        return []
    first = _first_non_space(text, 0)  # leading whitespace belongs to the first step
    cuts = sorted({s for s in starts if first < s < len(text)})
    bounds = [0, *cuts, len(text)]
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def _first_non_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def split_lines(text: str) -> Spans:
    """One step per non-blank line."""
    starts = [_first_non_space(text, m.start()) for m in _LINE_START.finditer(text)]
    return spans_from_starts(text, starts)


def split_blank_lines(text: str) -> Spans:
    """One step per paragraph (paragraphs are separated by blank lines)."""
    return spans_from_starts(text, [m.start(1) for m in _PARAGRAPH_START.finditer(text)])


def _marker_starts(text: str) -> list[int]:
    return [m.start() for m in _STEP_MARKER.finditer(text)]


def split_step_markers(text: str) -> Spans:
    """A step per "Step k:" marker; text before the first marker is a step of its own."""
    return spans_from_starts(text, _marker_starts(text))


def split_auto(text: str) -> Spans:
    """Step markers if there are at least 2, else paragraphs if at least 2, else lines."""
    if len(_marker_starts(text)) >= 2:
        return split_step_markers(text)
    paragraphs = split_blank_lines(text)
    if len(paragraphs) >= 2:
        return paragraphs
    return split_lines(text)


SPLITTERS: dict[str, Splitter] = {
    "auto": split_auto,
    "lines": split_lines,
    "blank": split_blank_lines,
    "markers": split_step_markers,
}


def get_splitter(name: str, **options) -> Splitter:
    """A splitter by name. `llm` (TP-GRPO's LLM segmenter, `reward_service.segmenter`) takes
    options: the LLM (`model`, `endpoint` or `llm`) and its deterministic `fallback`."""
    if name == "llm":
        from reward_service.segmenter import llm_splitter  # late: it brings an LLM client
        return llm_splitter(**options)
    if options:
        raise ValueError(f"splitter {name!r} takes no options, got {sorted(options)}")
    try:
        return SPLITTERS[name]
    except KeyError:
        raise ValueError(f"unknown splitter {name!r}; known: {sorted([*SPLITTERS, 'llm'])}") from None
