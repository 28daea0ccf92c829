"""What a run shows and leaves behind: the console, a metrics log, summary.json and a plot."""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from cluster.logs import route_library_logs
from cluster.progress import Progress
from core.files import write_atomically


class RunLog:
    """The console shows progress bars (warm start, training), evaluations and problems, each
    problem once; every line also goes to logs/driver.log, beside the libraries' logs
    (cluster/logs.py). Every step and evaluation is a record appended to metrics.jsonl."""

    def __init__(self, run_dir: Path, stream: TextIO | None = None):
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.logger = logging.getLogger("thoughtrl")
        self.log_file = route_library_logs(run_dir / "logs" / "driver.log")
        self.bar: Progress | None = None
        self._warned: set[str] = set()

    def keep_until(self, step: int) -> None:
        """On resume: forget what happened after the checkpoint, which the run now redoes."""
        kept = [r for r in read_records(self.run_dir) if r.get("step", 0) <= step]
        write_atomically(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.redraw()

    def info(self, msg: str) -> None:
        self.logger.info(msg)
        self._say(msg)

    def warn(self, msg: str, key: str | None = None) -> None:
        """A problem: on the console the first time its `key` (default: the message) comes up,
        in the driver log every time."""
        self.logger.warning(msg)
        if (key or msg) not in self._warned:
            self._warned.add(key or msg)
            self._say(f"warning: {msg}")

    def progress(self, label: str, total: int, done: int = 0) -> Progress:
        """A progress bar on the console until it is closed (its final state stays as a line)."""
        self.bar = Progress(label, total, done=done, stream=self.stream, on_close=self._closed)
        return self.bar

    def _closed(self, bar: Progress) -> None:
        self.logger.info(bar.line())
        if self.bar is bar:
            self.bar = None

    def record(self, kind: str, **fields) -> None:
        rec = {"kind": kind, "time": round(time.time(), 3), **fields}
        with self.path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    def step(self, rec: dict) -> None:
        self.record("step", **rec)
        line = (f"reward {rec['reward_mean']:+.3f} | acc {rec['train_accuracy']:.3f} | "
                f"thoughts/sample {rec['thoughts_per_sample']:.2f} | loss {rec['loss']:+.4f} | "
                f"{rec['rollout_tokens_per_s']:.0f} tok/s")
        self.logger.info(f"step {rec['step']} | samples {rec['samples_trained']} | {line} | {rec['step_seconds']:.1f}s")
        if rec.get("judge_errors"):
            self.warn(f"step {rec['step']}: {rec['judge_errors']} samples lost to judge errors (a judge error "
                      "costs its sample only; the total is in summary.json)",
                      key="judge_errors")
        if self.bar is not None:
            self.bar.update(rec["step"], line)
            if rec["step"] >= self.bar.total:
                self.bar.close()

    def stale_drops(self, step: int, buffer: dict) -> None:
        """Samples the buffer refused as too old (trainer.max_staleness): a problem worth seeing."""
        if buffer.get("samples_stale_dropped"):
            self.warn(f"step {step}: {buffer['samples_stale_dropped']} samples dropped so far as more than "
                      "trainer.max_staleness versions old", key="stale_drops")


def read_records(run_dir: Path, kind: str | None = None) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if kind is None or r["kind"] == kind]


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = run_dir / "summary.json"
    write_atomically(path, json.dumps(summary, indent=2))
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
