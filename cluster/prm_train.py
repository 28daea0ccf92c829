"""Training a process reward model on the DeepSpeed learner ranks.

    python -m cluster.prm_train CONFIG.yaml [--set key=value ...] [--overwrite]

Reads `prm.data` (default: the label job's output; any parquet or JSON lines in TRL's stepwise
layout, core/stepwise.py), puts the policy's tokenizer plus the `<extra_0>` separator on it and
encodes every solution as the `step_classifier` judge will send it (learner/prm.py), holds out
`prm.val_fraction` of the problems, and trains a Qwen2.5-Math-PRM-style model whose backbone is
`prm.init` (default: the run's policy) on `learner.num_ranks` ranks (ZeRO `learner.zero_stage`)
for `prm.steps` steps of `prm.batch_size` solutions. The result, `prm.output` (default
`<run dir>/prm`), is a Hugging Face directory the `step_classifier` judge serves through vLLM
as it serves a released PRM: `--judge step_classifier --model <run dir>/prm`. It is written
under a temporary name and renamed when complete.
"""
from __future__ import annotations

import random
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import ray

from cluster.actor_group import ActorGroup
from cluster.prm_stage import open_stage, reserve_roles, stage_main
from cluster.resources import release
from cluster.report import RunLog
from cluster.train import on_exit
from core.config import Config
from core.stepwise import read_stepwise
from learner.group import LearnerGroup, LearnerRankActor
from learner.prm import SEPARATOR, encode, padded_vocab, prm_tokenizer
from learner.sft import length_grouped_batches


def encode_rows(rows: list[dict], tokenizer, max_len: int) -> tuple[list, list[str], dict]:
    """(examples, their problem keys, what was skipped and why)."""
    examples, keys, skipped = [], [], {}
    for row in rows:
        try:
            example = encode(tokenizer, row["prompt"], row["completions"], row["soft_labels"], row["labels"],
                             row["outcome_correct"])
        except ValueError as e:
            skipped[str(e)] = skipped.get(str(e), 0) + 1
            continue
        if len(example.input_ids) > max_len:
            skipped[f"longer than {max_len} tokens"] = skipped.get(f"longer than {max_len} tokens", 0) + 1
            continue
        examples.append(example)
        keys.append(str(row.get("problem_id") or row["prompt"]))
    return examples, keys, skipped


