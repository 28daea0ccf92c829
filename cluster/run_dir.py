"""The run directory, <trainer.output_dir>/<name>/: when it holds a run, and who may write it.

    config.yaml     the settings of the run (of its latest launch)
    metrics.jsonl   every step and evaluation          ┐
    summary.json    the result                         │ a run's results: a directory holding
    accuracy.png    held-out accuracy against samples  │ any of them holds a run
    checkpoint/     learner/checkpoints.py             ┘
    logs/           library logs of the driver and of every actor (cluster/logs.py)

A directory that holds a run is never overwritten silently: a launch with the same name is
refused unless it says `--resume` (continue from the newest complete checkpoint) or
`--overwrite` (replace the earlier run). The check runs before anything is written, and again
under a lock that the running job holds, so a second job cannot write into a directory in use.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import yaml

from core.config import Config
from learner import checkpoints
from core.files import write_atomically

RESULTS = ("metrics.jsonl", "summary.json", "accuracy.png", "checkpoint")
_LOCK = ".lock"


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked; the message says what to do instead."""


def held_run(run_dir: Path) -> str | None:
    """What the run in `run_dir` has produced ("4 steps logged, checkpoint step4"); None when
    the directory holds no run."""
    if not any((run_dir / name).exists() for name in RESULTS):
        return None
    parts = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        steps = sum('"kind": "step"' in line for line in metrics.read_text(errors="replace").splitlines())
        parts.append(f"{steps} steps logged")
    if (run_dir / "summary.json").is_file():
        parts.append("finished")
    found = checkpoints.find(run_dir / "checkpoint", hashes=False)
    if found.tag:
        parts.append(f"checkpoint {found.tag}")
    return ", ".join(parts) or "earlier results"


def check_run_dir(cfg: Config, resume: bool = False, overwrite: bool = False) -> str | None:
    """Why this launch may not use cfg.run_dir as asked, or None. Reads only."""
    run_dir = cfg.run_dir
    if resume and overwrite:
        return "--resume and --overwrite exclude each other"
    if resume:
        found = checkpoints.find(run_dir / "checkpoint", hashes=False)
        if found.tag is None:
            why = ("trainer.checkpoint_every is 0, so this config never saves one"
                   if not cfg.trainer.checkpoint_every else "none was saved, or none is complete")
            passed = "".join(f"\n  {tag}: {reason}" for tag, reason in found.skipped)
            return (f"--resume: no complete checkpoint in {run_dir / 'checkpoint'} ({why}){passed}\n"
                    "To start afresh instead, leave out --resume (and add --overwrite to replace the earlier run).")
        return None
    held = held_run(run_dir)
    if held and not overwrite:
        return (f"{run_dir} already holds a run ({held}).\n"
                "  to continue it:                --resume\n"
                "  to keep it and start another:  --set name=NEW_NAME\n"
                "  to replace it:                 --overwrite")
    return None


class RunDir:
    """The run directory of a launch that passed `check_run_dir`, locked for the whole run.

    `open` takes the lock, checks again, deletes the earlier run only with `overwrite`, finds the
    checkpoint to resume from (verifying its hashes) and writes config.yaml."""

    def __init__(self, path: Path, lock_fd: int):
        self.path, self._lock_fd = path, lock_fd
        self.resume_from: checkpoints.Found | None = None
        self.changed_settings: list[str] = []  # on resume: what differs from the earlier launch

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoint"

    @classmethod
    def open(cls, cfg: Config, resume: bool = False, overwrite: bool = False) -> "RunDir":
        path = cfg.run_dir
        if problem := check_run_dir(cfg, resume, overwrite):  # before anything is written
            raise RunDirError(problem)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, _lock(path))
        if problem := check_run_dir(cfg, resume, overwrite):  # again, now that no other job can change it
            run.close()
            raise RunDirError(problem)
        if overwrite:
            for name in (*RESULTS, "config.yaml", "logs"):
                target = path / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        settings = cfg.model_dump(mode="json")
        if resume:
            run.resume_from = checkpoints.find(run.checkpoints)
            if run.resume_from.tag is None:
                run.close()
                raise RunDirError(f"--resume: no checkpoint in {run.checkpoints} verifies: " + "; ".join(
                    f"{tag}: {why}" for tag, why in run.resume_from.skipped))
            run.changed_settings = _differences(_read_settings(path / "config.yaml"), settings)
        run.logs.mkdir(exist_ok=True)
        write_atomically(path / "config.yaml", yaml.safe_dump(settings, sort_keys=False))
        return run

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def __del__(self):
        self.close()


def _lock(path: Path) -> int:
    """An exclusive lock on path/.lock for as long as this process keeps it (or lives)."""
    fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EAGAIN):
            return fd  # a filesystem without locks: check_run_dir is then all the protection there is
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirError(f"{path} is in use by another running job (pid {holder} on its host); "
                          "wait for it to end, or use another name (--set name=NEW_NAME)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_settings(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'trainer.max_steps: 5 → 10' for every setting that differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} → {json.dumps(b)}")
    return out
