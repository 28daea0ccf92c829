"""A checkpoint directory whose checkpoints are complete or absent.

    checkpoint/
      step4/                 one DeepSpeed checkpoint (every rank's files), tagged "step<N>"
      step4/manifest.json    each file of step4 with its size and sha256, written once all ranks saved
      latest                 the tag of the newest verified checkpoint (DeepSpeed's pointer file)

Saving (LearnerRank.save_checkpoint): every rank writes its files, a barrier, the ranks hash the
files between them, rank 0 writes the manifest and then replaces `latest` atomically, and old
checkpoints are pruned. A crash at any point leaves either the previous pointer or a verified
new one; a directory without a manifest (a save that did not finish) never counts.
Plain Python (no torch): the driver verifies checkpoints before any learner exists.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from core.files import write_atomically

MANIFEST = "manifest.json"
POINTER = "latest"  # DeepSpeed's name, so its own tools (zero_to_fp32.py) follow it too
_TAG = re.compile(r"step(\d+)")


def tag_for(step: int) -> str:
    return f"step{step}"


def _step(tag: str) -> int:
    return int(_TAG.fullmatch(tag).group(1))


def _tags(ckpt_dir: Path) -> list[str]:
    """Checkpoint tags in `ckpt_dir`, newest first."""
    if not ckpt_dir.is_dir():
        return []
    return sorted((p.name for p in ckpt_dir.iterdir() if p.is_dir() and _TAG.fullmatch(p.name)), key=_step,
                  reverse=True)


def pointer(ckpt_dir: str | Path) -> str | None:
    try:
        return (Path(ckpt_dir) / POINTER).read_text().strip() or None
    except OSError:
        return None


def list_files(tag_dir: str | Path) -> list[str]:
    """Every file of a checkpoint (relative paths, sorted), the manifest excepted."""
    root = Path(tag_dir)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def describe_files(tag_dir: str | Path, names: list[str]) -> dict[str, dict]:
    """{name: {"bytes", "sha256"}} for `names` inside `tag_dir`."""
    out = {}
    for name in names:
        path = Path(tag_dir) / name
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        out[name] = {"bytes": path.stat().st_size, "sha256": digest}
    return out


def write_manifest(tag_dir: str | Path, files: dict[str, dict]) -> None:
    write_atomically(Path(tag_dir) / MANIFEST, json.dumps({"files": files}, indent=1, sort_keys=True))


def problem(tag_dir: str | Path, hashes: bool = True) -> str | None:
    """Why the checkpoint in `tag_dir` is not complete, or None when its files match its manifest
    (sizes always; contents too with `hashes`)."""
    tag_dir = Path(tag_dir)
    try:
        files = json.loads((tag_dir / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return "no manifest: its save did not finish"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest ({e})"
    if not files:
        return "the manifest lists no files"
    for name, want in sorted(files.items()):
        path = tag_dir / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, the manifest says {want['bytes']}"
        if hashes and describe_files(tag_dir, [name])[name]["sha256"] != want["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    return None


@dataclass
class Found:
    """The checkpoint to resume from (None: there is none) and the newer ones passed over, with why."""
    tag: str | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def step(self) -> int | None:
        return None if self.tag is None else _step(self.tag)


def find(ckpt_dir: str | Path, hashes: bool = True) -> Found:
    """The newest complete checkpoint: the one `latest` points to if it verifies, otherwise the
    newest older one that does. Checkpoints newer than the pointer were never committed."""
    ckpt_dir = Path(ckpt_dir)
    tags = _tags(ckpt_dir)
    committed = pointer(ckpt_dir)
    skipped: list[tuple[str, str]] = []
    if committed is not None and _TAG.fullmatch(committed):
        if committed not in tags:
            skipped.append((committed, "its directory is missing"))
        tags = [t for t in tags if _step(t) <= _step(committed)]
    for tag in tags:
        why = problem(ckpt_dir / tag, hashes)
        if why is None:
            return Found(tag, skipped)
        skipped.append((tag, why))
    return Found(None, skipped)


def commit(ckpt_dir: str | Path, tag: str, keep: int) -> None:
    """Point `latest` at `tag` (whose manifest is written) and delete every other checkpoint
    except the `keep` - 1 newest complete ones before it."""
    ckpt_dir = Path(ckpt_dir)
    why = problem(ckpt_dir / tag, hashes=False)  # its hashes were just computed from these files
    if why is not None:
        raise RuntimeError(f"checkpoint {ckpt_dir / tag} did not verify after saving: {why}")
    write_atomically(ckpt_dir / POINTER, tag)
    older = [t for t in _tags(ckpt_dir) if _step(t) < _step(tag) and problem(ckpt_dir / t, hashes=False) is None]
    kept = {tag, *older[:keep - 1]}
    for t in _tags(ckpt_dir):
        if t not in kept:
            shutil.rmtree(ckpt_dir / t, ignore_errors=True)
