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
from cluster.actor_group import ActorDied, ActorGroup, get
from cluster.buffer import create_buffer
from cluster.metrics import RunMetrics
from cluster.model_prep import prepare_model
from cluster.pipeline import Batch, Pipeline, Weights
from cluster.report import RunLog, plot_accuracy, write_summary
from cluster.resources import check_cluster, release, reserve, rollout_engine_kwargs
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
    placed = reserve(cfg)  # fails fast when the cluster is too small; one placement group per role
    run = cfg.name  # tags what each part records into Ray's metrics export
    rollout = ActorGroup("rollout", RolloutWorker, r.num_actors, placed["rollout"].options,
                         model_dir, dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.model.max_model_len,
                         tensor_parallel_size=r.tensor_parallel_size, kv_cache_gb=r.kv_cache_gb,
                         gpu_memory_utilization=r.gpu_memory_utilization, run_name=run, **rollout_engine_kwargs(cfg))
    judges = ActorGroup("judge", JudgeWorker, j.num_actors, placed["judge"].options,
                        backend=j.backend, splitter=j.splitter, grader_workers=j.grader_workers,
                        grader_timeout_s=j.grader_timeout_s, require_answer=j.require_answer, run_name=run,
                        **j.options)
    learner = LearnerGroup(l.num_ranks, model_dir, num_cpus_per_rank=l.num_cpus_per_rank,
                           num_gpus_per_rank=l.num_gpus_per_rank, zero_stage=l.zero_stage, lr=l.lr,
                           weight_decay=l.weight_decay, micro_batch_size=l.micro_batch_size,
                           grad_clip=l.grad_clip, clip_eps=cfg.algorithm.clip_eps,
                           kl_coef=cfg.algorithm.kl_coef, dtype=cfg.model.dtype, backend=l.backend,
                           seed=cfg.seed, run_name=run, actor_options=placed["learner"].scheduling)
    buffer = create_buffer(r.samples_per_prompt, cfg.trainer.max_staleness,
                           capacity_groups=cfg.trainer.prompts_per_step * (cfg.trainer.max_staleness + 2),
                           algorithm=cfg.algorithm.name, alpha=cfg.algorithm.alpha,
                           beta=cfg.algorithm.beta, run_name=run)
    timeout = cfg.trainer.call_timeout_s
    rollout.get_all("ready", timeout_s=timeout)
    judges.get_all("ready", timeout_s=timeout)
    return rollout, judges, learner, buffer, placed


def evaluate(pipeline: Pipeline, rows: list[dict], tag: str) -> float:
    """Held-out accuracy of greedy decoding (temperature 0, one sample per problem)."""
    batch = pipeline.submit(0, to_prompts(rows, tag), n=1, temperature=0.0, to_buffer=False)
    summaries = pipeline.collect(batch)
    return sum(s["correct"] for s in summaries) / max(1, sum(s["samples"] for s in summaries))


def sync_weights(learner: LearnerGroup, pipeline: Pipeline, version: int) -> float:
    """Broadcast the learner's weights to every engine through the object store; returns seconds."""
    t0 = time.monotonic()
    # An ObjectRef: rank 0's packed state dict stays in the object store; engines map it.
    pipeline.weights = Weights(learner.export_weights(), version)
    try:
        get(pipeline.rollout.call_all("update_weights", pipeline.weights.packed, version),
            pipeline.cfg.trainer.call_timeout_s, "rollout.update_weights")
    except ActorDied as died:
        pipeline.log(f"weight sync: {died}; replacing it")
        pipeline.heal()
    return time.monotonic() - t0


def weights_in_sync(learner: LearnerGroup, rollout: ActorGroup, timeout_s: float) -> bool:
    want = learner.weights_hash()
    return all(h == want for h in rollout.get_all("weights_hash", timeout_s=timeout_s))


def idle_ratios(before: list[dict], after: list[dict], learner_s: float, wall_s: float) -> dict:
    busy = sum(a["generate_seconds"] - b["generate_seconds"] for a, b in zip(after, before))
    return {"rollout": max(0.0, 1 - busy / (len(after) * wall_s)), "learner": max(0.0, 1 - learner_s / wall_s)}


