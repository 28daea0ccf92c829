"""Held-out greedy accuracy against samples trained, for four advantage estimators, several seeds.

TP-GRPO's claim in miniature: GRPO (outcome only), step-level GRPO, TP-GRPO with static ±1
thought rewards and TP-GRPO with capability-adaptive rewards, each trained from the same warm
start on the arithmetic task by the real system (`cluster.launch`), one run per (method, seed).
Prints, per method, the mean final accuracy with a 95% interval and how many samples it needed
to reach GRPO's mean final accuracy; writes a plot with confidence bands.

    PYTHONPATH=. .venv/bin/python -m benchmarks.sample_efficiency --quick|--full [--json F]
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from benchmarks.common import ROOT, Result, default_warm_model, finish, parse_mode, run_job

METHODS = ["grpo", "step_grpo", "tpgrpo_static", "tpgrpo"]
SETTINGS = {
    "quick": {"methods": ["grpo", "tpgrpo"], "seeds": [1], "steps": 12, "eval_every": 2, "eval_size": 100},
    "full": {"methods": METHODS, "seeds": [1, 2, 3], "steps": 30, "eval_every": 2, "eval_size": 200},
}
OUT = ROOT / "runs" / "bench_sample_efficiency"
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}  # Student t, two-sided 95%, by degrees of freedom


def curve(method: str, seed: int, model_dir: str, s: dict) -> list[tuple[int, float]]:
    _, records = run_job(f"{method}-seed{seed}", OUT, {
        "model.path": model_dir, "warm_start.enabled": "false", "algorithm.name": method, "seed": seed,
        "trainer.max_steps": s["steps"], "trainer.eval_every": s["eval_every"], "data.eval_size": s["eval_size"]})
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


def plot(curves: dict[str, list[list[tuple[int, float]]]], path: Path) -> None:
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
    ax.set_xlabel("samples trained")
    ax.set_ylabel("held-out greedy accuracy (band: 95% t-interval over seeds)")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_mode(__doc__.splitlines()[0])
    s = SETTINGS[args.mode]
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    model_dir = default_warm_model()
    curves: dict[str, list[list[tuple[int, float]]]] = {m: [] for m in s["methods"]}
    for seed in s["seeds"]:  # seeds outermost: a cut-short run still has every method
        for method in s["methods"]:
            curves[method].append(curve(method, seed, model_dir, s))
            print(f"{method} seed {seed}: {curves[method][-1]}", flush=True)
    mean_curves = {m: [(runs[0][i][0], mean_ci([r[i][1] for r in runs])[0]) for i in range(len(runs[0]))]
                   for m, runs in curves.items()}
    target = mean_curves["grpo"][-1][1]
    measurements: dict = {"settings": s, "warm_model": model_dir, "grpo_final_accuracy": target}
    for method, runs in curves.items():
        final, ci = mean_ci([r[-1][1] for r in runs])
        start = mean_ci([r[0][1] for r in runs])[0]
        measurements[method] = {"accuracy_start": start, "accuracy_final": final, "ci95": ci,
                                "samples_to_grpo_final": samples_to_reach(mean_curves[method], target),
                                "curves": runs}
    png = ROOT / "benchmarks" / f"sample_efficiency_{args.mode}.png"
    plot(curves, png)
    measurements["plot"] = str(png.relative_to(ROOT))
    measurements["seconds"] = round(time.monotonic() - t0)
    grpo_n = measurements["grpo"]["samples_to_grpo_final"]
    tp_n = measurements["tpgrpo"]["samples_to_grpo_final"]
    ratio = tp_n / grpo_n if tp_n and grpo_n else float("nan")
    notes = [f"curves and logs: {OUT}"]
    if measurements["grpo"]["accuracy_final"] <= measurements["grpo"]["accuracy_start"]:
        notes.append("GRPO ended no higher than the warm start, so 'samples to reach GRPO's final "
                     "accuracy' measures nothing; the ratio is undefined")
        ratio = float("nan")
    finish(Result("sample_efficiency", "tpgrpo samples / grpo samples to reach grpo's final accuracy",
                  ratio, "≤ 1/6 (paper)", None if math.isnan(ratio) else ratio <= 1 / 6, measurements,
                  notes=notes), args.json)


if __name__ == "__main__":
    main()
