"""The default job under faults, start to end, with every sample checked.

    PYTHONPATH=. .venv/bin/python scripts/fault_injection.py [--set key=value ...]

One run of configs/local.yaml (named `fault-injection`, checkpoints every C = 5 steps unless
`--set trainer.checkpoint_every=C`) that meets:
1. a judge actor's process killed with SIGKILL after step 1,
2. a rollout actor's process killed with SIGKILL after step 2,
3. the driver and the Ray it started killed with SIGKILL after step 2C + 2 (C = 5: step 12,
   checkpoints at 5 and 10),
4. the newest checkpoint's largest file cut to half its size,
then `--resume`. Passes (exit 0) when the run ends at the configured step count, resumed from the
checkpoint before the damaged one, with actors replaced, the engines serving the learner's weights,
and every sample of every step trained exactly once. Takes about as long as `make run` plus the
steps done twice. The console of both drivers goes to runs/fault-injection/fault_driver.log.
tests/test_e2e_resilience.py runs it on a small job.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.report import read_records  # noqa: E402
from core.config import load_config  # noqa: E402
from learner.checkpoints import POINTER  # noqa: E402

CONFIG = "configs/local.yaml"
FIXED = ["name=fault-injection", "trainer.checkpoint_every=5"]


def say(msg: str) -> None:
    print(f"[fault-injection {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def launch(overrides: list[str], extra: list[str], log: Path) -> subprocess.Popen:
    args = [a for o in overrides for a in ("--set", o)]
    return subprocess.Popen([sys.executable, "-m", "cluster.launch", CONFIG, *args, *extra], cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout_s: float = 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(r["step"] >= step for r in read_records(run_dir, "step")):
            return
        if proc.poll() is not None:
            raise SystemExit(f"FAILED: the driver exited with {proc.returncode} before step {step}")
        time.sleep(0.5)
    raise SystemExit(f"FAILED: no step {step} within {timeout_s:.0f}s")


def kill_one(title: str, session: int) -> int:
    """SIGKILL the first process of `session` (the driver's: it started the Ray it runs on) whose
    command line starts with `title` (a Ray worker's title)."""
    for entry in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if os.getsid(int(entry.name)) != session:
                continue
        except OSError:
            continue
        if cmdline.startswith(title):
            os.kill(int(entry.name), signal.SIGKILL)
            return int(entry.name)
    raise SystemExit(f"FAILED: no process {title!r} to kill")


def damage_newest_checkpoint(ckpt_dir: Path) -> tuple[str, Path]:
    tag = (ckpt_dir / POINTER).read_text().strip()  # step<N>
    biggest = max((p for p in (ckpt_dir / tag).rglob("*") if p.is_file() and p.name != "manifest.json"),
                  key=lambda p: p.stat().st_size)
    with biggest.open("r+b") as f:
        f.truncate(biggest.stat().st_size // 2)
    return tag, biggest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = FIXED + args.overrides
    cfg = load_config(ROOT / CONFIG, overrides)
    every = cfg.trainer.checkpoint_every
    kill_driver_at = 2 * every + 2  # past at least two checkpoints: one to damage, one to resume from
    if not every or cfg.trainer.max_steps <= kill_driver_at:
        raise SystemExit(f"error: needs trainer.checkpoint_every >= 1 and trainer.max_steps > {kill_driver_at}")
    run_dir = ROOT / cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / "fault_driver.log"
    log.write_text("")
    t0 = time.monotonic()

    first = launch(overrides, ["--overwrite"], log)
    try:
        wait_for_step(run_dir, 1, first)
        say(f"step 1 done: SIGKILL judge process {kill_one('ray::JudgeWorker', first.pid)}")
        wait_for_step(run_dir, 2, first)
        say(f"step 2 done: SIGKILL rollout process {kill_one('ray::RolloutWorker', first.pid)}")
        wait_for_step(run_dir, kill_driver_at, first)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a driver that failed may have left nothing
            os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
        first.wait(60)
    say(f"step {kill_driver_at} done: SIGKILLed the driver and its Ray")
    if (run_dir / "summary.json").exists():
        raise SystemExit("FAILED: the killed run wrote a summary")
    tag, shard = damage_newest_checkpoint(run_dir / "checkpoint")
    resume_step = int(tag.removeprefix("step")) - every
    say(f"cut {shard.relative_to(run_dir)} (checkpoint {tag}) to half its size; resuming")

    second = launch(overrides, ["--resume"], log)
    rc = second.wait()
    if rc != 0:
        raise SystemExit(f"FAILED: the resumed run exited with {rc}; see {log}")
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = read_records(run_dir, "step")
    keys = [k for s in steps for k in s["sample_keys"]]
    per_step = cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    twice = [k for k, n in Counter(keys).items() if n > 1]
    # restarts are counted by the driver that saw them: the first one, in the steps kept
    checks = {
        "ended at the configured step count": summary["steps"] == cfg.trainer.max_steps,
        "resumed from the checkpoint before the damaged one": summary["resumed_from_step"] == resume_step,
        "every step recorded once": sorted(s["step"] for s in steps) == list(range(1, cfg.trainer.max_steps + 1)),
        "every sample trained": len(keys) == cfg.trainer.max_steps * per_step == summary["samples_trained"],
        "no sample trained twice": not twice,
        "engines serve the learner's weights": summary["weights_in_sync"] is True,
        "killed actors were replaced": (lambda r: r["rollout"] >= 1 and r["judge"] >= 1)(
            max((s["actor_restarts"] for s in steps if s["step"] <= resume_step), key=lambda r: sum(r.values()))),
    }
    for what, ok in checks.items():
        say(f"{'ok  ' if ok else 'FAIL'} {what}")
    say(f"{summary['samples_trained']} samples over {summary['steps']} steps; held-out accuracy "
        f"{summary['eval_accuracy_before']:.3f} -> {summary['eval_accuracy_after']:.3f}; "
        f"{time.monotonic() - t0:.0f}s in all")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
