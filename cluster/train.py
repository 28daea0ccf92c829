"""The training driver: one read from top to bottom shows the whole run.

    data → model (tiny + warm start, or a HF directory) → actors → eval before
    loop: sample the batches now due (cluster/schedule.py) → take fresh groups → learner step
    → sync → eval after → summary.json, metrics.jsonl, accuracy.png

Everything the run starts (actors, placement groups, the metrics endpoint) is stopped when it
ends, however it ends; a failure is an error that names the part that failed.
"""
from __future__ import annotations

import time
from collections import deque
from contextlib import ExitStack
from typing import Callable

import ray

from actors.judge import JudgeWorker
from actors.rollout import RolloutWorker
from cluster.actor_group import ActorGroup, get
from cluster.buffer import create_buffer
from cluster.metrics import RunMetrics
from cluster.model_prep import prepare_model
from cluster.pipeline import Batch, Pipeline, Weights
from cluster.report import RunLog, plot_accuracy, write_summary
from cluster.resources import check_cluster, release, reserve, rollout_engine_kwargs
from cluster.run_dir import RunDir
from cluster.runtime import connect
from cluster.schedule import Schedule
from core.config import Config
from core.datasets import PromptStream, load_dataset
from core.prompts import PromptFormat
from learner.group import LearnerGroup, LearnerRankActor


def to_prompts(rows: list[dict], tag: str, prompt: PromptFormat) -> list[dict]:
    """Dataset rows → rollout prompts; `tag` and the position make each sampling of a prompt its
    own group (a batch that crosses an epoch boundary can hold the same prompt twice)."""
    return [{"prompt_id": r["prompt_id"], "group_id": f"{r['prompt_id']}@{tag}.{i}", "problem": r["problem"],
             "prompt_text": prompt(r["problem"]), "gold_answer": r["answer"]} for i, r in enumerate(rows)]


def load_data(cfg: Config, log: RunLog):
    d = cfg.data
    train = load_dataset(d.train, d.fields, d.synthetic, split="train")
    evals = load_dataset(d.eval, d.fields, d.synthetic, split="eval")
    for name, loaded in (("train", train), ("eval", evals)):
        if loaded.num_skipped:
            first = "; ".join(f"row {i}: {why}" for i, why in loaded.skipped[:3])
            log.warn(f"data.{name}: skipped {loaded.num_skipped} bad rows ({first})")
    log.info(f"data: {len(train.rows)} train rows, {min(len(evals.rows), d.eval_size)} eval rows")
    return train.rows, evals.rows[:d.eval_size]


def on_exit(started: ExitStack, log: Callable[[str], None], what: str, stop: Callable, *args) -> None:
    """Call `stop(*args)` when the run ends, however it ends; a failure to stop is logged, never
    raised over the error that ended the run."""
    def quietly() -> None:
        try:
            stop(*args)
        except Exception as e:  # noqa: BLE001 - the other parts must still be stopped
            log(f"stopping {what}: {type(e).__name__}: {e}")
    started.callback(quietly)


