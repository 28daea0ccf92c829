"""The run's Prometheus metrics as the driver publishes them.

Two exports (names, kinds and owners are listed once, in `core/ray_metrics.py`):

- `metrics.port` serves every metric over HTTP from the driver, named `thoughtrl_*` and labelled
  `run`: one scrape target for a local run. The driver already receives every part's numbers
  (judge summaries, learner stats, actor counters, buffer depth), so it needs nothing else.
- Under Ray (always, port or not) the driver also records the metrics it owns itself (policy
  version, reward, accuracy, weight sync, idle ratios, step time, ...) through Ray's metrics
  agent, next to what the actors record there; on a cluster Prometheus scrapes them all, as
  `ray_thoughtrl_*`, through Ray's service discovery.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.ray_metrics import BUCKETS, METRICS, PREFIX, PartMetrics


def _local_metric(name: str, registry: CollectorRegistry):
    spec, full = METRICS[name], PREFIX + name
    if spec.kind == "counter":
        return Counter(full, spec.help, ["run"], registry=registry)
    if spec.kind == "gauge":
        return Gauge(full, spec.help, ["run"], registry=registry)
    return Histogram(full, spec.help, ["run"], buckets=BUCKETS, registry=registry)


class RunMetrics:
    def __init__(self, run: str, port: int | None = None, host: str = "127.0.0.1"):
        self.registry = CollectorRegistry()
        self._local = {name: _local_metric(name, self.registry) for name in METRICS}
        self._ray = PartMetrics(run, "driver", actor="driver")
        self.run = run
        self.server = None
        if port is not None:
            self.server, _ = start_http_server(port, addr=host, registry=self.registry)

    @property
    def port(self) -> int | None:
        return self.server.server_port if self.server else None

    def _record(self, name: str, value: float) -> None:
        metric = self._local[name].labels(self.run)
        kind = METRICS[name].kind
        if kind == "counter":
            metric.inc(value)
        elif kind == "gauge":
            metric.set(value)
        else:
            metric.observe(value)
        # In Ray's export the actors publish their own parts; the driver adds only its own.
        if METRICS[name].part == "driver":
            self._ray.record(name, value)

    def observe_step(self, rec: dict, summaries: list[dict], stats: dict) -> None:
        self._record("rollout_tokens", rec["rollout_tokens"])
        self._record("rollout_tokens_per_second", rec["rollout_tokens_per_s"])
        for s in summaries:
            self._record("judge_seconds", s["judge_seconds"])
            self._record("samples_judged", s["samples"])
            self._record("judge_errors", s["judge_errors"])
        self._record("thoughts_per_sample", rec["thoughts_per_sample"])
        self._record("sample_staleness_max", rec["staleness_max"])
        self._record("learner_step_seconds", stats.get("step_seconds", 0.0))
        self._record("learner_tokens_per_second", stats.get("tokens_per_s", 0.0))
        self._record("samples_trained", stats["num_samples"])
        if rec["sync_seconds"]:
            self._record("weight_sync_seconds", rec["sync_seconds"])
            self._record("weight_sync_bytes", rec.get("sync_bytes", 0))
        self._record("policy_version", rec["policy_version"])
        self._record("reward_mean", rec["reward_mean"])
        self._record("train_accuracy", rec["train_accuracy"])
        self._record("step_seconds", rec["step_seconds"])

    def observe_parts(self, buffer: dict, grader_timeouts: int, idle: dict) -> None:
        self._record("buffer_ready_groups", buffer["ready_groups"])
        self._record("buffer_pending_groups", buffer["pending_groups"])
        self._record("samples_stale_dropped", buffer["samples_stale_dropped"])
        self._record("grader_timeouts", grader_timeouts)
        for part in ("rollout", "learner"):
            if part in idle:  # a part not measured this time keeps its last value
                self._record(f"{part}_idle_ratio", min(1.0, max(0.0, idle[part])))

    def observe_generation(self, before: list[dict], after: list[dict]) -> None:
        """Each rollout actor's generation seconds in one step, from two reads of its
        cumulative counters (`RolloutWorker.stats()`) taken at the step's start and end."""
        for b, a in zip(before, after):
            seconds = a["generate_seconds"] - b["generate_seconds"]
            if seconds > 0:
                self._record("rollout_generate_seconds", seconds)

    def observe_eval(self, accuracy: float) -> None:
        self._record("eval_accuracy", accuracy)

    def close(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
