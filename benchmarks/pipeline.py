"""Step time of the synchronous vs the asynchronous pipeline on the default job, with its timeline.

Synchronous is `trainer.max_staleness: 0` (rollout waits for the learner's new weights);
asynchronous is 1 (the next batch is sampled while the learner trains on this one). Each run
is the default job from its cached warm start; the two modes cannot share a process, so the
runs alternate (quick: sync, async; full: sync, async, async, sync). Reported per run: the mean
over steps 3.. of step, learner and sync seconds, the idle ratios, and from the run's timeline
(`timeline` in each step record of metrics.jsonl, cluster/timeline.py) how many seconds of
each step every part worked and how long the learner waited for its batch. Each run's timeline
is drawn to `runs/bench_pipeline/<run>_timeline.png`, one lane per part and actor.

    PYTHONPATH=. .venv/bin/python -m benchmarks.pipeline --quick|--full [--json FILE]
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.common import ROOT, Result, default_warm_model, finish, median, parse_mode, run_job

SETTINGS = {"quick": {"order": [0, 1], "steps": 6}, "full": {"order": [0, 1, 1, 0], "steps": 12}}
OUT = ROOT / "runs" / "bench_pipeline"
SKIP = 2  # the first steps include engine warm-up and, async, filling the pipe
TARGET = 0.6
PARTS = ("rollout", "judge", "learner", "sync")  # the lanes, top to bottom, then the driver's steps
COLORS = {"rollout": "tab:blue", "judge": "tab:orange", "learner": "tab:green", "sync": "tab:red",
          "step": "tab:gray"}


def spans_of(records: list[dict]) -> list[dict]:
    return [s for r in records if r["kind"] == "step" for s in r.get("timeline", [])]


def busy_per_step(records: list[dict], steps: list[dict]) -> dict:
    """Mean seconds per step that each part worked (its busiest actor, within the step) and that
    the learner waited between the step's start and its own start, over `steps`."""
    spans = spans_of(records)
    windows = [(s["start"], s["end"], s["batch"]) for s in spans if s["part"] == "step"]
    wanted = {r["step"] - 1 for r in steps}
    out = {part: 0.0 for part in PARTS}
    waited = 0.0
    counted = 0
    for start, end, batch in windows:
        if batch not in wanted:
            continue
        counted += 1
        for part in PARTS:
            per_actor: dict[str, float] = {}
            for s in spans:
                if s["part"] == part and s["batch"] != "eval":
                    overlap = min(end, s["end"]) - max(start, s["start"])
                    per_actor[s["actor"]] = per_actor.get(s["actor"], 0.0) + max(0.0, overlap)
            out[part] += max(per_actor.values(), default=0.0)
        learner = [s["start"] for s in spans if s["part"] == "learner" and s["batch"] == batch]
        waited += (learner[0] - start) if learner else 0.0
    n = max(counted, 1)
    return {**{f"{p}_busy_s": v / n for p, v in out.items()}, "learner_waited_s": waited / n}


def plot_timeline(records: list[dict], path: Path, title: str) -> Path:
    """One lane per part and actor; each bar is one piece of work, labelled with its batch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spans = spans_of(records)
    lanes = sorted({(s["part"], s["actor"]) for s in spans},
                   key=lambda lane: ((PARTS + ("step",)).index(lane[0]) if lane[0] in COLORS else 99, lane[1]))
    fig, ax = plt.subplots(figsize=(14, 0.45 * len(lanes) + 1.5))
    for y, (part, actor) in enumerate(lanes):
        for s in spans:
            if (s["part"], s["actor"]) != (part, actor):
                continue
            evaluating = s["batch"] == "eval"
            ax.barh(y, s["end"] - s["start"], left=s["start"], height=0.7, color=COLORS.get(part, "k"),
                    alpha=0.35 if evaluating else 0.85, edgecolor="black", linewidth=0.4)
            if s["end"] - s["start"] > 0.15:
                ax.text((s["start"] + s["end"]) / 2, y, "e" if evaluating else str(s["batch"]),
                        ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(lanes)), [f"{p}: {a}" for p, a in lanes])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the actors started (bar label: training batch; e: evaluation)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def measure(staleness: int, run: int, model_dir: str, steps: int) -> dict:
    name = f"staleness{staleness}-run{run}"
    summary, records = run_job(name, OUT, {
        "model.path": model_dir, "warm_start.enabled": "false", "trainer.max_steps": steps,
        "trainer.max_staleness": staleness, "trainer.eval_every": 0, "data.eval_size": 16})
    steps_ = [r for r in records if r["kind"] == "step"][SKIP:]
    mean = lambda key: sum(r[key] for r in steps_) / len(steps_)  # noqa: E731
    png = plot_timeline(records, OUT / f"{name}_timeline.png",
                        f"{name}: max_staleness {staleness}, {steps} steps")
    return {"max_staleness": staleness, "step_seconds": mean("step_seconds"),
            "learner_seconds": mean("learner_seconds"), "sync_seconds": mean("sync_seconds"),
            "rollout_idle": mean("rollout_idle"), "learner_idle": mean("learner_idle"),
            **busy_per_step(records, steps_),
            "staleness_max": max(r["staleness_max"] for r in steps_),
            "weights_in_sync": summary["weights_in_sync"],
            "samples_stale_dropped": summary["samples_stale_dropped"], "timeline_png": str(png)}


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