def start_actors(cfg: Config, model_dir: str, started: ExitStack, log: Callable[[str], None]):
    """Reserve the cluster and start every actor; each part is registered on `started` as it starts."""
    r, j, l = cfg.rollout, cfg.judge, cfg.learner
    timeout = cfg.trainer.call_timeout_s  # every actor group waits at most this long for any call
    placed = reserve(cfg)  # fails fast when the cluster is too small; one placement group per role
    on_exit(started, log, "placement groups", release, placed)
    run = cfg.name  # tags what each part records into Ray's metrics export
    collective = cfg.weight_sync == "collective"
    rollout = ActorGroup("rollout", RolloutWorker, r.num_actors, timeout, placed["rollout"].options, args=(model_dir,),
                         kwargs=dict(dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.model.max_model_len,
                                     tensor_parallel_size=r.tensor_parallel_size, kv_cache_gb=r.kv_cache_gb,
                                     gpu_memory_utilization=r.gpu_memory_utilization, run_name=run,
                                     weight_transfer=cfg.weight_channel if collective else None,
                                     **rollout_engine_kwargs(cfg)))
    on_exit(started, log, "rollout actors", rollout.shutdown)
    judges = ActorGroup("judge", JudgeWorker, j.num_actors, timeout, placed["judge"].options,
                        kwargs=dict(backend=j.backend, splitter=j.splitter, grader_workers=j.grader_workers,
                                    grader_timeout_s=j.grader_timeout_s, require_answer=j.require_answer,
                                    run_name=run, **j.options))
    on_exit(started, log, "judge actors", judges.shutdown)
    ranks = ActorGroup("learner", LearnerRankActor, l.num_ranks, timeout, placed["learner"].options)
    on_exit(started, log, "learner ranks", ranks.shutdown)
    # Every group loads at once; the first actor that cannot start ends the wait.
    starting = [(group, "ready", group.call_all("ready")) for group in (rollout, judges)]
    learner = LearnerGroup(ranks, model_dir, alongside=starting, zero_stage=l.zero_stage, lr=l.lr,
                           weight_decay=l.weight_decay, micro_batch_size=l.micro_batch_size, grad_clip=l.grad_clip,
                           clip_eps=cfg.algorithm.clip_eps, kl_coef=cfg.algorithm.kl_coef, dtype=cfg.model.dtype,
                           backend=l.backend, seed=cfg.seed, run_name=run, weight_channel=cfg.weight_channel,
                           weight_bucket_mb=cfg.trainer.weight_bucket_mb,
                           weight_timeout_s=cfg.trainer.weight_sync_timeout_s)
    buffer = create_buffer(r.samples_per_prompt, cfg.trainer.max_staleness,
                           capacity_groups=cfg.trainer.prompts_per_step * (cfg.trainer.max_staleness + 2),
                           algorithm=cfg.algorithm.name, alpha=cfg.algorithm.alpha,
                           beta=cfg.algorithm.beta, run_name=run)
    on_exit(started, log, "experience buffer", ray.kill, buffer)
    return rollout, judges, learner, buffer


def evaluate(pipeline: Pipeline, rows: list[dict], tag: str, prompt: PromptFormat) -> float:
    """Held-out accuracy of greedy decoding (temperature 0, one sample per problem)."""
    batch = pipeline.submit(0, to_prompts(rows, tag, prompt), n=1, temperature=0.0, to_buffer=False)
    summaries = pipeline.collect(batch)
    return sum(s["correct"] for s in summaries) / max(1, sum(s["samples"] for s in summaries))


def through_object_store(learner: LearnerGroup, rollout: ActorGroup) -> Callable[[list[int], int], None]:
    # An ObjectRef: rank 0's packed state dict stays in the object store; engines map it, and a
    # replaced engine later gets exactly these weights.
    packed = learner.export_weights()
    return lambda indices, version: get(
        [rollout.actors[i].update_weights.remote(packed, version) for i in indices], rollout.timeout_s,
        "rollout.update_weights", [rollout.actor_name(i) for i in indices])


def over_collective(learner: LearnerGroup, rollout: ActorGroup) -> Callable[[list[int], int], None]:
    # Rank 0 streams its current weights: an engine replaced between two syncs (sync_every > 1)
    # gets the learner's newer weights under the last synced version; its samples' importance
    # ratios use their own rollout logprobs, only their staleness is over-counted.
    return lambda indices, version: learner.send_weights(
        [rollout.actors[i] for i in indices], [rollout.actor_name(i) for i in indices], version)


WEIGHT_SYNCS = {"object_store": through_object_store, "collective": over_collective}


def sync_weights(learner: LearnerGroup, pipeline: Pipeline, version: int, how: str) -> float:
    """Every engine serves the learner's weights as `version` (trainer.weight_sync: how); seconds."""
    t0 = time.monotonic()
    pipeline.sync(Weights(WEIGHT_SYNCS[how](learner, pipeline.rollout), version))
    return time.monotonic() - t0


def weights_in_sync(learner: LearnerGroup, pipeline: Pipeline) -> bool | None:
    """Whether every engine serves the learner's weights; None where an engine cannot read its
    weights back (tensor-parallel shards): a check that cannot be made is reported as not made."""
    served = pipeline.ask_all(pipeline.rollout, "weights_hash")
    if None in served:
        return None
    want = learner.weights_hash()
    return all(h == want for h in served)


