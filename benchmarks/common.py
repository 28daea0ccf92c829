"""What every benchmark shares: timing statistics, machine facts, tiny models, result printing.

The machine these run on is shared and noisy, so every benchmark measures its two sides in
the same run, alternating them repetition by repetition, and reports medians and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Result:
    """One benchmark's outcome: named measurements, the headline ratio and its target."""
    name: str
    ratio_name: str
    ratio: float
    target: str
    met: bool | None  # None: no target set, the number is informative
    measurements: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        print(f"\n== {self.name} ==")
        for key, value in self.measurements.items():
            print(f"  {key}: {fmt(value)}")
        for note in self.notes:
            print(f"  note: {note}")
        verdict = "no target" if self.met is None else "met" if self.met else "MISSED"
        print(f"  {self.ratio_name} = {self.ratio:.3f}  (target {self.target}: {verdict})")


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); exact for the small samples used here."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def machine() -> dict:
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_1_5_15": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def build_model(out_dir: Path, **tiny) -> Path:
    """A tiny Qwen2 (core.tiny_model) of the given shape, built once per directory."""
    from core.tiny_model import TinyModelConfig, build_tiny_model

    if (out_dir / "model.safetensors").exists():
        return out_dir
    return build_tiny_model(out_dir, TinyModelConfig(**tiny))


def parse_mode(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="few repetitions (default)")
    group.add_argument("--full", action="store_true", help="more repetitions and sizes")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    args.mode = "full" if args.full else "quick"
    return args


def finish(result: Result, json_path: Path | None) -> None:
    result.measurements = {"machine": machine(), **result.measurements}
    result.print()
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(result), indent=2))


# ---- whole-job benchmarks: real runs of the default job -----------------------------------

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "local.yaml"
SHORTCUT_CONFIG = ROOT / "configs" / "shortcut.yaml"
MODEL_CACHE = ROOT / "runs" / "_models"


def default_warm_model(config: Path = DEFAULT_CONFIG) -> str:
    """The starting model of the job `config` describes (the default job's unless told).
    prepare_model is what the job calls, and it caches by the settings that made the model, so
    `make run` and every benchmark share one build."""
    from cluster.model_prep import prepare_model
    from core.config import load_config
    from core.datasets import load_dataset
    cfg = load_config(config, [f"model.cache_dir={MODEL_CACHE}"])
    rows = load_dataset(cfg.data.train, cfg.data.fields, cfg.data.synthetic, split="train").rows
    return str(prepare_model(cfg, rows, lambda msg: print(msg, flush=True)))


def train_in_process(name: str, out_dir: Path, overrides: dict, config: Path = DEFAULT_CONFIG
                     ) -> tuple[dict, list[dict]]:
    """The run `run_job` makes, in this process: successive runs share one Ray (started by the
    first; `ray.shutdown()` when done) and the driver's imports. Returns (summary, records)."""
    from cluster.report import read_records
    from cluster.train import train
    from core.config import load_config
    cfg = load_config(config, [f"name={name}", f"trainer.output_dir={out_dir}",
                               *(f"{key}={value}" for key, value in overrides.items())])
    summary = train(cfg, overwrite=True)
    return summary, read_records(cfg.run_dir)


def run_job(name: str, out_dir: Path, overrides: dict, timeout_s: float = 3600,
            config: Path = DEFAULT_CONFIG) -> tuple[dict, list[dict]]:
    """`python -m cluster.launch CONFIG` with `overrides`; returns (summary, records)."""
    import subprocess
    import sys
    # --overwrite: a benchmark reruns its runs under the same names
    cmd = [sys.executable, "-m", "cluster.launch", str(config), "--overwrite", "--set", f"name={name}",
           "--set", f"trainer.output_dir={out_dir}"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={value}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name / "summary.json").unlink(missing_ok=True)  # never read a previous run's
    log = out_dir / f"{name}.log"
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"run {name} failed (exit {proc.returncode}); see {log}")
    records = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines()]
    return json.loads((out_dir / name / "summary.json").read_text()), records
