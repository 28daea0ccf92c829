"""A relaunch never destroys an earlier run: the same name is refused unless `--resume` or
`--overwrite` says otherwise, nothing is written before the checks pass, and a running job
holds its directory against a second one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.report import RunLog, read_records
from cluster.run_dir import RunDir, RunDirError, held_run
from core.config import load_config
from learner import checkpoints
from tests.test_checkpoints import fake_checkpoint
from tests.test_validate import launch

ROOT = Path(__file__).resolve().parent.parent


def earlier_run(run_dir: Path, steps: int = 3, checkpoint: bool = False) -> dict[str, bytes]:
    """A run directory as a run leaves it; returns every file's bytes."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: local\n")
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "step", "step": s, "time": 0.0}) + "\n" for s in range(1, steps + 1)))
    if checkpoint:
        fake_checkpoint(run_dir / "checkpoint", 2)
    return snapshot(run_dir)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def config(tmp_path: Path, *sets: str):
    return load_config(ROOT / "configs/local.yaml", [f"trainer.output_dir={tmp_path / 'runs'}", *sets])


def test_same_name_is_refused_and_says_what_to_do(tmp_path):
    before = earlier_run(tmp_path / "runs" / "local", checkpoint=True)
    proc = launch(tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "already holds a run (3 steps logged, checkpoint step2)" in proc.stderr
    for hint in ("--resume", "--set name=", "--overwrite"):
        assert hint in proc.stderr, proc.stderr
    assert snapshot(tmp_path / "runs" / "local") == before
    assert not (tmp_path / "ray").exists()


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    before = earlier_run(tmp_path / "runs" / "local")
    proc = launch(tmp_path, args=("--resume",))
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1, proc.stderr
    assert "--resume: no complete checkpoint" in proc.stderr and "checkpoint_every is 0" in proc.stderr
    assert snapshot(tmp_path / "runs" / "local") == before
    # a checkpoint that does not verify is no checkpoint either, and the error says why
    (tmp_path / "runs" / "local" / "checkpoint" / "step4").mkdir(parents=True)
    proc = launch(tmp_path, "trainer.checkpoint_every=2", args=("--resume",))
    assert proc.returncode == 2 and "step4: no manifest" in proc.stderr, proc.stderr
    proc = launch(tmp_path, "name=never_ran", args=("--resume",))
    assert proc.returncode == 2 and "no complete checkpoint" in proc.stderr
    assert not (tmp_path / "runs" / "never_ran").exists()


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    proc = launch(tmp_path, args=("--resume", "--overwrite"))
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_a_failed_relaunch_changes_nothing(tmp_path):
    before = earlier_run(tmp_path / "runs" / "local")
    proc = launch(tmp_path, "judge.backend=nope", args=("--overwrite",))
    assert proc.returncode == 2 and "judge.backend" in proc.stderr
    assert snapshot(tmp_path / "runs" / "local") == before


def test_overwrite_replaces_the_earlier_run(tmp_path):
    run_dir = tmp_path / "runs" / "local"
    earlier_run(run_dir, checkpoint=True)
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "driver.log").write_text("old\n")
    run = RunDir.open(config(tmp_path), overwrite=True)
    assert held_run(run_dir) is None
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "config.yaml", "logs"]
    assert not list(run.logs.iterdir())
    assert "trainer:" in (run_dir / "config.yaml").read_text()


def test_a_directory_without_results_is_reused(tmp_path):
    """A run that stopped before its first evaluation left only its config and logs."""
    run_dir = tmp_path / "runs" / "local"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: local\n")
    (run_dir / "logs" / "driver.log").write_text("the earlier attempt's log\n")
    RunDir.open(config(tmp_path))
    assert (run_dir / "logs" / "driver.log").read_text() == "the earlier attempt's log\n"


def test_resume_keeps_the_run_and_reports_what_changed(tmp_path):
    run_dir = tmp_path / "runs" / "local"
    first = RunDir.open(config(tmp_path, "trainer.checkpoint_every=2"))
    first.close()
    log = RunLog(run_dir)
    for step in (1, 2, 3):
        log.record("step", step=step)
    fake_checkpoint(run_dir / "checkpoint", 2)
    newer = fake_checkpoint(run_dir / "checkpoint", 3)
    (newer / "shard0.pt").write_bytes(b"truncated")

    run = RunDir.open(config(tmp_path, "trainer.checkpoint_every=2", "trainer.max_steps=50"), resume=True)
    assert run.resume_from.tag == "step2"
    assert run.resume_from.skipped == [("step3", "shard0.pt has 9 bytes, the manifest says 300")]
    assert run.changed_settings == ["trainer.max_steps: 40 → 50"]
    RunLog(run_dir).keep_until(2)
    assert [r["step"] for r in read_records(run_dir, "step")] == [1, 2]


def test_a_running_job_holds_its_directory(tmp_path):
    """The lock belongs to a process: a second job (here a second process) is refused."""
    cfg = config(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom core.config import load_config\nfrom cluster.run_dir import RunDir\n"
         f"run = RunDir.open(load_config('configs/local.yaml', ['trainer.output_dir={tmp_path / 'runs'}']))\n"
         "print('locked', flush=True)\nsys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"in use by another running job \(pid {holder.pid}"):
            RunDir.open(cfg)
    finally:
        holder.stdin.close()
        holder.wait(60)
    RunDir.open(cfg).close()  # free once the holder has ended


def test_held_run_describes_what_the_run_left(tmp_path):
    run_dir = tmp_path / "runs" / "local"
    earlier_run(run_dir, steps=0, checkpoint=True)
    assert held_run(run_dir) == "0 steps logged, checkpoint step2"
    assert checkpoints.pointer(run_dir / "checkpoint") == "step2"
