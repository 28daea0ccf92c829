"""TP-GRPO's LLM segmenter, as the splitter `llm` (`steps.get_splitter("llm", model=DIR)`).

The LLM quotes the first words of each semantic step; every quote is looked up in the original
text, in order and ignoring differences in whitespace, and the steps begin where the quotes are
found. The result is therefore always a partition of the original text into character spans,
like every deterministic splitter, and built the same way (`steps.spans_from_starts`), so a
reflection starts a step of its own here too. A quote that cannot be found is skipped; when fewer than
`min_aligned` of the quotes (or none at all) can be found, or the text does not fit the model's
context, the deterministic `fallback` splitter is used. An LLM that fails (server down) raises:
the sample gets a `judge_error` rather than silently different steps.

Options (`Scorer(splitter_options=...)`, in a config `judge.options.splitter_options`):
`max_tokens` of the reply (512; a long solution has many steps to quote), `min_aligned`,
`fallback`, and its own LLM (`model`, `endpoint` or `llm`, with that LLM's options); without
one the Scorer hands it the LLM judge's.
"""
from __future__ import annotations

import re

from reward_service import llm as llm_module
from reward_service.judges.llm_judge import positive_int
from reward_service.judges.prompts import SEGMENT
from reward_service.llm import LLM, PromptTooLong, chooses_llm, make_llm
from reward_service.options import without_var_keyword

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

        if isinstance(min_aligned, bool) or not isinstance(min_aligned, (int, float)) \
                or not 0.0 <= min_aligned <= 1.0:
            raise ValueError(f"min_aligned must be a number in [0, 1], got {min_aligned!r}")
        self.llm, self.min_aligned = llm, min_aligned
        self.max_tokens = positive_int("max_tokens", max_tokens)
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


def option_sources(options: dict) -> list:
    """What takes the `llm` splitter's options, for checking them before anything is built:
    `llm_splitter`, then its own LLM's chain where the options choose one; else the chain ends
    at `llm_splitter` (the Scorer passes it the judge's LLM)."""
    if chooses_llm(options):
        return [llm_splitter, *llm_module.option_sources(options)]
    return [without_var_keyword(llm_splitter)]
