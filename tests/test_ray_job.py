"""The README's cluster path, for real: `ray start --head`, then `ray job submit` of the launcher.

The head runs on loopback ports picked free, with its own temp dir and its own auth token, so
it shares nothing with other Rays on the machine. It is stopped by signalling the
`ray start --block` process this test started (which stops the processes it spawned), never
with `ray stop`, which would stop every Ray on the machine.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from tests.test_e2e import MODEL_CACHE

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: `ray` and `python` of this interpreter
PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port", "object-manager-port",
              "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
              "metrics-export-port")
JOB_SETTINGS = [
    "name=job", "trainer.max_steps=2", "warm_start.steps=20", "warm_start.answer_only.steps=5", f"model.cache_dir={MODEL_CACHE}", "data.eval_size=8", "trainer.prompts_per_step=4",
    "rollout.samples_per_prompt=4", "rollout.max_new_tokens=48", "rollout.num_actors=1", "judge.num_actors=1",
    "learner.num_ranks=1",
    # Non-zero reservations, so the job also runs its rollout engine and learner rank inside
    # placement groups (the CPU default reserves nothing); 1 of the 2 CPUs stays for tasks.
    "rollout.num_cpus_per_actor=0.5", "learner.num_cpus_per_rank=0.5",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sid: int) -> list[int]:
    """Processes in session `sid` (the head's session: everything it spawned and did not detach)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            # Fields after the ")" closing the command name: state ppid pgrp session ...
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(entry.name))
        except (ValueError, OSError, IndexError):
            continue
    return pids


class RayHead:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.ports = {flag: free_port() for flag in PORT_FLAGS}
        self.dashboard = f"http://127.0.0.1:{self.ports['dashboard-port']}"
        # What `source .venv/bin/activate` does, so the job's `python` is the venv's: the job
        # entrypoint is a shell command that inherits the head's PATH.
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(BIN.parent),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.headers = {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        self.env.pop("RAY_ADDRESS", None)
        self.log = open(tmp / "head.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
             "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={tmp / 'ray'}",
             "--disable-usage-stats", *[f"--{flag}={port}" for flag, port in self.ports.items()]],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}: {self.head_log()}")
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # answering (401 without the token): the dashboard is up
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"dashboard {self.dashboard} not up within {timeout_s}s: {self.head_log()}")

    def head_log(self) -> str:
        return (self.tmp / "head.log").read_text()[-3000:]

    def ray(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM to `ray start --block` drains the node and stops what it started; whatever
        of its session is left after that is killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_members(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture
def ray_head():
    tmp = Path(tempfile.mkdtemp(prefix="trl-ray-"))  # short: Ray's socket paths must stay < 108 chars
    head = RayHead(tmp)
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(300)
def test_launcher_runs_as_a_ray_job(ray_head, tmp_path):
    out = tmp_path / "runs"
    job_id = f"thoughtrl-test-{secrets.token_hex(4)}"
    overrides = [a for s in JOB_SETTINGS + [f"trainer.output_dir={out}"] for a in ("--set", s)]
    submit = ray_head.ray("job", "submit", "--address", ray_head.dashboard, "--submission-id", job_id,
                          "--working-dir", str(ROOT), "--",
                          "python", "-m", "cluster.launch", "configs/local.yaml", *overrides, timeout_s=240)
    jobs = JobSubmissionClient(ray_head.dashboard, headers=ray_head.headers)
    status = jobs.get_job_status(job_id)
    assert status == JobStatus.SUCCEEDED, (
        f"job {job_id} is {status}:\n{jobs.get_job_logs(job_id)[-8000:]}\n--- ray job submit ---\n"
        f"{submit.stdout[-2000:]}\n{submit.stderr[-3000:]}")
    assert submit.returncode == 0

    summary = json.loads((out / "job" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["policy_version"] == 2
    assert summary["samples_trained"] == 2 * 4 * 4  # steps × prompts × samples per prompt
    assert summary["weights_in_sync"] is True

    # The rollout engine and the learner rank ran in placement groups reserved by the job,
    # released with it; the judge asked for nothing, so it got none.
    listed = ray_head.ray("list", "placement-groups", "--address", ray_head.dashboard, "--format", "json",
                          "--detail", timeout_s=60)
    groups = {g["name"]: g for g in json.loads(listed.stdout)}
    assert set(groups) == {"job-learner", "job-rollout"}, listed.stdout
    for g in groups.values():
        assert [b["unit_resources"] for b in g["bundles"]] == [{"CPU": 0.5}] and g["state"] == "REMOVED"

    # The working dir was uploaded without what .gitignore lists (.venv is gigabytes).
    unpacked = [p.parent.parent for p in (ray_head.tmp / "ray").glob("session_*/runtime_resources/working_dir_files/*/cluster/launch.py")]
    assert unpacked, "the job's working dir was not found under the head's temp dir"
    assert all((d / "cluster" / "resources.py").exists() and not (d / ".venv").exists() for d in unpacked)
