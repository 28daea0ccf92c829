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
