"""Experience tables -> this rank's padded micro-batches.

Every rank must run the same number of forward/backward passes (ZeRO reduces gradients inside
backward, collectively), so a rank's shard is padded with zero-weight rows up to the size of the
largest shard. Padding rows are copies of the first row with an all-zero mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import torch

from core.records import EXPERIENCE_SCHEMA, sample_key

_REQUIRED = ("group_id", "sample_index", "policy_version", "input_ids", "prompt_len",
             "advantages", "rollout_logprobs")


@dataclass
class Row:
    input_ids: list[int]
    prompt_len: int
    advantages: list[float]
    rollout_logprobs: list[float]
    key: str | None  # None for a padding row
    policy_version: int
    reward: float = 0.0  # reported, not trained on: the advantages carry the signal


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [B, T] long, right-padded
    attention_mask: torch.Tensor  # [B, T] long
    response_mask: torch.Tensor  # [B, T-1] float, aligned with token_logprobs
    advantages: torch.Tensor  # [B, T-1]
    rollout_logprobs: torch.Tensor  # [B, T-1]


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        raise ValueError("train_step needs at least one experience table")
    for i, t in enumerate(tables):
        missing = [name for name in _REQUIRED if name not in t.column_names]
        if missing:
            raise ValueError(f"experience table {i} lacks columns {missing} (see EXPERIENCE_SCHEMA)")
    # `reward` is carried along for reporting where every table has it.
    names = list(_REQUIRED) + (["reward"] if all("reward" in t.column_names for t in tables) else [])
    schema = pa.schema([EXPERIENCE_SCHEMA.field(name) for name in names])
    table = pa.concat_tables([t.select(names).cast(schema) for t in tables])
    if table.num_rows == 0:
        raise ValueError("train_step got experience tables with no rows")
    return table


def rows_of(table: pa.Table) -> list[Row]:
    """Validated rows; a malformed row is a clear error naming it."""
    rows = []
    for i, r in enumerate(table.to_pylist()):
        key = sample_key(r["group_id"], r["sample_index"])
        n_resp = len(r["input_ids"]) - r["prompt_len"]
        if r["prompt_len"] < 1 or n_resp < 1:
            raise ValueError(f"experience row {i} ({key}): need prompt_len >= 1 and a non-empty "
                             f"response, got prompt_len={r['prompt_len']}, len(input_ids)={len(r['input_ids'])}")
        if len(r["advantages"]) != n_resp or len(r["rollout_logprobs"]) != n_resp:
            raise ValueError(f"experience row {i} ({key}): {n_resp} response tokens but "
                             f"{len(r['advantages'])} advantages, {len(r['rollout_logprobs'])} rollout_logprobs")
        for column in ("advantages", "rollout_logprobs"):
            bad = next((k for k, x in enumerate(r[column]) if not math.isfinite(x)), None)
            if bad is not None:  # one NaN would make the whole step's gradient NaN
                raise ValueError(f"experience row {i} ({key}): non-finite {column} "
                                 f"{r[column][bad]} at response token {bad}")
        rows.append(Row(r["input_ids"], r["prompt_len"], r["advantages"], r["rollout_logprobs"],
                        key, r["policy_version"], float(r.get("reward") or 0.0)))
    return rows


def shard_rows(rows: list[Row], rank: int, world_size: int) -> list[Row]:
    """Rows rank::world_size, padded with zero-weight rows to ceil(len(rows) / world_size)."""
    shard = rows[rank::world_size]
    target = math.ceil(len(rows) / world_size)
    template = rows[0]
    while len(shard) < target:
        shard.append(Row(template.input_ids, template.prompt_len, [0.0] * len(template.advantages),
                         list(template.rollout_logprobs), None, -1))
    return shard


def collate(rows: list[Row], pad_id: int) -> MicroBatch:
    width = max(len(r.input_ids) for r in rows)
    b = len(rows)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((b, width), dtype=torch.long)
    response_mask = torch.zeros((b, width - 1))
    advantages = torch.zeros((b, width - 1))
    rollout_logprobs = torch.zeros((b, width - 1))
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        input_ids[i, :n] = torch.tensor(r.input_ids)
        attention_mask[i, :n] = 1
        # token t is predicted at position t - 1 of the shifted logprobs
        span = slice(r.prompt_len - 1, n - 1)
        if r.key is not None:
            response_mask[i, span] = 1.0
        advantages[i, span] = torch.tensor(r.advantages)
        rollout_logprobs[i, span] = torch.tensor(r.rollout_logprobs)
    return MicroBatch(input_ids, attention_mask, response_mask, advantages, rollout_logprobs)


def micro_batches(rows: list[Row], size: int, pad_id: int) -> list[MicroBatch]:
    return [collate(rows[i:i + size], pad_id) for i in range(0, len(rows), size)]
