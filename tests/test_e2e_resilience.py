"""Failures during a real run: killed rollout/judge actors, a SIGKILLed driver resumed from a checkpoint."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from ray.util.placement_group import placement_group_table

from cluster.actor_group import ActorError
from cluster.report import read_records
from core.config import load_config
from tests.conftest import ROOT
from tests.ray_head import free_port
from tests.test_e2e import SMALL, assert_exactly_once

pytestmark = pytest.mark.timeout(900)


def wait_for_step(run_dir: Path, step: int, timeout_s: float, proc=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(r["step"] >= step for r in read_records(run_dir, "step")):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"run exited with {proc.returncode} before step {step}")
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout_s}s")


def test_killed_rollout_and_judge_actors_are_replaced_and_nothing_is_lost(tmp_path):
    from cluster.train import train
    cfg = load_config(ROOT / "configs/local.yaml", SMALL + [
        "name=kill", f"trainer.output_dir={tmp_path}", "trainer.max_steps=4", "trainer.check_weights_every=0",
        "learner.num_ranks=1"])
    killed = []

    def killer():
        wait_for_step(cfg.run_dir, 1, 600)
        for name in ("judge-0", "rollout-1"):
            ray.kill(ray.get_actor(name))
            killed.append(name)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        summary = train(cfg)
    finally:
        ray.shutdown()
    thread.join(5)
    assert killed == ["judge-0", "rollout-1"]
    assert summary["actor_restarts"]["rollout"] >= 1 and summary["actor_restarts"]["judge"] >= 1
    # the replaced engine was brought to the current weights before serving again
    assert summary["engine_versions"] == [cfg.trainer.max_steps] * cfg.rollout.num_actors
    assert summary["weights_in_sync"] is True
    assert_exactly_once(cfg, summary, read_records(cfg.run_dir, "step"))


def launch(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cluster.launch", "configs/local.yaml", *args],
                            cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def test_driver_killed_with_sigkill_resumes_to_the_configured_step_count(tmp_path):
    # two learner ranks: the checkpoint it resumes from holds the shards of both
    args = [a for o in SMALL + ["name=resume", f"trainer.output_dir={tmp_path}", "trainer.max_steps=5",
                                "trainer.checkpoint_every=2", "trainer.check_weights_every=0",
                                "rollout.num_actors=1", "judge.num_actors=1"] for a in ("--set", o)]
    cfg = load_config(ROOT / "configs/local.yaml", [a for a in args if a != "--set"])
    log = tmp_path / "driver.log"
    first = launch(args, log)
    try:
        wait_for_step(cfg.run_dir, 3, 600, first)  # past the checkpoint at step 2
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
        first.wait(30)
    assert not (cfg.run_dir / "summary.json").exists()
    second = launch(args + ["--resume"], log)
    try:
        assert second.wait(600) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] in (2, 4) and summary["steps"] == 5
    assert summary["policy_version"] == 5 and summary["weights_in_sync"] is True
    assert_exactly_once(cfg, summary, read_records(cfg.run_dir, "step"))


# Every role asks for a sliver of CPU so that each gets a placement group to release.
RESERVING = ["rollout.num_cpus_per_actor=0.1", "judge.num_cpus_per_actor=0.1", "learner.num_cpus_per_rank=0.1"]


def assert_nothing_left_running(port: int) -> None:
    """No actor of the run (all are named), no placement group, no metrics endpoint."""
    assert ray.util.list_named_actors() == []
    tables = placement_group_table().values()
    assert tables and all(pg["state"] == "REMOVED" for pg in tables), [pg["state"] for pg in tables]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_a_judge_that_cannot_start_stops_everything_the_run_started(tmp_path):
    from cluster.train import train
    port = free_port()
    cfg = load_config(ROOT / "configs/local.yaml", SMALL + RESERVING + [
        "name=nojudge", f"trainer.output_dir={tmp_path}", f"metrics.port={port}", "rollout.num_actors=1",
        "judge.num_actors=1", "learner.num_ranks=1", "judge.backend=step_classifier",
        f"judge.options.model={tmp_path / 'no-such-model'}"])
    try:
        with pytest.raises(ActorError, match=r"judge\.ready on judge-\d failed: .*no-such-model"):
            train(cfg)  # after the warm start, with engines and learner ranks already up
        assert_nothing_left_running(port)
    finally:
        ray.shutdown()


@pytest.mark.slow  # the same cleanup as the judge case above, from mid-run: `make test-all`
def test_a_learner_rank_lost_mid_run_stops_everything_the_run_started(tmp_path):
    from cluster.train import train
    port = free_port()
    cfg = load_config(ROOT / "configs/local.yaml", SMALL + RESERVING + [
        "name=nolearner", f"trainer.output_dir={tmp_path}", f"metrics.port={port}", "trainer.max_steps=4",
        "trainer.max_staleness=1", "trainer.check_weights_every=0"])

    def killer():
        wait_for_step(cfg.run_dir, 1, 600)
        ray.kill(ray.get_actor("learner-1"))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ActorError, match=r"learner-1"):
            train(cfg)  # with the next batches generating and judging
        thread.join(5)
        assert_nothing_left_running(port)
        assert not (cfg.run_dir / "summary.json").exists()
    finally:
        ray.shutdown()
