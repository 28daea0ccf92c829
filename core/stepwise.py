"""Step-labelled solutions in TRL's stepwise-supervision layout, as parquet.

One row per solution: `prompt` (the problem), `completions` (its steps, in order), `labels`
(one bool per step: the step is right) — the columns of TRL's `PRMTrainer` datasets (PRM800K
and Math-Shepherd as TRL publishes them) — plus what a label job knows beyond them:
`soft_labels` (the step's value in [0, 1], e.g. the fraction of Monte-Carlo completions that
reach the gold answer), `problem_id`, `gold`, `response` (the whole solution),
`outcome_correct` and `judge` (what labelled it). `read_stepwise` reads this layout from
parquet or JSON lines, the extra columns optional, so a TRL-style set trains a PRM as well.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from core.jsonl import read_jsonl

STEPWISE_SCHEMA = pa.schema([
    ("prompt", pa.string()),
    ("completions", pa.list_(pa.string())),
    ("labels", pa.list_(pa.bool_())),
    ("soft_labels", pa.list_(pa.float64())),
    ("problem_id", pa.string()),
    ("gold", pa.string()),
    ("response", pa.string()),
    ("outcome_correct", pa.bool_()),
    ("judge", pa.string()),
])


def label_row(scored: dict, judge: str, threshold: float) -> dict:
    """A judged solution (a scored record: response_text, step_spans, step_scores, ...) as one
    stepwise row; a step is labelled right when its score exceeds `threshold`."""
    response, spans, scores = scored["response_text"], scored["step_spans"], scored["step_scores"]
    if not spans or len(spans) != len(scores):
        raise ValueError(f"{len(spans or [])} steps and {len(scores or [])} scores")
    soft = [float(s) for s in scores]
    return {"prompt": scored["problem"], "completions": [response[a:b].strip() for a, b in spans],
            "labels": [s > threshold for s in soft], "soft_labels": soft,
            "problem_id": scored.get("prompt_id"), "gold": scored.get("gold_answer"), "response": response,
            "outcome_correct": scored.get("outcome_correct"), "judge": judge}


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=STEPWISE_SCHEMA)


@dataclass
class Stepwise:
    rows: list[dict]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (where: "row 3" / "line 4", why)


def check_row(row) -> dict:
    """One row checked and completed (`soft_labels` from `labels` where absent; `outcome_correct`
    from the last label where absent); ValueError naming the field otherwise."""
    if not isinstance(row, dict):
        raise ValueError("not an object")
    prompt, steps, labels = row.get("prompt"), row.get("completions"), row.get("labels")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise ValueError("completions must be a non-empty list of non-empty strings")
    if not isinstance(labels, list) or len(labels) != len(steps):
        raise ValueError(f"labels must be a list of one label per step ({len(steps)})")
    if not all(isinstance(x, bool) or (type(x) is int and x in (0, 1)) for x in labels):
        raise ValueError(f"labels must be booleans (or 0/1), got {labels!r}")
    soft = row.get("soft_labels")
    if soft is None:
        soft = [float(x) for x in labels]
    elif not isinstance(soft, list) or len(soft) != len(steps) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1 for x in soft):
        raise ValueError(f"soft_labels must be one number in [0, 1] per step ({len(steps)}), got {soft!r}")
    outcome = row.get("outcome_correct")
    return {**row, "labels": [bool(x) for x in labels], "soft_labels": [float(x) for x in soft],
            "outcome_correct": bool(labels[-1]) if outcome is None else bool(outcome)}


def read_stepwise(path: str | Path) -> Stepwise:
    """Every row of a parquet or JSON-lines file in the layout above; a bad row is kept out with
    where it is (parquet: its row number from 0; JSON lines: its line) and why. A missing file, or
    a parquet file without the three TRL columns, raises."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        if not path.exists():
            raise FileNotFoundError(f"{path} not found")
        table = pq.read_table(path)
        missing = [c for c in ("prompt", "completions", "labels") if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} (columns are {table.column_names}); "
                             "expected TRL's stepwise layout: prompt, completions, labels")
        records, out = [(f"row {i}", r) for i, r in enumerate(table.to_pylist())], Stepwise([])
    else:
        parsed = read_jsonl(path)
        records = [(f"line {n}", r) for n, r in parsed.rows]
        out = Stepwise([], [(f"line {n}", why) for n, why in parsed.bad])
    for where, record in records:
        try:
            out.rows.append(check_row(record))
        except ValueError as e:
            out.bad.append((where, str(e)))
    out.bad.sort(key=lambda bad: int(bad[0].split()[-1]))  # in file order
    return out