def idle_ratios(before: list[dict], after: list[dict], learner_s: float, wall_s: float) -> dict:
    # a replaced engine's counters start again from zero: it counts as not busy this step
    busy = sum(max(0.0, a["generate_seconds"] - b["generate_seconds"]) for a, b in zip(after, before))
    return {"rollout": max(0.0, 1 - busy / (len(after) * wall_s)), "learner": max(0.0, 1 - learner_s / wall_s)}


def train(cfg: Config, resume: bool = False, overwrite: bool = False) -> dict:
    """The whole run; everything it starts is stopped when it ends, however it ends."""
    with ExitStack() as started:
        return run_training(cfg, resume, overwrite, started)


def run_training(cfg: Config, resume: bool, overwrite: bool, started: ExitStack) -> dict:
    t_start = time.monotonic()
    # Refuses to touch an earlier run unless resumed or overwritten; locked while this run lasts.
    run = RunDir.open(cfg, resume=resume, overwrite=overwrite)
    started.callback(run.close)  # the lock is the run's: it goes when the run ends
    run_dir, ckpt_dir = run.path, run.checkpoints
    log = RunLog(run_dir)  # from here on, library logs go to runs/<name>/logs/
    for change in run.changed_settings:
        log.warn(f"resuming with a changed setting: {change}")
    metrics = RunMetrics(cfg.name, cfg.metrics.port, cfg.metrics.host)
    on_exit(started, log.warn, "metrics endpoint", metrics.close)
    if metrics.port is not None:
        log.info(f"metrics: http://{cfg.metrics.host}:{metrics.port}/metrics")
    tr, timeout = cfg.trainer, cfg.trainer.call_timeout_s

    log.info(f"ray: {connect(log_dir=run.logs)} (library logs: {run.logs})")
    check_cluster(cfg)  # before any slow preparation: a too-small cluster fails at once
    train_rows, eval_rows = load_data(cfg, log)
    model_dir = str(prepare_model(cfg, train_rows, log.info, log.progress))
    prompt = PromptFormat.for_model(model_dir, **cfg.prompt.model_dump())
    log.info(f"prompt ({prompt.style}) of the first training problem:\n{prompt(train_rows[0]['problem'])}")
    log.info(f"starting {cfg.rollout.num_actors} rollout, {cfg.judge.num_actors} judge, "
             f"{cfg.learner.num_ranks} learner actors on {model_dir}")
    rollout, judges, learner, buffer = start_actors(cfg, model_dir, started, log.warn)
    pipeline = Pipeline(cfg, rollout, judges, buffer, Weights(), log=log.warn)
    on_exit(started, log.warn, "timeline", pipeline.timeline.close)
    stream = PromptStream(train_rows, tr.prompts_per_step, seed=cfg.seed)

    first_step = samples_trained = version = 0
    if resume:
        for tag, why in run.resume_from.skipped:
            log.warn(f"checkpoint {tag} is incomplete ({why}); resuming from {run.resume_from.tag}")
        state = learner.load_checkpoint(str(ckpt_dir), run.resume_from.tag)
        first_step, version, samples_trained = state["step"], state["version"], state["samples_trained"]
        stream.load_state_dict(state["stream"])
        sync_weights(learner, pipeline, version, cfg.weight_sync)
        log.keep_until(first_step)
        acc_before = state["eval_accuracy_before"]
        log.info(f"resumed at step {first_step} (policy version {version}) from {ckpt_dir / run.resume_from.tag}")
    else:
        acc_before = evaluate(pipeline, eval_rows, "eval0", prompt)
        log.record("eval", step=0, samples_trained=0, accuracy=acc_before)
        log.info(f"held-out greedy accuracy before training: {acc_before:.3f} ({len(eval_rows)} problems)")
    metrics.observe_eval(acc_before)

    schedule = Schedule(tr.max_steps, tr.sync_every, tr.max_staleness, next_batch=first_step)
    inflight: deque[Batch] = deque()
    log.progress("train", tr.max_steps, done=first_step)
    for step in range(first_step, tr.max_steps):
        t0, step_started = time.monotonic(), time.time()
        rollout_before = pipeline.ask_all(rollout, "stats")
        # Every batch that the engines' version is fresh enough for is sampled now, so
        # generation overlaps learning as far as max_staleness allows (cluster/schedule.py).
        for t in schedule.sample_now(version):
            state = stream.state_dict()
            batch = pipeline.submit(t, to_prompts(stream.next_batch(), f"s{t}", prompt))
            batch.stream_state = state
            inflight.append(batch)
        summaries = pipeline.collect(inflight.popleft())
        taken = get(buffer.take.remote(tr.prompts_per_step, step, timeout), timeout, "buffer.take")
        with pipeline.timeline.timed("learner", "learner", step):
            stats = learner.train_step(taken["experience"])
        staleness = [step - v for v in stats["policy_versions"]]
        if max(staleness, default=0) > tr.max_staleness:
            raise RuntimeError(f"trained a sample {max(staleness)} versions old (max_staleness {tr.max_staleness})")
        samples_trained += stats["num_samples"]

        sync_s, in_sync = 0.0, None
        if schedule.syncs_after(step):
            version = step + 1
            sync_s = sync_weights(learner, pipeline, version, cfg.weight_sync)
            pipeline.timeline.span("sync", "driver", step, time.time() - sync_s, time.time())
            if tr.check_weights_every and (step + 1) % tr.check_weights_every == 0:
                in_sync = weights_in_sync(learner, pipeline)
        if tr.checkpoint_every and (step + 1) % tr.checkpoint_every == 0 and step + 1 < tr.max_steps:
            next_stream = inflight[0].stream_state if inflight else stream.state_dict()
            learner.save_checkpoint(str(ckpt_dir), {
                "step": step + 1, "version": version, "samples_trained": samples_trained,
                "stream": next_stream, "eval_accuracy_before": acc_before}, keep=tr.keep_checkpoints)

        n = sum(s["samples"] for s in summaries)
        tokens = sum(s["response_tokens"] for s in summaries)
        step_s = time.monotonic() - t0
        pipeline.timeline.span("step", "driver", step, step_started, step_started + step_s)
        rollout_after = pipeline.ask_all(rollout, "stats")
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
            "timeline": pipeline.timeline.take(),  # when each part worked (cluster/timeline.py)
        }
        log.step(rec)
        metrics.observe_step(rec, summaries, stats)
        depth = get(buffer.depth.remote(), timeout, "buffer.depth")
        log.stale_drops(step + 1, depth)
        metrics.observe_parts(depth, pipeline.grader_timeouts(), idle=idle)
        metrics.observe_generation(rollout_before, rollout_after)
        if tr.eval_every and (step + 1) % tr.eval_every == 0 and step + 1 < tr.max_steps:
            acc = evaluate(pipeline, eval_rows, f"eval{step + 1}", prompt)
            log.record("eval", step=step + 1, samples_trained=samples_trained, accuracy=acc)
            metrics.observe_eval(acc)
            log.info(f"held-out greedy accuracy at step {step + 1}: {acc:.3f}")

    acc_after = evaluate(pipeline, eval_rows, f"eval{tr.max_steps}", prompt)
    log.record("eval", step=tr.max_steps, samples_trained=samples_trained, accuracy=acc_after)
    metrics.observe_eval(acc_after)
    buffer_stats = get(buffer.depth.remote(), timeout, "buffer.depth")
    summary = {
        "name": cfg.name, "algorithm": cfg.algorithm.name, "steps": tr.max_steps,
        "samples_trained": samples_trained, "policy_version": version,
        "eval_accuracy_before": acc_before, "eval_accuracy_after": acc_after, "eval_problems": len(eval_rows),
        "weights_in_sync": weights_in_sync(learner, pipeline),
        "engine_versions": pipeline.ask_all(rollout, "version"),
        "samples_stale_dropped": buffer_stats["samples_stale_dropped"],
        "judge_errors": buffer_stats["judge_errors"], "actor_restarts": pipeline.restarts,
        "resumed_from_step": first_step if resume else None, "model_dir": model_dir,
        "wall_seconds": round(time.monotonic() - t_start, 1),
    }
    write_summary(run_dir, summary)
    plot_accuracy(run_dir)
    log.info(f"done: accuracy {acc_before:.3f} → {acc_after:.3f}, weights_in_sync={summary['weights_in_sync']}, "
             f"{samples_trained} samples in {summary['wall_seconds']}s; summary in {run_dir / 'summary.json'}")
    if metrics.port is not None and cfg.metrics.linger_s:
        log.info(f"metrics: serving the final values for {cfg.metrics.linger_s:.0f}s more")
        time.sleep(cfg.metrics.linger_s)
    return summary
