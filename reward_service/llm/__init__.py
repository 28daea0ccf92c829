"""The LLM behind the generative judges: local vLLM or any OpenAI-compatible completion server.

One small interface, two implementations:

- `format(user)`: the completion-prompt text for one user message (a chat template or a
  `prompt_template` with `{prompt}`; plain text otherwise). Judges append the assistant's
  own text (a critique, a verdict cue) after it.
- `generate(prompts, n, temperature, max_tokens, stop, seed)`: n texts per prompt.
- `choice_logprobs(prompts, choices)`: log p(choice | prompt) for each candidate continuation
  (e.g. " Yes" / " No"), exact for candidates of any token length.

Both take a batch. A prompt that fails on its own (too long for the context, refused by the
server, a reply with NaN or missing logprobs) fails alone: the call raises a `PromptError`
whose `failed` maps each such prompt's index to its error and whose `answers` hold the other
prompts' answers, so a judge keeps them. Anything else (server down, retries exhausted) is an
`LLMError` of the whole call.

`make_llm(model=DIR)` builds a local engine (`core.engine.VLLMEngine`, any Hugging Face model
directory); `make_llm(endpoint=URL, model_name=...)` a client of `/v1/completions`
(`vllm serve` elsewhere on the cluster) with a deadline per request, retries and a size cap.
"""
from __future__ import annotations

import inspect
from typing import Protocol

from reward_service.llm.base import (BadReply, LLMError, PromptError, PromptTooLong, Rejected,
                                     cut_at_stop, renormalize)
from reward_service.llm.endpoint import HttpLLM, completions_url
from reward_service.llm.local import LocalLLM, context_length, vllm_engine_arguments

__all__ = ["LLM", "LLMError", "PromptError", "PromptTooLong", "Rejected", "BadReply", "HttpLLM",
           "LocalLLM", "chooses_llm", "make_llm", "option_sources", "renormalize", "cut_at_stop",
           "context_length", "vllm_engine_arguments"]


class LLM(Protocol):
    def format(self, user: str) -> str: ...

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.0,
                 max_tokens: int = 256, stop: list[str] | None = None,
                 seed: int | None = None) -> list[list[str]]: ...

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]: ...


CHOICES = ("llm", "model", "endpoint")  # the options that choose an LLM, exactly one


def chooses_llm(options: dict) -> bool:
    """Whether `options` choose an LLM (any of `CHOICES`)."""
    return any(options.get(name) for name in CHOICES)


def _given(llm, model, endpoint) -> list[str]:
    given = [name for name, v in zip(CHOICES, (llm, model, endpoint)) if v]
    if len(given) != 1:
        raise ValueError("an LLM judge needs exactly one of the options `model` (a Hugging Face "
                         "model directory), `endpoint` (an OpenAI-compatible URL) or `llm`; "
                         f"got {given or 'none'}")
    return given


def make_llm(llm: LLM | None = None, model: str | None = None, endpoint: str | None = None,
             **options) -> LLM:
    """The judge's LLM from its options: a ready `llm`, a local `model` dir, or an `endpoint`."""
    _given(llm, model, endpoint)
    if llm is not None:
        if options:
            raise TypeError(f"options {sorted(options)} do not apply to a ready `llm`")
        return llm
    if model is not None:
        return LocalLLM(model, **options)
    return HttpLLM(endpoint, **options)


def option_sources(options: dict) -> list:
    """What takes the LLM options among `options`, for checking them before anything is built:
    `make_llm`, then LocalLLM → VLLMEngine → vLLM's engine arguments for a `model`, HttpLLM for
    an `endpoint`, nothing more for a ready `llm`."""
    _given(options.get("llm"), options.get("model"), options.get("endpoint"))
    if options.get("llm") is not None:
        return [inspect.Signature([inspect.Parameter("llm", inspect.Parameter.KEYWORD_ONLY,
                                                     default=None)])]
    if options.get("model"):
        from core.engine import VLLMEngine
        return [make_llm, LocalLLM, VLLMEngine, vllm_engine_arguments()]
    completions_url(options["endpoint"])
    return [make_llm, HttpLLM]
