"""Held-out greedy accuracy against samples trained, for several advantage estimators and seeds.

TP-GRPO's claim in miniature: each method is trained from the same warm start by the real
system (`cluster.train`, one run per (method, seed), all in this process so they share Ray's
start-up), on one of two tasks:
- `--task arith`: the default job (configs/local.yaml), whose habit to unlearn is one decision
  at the first token (answer at once, or work the problem out);
- `--task shortcut`: configs/shortcut.yaml, whose habit is a decision at every line (merge two
  operations, or work one), with errors at single lines (core/shortcut_task.py).
Prints, per method, the mean final accuracy with a 95% interval and the samples its mean curve
needed to reach GRPO's mean final accuracy; writes a plot with confidence bands. On the shortcut
task it also measures, from checkpoints of the first seed, the policy's merge rate and its
errors over training (`--no-rates` skips that).

    PYTHONPATH=. .venv/bin/python -m benchmarks.sample_efficiency --quick|--full [--task T] [--json F]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from benchmarks.common import (DEFAULT_CONFIG, ROOT, SHORTCUT_CONFIG, Result, default_warm_model, finish,
                               train_in_process)

TASKS = {
    "arith": {
        "config": DEFAULT_CONFIG, "target": 1 / 6, "target_text": "≤ 1/6 (paper)",
        "quick": {"methods": ["grpo", "tpgrpo"], "seeds": [1], "steps": 12, "eval_every": 2, "eval_size": 100},
        "full": {"methods": ["grpo", "step_grpo", "tpgrpo_static", "tpgrpo"], "seeds": [1, 2, 3], "steps": 30,
                 "eval_every": 2, "eval_size": 200},
    },
    "shortcut": {
        "config": SHORTCUT_CONFIG, "target": 1 / 3, "target_text": "≤ 1/3",
        "quick": {"methods": ["grpo", "tpgrpo"], "seeds": [1], "steps": 10, "eval_every": 2, "eval_size": 100},
        "full": {"methods": ["grpo", "step_grpo", "reasonflux", "tpgrpo_steps", "tpgrpo_static", "tpgrpo"],
                 "seeds": [1, 2, 3], "steps": 24, "eval_every": 3, "eval_size": 200},
    },
}
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}  # Student t, two-sided 95%, by degrees of freedom


def out_dir(task: str) -> Path:
    return ROOT / "runs" / ("bench_sample_efficiency" if task == "arith" else f"bench_sample_efficiency_{task}")


def curve(task: str, method: str, seed: int, model_dir: str, s: dict, checkpoints: bool
          ) -> list[tuple[int, float]]:
    overrides = {"model.path": model_dir, "warm_start.enabled": "false", "algorithm.name": method,
                 "seed": seed, "trainer.max_steps": s["steps"], "trainer.eval_every": s["eval_every"],
                 "data.eval_size": s["eval_size"]}
    if checkpoints:  # every evaluation's weights, kept for the decision rates
        overrides |= {"trainer.checkpoint_every": s["eval_every"], "trainer.keep_checkpoints": s["steps"]}
    _, records = train_in_process(f"{method}-seed{seed}", out_dir(task), overrides, TASKS[task]["config"])
    return [(r["samples_trained"], r["accuracy"]) for r in records if r["kind"] == "eval"]


def mean_ci(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return m, _T95.get(len(values) - 1, 1.96) * sd / math.sqrt(len(values))


def samples_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated sample count at which the mean curve reaches `target`."""
    return next((n for n, acc in points if acc >= target - 1e-9), None)


