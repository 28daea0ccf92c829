"""Prometheus metrics of a run, served over HTTP by the driver (`metrics.port`).

The driver already receives every part's numbers (judge summaries, learner stats, actor
counters, buffer depth), so it publishes them from one registry: one scrape target per job,
labelled by run name. Names carry the `thoughtrl_` prefix.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class RunMetrics:
    def __init__(self, run: str, port: int | None = None, host: str = "127.0.0.1"):
        self.registry = r = CollectorRegistry()
        L = ["run"]
        self.rollout_tokens = Counter("thoughtrl_rollout_tokens", "Response tokens generated", L, registry=r)
        self.rollout_tps = Gauge("thoughtrl_rollout_tokens_per_second", "Generation throughput of the last step", L, registry=r)
        self.generate_seconds = Histogram("thoughtrl_rollout_generate_seconds", "Seconds one rollout actor spent generating, per step", L, buckets=_BUCKETS, registry=r)
        self.judge_seconds = Histogram("thoughtrl_judge_seconds", "Time to judge one rollout table", L, buckets=_BUCKETS, registry=r)
        self.judge_errors = Counter("thoughtrl_judge_errors", "Samples whose judging failed", L, registry=r)
        self.grader_timeouts = Gauge("thoughtrl_grader_timeouts", "Answers whose grading hit the time limit", L, registry=r)
        self.samples_judged = Counter("thoughtrl_samples_judged", "Samples graded and judged", L, registry=r)
        self.thoughts_per_sample = Gauge("thoughtrl_thoughts_per_sample", "Mean thoughts per sample, last step", L, registry=r)
        self.buffer_ready = Gauge("thoughtrl_buffer_ready_groups", "Complete groups waiting in the buffer", L, registry=r)
        self.buffer_pending = Gauge("thoughtrl_buffer_pending_groups", "Groups still missing samples", L, registry=r)
        self.stale_dropped = Gauge("thoughtrl_samples_stale_dropped", "Samples refused for staleness", L, registry=r)
        self.staleness = Gauge("thoughtrl_sample_staleness_max", "Max policy-version lag of trained samples, last step", L, registry=r)
        self.learner_step_seconds = Histogram("thoughtrl_learner_step_seconds", "Learner optimizer step time", L, buckets=_BUCKETS, registry=r)
        self.learner_tps = Gauge("thoughtrl_learner_tokens_per_second", "Learner tokens/s, last step", L, registry=r)
        self.samples_trained = Counter("thoughtrl_samples_trained", "Samples trained", L, registry=r)
        self.sync_seconds = Histogram("thoughtrl_weight_sync_seconds", "Weight broadcast time", L, buckets=_BUCKETS, registry=r)
        self.sync_bytes = Counter("thoughtrl_weight_sync_bytes", "Bytes of weights broadcast", L, registry=r)
        self.policy_version = Gauge("thoughtrl_policy_version", "Policy version served by the engines", L, registry=r)
        self.reward = Gauge("thoughtrl_reward_mean", "Mean outcome reward, last step", L, registry=r)
        self.train_accuracy = Gauge("thoughtrl_train_accuracy", "Accuracy of sampled solutions, last step", L, registry=r)
        self.eval_accuracy = Gauge("thoughtrl_eval_accuracy", "Held-out greedy accuracy, last evaluation", L, registry=r)
        self.rollout_idle = Gauge("thoughtrl_rollout_idle_ratio", "Share of wall time rollout actors sat idle", L, registry=r)
        self.learner_idle = Gauge("thoughtrl_learner_idle_ratio", "Share of wall time the learner sat idle", L, registry=r)
        self.step_seconds = Histogram("thoughtrl_step_seconds", "Wall time of one training step", L, buckets=_BUCKETS, registry=r)
        self.run = run
        self.server = None
        if port is not None:
            self.server, _ = start_http_server(port, addr=host, registry=r)

    @property
    def port(self) -> int | None:
        return self.server.server_port if self.server else None

    def observe_step(self, rec: dict, summaries: list[dict], stats: dict) -> None:
        run = self.run
        self.rollout_tokens.labels(run).inc(rec["rollout_tokens"])
        self.rollout_tps.labels(run).set(rec["rollout_tokens_per_s"])
        for s in summaries:
            self.judge_seconds.labels(run).observe(s["judge_seconds"])
            self.samples_judged.labels(run).inc(s["samples"])
            self.judge_errors.labels(run).inc(s["judge_errors"])
        self.thoughts_per_sample.labels(run).set(rec["thoughts_per_sample"])
        self.staleness.labels(run).set(rec["staleness_max"])
        self.learner_step_seconds.labels(run).observe(stats.get("step_seconds", 0.0))
        self.learner_tps.labels(run).set(stats.get("tokens_per_s", 0.0))
        self.samples_trained.labels(run).inc(stats["num_samples"])
        if rec["sync_seconds"]:
            self.sync_seconds.labels(run).observe(rec["sync_seconds"])
            self.sync_bytes.labels(run).inc(rec.get("sync_bytes", 0))
        self.policy_version.labels(run).set(rec["policy_version"])
        self.reward.labels(run).set(rec["reward_mean"])
        self.train_accuracy.labels(run).set(rec["train_accuracy"])
        self.step_seconds.labels(run).observe(rec["step_seconds"])

    def observe_parts(self, buffer: dict, judges: list[dict], idle: dict) -> None:
        run = self.run
        self.buffer_ready.labels(run).set(buffer["ready_groups"])
        self.buffer_pending.labels(run).set(buffer["pending_groups"])
        self.stale_dropped.labels(run).set(buffer["samples_stale_dropped"])
        self.grader_timeouts.labels(run).set(sum(j.get("grader_timeouts", 0) for j in judges))
        for part, gauge in (("rollout", self.rollout_idle), ("learner", self.learner_idle)):
            if part in idle:  # a part not measured this time keeps its last value
                gauge.labels(run).set(min(1.0, max(0.0, idle[part])))

    def observe_generation(self, before: list[dict], after: list[dict]) -> None:
        """Each rollout actor's generation seconds in one step, from two reads of its
        cumulative counters (`RolloutWorker.stats()`) taken at the step's start and end."""
        for b, a in zip(before, after):
            seconds = a["generate_seconds"] - b["generate_seconds"]
            if seconds > 0:
                self.generate_seconds.labels(self.run).observe(seconds)

    def observe_eval(self, accuracy: float) -> None:
        self.eval_accuracy.labels(self.run).set(accuracy)

    def close(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