def train(cfg: Config, resume: bool = False) -> dict:
    t_start = time.monotonic()
    run_dir, ckpt_dir = cfg.run_dir, cfg.run_dir / "checkpoint"
    resume = resume and ckpt_dir.is_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    log = RunLog(run_dir, resume=resume)
    metrics = RunMetrics(cfg.name, cfg.metrics.port, cfg.metrics.host)
    if metrics.port is not None:
        log.info(f"metrics: http://{cfg.metrics.host}:{metrics.port}/metrics")
    tr, timeout = cfg.trainer, cfg.trainer.call_timeout_s

    log.info(f"ray: {connect()}")
    check_cluster(cfg)  # before any slow preparation: a too-small cluster fails at once
    train_rows, eval_rows = load_data(cfg, log)
    model_dir = str(prepare_model(cfg, train_rows, log.info))
    log.info(f"starting {cfg.rollout.num_actors} rollout, {cfg.judge.num_actors} judge, "
             f"{cfg.learner.num_ranks} learner actors on {model_dir}")
    rollout, judges, learner, buffer, placed = start_actors(cfg, model_dir)
    pipeline = Pipeline(cfg, rollout, judges, buffer, Weights(), log=log.info)
    stream = PromptStream(train_rows, tr.prompts_per_step, seed=cfg.seed)

    first_step = samples_trained = version = 0
    if resume:
        state = learner.load_checkpoint(str(ckpt_dir))
        first_step, version, samples_trained = state["step"], state["version"], state["samples_trained"]
        stream.load_state_dict(state["stream"])
        sync_weights(learner, pipeline, version)
        log.keep_until(first_step)
        acc_before = state["eval_accuracy_before"]
        log.info(f"resumed at step {first_step} (policy version {version}) from {ckpt_dir}")
    else:
        acc_before = evaluate(pipeline, eval_rows, "eval0")
        log.record("eval", step=0, samples_trained=0, accuracy=acc_before)
        log.info(f"held-out greedy accuracy before training: {acc_before:.3f} ({len(eval_rows)} problems)")
    metrics.observe_eval(acc_before)

    inflight: deque[Batch] = deque()
    scheduled = first_step
    for step in range(first_step, tr.max_steps):
        t0 = time.monotonic()
        rollout_before = rollout.get_all("stats", timeout_s=timeout)
        # Batches for later steps are sampled now, so generation overlaps learning; the
        # newest is at most max_staleness versions behind when it is trained.
        while len(inflight) <= tr.max_staleness and scheduled < tr.max_steps:
            state = stream.state_dict()
            batch = pipeline.submit(scheduled, to_prompts(stream.next_batch(), f"s{scheduled}"))
            batch.stream_state = state
            inflight.append(batch)
            scheduled += 1
        summaries = pipeline.collect(inflight.popleft())
        taken = get(buffer.take.remote(tr.prompts_per_step, step, timeout), timeout, "buffer.take")
        stats = learner.train_step(taken["experience"])
        staleness = [step - v for v in stats["policy_versions"]]
        if max(staleness, default=0) > tr.max_staleness:
            raise RuntimeError(f"trained a sample {max(staleness)} versions old (max_staleness {tr.max_staleness})")
        samples_trained += stats["num_samples"]

        sync_s, in_sync = 0.0, None
        if (step + 1) % tr.sync_every == 0 or step + 1 == tr.max_steps:
            version = step + 1
            sync_s = sync_weights(learner, pipeline, version)
            if tr.check_weights_every and (step + 1) % tr.check_weights_every == 0:
                in_sync = weights_in_sync(learner, rollout, timeout)
        if tr.checkpoint_every and (step + 1) % tr.checkpoint_every == 0 and step + 1 < tr.max_steps:
            next_stream = inflight[0].stream_state if inflight else stream.state_dict()
            learner.save_checkpoint(str(ckpt_dir), {
                "step": step + 1, "version": version, "samples_trained": samples_trained,
                "stream": next_stream, "eval_accuracy_before": acc_before})

        n = sum(s["samples"] for s in summaries)
        tokens = sum(s["response_tokens"] for s in summaries)
        step_s = time.monotonic() - t0
        rollout_after = rollout.get_all("stats", timeout_s=timeout)
        idle = idle_ratios(rollout_before, rollout_after, stats.get("step_seconds", 0.0), step_s)
        rec = {
            "step": step + 1, "policy_version": version, "samples_trained": samples_trained,
            "reward_mean": sum(stats["rewards"]) / max(len(stats["rewards"]), 1),
            "train_accuracy": sum(s["correct"] for s in summaries) / max(n, 1),
            "thoughts_per_sample": sum(s["thoughts"] for s in summaries) / max(n, 1),
            "judge_errors": sum(s["judge_errors"] for s in summaries),
            "loss": stats["loss"], "clip_frac": stats.get("clip_frac", 0.0), "kl": stats.get("kl", 0.0),
            "learner_seconds": stats.get("step_seconds", 0.0), "sync_seconds": sync_s,
            "sync_bytes": learner.last_export_bytes if sync_s else 0,
            "weights_in_sync": in_sync, "staleness": staleness and [min(staleness), max(staleness)],
            "staleness_max": max(staleness, default=0), "sample_keys": stats["sample_keys"],
            "rollout_tokens": tokens, "rollout_tokens_per_s": tokens / step_s, "step_seconds": step_s,
            "rollout_idle": idle["rollout"], "learner_idle": idle["learner"],
            "actor_restarts": dict(pipeline.restarts),
        }
        log.step(rec)
        metrics.observe_step(rec, summaries, stats)
        metrics.observe_parts(get(buffer.depth.remote(), timeout, "buffer.depth"),
                              judges.get_all("stats", timeout_s=timeout), idle=idle)
        metrics.observe_generation(rollout_before, rollout_after)
        if tr.eval_every and (step + 1) % tr.eval_every == 0 and step + 1 < tr.max_steps:
            acc = evaluate(pipeline, eval_rows, f"eval{step + 1}")
            log.record("eval", step=step + 1, samples_trained=samples_trained, accuracy=acc)
            metrics.observe_eval(acc)
            log.info(f"held-out greedy accuracy at step {step + 1}: {acc:.3f}")

    acc_after = evaluate(pipeline, eval_rows, f"eval{tr.max_steps}")
    log.record("eval", step=tr.max_steps, samples_trained=samples_trained, accuracy=acc_after)
    metrics.observe_eval(acc_after)
    buffer_stats = get(buffer.depth.remote(), timeout, "buffer.depth")
    summary = {
        "name": cfg.name, "algorithm": cfg.algorithm.name, "steps": tr.max_steps,
        "samples_trained": samples_trained, "policy_version": version,
        "eval_accuracy_before": acc_before, "eval_accuracy_after": acc_after, "eval_problems": len(eval_rows),
        "weights_in_sync": weights_in_sync(learner, rollout, timeout),
        "engine_versions": rollout.get_all("version", timeout_s=timeout),
        "samples_stale_dropped": buffer_stats["samples_stale_dropped"],
        "judge_errors": buffer_stats["judge_errors"], "actor_restarts": pipeline.restarts,
        "resumed_from_step": first_step if resume else None, "model_dir": model_dir,
        "wall_seconds": round(time.monotonic() - t_start, 1),
    }
    write_summary(run_dir, summary)
    plot_accuracy(run_dir)
    log.info(f"done: accuracy {acc_before:.3f} → {acc_after:.3f}, weights_in_sync={summary['weights_in_sync']}, "
             f"{samples_trained} samples in {summary['wall_seconds']}s; summary in {run_dir / 'summary.json'}")
    learner.shutdown()
    release(placed)
    if metrics.port is not None and cfg.metrics.linger_s:
        log.info(f"metrics: serving the final values for {cfg.metrics.linger_s:.0f}s more")
        time.sleep(cfg.metrics.linger_s)
    metrics.close()
    return summary
