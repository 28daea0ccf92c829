"""How good a trained PRM is on the embedded task: ProcessBench made locally, and Best-of-N.

- ProcessBench (core/arith_processbench.py): held-out problems, one correct solution and one with
  a single error each, the first error known by construction. A judge predicts the first step it
  scores below 0.5 (ProcessBench's reading of a PRM, `reward_service.processbench`); the labels a
  label job would give are read at their own threshold (a step is wrong when its soft label is
  at most `label.threshold`). Reported per error kind too.
- Best-of-N: `lifecycle.best_of_n` solutions per held-out problem sampled from the policy, one
  picked by each aggregation of the PRM's step scores, against majority vote, the oracle and the
  mean single solution (`reward_service.best_of_n`). The candidates are written as jsonl, so
  `python -m reward_service best-of-n FILE --judge step_classifier --model PRM` gives the same.

Every evaluation is a Ray task: a judge's vLLM engine lives and ends in a worker process.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ray

from core.config import Config
from reward_service.best_of_n import AGGREGATIONS, Candidate, evaluate, score_all
from reward_service.grading import GradingPool
from reward_service.judges import get_judge
from reward_service.judges.base import StepJudge
from reward_service.processbench import metrics, prediction, request
from reward_service.scorer import Scorer

BATCH = 32  # samples per judge_batch


def processbench_report(judge: StepJudge, samples: list[dict], threshold: float | None = None) -> dict:
    """ProcessBench's metrics of `judge` on `samples` (which carry their gold `answer`, for
    judges that need it), with accuracy per error kind; `threshold`: read as labels."""
    requests = [dataclasses.replace(request(s), gold=s.get("answer")) for s in samples]
    predicted: list[int | None] = []
    for start in range(0, len(requests), BATCH):
        chunk = requests[start:start + BATCH]
        for r, j in zip(chunk, judge.judge_batch(chunk)):
            predicted.append(prediction(j, len(r.spans), threshold))
    kinds: dict[str, list[bool]] = {}
    for s, p in zip(samples, predicted):
        kinds.setdefault(s.get("error") or "none", []).append(p == s["label"])
    return {**metrics(predicted, [s["label"] for s in samples]),
            "judge_errors": sum(p is None for p in predicted),
            "accuracy_by_error": {k: sum(v) / len(v) for k, v in sorted(kinds.items())}}


@ray.remote
def processbench_task(judge: str, options: dict, samples: list[dict], threshold: float | None = None) -> dict:
    built = get_judge(judge, **options)
    try:
        return processbench_report(built, samples, threshold)
    finally:
        built.close()


@ray.remote
def best_of_n_task(judge: str, options: dict, rows: list[dict], grader_timeout_s: float = 5.0) -> dict:
    """`reward_service.best_of_n`'s report on candidate rows (problem_id, problem, response, answer)."""
    candidates = [Candidate(str(r["problem_id"]), r["problem"], r["response"], r["answer"], i)
                  for i, r in enumerate(rows)]
    with GradingPool(num_workers=1, timeout_s=grader_timeout_s) as grader:
        scorer = Scorer(judge=judge, grader=grader, **options)
        try:
            verdicts = score_all(scorer, candidates)
        finally:
            scorer.close()
    return evaluate(candidates, verdicts, list(AGGREGATIONS))


@ray.remote
def sample_task(model_dir: str, prompts: list[dict], n: int, cfg: Config) -> list[dict]:
    """`n` solutions per prompt from the policy, as best-of-n candidate rows."""
    from actors.rollout import RolloutWorker

    worker = RolloutWorker(model_dir, dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.model.max_model_len,
                           kv_cache_gb=cfg.rollout.kv_cache_gb)
    try:
        table = worker.generate(prompts, n=n, max_tokens=cfg.rollout.max_new_tokens,
                                temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, seed=cfg.seed)
    finally:
        worker.shutdown()
    return [{"problem_id": r["prompt_id"], "problem": r["problem"], "response": r["response_text"],
             "answer": r["gold_answer"]} for r in table.select(["prompt_id", "problem", "response_text",
                                                                   "gold_answer"]).to_pylist()]


def prm_options(prm_dir: str | Path) -> dict:
    """The `step_classifier` judge on a PRM this project trained (float32, a small KV cache)."""
    return {"model": str(prm_dir), "dtype": "float32", "kv_cache_gb": 0.25}


def label_options(cfg: Config, policy_dir: str) -> dict:
    """The options of the judge `label.method` as the label job runs it; `montecarlo` on an
    engine of its own."""
    if cfg.label.method != "montecarlo":
        return dict(cfg.label.options)
    p = cfg.prompt
    return {"model": policy_dir, "samples": cfg.label.completions, "temperature": cfg.rollout.temperature,
            "max_tokens": cfg.rollout.max_new_tokens, "seed": cfg.seed, "prompt_style": p.style,
            "problem_template": p.template, "prompt_instruction": p.instruction, "prompt_system": p.system,
            "dtype": cfg.model.dtype, "max_model_len": cfg.model.max_model_len, "kv_cache_gb": cfg.rollout.kv_cache_gb,
            **cfg.label.options}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
