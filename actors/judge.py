"""The judge actor: a thin Ray shell around `reward_service.Scorer`.

It receives a rollout table (resolved from the object store by Ray) and the groups of it to
judge, grades and judges their samples, and returns two objects: a small summary the buffer
reads, and the scored table the buffer only references. A failure on one sample is recorded on
that sample (`judge_error`).

The table stays columnar: only the three columns the scorer reads become Python objects, the
verdicts become Arrow columns appended to the rollout columns, and the summary is computed on
the columns, so a call costs the judging and little else.
"""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

from core.ray_metrics import PartMetrics
from core.records import ROLLOUT_SCHEMA, SCORED_SCHEMA, VERDICT_FIELDS
from reward_service.grading import GradingPool
from reward_service.scorer import Scorer
from reward_service.verdict import Verdict

SCORER_INPUTS = ("problem", "response_text", "gold_answer")
VERDICT_SCHEMA = pa.schema(VERDICT_FIELDS)


class JudgeWorker:
    def __init__(self, backend: str = "tool", splitter: str = "auto", grader_workers: int = 1,
                 grader_timeout_s: float = 5.0, require_answer: bool = True, run_name: str = "",
                 **options):
        self.grader = GradingPool(num_workers=grader_workers, timeout_s=grader_timeout_s,
                                  require_answer=require_answer)
        self.scorer = Scorer(judge=backend, splitter=splitter, grader=self.grader, **options)
        self.counters = {"samples": 0, "judge_errors": 0, "thoughts": 0, "judge_seconds": 0.0}
        self.metrics = PartMetrics(run_name, "judge")  # Ray's metrics export, tagged with this actor

    def ready(self) -> bool:
        return True

    def score(self, rollout: pa.Table, group_ids: list[str] | None = None) -> tuple[dict, pa.Table]:
        """Grade and judge the samples of `group_ids` (every group of the table when None)."""
        started, t0 = time.time(), time.monotonic()
        if group_ids is not None:
            rollout = rollout.filter(pc.is_in(rollout["group_id"], pa.array(group_ids, pa.string())))
            missing = set(group_ids) - set(pc.unique(rollout["group_id"]).to_pylist())
            if missing:
                raise ValueError(f"the rollout table has no samples of groups {sorted(missing)}")
        verdicts = self.scorer.score_many(rollout.select(SCORER_INPUTS).to_pylist())
        columns = rollout.select(ROLLOUT_SCHEMA.names).columns + verdict_table(verdicts).columns
        table = pa.Table.from_arrays(columns, schema=SCORED_SCHEMA)
        summary = summarize(table)
        seconds = time.monotonic() - t0
        timeouts = self.grader.timeouts
        # wall-clock start and end, for the driver's timeline of each step
        summary.update(judge_seconds=seconds, started=started, ended=started + seconds,
                       grader_timeouts=timeouts)
        self.counters["samples"] += summary["samples"]
        self.counters["judge_errors"] += summary["judge_errors"]
        self.counters["thoughts"] += summary["thoughts"]
        self.counters["judge_seconds"] += seconds
        self.metrics.record("judge_seconds", seconds)
        self.metrics.record("samples_judged", summary["samples"])
        self.metrics.record("judge_errors", summary["judge_errors"])
        self.metrics.record("grader_timeouts", timeouts)
        return summary, table

    def stats(self) -> dict:
        return {**self.counters, "grader_timeouts": self.grader.timeouts}

    def shutdown(self) -> None:
        self.scorer.close()  # the judge's own engine, if it has one
        self.grader.close()


def verdict_table(verdicts: list[Verdict]) -> pa.Table:
    """The verdicts as the verdict columns of the scored schema (spans are (start, end) pairs)."""
    return pa.table({name: [getattr(v, name) for v in verdicts] for name in VERDICT_SCHEMA.names},
                    schema=VERDICT_SCHEMA)


def _total(values) -> int:
    return int(pc.sum(values).as_py() or 0)


def summarize(scored: pa.Table) -> dict:
    """What the buffer and the driver need to know about a scored table without reading it."""
    groups: dict[str, dict] = {}
    for gid, version in zip(scored["group_id"].to_pylist(), scored["policy_version"].to_pylist()):
        g = groups.setdefault(gid, {"count": 0, "version": version})
        g["count"] += 1
    return {
        "groups": groups,
        "samples": scored.num_rows,
        "correct": _total(pc.cast(scored["outcome_correct"], pa.int64())),
        "judge_errors": _total(pc.cast(pc.is_valid(scored["judge_error"]), pa.int64())),
        "thoughts": _total(pc.list_value_length(scored["thought_spans"])),
        "response_tokens": _total(pc.list_value_length(scored["response_token_ids"])),
    }