def split_by_problem(keys: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and held-out examples; all solutions of a problem on one side."""
    problems = sorted(set(keys))
    random.Random(f"prm-val-{seed}").shuffle(problems)
    held = set(problems[:round(len(problems) * fraction)])
    train = [i for i, k in enumerate(keys) if k not in held]
    return train, [i for i, k in enumerate(keys) if k in held]


def train_prm(cfg: Config, base_dir: str, data: Path, out: Path, log: RunLog, started: ExitStack) -> dict:
    """Train on `data`, write the PRM to `out`; returns what was done and measured."""
    p, l, timeout = cfg.prm, cfg.learner, cfg.trainer.call_timeout_s
    loaded = read_stepwise(data)
    if loaded.bad:
        shown = "; ".join(f"{where}: {why}" for where, why in loaded.bad[:3])
        log.warn(f"prm.data: skipped {len(loaded.bad)} bad rows of {data} ({shown})")
    tokenizer = prm_tokenizer(base_dir)
    from transformers import AutoConfig
    base = AutoConfig.from_pretrained(base_dir)
    vocab = padded_vocab(tokenizer, base.vocab_size)
    examples, keys, skipped = encode_rows(loaded.rows, tokenizer, min(base.max_position_embeddings,
                                                                     cfg.model.max_model_len))
    if skipped:
        log.warn(f"prm.data: skipped {sum(skipped.values())} solutions ({skipped})")
    train_idx, val_idx = split_by_problem(keys, p.val_fraction, cfg.seed)
    if len(train_idx) < l.num_ranks:
        raise ValueError(f"prm.data: {len(train_idx)} usable solutions in {data} to train on; "
                         f"at least learner.num_ranks ({l.num_ranks}) are needed")
    steps = sum(len(e.soft) for e in examples)
    log.info(f"prm: {len(train_idx)} solutions to train on, {len(val_idx)} held out ({steps} steps in all); "
             f"backbone {base_dir}; {p.steps} steps of {p.batch_size} on {l.num_ranks} ranks")

    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer.save_pretrained(str(partial))
    placed = reserve_roles(cfg, ("learner",))
    on_exit(started, log.warn, "placement groups", release, placed)
    ranks = ActorGroup("learner", LearnerRankActor, l.num_ranks, timeout, placed["learner"].options)
    on_exit(started, log.warn, "learner ranks", ranks.shutdown)
    sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    LearnerGroup(ranks, base_dir, kind="prm", examples=ray.put(examples), separator_id=sep,
                 pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                 vocab_size=vocab, steps=p.steps, zero_stage=l.zero_stage, lr=p.lr, warmup=p.warmup,
                 weight_decay=l.weight_decay, micro_batch_size=p.micro_batch_size, grad_clip=l.grad_clip,
                 trajectory_coef=p.trajectory_coef, backend=l.backend, seed=cfg.seed, run_name=cfg.name)

    def call(method: str, *args) -> dict:
        return ranks.get_all("call", method, *args)[0]  # every rank reports the all-reduced numbers

    val = call("evaluate", val_idx) if val_idx else None
    if val:
        log.info(f"prm: held-out step accuracy before training {val['step_accuracy']:.3f}")
    batches = length_grouped_batches([len(examples[i].input_ids) for i in train_idx],
                                     min(p.batch_size, len(train_idx)), cfg.seed)
    bar, t0, recent = log.progress("prm", p.steps), time.monotonic(), []
    for step in range(p.steps):
        stats = call("train_step", [train_idx[i] for i in next(batches)])
        recent = [*recent[-19:], stats]
        mean = {k: sum(s[k] for s in recent) / len(recent) for k in ("step_ce", "step_accuracy")}
        log.record("prm", step=step + 1, **{k: stats[k] for k in ("step_ce", "trajectory_ce", "step_accuracy",
                                                                  "lr", "step_seconds", "num_steps")})
        bar.update(step + 1, f"loss {mean['step_ce']:.3f} | step acc {mean['step_accuracy']:.3f}")
    bar.close()
    seconds = time.monotonic() - t0
    after = call("evaluate", val_idx) if val_idx else None
    ranks.get_all("call", "save_prm", str(partial))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    summary = {"output": str(out), "data": str(data), "backbone": base_dir, "solutions": len(train_idx),
               "held_out": len(val_idx), "bad_rows": len(loaded.bad), "skipped": skipped, "steps": p.steps,
               "seconds": round(seconds, 1), "val_before": val, "val_after": after}
    if after:
        log.info(f"prm: held-out step accuracy {val['step_accuracy']:.3f} → {after['step_accuracy']:.3f} "
                 f"(loss {val['step_ce']:.3f} → {after['step_ce']:.3f}); {out} in {seconds:.0f}s")
    log.record("prm_done", **{k: v for k, v in summary.items() if k != "skipped"})
    return summary


def prm_paths(cfg: Config) -> tuple[Path, Path]:
    """(the labelled data it trains on, the PRM directory it writes)."""
    from cluster.label import label_path
    data = Path(cfg.prm.data) if cfg.prm.data else label_path(cfg)
    return data, Path(cfg.prm.output) if cfg.prm.output else cfg.run_dir / "prm"


def run(cfg: Config, overwrite: bool, started: ExitStack) -> dict:
    from cluster.model_prep import prepare_model
    from cluster.train import load_data

    data, out = prm_paths(cfg)
    if not data.exists():
        raise FileNotFoundError(f"prm.data: {data} not found (run `python -m cluster.label` first, or set prm.data)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; --overwrite to replace it, or --set prm.output=OTHER")
    log = open_stage(cfg)
    base = cfg.prm.init or str(prepare_model(cfg, load_data(cfg, log)[0], log.info, log.progress))
    return train_prm(cfg, base, data, out, log, started)


if __name__ == "__main__":
    sys.exit(stage_main("cluster.prm_train", __doc__, run))
