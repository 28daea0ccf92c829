"""Step time of the synchronous vs the asynchronous pipeline on the default job, with idle ratios.

Synchronous is `trainer.max_staleness: 0` (rollout waits for the learner's new weights);
asynchronous is 1 (the next batch is sampled while the learner trains on this one). Each run
is the default job from its cached warm start; the two modes cannot share a process, so the
runs alternate (quick: sync, async; full: sync, async, async, sync). Reported per run: the mean
over steps 3.. of step, learner and sync seconds and of the rollout and learner idle ratios.

    PYTHONPATH=. .venv/bin/python -m benchmarks.pipeline --quick|--full [--json FILE]
"""
from __future__ import annotations

from benchmarks.common import ROOT, Result, default_warm_model, finish, median, parse_mode, run_job

SETTINGS = {"quick": {"order": [0, 1], "steps": 6}, "full": {"order": [0, 1, 1, 0], "steps": 12}}
OUT = ROOT / "runs" / "bench_pipeline"
SKIP = 2  # the first steps include engine warm-up and, async, filling the pipe
TARGET = 0.6


def measure(staleness: int, run: int, model_dir: str, steps: int) -> dict:
    summary, records = run_job(f"staleness{staleness}-run{run}", OUT, {
        "model.path": model_dir, "warm_start.enabled": "false", "trainer.max_steps": steps,
        "trainer.max_staleness": staleness, "trainer.eval_every": 0, "data.eval_size": 16})
    steps_ = [r for r in records if r["kind"] == "step"][SKIP:]
    mean = lambda key: sum(r[key] for r in steps_) / len(steps_)  # noqa: E731
    return {"max_staleness": staleness, "step_seconds": mean("step_seconds"),
            "learner_seconds": mean("learner_seconds"), "sync_seconds": mean("sync_seconds"),
            "rollout_idle": mean("rollout_idle"), "learner_idle": mean("learner_idle"),
            "staleness_max": max(r["staleness_max"] for r in steps_),
            "weights_in_sync": summary["weights_in_sync"],
            "samples_stale_dropped": summary["samples_stale_dropped"]}


def main() -> None:
    args = parse_mode(__doc__.splitlines()[0])
    s = SETTINGS[args.mode]
    model_dir = default_warm_model()
    runs = []
    for i, staleness in enumerate(s["order"]):
        runs.append(measure(staleness, i, model_dir, s["steps"]))
        print(runs[-1], flush=True)
    step = {k: median([r["step_seconds"] for r in runs if r["max_staleness"] == k]) for k in (0, 1)}
    ratio = step[1] / step[0]
    finish(Result("pipeline", "async step s / sync step s (max_staleness 1 vs 0)", ratio, f"≤ {TARGET}",
                  ratio <= TARGET, {"settings": s, "warm_model": model_dir, "runs": runs,
                                    "median_step_seconds": {"sync": step[0], "async": step[1]}}), args.json)


if __name__ == "__main__":
    main()
