"""Run every benchmark, each in its own process (a fresh Ray and clean memory), then print
one summary table. `--quick` (default) fits in about 15 minutes on 2 cores; `--full` does more
repetitions, the 100M-parameter weight sync, the full TRL run and 3 seeds x 4 methods of the
sample-efficiency curves (hours). The warm-started models the benchmarks start from are built
first, once (cached in runs/_models, shared with `make run`), outside the benchmarks' time
limits: from an empty cache that takes 5 minutes for the default job's and 12 to 18 for the
shortcut task's on 2 cores.

    PYTHONPATH=. .venv/bin/python -m benchmarks.run_all --quick [--out runs/bench]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = ["rollout_efficiency", "weight_sync", "grading", "judging", "sample_efficiency",
              "sample_efficiency_shortcut", "credit_assignment", "pipeline", "trl_compare"]
COMMANDS = {"sample_efficiency_shortcut": ["benchmarks.sample_efficiency", "--task", "shortcut"]}  # else the name
TIMEOUT_S = {"quick": 900, "full": 3 * 3600}
# The warm start each benchmark starts from (benchmarks.common.default_warm_model's config).
WARM_STARTS = {"sample_efficiency": "DEFAULT_CONFIG", "pipeline": "DEFAULT_CONFIG", "trl_compare": "DEFAULT_CONFIG",
               "sample_efficiency_shortcut": "SHORTCUT_CONFIG", "credit_assignment": "SHORTCUT_CONFIG"}
WARM_START_TIMEOUT_S = 2 * 3600


def build_warm_starts(names: list[str], env: dict) -> str | None:
    """Build (or find in the cache) the warm starts `names` need, with the build's progress on
    the console; an error message where a build failed."""
    configs = list(dict.fromkeys(WARM_STARTS[n] for n in names if n in WARM_STARTS))
    if not configs:
        return None
    print(f"--- warm starts ({', '.join(configs)}) ---", flush=True)
    code = ("from benchmarks import common\n"
            f"for name in {configs!r}:\n"
            "    print(name, '->', common.default_warm_model(getattr(common, name)), flush=True)")
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=WARM_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {WARM_START_TIMEOUT_S} s"
    return None if proc.returncode == 0 else f"exit {proc.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true")
    group.add_argument("--full", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="JSON results go here")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run just these")
    args = parser.parse_args()
    mode = "full" if args.full else "quick"
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    names = args.only or BENCHMARKS
    failed = build_warm_starts(names, env)
    if failed:
        print(f"error: building the warm starts failed ({failed}); no benchmark was run", flush=True)
        return 1

    rows = []
    for name in names:
        out = args.out / f"{name}.json"
        out.unlink(missing_ok=True)
        print(f"--- {name} ({mode}) ---", flush=True)
        t0 = time.monotonic()
        try:
            command = COMMANDS.get(name, [f"benchmarks.{name}"])
            proc = subprocess.run([sys.executable, "-m", *command, f"--{mode}", "--json", str(out)],
                                  env=env, timeout=TIMEOUT_S[mode], capture_output=True, text=True)
            tail = proc.stdout[proc.stdout.rfind(f"== {name} =="):] if f"== {name} ==" in proc.stdout else ""
            print(tail or proc.stdout[-2000:] + proc.stderr[-3000:], flush=True)
            failed = None if proc.returncode == 0 and out.exists() else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            failed = f"timed out after {TIMEOUT_S[mode]} s"
        seconds = time.monotonic() - t0
        if failed:
            rows.append((name, "-", "-", "-", f"FAILED ({failed})", "-", seconds))
            continue
        r = json.loads(out.read_text())
        load = r["measurements"]["machine"]["loadavg_1_5_15"][0]
        rows.append((name, r["ratio_name"], f"{r['ratio']:.3f}", r["target"], {None: "n/a", True: "met", False: "MISSED"}[r["met"]],
                     f"{load:.1f}", seconds))

    print("\nbenchmark           | ratio                                                              | value  | target   | result | load1 | s")
    for name, what, value, target, verdict, load, seconds in rows:
        print(f"{name:<19} | {what:<66} | {value:<6} | {target:<8} | {verdict:<6} | {load:<5} | {seconds:.0f}")
    print(f"\nresults: {args.out}/*.json")
    return 1 if any(r[4].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
