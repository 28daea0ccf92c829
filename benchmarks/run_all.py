"""Run every benchmark, each in its own process (a fresh Ray and clean memory), then print
one summary table. `--quick` (default) fits in about 15 minutes on 2 cores; `--full` does more
repetitions, the 100M-parameter weight sync, the full TRL run and 3 seeds x 4 methods of the
sample-efficiency curves (hours). sample_efficiency runs before pipeline and trl_compare: it builds the
default job's warm start, which they then reuse; sample_efficiency_shortcut builds the shortcut
task's, which credit_assignment reuses.

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

    rows = []
    for name in args.only or BENCHMARKS:
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
