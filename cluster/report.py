"""What a run leaves behind: progress lines, a metrics log, summary.json and a plot."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class RunLog:
    """Prints one progress line per event and appends every record to metrics.jsonl."""

    def __init__(self, run_dir: Path, resume: bool = False):
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        self.t0 = time.monotonic()
        if not resume and self.path.exists():
            self.path.unlink()

    def keep_until(self, step: int) -> None:
        """On resume: forget what happened after the checkpoint, which the run now redoes."""
        kept = [r for r in read_records(self.run_dir) if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def info(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def record(self, kind: str, **fields) -> None:
        rec = {"kind": kind, "time": round(time.time(), 3), **fields}
        with self.path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    def step(self, rec: dict) -> None:
        self.record("step", **rec)
        self.info(
            f"step {rec['step']:>4} | samples {rec['samples_trained']:>6} | reward {rec['reward_mean']:+.3f}"
            f" | acc {rec['train_accuracy']:.3f} | thoughts/sample {rec['thoughts_per_sample']:.2f}"
            f" | loss {rec['loss']:+.4f} | {rec['rollout_tokens_per_s']:.0f} tok/s | {rec['step_seconds']:.1f}s")


def read_records(run_dir: Path, kind: str | None = None) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if kind is None or r["kind"] == kind]


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    return path


def plot_accuracy(run_dir: Path) -> Path:
    """Held-out greedy accuracy and training accuracy against samples trained."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = read_records(run_dir, "eval")
    steps = read_records(run_dir, "step")
    fig, ax = plt.subplots(figsize=(6, 4))
    if steps:
        ax.plot([s["samples_trained"] for s in steps], [s["train_accuracy"] for s in steps],
                alpha=0.4, label="rollout accuracy (sampled)")
    if evals:
        ax.plot([e["samples_trained"] for e in evals], [e["accuracy"] for e in evals],
                marker="o", label="held-out accuracy (greedy)")
    ax.set_xlabel("samples trained")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = run_dir / "accuracy.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
