"""Scored samples of complete groups → learner-ready experience with token-level advantages.

Runs as a Ray task launched by the buffer, so the records go from the judges' objects to the
experience objects without passing through the driver or the buffer.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import ray

from core.records import EXPERIENCE_SCHEMA, to_table
from reward_service.advantages import GroupSample, group_advantages, group_rewards


def group_sample(row: dict) -> GroupSample:
    """A scored record as the advantage functions read it."""
    return GroupSample(
        outcome_correct=bool(row["outcome_correct"]),
        num_tokens=len(row["response_token_ids"]),
        token_char_offsets=row["token_char_offsets"],
        response_text=row["response_text"] or "",
        thought_spans=row["thought_spans"] or [],
        thought_labels=row["thought_labels"] or [],
        step_spans=row["step_spans"] or [],
        step_scores=row["step_scores"] or [],
        step_labels=row.get("step_labels") or [],
        trajectory_score=row.get("trajectory_score"),
    )


def group_experience(rows: list[dict], algorithm: str, alpha: float, beta: float = 0.75
                     ) -> list[dict]:
    """Experience rows for one group (all G samples of one prompt)."""
    samples = [group_sample(r) for r in rows]
    advantages = group_advantages(algorithm, samples, alpha=alpha, beta=beta)
    rewards = group_rewards(algorithm, samples, alpha=alpha, beta=beta)
    return [{
        "prompt_id": r["prompt_id"],
        "group_id": r["group_id"],
        "sample_index": r["sample_index"],
        "policy_version": r["policy_version"],
        "input_ids": list(r["prompt_token_ids"]) + list(r["response_token_ids"]),
        "prompt_len": len(r["prompt_token_ids"]),
        "advantages": adv.tolist(),
        "rollout_logprobs": r["rollout_logprobs"],
        "reward": reward,
        "outcome_correct": bool(r["outcome_correct"]),
        "num_thoughts": len(r["thought_spans"] or []),
    } for r, adv, reward in zip(rows, advantages, rewards)]


@ray.remote(num_cpus=0)
def make_experience(group_ids: list[str], algorithm: str, alpha: float, *scored: pa.Table,
                    beta: float = 0.75):
    table = pa.concat_tables(scored) if len(scored) > 1 else scored[0]
    out = []
    for gid in group_ids:
        rows = table.filter(pc.equal(table["group_id"], gid)).to_pylist()
        rows.sort(key=lambda r: r["sample_index"])
        out.append(to_table(group_experience(rows, algorithm, alpha, beta), EXPERIENCE_SCHEMA))
    return out[0] if len(out) == 1 else tuple(out)
