"""The judge actor: a thin Ray shell around `reward_service.Scorer`.

It receives a rollout table (resolved from the object store by Ray) and the groups of it to
judge, grades and judges their samples, and returns two objects: a small summary the buffer
reads, and the scored table the buffer only references. A failure on one sample is recorded on
that sample (`judge_error`).
"""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

from core.ray_metrics import PartMetrics
from core.records import SCORED_SCHEMA
from reward_service.grading import GradingPool
from reward_service.scorer import Scorer


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
        t0 = time.monotonic()
        if group_ids is not None:
            rollout = rollout.filter(pc.is_in(rollout["group_id"], pa.array(group_ids, pa.string())))
            missing = set(group_ids) - set(rollout["group_id"].to_pylist())
            if missing:
                raise ValueError(f"the rollout table has no samples of groups {sorted(missing)}")
        rows = rollout.to_pylist()
        verdicts = self.scorer.score_many(rows)
        scored = [{**row, **v.to_row()} for row, v in zip(rows, verdicts)]
        table = pa.Table.from_pylist(scored, schema=SCORED_SCHEMA)
        seconds = time.monotonic() - t0
        summary = summarize(scored)
        summary["judge_seconds"] = seconds
        self.counters["samples"] += len(rows)
        self.counters["judge_errors"] += summary["judge_errors"]
        self.counters["thoughts"] += summary["thoughts"]
        self.counters["judge_seconds"] += seconds
        self.metrics.record("judge_seconds", seconds)
        self.metrics.record("samples_judged", len(rows))
        self.metrics.record("judge_errors", summary["judge_errors"])
        self.metrics.record("grader_timeouts", self.grader.timeouts)
        return summary, table

    def stats(self) -> dict:
        return {**self.counters, "grader_timeouts": self.grader.timeouts}

    def shutdown(self) -> None:
        self.grader.close()


def summarize(scored: list[dict]) -> dict:
    """What the buffer and the driver need to know about a scored table without reading it."""
    groups: dict[str, dict] = {}
    for r in scored:
        g = groups.setdefault(r["group_id"], {"count": 0, "version": r["policy_version"]})
        g["count"] += 1
    return {
        "groups": groups,
        "samples": len(scored),
        "correct": sum(bool(r["outcome_correct"]) for r in scored),
        "judge_errors": sum(r["judge_error"] is not None for r in scored),
        "thoughts": sum(len(r["thought_spans"] or []) for r in scored),
        "response_tokens": sum(len(r["response_token_ids"]) for r in scored),
    }