def plot(curves: dict[str, list[list[tuple[int, float]]]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, runs in curves.items():
        xs = [n for n, _ in runs[0]]
        stats = [mean_ci([r[i][1] for r in runs]) for i in range(len(xs))]
        means = [m for m, _ in stats]
        ax.plot(xs, means, marker="o", label=f"{method} ({len(runs)} seeds)")
        ax.fill_between(xs, [max(0.0, m - c) for m, c in stats], [min(1.0, m + c) for m, c in stats], alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel("samples trained")
    ax.set_ylabel("held-out greedy accuracy (band: 95% t-interval over seeds)")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def checkpoint_tensors(ckpt_dir: Path):
    """(step, HF-named weights) of each complete checkpoint in `ckpt_dir`, oldest first."""
    import torch

    from learner import checkpoints

    tags = [p.name for p in ckpt_dir.iterdir() if p.is_dir()] if ckpt_dir.is_dir() else []
    for tag in sorted((t for t in tags if t.startswith("step")), key=lambda t: int(t[4:])):
        if checkpoints.problem(ckpt_dir / tag, hashes=False) is not None:
            continue
        state = torch.load(ckpt_dir / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        seen: set[int] = set()  # a tied weight is stored under both names; the engines take it once
        tensors = []
        for name, t in state["module"].items():
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                tensors.append((name, t))
        yield int(tag[4:]), tensors


def decision_rates(task_dir: Path, methods: list[str], seed: int, model_dir: str, s: dict) -> dict:
    """Per method, the policy's merge rate and errors at the warm start and at every checkpoint."""
    from benchmarks.credit_assignment import habits_row, measure_habits
    from core.config import load_config
    from core.datasets import load_dataset
    from core.engine import VLLMEngine
    from core.prompts import PromptFormat
    from core.weights import pack

    cfg = load_config(SHORTCUT_CONFIG)
    train = load_dataset("synthetic", synthetic=cfg.data.synthetic, split="train").rows[-64:]
    evals = load_dataset("synthetic", synthetic=cfg.data.synthetic, split="eval").rows[:s["eval_size"]]
    engine = VLLMEngine(model_dir, dtype="float32", max_model_len=512, kv_cache_gb=0.5)
    prompt = PromptFormat.for_model(model_dir)

    def measure() -> dict:
        sampled = habits_row(*measure_habits(engine, prompt, train, 4, 1.0))
        greedy = habits_row(*measure_habits(engine, prompt, evals, 1, 0.0))
        return {"sampled": sampled, "greedy": greedy}

    try:
        out = {"warm": measure()}
        for method in methods:
            rows = {}
            for step, tensors in checkpoint_tensors(task_dir / f"{method}-seed{seed}" / "checkpoint"):
                engine.load_weights(pack(tensors))
                rows[step] = measure()
            out[method] = rows
            print(f"decision rates {method}: " + ", ".join(
                f"step {k}: merge {v['sampled']['merge_rate']:.2f}/{v['greedy']['merge_rate']:.2f}"
                for k, v in rows.items()), flush=True)
    finally:
        engine.shutdown()
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="two methods, one seed, few steps (default)")
    group.add_argument("--full", action="store_true", help="every method, 3 seeds")
    parser.add_argument("--task", choices=sorted(TASKS), default="arith")
    parser.add_argument("--no-rates", action="store_true", help="shortcut task: skip the decision rates")
    parser.add_argument("--methods", help="comma-separated estimators instead of the mode's (grpo always runs)")
    parser.add_argument("--seeds", type=int, help="this many seeds (1, 2, ...) instead of the mode's")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    args.mode = "full" if args.full else "quick"
    return args


def settings(args: argparse.Namespace) -> dict:
    """The mode's settings with the command line's methods and seeds."""
    from reward_service.advantages import known_algorithms

    s = dict(TASKS[args.task][args.mode])
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = sorted(set(methods) - set(known_algorithms()))
        if unknown:
            raise SystemExit(f"error: --methods: unknown {unknown}; known: {sorted(known_algorithms())}")
        s["methods"] = ["grpo"] + [m for m in dict.fromkeys(methods) if m != "grpo"]  # the reference first
    if args.seeds is not None:
        if args.seeds < 1:
            raise SystemExit("error: --seeds must be at least 1")
        s["seeds"] = list(range(1, args.seeds + 1))
    return s


def main() -> None:
    import ray

    args = parse_args()
    task = TASKS[args.task]
    s = settings(args)
    out = out_dir(args.task)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    model_dir = default_warm_model(task["config"])
    rates = args.task == "shortcut" and not args.no_rates
    curves: dict[str, list[list[tuple[int, float]]]] = {m: [] for m in s["methods"]}
    try:
        for seed in s["seeds"]:  # seeds outermost: a cut-short run still has every method
            for method in s["methods"]:
                curves[method].append(curve(args.task, method, seed, model_dir, s,
                                            checkpoints=rates and seed == s["seeds"][0]))
                print(f"{method} seed {seed}: {curves[method][-1]}", flush=True)
                # every finished curve on disk at once: a run cut short keeps what it measured
                (out / "curves.json").write_text(json.dumps({"settings": s, "curves": curves}, indent=1))
    finally:
        ray.shutdown()
    mean_curves = {m: [(runs[0][i][0], mean_ci([r[i][1] for r in runs])[0]) for i in range(len(runs[0]))]
                   for m, runs in curves.items()}
    target = mean_curves["grpo"][-1][1]
    measurements: dict = {"task": args.task, "settings": s, "warm_model": model_dir, "grpo_final_accuracy": target}
    for method, runs in curves.items():
        final, ci = mean_ci([r[-1][1] for r in runs])
        start = mean_ci([r[0][1] for r in runs])[0]
        measurements[method] = {"accuracy_start": start, "accuracy_final": final, "ci95": ci,
                                "samples_to_grpo_final": samples_to_reach(mean_curves[method], target),
                                "curves": runs}
    png = ROOT / "benchmarks" / (f"sample_efficiency_{args.mode}.png" if args.task == "arith"
                                 else f"sample_efficiency_{args.task}_{args.mode}.png")
    plot(curves, png, f"{args.task} task")
    measurements["plot"] = str(png.relative_to(ROOT))
    if rates:
        measurements["decision_rates"] = decision_rates(out, s["methods"], s["seeds"][0], model_dir, s)
    measurements["seconds"] = round(time.monotonic() - t0)
    grpo_n = measurements["grpo"]["samples_to_grpo_final"]
    tp_n = measurements.get("tpgrpo", {}).get("samples_to_grpo_final")  # absent when not asked for
    ratio = tp_n / grpo_n if tp_n is not None and grpo_n else float("nan")
    notes = [f"curves and logs: {out}"]
    if measurements["grpo"]["accuracy_final"] <= measurements["grpo"]["accuracy_start"]:
        notes.append("GRPO ended no higher than the warm start, so 'samples to reach GRPO's final "
                     "accuracy' measures nothing; the ratio is undefined")
        ratio = float("nan")
    finish(Result("sample_efficiency" if args.task == "arith" else f"sample_efficiency_{args.task}", "tpgrpo samples / grpo samples to reach grpo's final accuracy",
                  ratio, task["target_text"], None if math.isnan(ratio) else ratio <= task["target"], measurements,
                  notes=notes), args.json)


if __name__ == "__main__":
    main()
