"""The training driver: one read from top to bottom shows the whole run.

    data → model (tiny + warm start, or a HF directory) → actors → eval before
    loop: keep 1 + max_staleness batches in flight → take fresh groups → learner step → sync
    → eval after → summary.json, metrics.jsonl, accuracy.png
"""
from __future__ import annotations

import time
from collections import deque

import yaml

from actors.judge import JudgeWorker
from actors.rollout import RolloutWorker
from cluster.actor_group import ActorGroup, get
from cluster.buffer import create_buffer
from cluster.metrics import RunMetrics
from cluster.model_prep import prepare_model
from cluster.pipeline import Pipeline, generate_and_score
from cluster.report import RunLog, plot_accuracy, write_summary
from cluster.runtime import connect
from core.config import Config
from core.datasets import PromptStream, load_dataset
from core.prompts import format_prompt
from learner.group import LearnerGroup


def to_prompts(rows: list[dict], tag: str) -> list[dict]:
    """Dataset rows → rollout prompts; `tag` makes each sampling of a prompt its own group."""
    return [{"prompt_id": r["prompt_id"], "group_id": f"{r['prompt_id']}@{tag}", "problem": r["problem"],
             "prompt_text": format_prompt(r["problem"]), "gold_answer": r["answer"]} for r in rows]


def load_data(cfg: Config, log: RunLog):
    d = cfg.data
    train = load_dataset(d.train, d.fields, d.synthetic, split="train")
    evals = load_dataset(d.eval, d.fields, d.synthetic, split="eval")
    for name, loaded in (("train", train), ("eval", evals)):
        if loaded.num_skipped:
            first = "; ".join(f"row {i}: {why}" for i, why in loaded.skipped[:3])
            log.info(f"data.{name}: skipped {loaded.num_skipped} bad rows ({first})")
    log.info(f"data: {len(train.rows)} train rows, {min(len(evals.rows), d.eval_size)} eval rows")
    return train.rows, evals.rows[:d.eval_size]


def start_actors(cfg: Config, model_dir: str):
    r, j, l = cfg.rollout, cfg.judge, cfg.learner
    rollout = ActorGroup("rollout", RolloutWorker, r.num_actors,
                         {"num_cpus": r.num_cpus_per_actor, "num_gpus": r.num_gpus_per_actor},
                         model_dir, dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.model.max_model_len,
                         tensor_parallel_size=r.tensor_parallel_size, kv_cache_gb=r.kv_cache_gb,
                         gpu_memory_utilization=r.gpu_memory_utilization)
    judges = ActorGroup("judge", JudgeWorker, j.num_actors,
                        {"num_cpus": j.num_cpus_per_actor, "num_gpus": j.num_gpus_per_actor},
                        backend=j.backend, splitter=j.splitter, grader_workers=j.grader_workers,
                        grader_timeout_s=j.grader_timeout_s, **j.options)
    learner = LearnerGroup(l.num_ranks, model_dir, num_cpus_per_rank=l.num_cpus_per_rank,
                           num_gpus_per_rank=l.num_gpus_per_rank, zero_stage=l.zero_stage, lr=l.lr,
                           weight_decay=l.weight_decay, micro_batch_size=l.micro_batch_size,
                           grad_clip=l.grad_clip, clip_eps=cfg.algorithm.clip_eps,
                           kl_coef=cfg.algorithm.kl_coef, dtype=cfg.model.dtype, backend=l.backend,
                           seed=cfg.seed)
    buffer = create_buffer(r.samples_per_prompt, cfg.trainer.max_staleness,
                           capacity_groups=cfg.trainer.prompts_per_step * (cfg.trainer.max_staleness + 2),
                           algorithm=cfg.algorithm.name, alpha=cfg.algorithm.alpha)
    timeout = cfg.trainer.call_timeout_s
    rollout.get_all("ready", timeout_s=timeout)
    judges.get_all("ready", timeout_s=timeout)
    return rollout, judges, learner, buffer


def evaluate(cfg: Config, rollout: ActorGroup, judges: ActorGroup, rows: list[dict], tag: str) -> float:
    """Held-out accuracy of greedy decoding (temperature 0, one sample per problem)."""
    summaries = generate_and_score(cfg, rollout, judges, to_prompts(rows, tag), n=1, temperature=0.0, seed=0)
    return sum(s["correct"] for s in summaries) / max(1, sum(s["samples"] for s in summaries))


def sync_weights(learner: LearnerGroup, rollout: ActorGroup, version: int, timeout_s: float) -> float:
    """Broadcast the learner's weights to every engine through the object store; returns seconds."""
    t0 = time.monotonic()
    packed = learner.export_weights()  # an ObjectRef: rank 0's packed state dict stays in the store
    get(rollout.call_all("update_weights", packed, version), timeout_s, "rollout.update_weights")
    return time.monotonic() - t0


def weights_in_sync(learner: LearnerGroup, rollout: ActorGroup, timeout_s: float) -> bool:
    want = learner.weights_hash()
    return all(h == want for h in rollout.get_all("weights_hash", timeout_s=timeout_s))


