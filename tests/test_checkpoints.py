"""Checkpoints are complete or absent: a manifest of sizes and hashes, then the `latest` pointer;
resume takes the newest one that verifies and says which it passed over; old ones are pruned.

The last test uses real DeepSpeed ranks (2 ranks, ZeRO-2 over gloo, through Ray) and truncates a
shard of the newest checkpoint, as a crash or a full disk would leave it.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from cluster.actor_group import ActorGroup
from core.records import EXPERIENCE_SCHEMA, to_table
from learner import checkpoints
from learner.group import LearnerGroup, LearnerRankActor
from learner.loss import token_logprobs



def fake_checkpoint(ckpt_dir: Path, step: int, keep: int = 2, sizes=(300, 50)) -> Path:
    """What LearnerRank.save_checkpoint leaves: files, their manifest, then the commit."""
    tag_dir = ckpt_dir / checkpoints.tag_for(step)
    tag_dir.mkdir(parents=True)
    for i, size in enumerate(sizes):
        (tag_dir / f"shard{i}.pt").write_bytes(bytes([step + i]) * size)
    checkpoints.write_manifest(tag_dir, checkpoints.describe_files(tag_dir, checkpoints.list_files(tag_dir)))
    checkpoints.commit(ckpt_dir, tag_dir.name, keep)
    return tag_dir


def tags(ckpt_dir: Path) -> list[str]:
    return sorted(p.name for p in ckpt_dir.iterdir() if p.is_dir())


def test_commit_points_at_the_new_checkpoint_and_keeps_the_newest(tmp_path):
    for step in (2, 4, 6):
        fake_checkpoint(tmp_path, step, keep=2)
    assert tags(tmp_path) == ["step4", "step6"] and checkpoints.pointer(tmp_path) == "step6"
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name], "a temporary file was left"
    fake_checkpoint(tmp_path, 8, keep=3)
    assert tags(tmp_path) == ["step4", "step6", "step8"]
    assert checkpoints.find(tmp_path) == checkpoints.Found("step8", [])


@pytest.mark.parametrize("damage, why", [
    (lambda d: (d / "shard0.pt").write_bytes(b"x" * 100), "shard0.pt has 100 bytes, the manifest says 300"),
    (lambda d: (d / "shard1.pt").unlink(), "shard1.pt is missing"),
    (lambda d: (d / "shard0.pt").write_bytes(b"y" * 300), "shard0.pt does not match its sha256"),
    (lambda d: (d / checkpoints.MANIFEST).unlink(), "no manifest"),
    (lambda d: (d / checkpoints.MANIFEST).write_text("{"), "unreadable manifest"),
])
def test_resume_falls_back_to_the_last_complete_checkpoint_and_says_why(tmp_path, damage, why):
    fake_checkpoint(tmp_path, 2)
    damage(fake_checkpoint(tmp_path, 4))
    found = checkpoints.find(tmp_path)
    assert found.tag == "step2" and found.step == 2
    assert len(found.skipped) == 1 and found.skipped[0][0] == "step4" and why in found.skipped[0][1]


def test_only_committed_checkpoints_count(tmp_path):
    fake_checkpoint(tmp_path, 2)
    # a save that stopped before its pointer moved (step4) and one that stopped before its manifest (step6)
    fake_checkpoint(tmp_path / "other", 4).rename(tmp_path / "step4")
    (tmp_path / "step6").mkdir()
    (tmp_path / "step6" / "shard0.pt").write_bytes(b"z" * 10)
    assert checkpoints.find(tmp_path) == checkpoints.Found("step2", [])
    # the pointer names a directory that is gone: the newest complete one before it
    (tmp_path / checkpoints.POINTER).write_text("step8")
    assert checkpoints.find(tmp_path) == checkpoints.Found(
        "step4", [("step8", "its directory is missing"), ("step6", "no manifest: its save did not finish")])


def test_no_checkpoint_at_all(tmp_path):
    assert checkpoints.find(tmp_path / "absent") == checkpoints.Found(None, [])
    (tmp_path / "step2").mkdir()
    found = checkpoints.find(tmp_path)
    assert found.tag is None and found.skipped == [("step2", "no manifest: its save did not finish")]


def test_a_new_save_deletes_what_an_unfinished_one_left(tmp_path):
    fake_checkpoint(tmp_path, 2)
    (tmp_path / "step9").mkdir()  # an abandoned save of a later step
    fake_checkpoint(tmp_path, 4)
    assert tags(tmp_path) == ["step2", "step4"]


# ---- real DeepSpeed ranks ---------------------------------------------------------------

RANK_KWARGS = dict(lr=1e-3, micro_batch_size=2, backend="gloo", seed=0)


def learner(model_dir: Path) -> LearnerGroup:
    ranks = ActorGroup("learner", LearnerRankActor, 2, timeout_s=300, options={"num_cpus": 0})
    return LearnerGroup(ranks, str(model_dir), zero_stage=2, **RANK_KWARGS)


def experience(model_dir: Path, num_rows: int = 6):
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    rng, rows = random.Random(0), []
    for i in range(num_rows):
        prompt = [rng.randint(3, 90) for _ in range(3)]
        response = [rng.randint(3, 90) for _ in range(rng.randint(2, 6))]
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            lp = token_logprobs(model(input_ids=ids).logits, ids)[0, len(prompt) - 1:].tolist()
        rows.append(dict(prompt_id=f"p{i // 2}", group_id=f"g{i // 2}", sample_index=i % 2, policy_version=0,
                         input_ids=prompt + response, prompt_len=len(prompt), rollout_logprobs=lp,
                         advantages=[1.0 if i % 2 == 0 else -1.0] * len(response), reward=float(i % 2 == 0),
                         outcome_correct=i % 2 == 0, num_thoughts=1))
    return ray.put([to_table(rows, EXPERIENCE_SCHEMA)])


@pytest.mark.timeout(900)
def test_truncated_shard_of_the_newest_checkpoint_resumes_from_the_one_before(ray_local, tiny_model_dir, tmp_path):
    ckpt = tmp_path / "checkpoint"
    batch = experience(tiny_model_dir)
    hashes, losses = {}, {}
    group = learner(tiny_model_dir)
    try:
        for step in (1, 2, 3):
            losses[step] = group.train_step(batch)["loss"]
            group.save_checkpoint(str(ckpt), {"step": step}, keep=2)
            hashes[step] = group.weights_hash()
        assert tags(ckpt) == ["step2", "step3"] and checkpoints.pointer(ckpt) == "step3"
        assert all(checkpoints.problem(ckpt / t) is None for t in ("step2", "step3"))
        # every rank's shards are in the manifest
        assert len([f for f in checkpoints.list_files(ckpt / "step3") if "optim_states" in f]) == 2

        shard = ckpt / "step3" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
        size = shard.stat().st_size
        shard.write_bytes(shard.read_bytes()[: size // 2])
        found = checkpoints.find(ckpt)
        assert found.tag == "step2"
        assert found.skipped == [("step3", f"{shard.name} has {size // 2} bytes, the manifest says {size}")]

        # Loaded into the same ranks, which hold step 3's weights and optimizer state: what step 2
        # saved must replace all of it (a fresh resume is tests/test_e2e_resilience.py's).
        assert group.load_checkpoint(str(ckpt)) == {"step": 2}  # the newest complete one by default
        assert group.weights_hash() == hashes[2]
        redo = group.train_step(batch)  # the run continues from step 2: step 3 again, same numbers
        assert redo["step"] == 3 and redo["loss"] == pytest.approx(losses[3], abs=1e-6)
        assert group.weights_hash() == hashes[3]
        group.save_checkpoint(str(ckpt), {"step": 3}, keep=2)  # replaces the damaged step3
    finally:
        group.shutdown()
    assert tags(ckpt) == ["step2", "step3"] and checkpoints.find(ckpt) == checkpoints.Found("step3", [])
