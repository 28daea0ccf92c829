"""TP-GRPO's LLM segmenter, as the splitter `llm` (`steps.get_splitter("llm", model=DIR)`).

The LLM quotes the first words of each semantic step; every quote is looked up in the original
text, in order and ignoring differences in whitespace, and the steps begin where the quotes are
found. The result is therefore always a partition of the original text into character spans,
like every deterministic splitter. A quote that cannot be found is skipped; when fewer than
`min_aligned` of the quotes (or none at all) can be found, or the text does not fit the model's
context, the deterministic `fallback` splitter is used. An LLM that fails (server down) raises:
the sample gets a `judge_error` rather than silently different steps.
"""
from __future__ import annotations

import re

from reward_service.judges.prompts import SEGMENT
from reward_service.llm import LLM, PromptTooLong, make_llm

Spans = list[tuple[int, int]]
# "1. ", "Step 2:", "- ", "* ", "(3)" before a quote; quotes and trailing ellipses around it.
_LEAD = re.compile(r"^\s*(?:(?:step\s*)?\(?\d{1,4}[.):]|[-*•])\s*", re.IGNORECASE)
_QUOTE_CHARS = "\"'`“”‘’<>"


def parse_quotes(reply: str) -> list[str]:
    quotes = []
    for line in reply.splitlines():
        q = _LEAD.sub("", line, count=1).strip().strip(_QUOTE_CHARS).strip()
        q = re.sub(r"(?:\.\.\.|…)$", "", q).strip().strip(_QUOTE_CHARS).strip()
        if q:
            quotes.append(q)
    return quotes


def align(text: str, quotes: list[str], min_chars: int = 6) -> tuple[list[int], int]:
    """Start offsets of the quotes found in order in `text` (at word starts), and how many.

    Quotes shorter than `min_chars` (whitespace aside) count as not found: a stray "a" or "2"
    occurs almost anywhere and would cut a step in the middle of a word.
    """
    starts, pos, found = [], 0, 0
    for q in quotes:
        words = q.split()
        if sum(map(len, words)) < min_chars:
            continue
        pattern = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words))
        m = pattern.search(text, pos)
        if m is None:
            continue
        found += 1
        starts.append(m.start())
        pos = m.end()
    return starts, found


class LLMSplitter:
    def __init__(self, llm: LLM, fallback: str = "auto", min_aligned: float = 0.5,
                 max_tokens: int = 512):
        from reward_service.steps import get_splitter

        self.llm, self.min_aligned, self.max_tokens = llm, min_aligned, max_tokens
        self.fallback = get_splitter(fallback)
        self.fallbacks = 0  # texts the LLM's segmentation could not be used for

    def __call__(self, text: str) -> Spans:
        from reward_service.steps import spans_from_starts

        if not text.strip():
            return self.fallback(text)
        try:
            (reply,) = self.llm.generate([self.llm.format(SEGMENT.format(text=text))], n=1,
                                         temperature=0.0, max_tokens=self.max_tokens)
        except PromptTooLong:
            self.fallbacks += 1
            return self.fallback(text)
        quotes = parse_quotes(reply[0])
        starts, found = align(text, quotes)
        if not found or found < self.min_aligned * len(quotes):
            self.fallbacks += 1
            return self.fallback(text)
        return spans_from_starts(text, starts)


def llm_splitter(fallback: str = "auto", min_aligned: float = 0.5, max_tokens: int = 512,
                 **llm_options) -> LLMSplitter:
    """The `llm` splitter; LLM options as for the LLM judges (`model`, `endpoint`, `llm`)."""
    return LLMSplitter(make_llm(**llm_options), fallback, min_aligned, max_tokens)