def train(cfg: Config) -> dict:
    t_start = time.monotonic()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    log = RunLog(run_dir)
    metrics = RunMetrics(cfg.name, cfg.metrics.port, cfg.metrics.host)
    if metrics.port is not None:
        log.info(f"metrics: http://{cfg.metrics.host}:{metrics.port}/metrics")
    tr, timeout = cfg.trainer, cfg.trainer.call_timeout_s

    train_rows, eval_rows = load_data(cfg, log)
    model_dir = str(prepare_model(cfg, train_rows, log.info))
    log.info(f"ray: {connect()}; starting {cfg.rollout.num_actors} rollout, {cfg.judge.num_actors} judge, "
             f"{cfg.learner.num_ranks} learner actors on {model_dir}")
    rollout, judges, learner, buffer = start_actors(cfg, model_dir)
    pipeline = Pipeline(cfg, rollout, judges, buffer)
    stream = PromptStream(train_rows, tr.prompts_per_step, seed=cfg.seed)

    acc_before = evaluate(cfg, rollout, judges, eval_rows, "eval0")
    log.record("eval", step=0, samples_trained=0, accuracy=acc_before)
    metrics.observe_eval(acc_before)
    log.info(f"held-out greedy accuracy before training: {acc_before:.3f} ({len(eval_rows)} problems)")

    inflight: deque = deque()
    scheduled = samples_trained = version = 0
    trained_keys: list[str] = []
    for step in range(tr.max_steps):
        t0 = time.monotonic()
        # Batches for later steps are sampled now, so generation overlaps learning; the
        # newest is at most max_staleness versions behind when it is trained.
        while len(inflight) <= tr.max_staleness and scheduled < tr.max_steps:
            inflight.append(pipeline.submit(scheduled, to_prompts(stream.next_batch(), f"s{scheduled}")))
            scheduled += 1
        summaries = pipeline.wait(inflight.popleft())
        taken = get(buffer.take.remote(tr.prompts_per_step, step, timeout), timeout, "buffer.take")
        stats = learner.train_step(taken["experience"])
        staleness = [step - v for v in stats["policy_versions"]]
        if max(staleness, default=0) > tr.max_staleness:
            raise RuntimeError(f"trained a sample {max(staleness)} versions old (max_staleness {tr.max_staleness})")
        trained_keys += stats["sample_keys"]
        samples_trained += stats["num_samples"]

        sync_s, in_sync = 0.0, None
        if (step + 1) % tr.sync_every == 0 or step + 1 == tr.max_steps:
            version = step + 1
            sync_s = sync_weights(learner, rollout, version, timeout)
            if tr.check_weights_every and (step + 1) % tr.check_weights_every == 0:
                in_sync = weights_in_sync(learner, rollout, timeout)

        n = sum(s["samples"] for s in summaries)
        tokens = sum(s["response_tokens"] for s in summaries)
        step_s = time.monotonic() - t0
        rec = {
            "step": step + 1, "policy_version": version, "samples_trained": samples_trained,
            "reward_mean": sum(s["correct"] for s in summaries) / max(n, 1),
            "train_accuracy": sum(s["correct"] for s in summaries) / max(n, 1),
            "thoughts_per_sample": sum(s["thoughts"] for s in summaries) / max(n, 1),
            "judge_errors": sum(s["judge_errors"] for s in summaries),
            "loss": stats["loss"], "clip_frac": stats.get("clip_frac", 0.0), "kl": stats.get("kl", 0.0),
            "learner_seconds": stats.get("step_seconds", 0.0), "sync_seconds": sync_s,
            "weights_in_sync": in_sync, "staleness_max": max(staleness, default=0),
            "sample_keys": stats["sample_keys"], "rollout_tokens": tokens,
            "rollout_tokens_per_s": tokens / step_s, "step_seconds": step_s,
        }
        log.step(rec)
        metrics.observe_step(rec, summaries, stats)
        metrics.observe_parts(get(buffer.depth.remote(), timeout, "buffer.depth"),
                              judges.get_all("stats", timeout_s=timeout), idle={})
        if tr.eval_every and (step + 1) % tr.eval_every == 0 and step + 1 < tr.max_steps:
            acc = evaluate(cfg, rollout, judges, eval_rows, f"eval{step + 1}")
            log.record("eval", step=step + 1, samples_trained=samples_trained, accuracy=acc)
            metrics.observe_eval(acc)
            log.info(f"held-out greedy accuracy at step {step + 1}: {acc:.3f}")

    acc_after = evaluate(cfg, rollout, judges, eval_rows, f"eval{tr.max_steps}")
    log.record("eval", step=tr.max_steps, samples_trained=samples_trained, accuracy=acc_after)
    metrics.observe_eval(acc_after)
    buffer_stats = get(buffer.depth.remote(), timeout, "buffer.depth")
    summary = {
        "name": cfg.name, "algorithm": cfg.algorithm.name, "steps": tr.max_steps,
        "samples_trained": samples_trained, "unique_samples_trained": len(set(trained_keys)),
        "policy_version": version, "eval_accuracy_before": acc_before, "eval_accuracy_after": acc_after,
        "eval_problems": len(eval_rows), "weights_in_sync": weights_in_sync(learner, rollout, timeout),
        "samples_stale_dropped": buffer_stats["samples_stale_dropped"],
        "judge_errors": buffer_stats["judge_errors"], "model_dir": model_dir,
        "wall_seconds": round(time.monotonic() - t_start, 1),
    }
    write_summary(run_dir, summary)
    plot_accuracy(run_dir)
    log.info(f"done: accuracy {acc_before:.3f} → {acc_after:.3f}, weights_in_sync={summary['weights_in_sync']}, "
             f"{samples_trained} samples in {summary['wall_seconds']}s; summary in {run_dir / 'summary.json'}")
    learner.shutdown()
    metrics.close()
    return summary
