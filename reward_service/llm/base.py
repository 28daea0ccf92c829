"""What every LLM client shares: its errors and the helpers judges use on its answers."""
from __future__ import annotations

import math


class LLMError(RuntimeError):
    """The LLM could not answer (server down, retries exhausted, malformed response)."""


class PromptError(LLMError):
    """Prompts of a call that failed on their own while the others were answered.

    `failed` maps each failed prompt's index to its error, `answers` holds every prompt's
    answer (None where it failed). Raised as the class of its failures when they are all of
    one kind, so `except PromptTooLong` still works on a batch.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.failed: dict[int, PromptError] = {}
        self.answers: list = []

    @staticmethod
    def of(failed: dict[int, "PromptError"], answers: list) -> "PromptError":
        first = min(failed)
        kinds = {type(e) for e in failed.values()}
        kind = kinds.pop() if len(kinds) == 1 else PromptError
        message = str(failed[first]) if len(answers) == 1 else (
            f"{len(failed)} of {len(answers)} prompts failed; prompt {first}: {failed[first]}")
        error = kind(message)
        error.failed, error.answers = failed, answers
        return error


class PromptTooLong(PromptError):
    """The prompt does not fit the model's context."""


class Rejected(PromptError):
    """The server refused a request with this prompt (HTTP 400, 413, 422): retrying won't help."""


class BadReply(PromptError):
    """The server's reply for this prompt is unusable (NaN, infinite or missing logprobs)."""


def renormalize(logps: list[float]) -> list[float]:
    """The choices' probabilities among themselves, e.g. P(Yes) / (P(Yes) + P(No))."""
    top = max(logps)
    if not math.isfinite(top) or any(math.isnan(lp) for lp in logps):
        raise BadReply(f"logprobs {logps} give no distribution over the choices")
    weights = [math.exp(lp - top) for lp in logps]
    total = sum(weights)
    return [w / total for w in weights]


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """The text up to the first stop string (servers differ on whether they include it)."""
    for s in stop or []:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text
