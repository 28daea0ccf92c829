"""The one prompt template the policy sees: in warm start, rollout and evaluation alike.

The tiny model reads characters, so the template is short; changing it invalidates every
warm-started checkpoint, which is why it lives in exactly one place.
"""
from __future__ import annotations

PROMPT_TEMPLATE = "Problem: {problem}\nSolution:\n"


def format_prompt(problem: str) -> str:
    return PROMPT_TEMPLATE.format(problem=problem.strip())
