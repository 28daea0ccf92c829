"""The GPU path end to end on the tiny model: CUDA vLLM, DeepSpeed on GPU, collective weight sync.

    make gpu-smoke        (= PYTHONPATH=. .venv/bin/python scripts/gpu_smoke.py)

It runs the training driver itself (`python -m cluster.launch configs/local.yaml`), so every
line is the CPU path's; only placement and backend names differ: one rollout engine and one
learner rank on GPUs (DeepSpeed over nccl), 3 steps with the served-weights hash compared to the
learner's after every sync. The weights travel over nccl when there are 2 GPUs or more (rank 0
and the engine on GPUs of their own); on a single GPU over gloo, because NCCL refuses two ranks
on one device. Needs a CUDA build of torch and vLLM (`pip install -e ".[gpu,test]"`); without
one it stops at once and says so. Exit 0 only when the run finished in time with every engine
serving the learner's weights after every sync.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 8 * 60
RUN = "gpu-smoke"


def fail(message: str) -> int:
    print(f"gpu-smoke: FAILED: {message}", file=sys.stderr)
    return 1


def gpus() -> int:
    """The CUDA GPUs this venv can use; an explanation and exit 2 when there are none."""
    import torch
    from vllm.platforms import current_platform
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0 or not current_platform.is_cuda():
        print(f"gpu-smoke: no usable CUDA GPU (torch {torch.__version__}, cuda available: "
              f"{torch.cuda.is_available()}, vLLM platform: {current_platform.device_type or 'cpu'}).\n"
              "It needs an NVIDIA GPU and the CUDA builds of torch and vLLM: "
              "`.venv/bin/pip install -e \".[gpu,test]\"` on a GPU machine. Nothing was run.", file=sys.stderr)
        raise SystemExit(2)
    return count


def overrides(num_gpus: int, out_dir: Path) -> list[str]:
    share = 1 if num_gpus >= 2 else 0.45  # one GPU: engine and learner rank side by side on it
    return [
        f"name={RUN}", f"trainer.output_dir={out_dir}", "warm_start.enabled=false",
        "trainer.max_steps=3", "trainer.prompts_per_step=8", "trainer.eval_every=0", "trainer.check_weights_every=1",
        "trainer.weight_sync=collective", f"trainer.weight_sync_backend={'nccl' if num_gpus >= 2 else 'gloo'}",
        "trainer.call_timeout_s=300", "data.eval_size=32",
        "rollout.num_actors=1", f"rollout.num_gpus_per_actor={share}", "rollout.gpu_memory_utilization=0.3",
        "judge.num_actors=1", "learner.num_ranks=1", f"learner.num_gpus_per_rank={share}", "learner.backend=nccl",
    ]


def main() -> int:
    num_gpus = gpus()
    out_dir = ROOT / "runs"
    sets = [x for o in overrides(num_gpus, out_dir) for x in ("--set", o)]
    channel = "nccl" if num_gpus >= 2 else "gloo (1 GPU: NCCL cannot hold two ranks on one device)"
    print(f"gpu-smoke: {num_gpus} GPU(s); weights over {channel}; limit {LIMIT_S // 60} min", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "cluster.launch", "configs/local.yaml", *sets, "--overwrite"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        return fail(f"the run did not finish within {LIMIT_S // 60} minutes (logs: {out_dir / RUN / 'logs'})")
    if proc.returncode != 0:
        return fail(f"the run exited with {proc.returncode} (logs: {out_dir / RUN / 'logs'})")
    summary = json.loads((out_dir / RUN / "summary.json").read_text())
    records = [json.loads(line) for line in (out_dir / RUN / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    checks = {
        "3 steps trained": summary["steps"] == 3 and len(steps) == 3,
        "engine serves version 3": summary["engine_versions"] == [3],
        "weights in sync after every sync": [r["weights_in_sync"] for r in steps] == [True] * 3
                                            and summary["weights_in_sync"] is True,
        "no engine replaced": summary["actor_restarts"].get("rollout", 0) == 0,
    }
    for what, ok in checks.items():
        print(f"gpu-smoke: {'ok  ' if ok else 'FAIL'} {what}")
    syncs = ", ".join(f"{r['sync_seconds']:.3f}s ({r['sync_bytes'] / 1e6:.1f} MB)" for r in steps)
    print(f"gpu-smoke: syncs {syncs}; whole run {time.monotonic() - start:.0f}s")
    if not all(checks.values()):
        return fail(f"see {out_dir / RUN / 'summary.json'} and {out_dir / RUN / 'logs'}")
    print("gpu-smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
