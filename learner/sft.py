"""The supervised warm start: plain next-token training on reference solutions.

Its only job is to leave the policy "right sometimes and wrong often", so RL has rewards to
move. The default job runs it twice (cluster/model_prep.py): on worked solutions, so the policy
can work a chain out, then briefly on a mix where most solutions state only the answer
(`answer_only`), so it often guesses instead. One process, plain PyTorch; the loss covers
solution tokens only.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from core.arith_task import is_correct
from core.prompts import PromptFormat, format_prompt

IGNORE = -100  # label value the loss skips


def _load(model_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{model_dir}: the tokenizer has no eos token; solutions must end in one")
    if tokenizer.pad_token_id is None:  # many base models ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model, tokenizer


def answer_only(rows: list[dict], rate: float, seed: int) -> list[dict]:
    """`rows` with the solution of about `rate` of them cut to its final statement of the answer."""
    rng = random.Random(f"answer-only-{seed}")
    return [dict(row, solution=f"The answer is \\boxed{{{row['answer']}}}") if rng.random() < rate else row
            for row in rows]


def _encode(tokenizer, rows: list[dict], prompt: PromptFormat = format_prompt) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per row: prompt + solution + eos, prompt positions masked out."""
    out = []
    for row in rows:
        prompt_ids = tokenizer(prompt(row["problem"]), add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["solution"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer))
    return out


def _collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int,
                           group: int = 16) -> Iterator[list[int]]:
    """Endless random batches of indices whose lengths are alike, so little compute goes to padding.

    Each epoch: shuffle, cut into windows of `group` batches, sort each window by length, cut
    into batches, shuffle the batch order (the usual group-by-length sampler)."""
    rng = random.Random(seed)
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), batch_size * group):
            window = sorted(order[start: start + batch_size * group], key=lengths.__getitem__)
            batches += [window[i: i + batch_size] for i in range(0, len(window), batch_size)]
        rng.shuffle(batches)
        yield from batches


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def warm_start(model_dir: str, out_dir: str, rows: list[dict], steps: int, lr: float, batch_size: int,
               seed: int, log: Callable[[str], None] = print, log_every: int = 20,
               num_threads: int | None = None, prompt: PromptFormat = format_prompt,
               on_step: Callable[[int, float], None] | None = None) -> dict:
    """Train on `rows` ({problem, solution}) and save a Hugging Face model dir to `out_dir`.

    `log` gets a line every `log_every` steps, `on_step(step, loss)` a call after every step (for
    a progress bar). `num_threads` defaults to every core; on a machine shared with other busy
    processes one thread is often several times faster, because OpenMP threads wait on each other."""
    if not rows:
        raise ValueError("warm_start needs at least one row")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    torch.set_num_threads(num_threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    model, tokenizer = _load(model_dir)
    model.train()
    examples = _encode(tokenizer, rows, prompt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 20)
    batches = length_grouped_batches([len(ids) for ids, _ in examples], batch_size, seed)
    losses: list[float] = []
    last_logged = 0
    started = tick = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup)
        batch = _collate([examples[i] for i in next(batches)], tokenizer.pad_token_id)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, losses[-1])
        if (step + 1) % log_every == 0 or step + 1 == steps:
            now = time.perf_counter()
            recent = losses[last_logged:]
            log(f"sft step {step + 1}/{steps} loss {sum(recent) / len(recent):.4f} "
                f"{(now - tick) / len(recent):.3f} s/step")
            tick, last_logged = now, step + 1
    seconds = time.perf_counter() - started
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    tail = losses[-min(10, len(losses)):]
    return {"steps": steps, "seconds": seconds, "first_loss": losses[0],
            "final_loss": sum(tail) / len(tail), "losses": losses, "out_dir": str(out_dir)}


# ---- quick checks with transformers (the real system evaluates with vLLM) -----------------

@torch.no_grad()
def generate(model_dir: str, problems: list[str], max_new_tokens: int, temperature: float = 0.0,
             num_samples: int = 1, batch_size: int = 64, seed: int = 0,
             num_threads: int | None = None) -> list[list[str]]:
    """`num_samples` completions per problem; temperature 0 is greedy."""
    torch.set_num_threads(num_threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    model, tokenizer = _load(model_dir)
    model.eval()
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    sample = temperature > 0
    out: list[list[str]] = []
    for start in range(0, len(problems), batch_size):
        prompts = [format_prompt(p) for p in problems[start: start + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_p=None, top_k=None,
            num_return_sequences=num_samples, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        out.extend(texts[i: i + num_samples] for i in range(0, len(texts), num_samples))
    return out


def evaluate_greedy(model_dir: str, rows: list[dict], max_new_tokens: int = 160,
                    num_threads: int | None = None) -> float:
    """Share of rows whose greedy completion boxes the gold answer."""
    completions = generate(model_dir, [r["problem"] for r in rows], max_new_tokens, num_threads=num_threads)
    return sum(is_correct(c[0], r["answer"]) for c, r in zip(completions, rows)) / len(rows)


def evaluate_sampled(model_dir: str, rows: list[dict], num_samples: int = 8, temperature: float = 1.0,
                     max_new_tokens: int = 160, seed: int = 0, num_threads: int | None = None) -> dict:
    """Mean accuracy, pass@k and the per-prompt accuracy spread at `temperature`."""
    completions = generate(model_dir, [r["problem"] for r in rows], max_new_tokens,
                           temperature=temperature, num_samples=num_samples, seed=seed,
                           num_threads=num_threads)
    per_prompt = [sum(is_correct(c, r["answer"]) for c in cs) / len(cs) for cs, r in zip(completions, rows)]
    return {
        "mean_accuracy": sum(per_prompt) / len(per_prompt),
        f"pass@{num_samples}": sum(a > 0 for a in per_prompt) / len(per_prompt),
        "mixed_prompts": sum(0 < a < 1 for a in per_prompt) / len(per_prompt),
        "per_prompt": per_prompt,
    }
