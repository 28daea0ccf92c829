"""Arrow schemas of the records that travel between the parts (DESIGN.md §3).

A batch of records is one `pyarrow.Table`, put in the Ray object store as one object and passed
on by reference; Arrow buffers deserialize without copies on the receiving side.
"""
from __future__ import annotations

import pyarrow as pa

_int_list = pa.list_(pa.int32())
_float_list = pa.list_(pa.float32())
_span_list = pa.list_(pa.list_(pa.int32()))  # [[char_start, char_end), ...]

ROLLOUT_SCHEMA = pa.schema([
    ("prompt_id", pa.string()),
    ("group_id", pa.string()),
    ("sample_index", pa.int32()),
    ("problem", pa.string()),
    ("prompt_token_ids", _int_list),
    ("response_token_ids", _int_list),
    ("response_text", pa.string()),
    # char offset in response_text where each response token starts; maps char spans to tokens
    ("token_char_offsets", _int_list),
    ("rollout_logprobs", _float_list),
    ("policy_version", pa.int64()),
    ("finish_reason", pa.string()),
    ("gold_answer", pa.string()),
])

VERDICT_FIELDS = [
    ("outcome_correct", pa.bool_()),
    ("extracted_answer", pa.string()),
    ("step_spans", _span_list),
    ("step_scores", _float_list),  # each finite, in [0, 1]
    # TP-GRPO labels with each step its own thought ("correct" | "incorrect" | "uncertain")
    ("step_labels", pa.list_(pa.string())),
    ("trajectory_score", pa.float32()),  # null, or finite in [0, 1]
    ("first_error_index", pa.int32()),
    ("thought_spans", _span_list),
    # maximal runs of equally labelled steps; a wrong solution's final thought is "incorrect"
    ("thought_labels", pa.list_(pa.string())),
    ("judge_raw", pa.string()),
    ("judge_error", pa.string()),  # null when judging succeeded
]
SCORED_SCHEMA = pa.schema(list(ROLLOUT_SCHEMA) + VERDICT_FIELDS)

EXPERIENCE_SCHEMA = pa.schema([
    ("prompt_id", pa.string()),
    ("group_id", pa.string()),
    ("sample_index", pa.int32()),
    ("policy_version", pa.int64()),
    ("input_ids", _int_list),  # prompt + response
    ("prompt_len", pa.int32()),
    ("advantages", _float_list),  # one per response token
    ("rollout_logprobs", _float_list),  # one per response token
    ("reward", pa.float32()),
    ("outcome_correct", pa.bool_()),
    ("num_thoughts", pa.int32()),
])


def sample_key(group_id: str, sample_index: int) -> str:
    """The identity of one sample across the whole run (for exactly-once accounting).

    A group is one sampling of one prompt, so the same prompt drawn again in a later epoch
    makes new samples with new keys.
    """
    return f"{group_id}#{sample_index}"


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to a Table of `schema`; a missing or mistyped field is a clear error."""
    missing = [f.name for f in schema if rows and f.name not in rows[0]]
    if missing:
        raise ValueError(f"records are missing fields {missing} of schema {schema.names}")
    return pa.Table.from_pylist(rows, schema=schema)
