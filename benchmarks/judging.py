"""Judging: thoughts/s through JudgeActors under Ray vs `Scorer.score_many` in this process.

Rows are rollout-like records (core.records.ROLLOUT_SCHEMA) whose responses are the arithmetic
task's reference solutions (core.arith_task; slips with "Wait, ..." reflections included), every
fourth with a wrong final answer, in batches of 64 rows (8 prompts × G=8: one rollout actor's
share of a default step). Every side does the same work, batch by batch, with the tool judge and
a one-worker GradingPool:

- direct: `Scorer.score_many` on each batch's rows, in this process;
- worker: `JudgeWorker.score` on each batch's Arrow table, in this process (direct + the Arrow
  work a judge call adds);
- k actors: the batches' tables put in the object store beforehand, as rollout actors leave
  them, dealt round-robin to k JudgeActors (num_cpus=1 each); the driver waits for the small
  summaries, as the pipeline does.

Ray starts its workers at niceness 15 (`RAY_worker_niceness`); here they run at this process's
niceness, so that on a shared machine both sides get the same share of the cores. Sides
alternate every repetition, in reversed order every other one.

    PYTHONPATH=. .venv/bin/python -m benchmarks.judging --quick
"""
from __future__ import annotations

import os
import re
import time

from benchmarks.common import Result, finish, median, parse_mode

SETTINGS = {"quick": {"rows": 512, "reps": 5, "actors": (1, 2)},
            "full": {"rows": 1024, "reps": 9, "actors": (1, 2)}}
BATCH = 64
TARGET = 0.95  # per actor: 2 actors should give >= 1.9x the direct rate on 2 free cores


def make_rows(count: int) -> list[dict]:
    from core.arith_task import ArithTaskConfig, make_split
    from core.prompts import format_prompt

    task = make_split(ArithTaskConfig(num_train=count, num_eval=1, slip_rate=0.3), "train")[:count]
    rows = []
    for i, r in enumerate(task):
        response = r["solution"]
        if i % 4 == 3:  # a wrong final answer: the judge's other branch
            response = re.sub(r"\\boxed\{(-?\d+)\}", lambda m: rf"\boxed{{{int(m.group(1)) + 1}}}", response)
        prompt = format_prompt(r["problem"])
        rows.append({
            "prompt_id": r["prompt_id"], "group_id": f"{r['prompt_id']}@v0", "sample_index": 0,
            "problem": r["problem"], "prompt_token_ids": list(prompt.encode()),
            "response_token_ids": list(response.encode()), "response_text": response,
            "token_char_offsets": list(range(len(response))),
            "rollout_logprobs": [0.0] * len(response.encode()), "policy_version": 0,
            "finish_reason": "stop", "gold_answer": r["answer"],
        })
    return rows


def run(mode: str) -> Result:
    import ray

    from actors.judge import JudgeWorker
    from core.records import ROLLOUT_SCHEMA, to_table

    cfg = SETTINGS[mode]
    rows = make_rows(cfg["rows"])
    batches = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
    tables = [to_table(b, ROLLOUT_SCHEMA) for b in batches]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_worker_niceness": str(os.nice(0))}})
    local = JudgeWorker(backend="tool", grader_workers=1)  # its scorer is the direct side
    try:
        refs = [ray.put(t) for t in tables]
        judge_cls = ray.remote(JudgeWorker).options(num_cpus=1)
        judges = [judge_cls.remote(backend="tool", grader_workers=1) for _ in range(max(cfg["actors"]))]
        ray.get([j.ready.remote() for j in judges], timeout=300)

        def through_actors(count: int) -> int:
            summaries = [judges[i % count].score.options(num_returns=2).remote(ref)[0]
                         for i, ref in enumerate(refs)]
            return sum(s["thoughts"] for s in ray.get(summaries, timeout=600))

        def direct() -> int:
            return sum(len(v.thought_spans or []) for b in batches for v in local.scorer.score_many(b))

        def worker() -> int:
            return sum(local.score(t)[0]["thoughts"] for t in tables)

        sides = {"direct": direct, "worker": worker,
                 **{f"{k}_actors": (lambda k=k: through_actors(k)) for k in cfg["actors"]}}
        for side in sides.values():  # warm-up (imports, sympy caches)
            side()
        rates: dict[str, list[float]] = {name: [] for name in sides}
        walls: dict[str, list[float]] = {name: [] for name in sides}
        inside: dict[str, list[float]] = {name: [] for name in sides if name.endswith("_actors")}
        thoughts: dict[str, int] = {}

        def judge_seconds() -> float:
            return sum(s["judge_seconds"] for s in ray.get([j.stats.remote() for j in judges]))

        for rep in range(cfg["reps"]):
            names = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for name in names:
                before = judge_seconds() if name in inside else 0.0
                t0 = time.perf_counter()
                thoughts[name] = sides[name]()
                wall = time.perf_counter() - t0
                rates[name].append(thoughts[name] / wall)
                walls[name].append(wall)
                if name in inside:  # actor-seconds spent inside JudgeWorker.score
                    inside[name].append(judge_seconds() - before)
        for j in judges:
            ray.get(j.shutdown.remote(), timeout=60)
    finally:
        local.shutdown()
        ray.shutdown()
    if len(set(thoughts.values())) != 1:
        raise RuntimeError(f"the sides did not do the same work: thoughts {thoughts}")
    out = {name: median(v) for name, v in rates.items()}
    ratios = {f"{k}_actors_over_direct": out[f"{k}_actors"] / out["direct"] for k in cfg["actors"]}
    per_actor = {k: ratios[f"{k}_actors_over_direct"] / k for k in cfg["actors"]}
    worst = min(per_actor.values())
    return Result(
        name="judging", ratio_name="thoughts/s per actor / direct thoughts/s (worst actor count)",
        ratio=worst, target=f">= {TARGET}", met=worst >= TARGET,
        measurements={"rows": len(rows), "rows_per_call": BATCH, "reps": cfg["reps"], "niceness": os.nice(0),
                      "thoughts_per_rep": thoughts["direct"], "thoughts_per_s": out,
                      "wall_s": {k: median(v) for k, v in walls.items()},
                      "actor_seconds_inside_score": {k: median(v) for k, v in inside.items()},
                      "worker_over_direct": out["worker"] / out["direct"], **ratios,
                      "per_actor_efficiency": per_actor},
        notes=["per-actor efficiency = (actors rate / direct rate) / actors; "
               "2 actors can reach 2x only on 2 otherwise idle cores",
               "worker_over_direct: the Arrow work of a judge call, without Ray"],
    )


if __name__ == "__main__":
    args = parse_mode(__doc__.splitlines()[0])
    finish(run(args.mode), args.json)
