"""A Ray head of its own on this machine: `ray start --head --block` on loopback ports picked
free, with its own temp dir and auth token, so it shares nothing with other Rays here. It is
stopped by signalling the `ray start --block` process (which stops what it spawned), never with
`ray stop`, which would stop every Ray on the machine."""
from __future__ import annotations

import contextlib
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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: `ray` and `python` of this interpreter
PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port", "object-manager-port",
              "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
              "metrics-export-port")


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
    def __init__(self, tmp: Path, env: dict | None = None):
        self.tmp = tmp
        self.ports = {flag: free_port() for flag in PORT_FLAGS}
        self.dashboard = f"http://127.0.0.1:{self.ports['dashboard-port']}"
        # What `source .venv/bin/activate` does, so the job's `python` is the venv's: the job
        # entrypoint is a shell command that inherits the head's PATH.
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(BIN.parent),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), **(env or {})}
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

    def driver_env(self) -> dict:
        """A driver joining this head as `ray job submit` would have it join (RAY_ADDRESS, token)."""
        return {**self.env, "RAY_ADDRESS": f"127.0.0.1:{self.ports['port']}", "PYTHONPATH": str(ROOT),
                "OMP_NUM_THREADS": "1"}

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


@contextlib.contextmanager
def ray_head(prefix: str, env: dict | None = None, timeout_s: float = 240):
    """A started head whose processes (raylet, workers) also see `env`; stopped and its temp dir
    removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))  # short: Ray's socket paths must stay < 108 chars
    head = RayHead(tmp, env)
    try:
        head.wait_ready(timeout_s)
        yield head
    finally:
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)
