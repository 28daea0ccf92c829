"""The rollout actors as an LLM of `reward_service.llm`: what lets a judge sample completions
from the engines a run already holds, instead of starting an engine of its own.

The label job's `montecarlo` judge (cluster/label.py) completes every step prefix N times this
way: a call's prompts are split evenly over the engines, one `generate` each, all at once.
Picklable (actor handles and a path), so it travels to the judge actors as a judge option.
With `log_dir`, every call's prompts and completions are appended to
`<log_dir>/rollouts-<pid>.jsonl`, for audit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import ray

from reward_service.llm import LLMError


class RolloutLLM:
    def __init__(self, actors: list, model_path: str, timeout_s: float = 600.0, log_dir: str | None = None):
        if not actors:
            raise ValueError("RolloutLLM needs at least one rollout actor")
        self.actors, self.model_path, self.timeout_s, self.log_dir = list(actors), str(model_path), timeout_s, log_dir
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The policy's tokenizer: the judge builds the policy's prompt with it."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        return self._tokenizer

    def format(self, user: str) -> str:
        return user  # prompts arrive as the policy's text already

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.0, max_tokens: int = 256,
                 stop: list[str] | None = None, seed: int | None = None) -> list[list[str]]:
        """n completions per prompt, in prompt order."""
        size, extra = divmod(len(prompts), len(self.actors))
        refs, start = [], 0
        for i, actor in enumerate(self.actors):
            end = start + size + (i < extra)
            if end > start:
                chunk = [{"prompt_id": str(j), "problem": "", "prompt_text": prompts[j], "gold_answer": ""}
                         for j in range(start, end)]
                refs.append(actor.generate.remote(chunk, n=n, max_tokens=max_tokens, temperature=temperature,
                                                  seed=seed, stop=stop))
            start = end
        try:
            tables = ray.get(refs, timeout=self.timeout_s)
        except (ray.exceptions.RayError, TimeoutError) as e:
            raise LLMError(f"rollout actors could not complete {len(prompts)} prompts: {type(e).__name__}: {e}") from e
        out: list[list[str]] = [[] for _ in prompts]
        for table in tables:
            for j, text in zip(table["prompt_id"].to_pylist(), table["response_text"].to_pylist()):
                out[int(j)].append(text)
        if self.log_dir:
            self._log(prompts, out)
        return out

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        raise LLMError("the rollout actors sample completions; they give no choice logprobs")

    def _log(self, prompts: list[str], completions: list[list[str]]) -> None:
        path = Path(self.log_dir) / f"rollouts-{os.getpid()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            for prompt, texts in zip(prompts, completions):
                f.write(json.dumps({"prompt": prompt, "completions": texts}) + "\n")
