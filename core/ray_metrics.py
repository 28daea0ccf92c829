"""The run's metrics, and how each part of a run publishes its own through Ray's metrics agent.

`METRICS` is the one list of names, kinds and owners. Two exports read it:

- the driver's own HTTP endpoint (`cluster/metrics.py`, `metrics.port`): every metric, named
  `thoughtrl_<name>`, labelled `run`; made for a local run;
- Ray's metrics agent (`PartMetrics` below): each metric recorded with `ray.util.metrics` by the
  one part that owns it (rollout, judge and learner actors, the buffer, the driver), tagged `run`
  and `actor`. Every node's agent serves what the processes of that node recorded at the node's
  `--metrics-export-port`, and Prometheus finds the agents through Ray's service discovery file.
  Ray prefixes application metrics with `ray_`: `thoughtrl_rollout_tokens` is scraped as
  `ray_thoughtrl_rollout_tokens_total`.

The two exports never share a name, and inside Ray's export each name has exactly one owner
(`PartMetrics` refuses others), so no sum over a name counts anything twice. Where a part sees
more than the driver, the numbers differ: the actors also count the evaluation passes
(tokens, samples judged, generation calls) and record generation time per `generate` call,
while the driver's endpoint counts training batches and generation time per step.

Ray's agent forgets a gauge that its process has not recorded again within two report
intervals (`RAY_metrics_report_interval_ms`, 10 s by default), while a training step can take
minutes; so every process that records gauges re-records their last values every half interval.

Outside a Ray worker or driver `PartMetrics` does nothing, so the parts still run as plain
objects (tests, tools).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import NamedTuple

PREFIX = "thoughtrl_"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
TAG_KEYS = ("run", "actor")


class Spec(NamedTuple):
    kind: str  # counter | gauge | histogram
    help: str
    part: str  # who records it into Ray's export: rollout | judge | learner | buffer | driver


METRICS: dict[str, Spec] = {
    "rollout_tokens": Spec("counter", "Response tokens generated", "rollout"),
    "rollout_tokens_per_second": Spec("gauge", "Response tokens over wall time, last step", "driver"),
    # Per step on the driver's endpoint, per generate call in Ray's export (module docstring).
    "rollout_generate_seconds": Spec("histogram", "Seconds one rollout actor spent generating", "rollout"),
    "judge_seconds": Spec("histogram", "Time to judge one rollout table", "judge"),
    "judge_errors": Spec("counter", "Samples whose judging failed", "judge"),
    "grader_timeouts": Spec("gauge", "Answers whose grading hit the time limit", "judge"),
    "samples_judged": Spec("counter", "Samples graded and judged", "judge"),
    "thoughts_per_sample": Spec("gauge", "Mean thoughts per sample, last step", "driver"),
    "buffer_ready_groups": Spec("gauge", "Complete groups waiting in the buffer", "buffer"),
    "buffer_pending_groups": Spec("gauge", "Groups still missing samples", "buffer"),
    "samples_stale_dropped": Spec("gauge", "Samples refused for staleness", "buffer"),
    "sample_staleness_max": Spec("gauge", "Max policy-version lag of trained samples, last step", "buffer"),
    "learner_step_seconds": Spec("histogram", "Learner optimizer step time", "learner"),
    "learner_tokens_per_second": Spec("gauge", "Learner tokens/s, last step", "learner"),
    "samples_trained": Spec("counter", "Samples trained", "driver"),
    "weight_sync_seconds": Spec("histogram", "Weight broadcast time", "driver"),
    "weight_sync_bytes": Spec("counter", "Bytes of weights broadcast", "driver"),
    "policy_version": Spec("gauge", "Policy version served by the engines", "driver"),
    "reward_mean": Spec("gauge", "Mean outcome reward, last step", "driver"),
    "train_accuracy": Spec("gauge", "Accuracy of sampled solutions, last step", "driver"),
    "eval_accuracy": Spec("gauge", "Held-out greedy accuracy, last evaluation", "driver"),
    "rollout_idle_ratio": Spec("gauge", "Share of wall time rollout actors sat idle", "driver"),
    "learner_idle_ratio": Spec("gauge", "Share of wall time the learner sat idle", "driver"),
    "step_seconds": Spec("histogram", "Wall time of one training step", "driver"),
}
PARTS = frozenset(s.part for s in METRICS.values())

_made: dict[str, object] = {}  # one ray.util.metrics object per name and process
_gauges: dict[tuple, float] = {}  # (name, run, actor) → last value, re-recorded to stay exported
_job: list = [None]  # the Ray job and node both belong to; a new ray.init() starts afresh
_lock = threading.RLock()
_refresher: threading.Thread | None = None


def _ray():
    """The `ray` module when this process is a connected Ray worker or driver, else None.

    A process that never imported ray is not under Ray; checking `sys.modules` keeps this free.
    """
    ray = sys.modules.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def _same_job(ray) -> None:
    context = ray.get_runtime_context()
    job = (context.get_job_id(), context.get_node_id())  # job ids restart at 1 on a new cluster
    with _lock:
        if job != _job[0]:
            _made.clear()
            _gauges.clear()
            _job[0] = job


def _metric(name: str):
    with _lock:
        if name not in _made:
            from ray.util import metrics

            spec, full = METRICS[name], PREFIX + name
            if spec.kind == "counter":
                _made[name] = metrics.Counter(full, spec.help, tag_keys=TAG_KEYS)
            elif spec.kind == "gauge":
                _made[name] = metrics.Gauge(full, spec.help, tag_keys=TAG_KEYS)
            else:
                _made[name] = metrics.Histogram(full, spec.help, boundaries=list(BUCKETS), tag_keys=TAG_KEYS)
        return _made[name]


def _refresh_gauges() -> None:
    while True:
        ray = _ray()
        if ray is None:
            time.sleep(1.0)
            continue
        # Ray floors the export interval at 1 s; recording twice per interval keeps a gauge in every export.
        time.sleep(max(1000, ray._config.metrics_report_interval_ms()) / 2000)
        try:
            if _ray() is None:
                continue
            with _lock:
                _same_job(ray)
                for (name, run, actor), value in _gauges.items():
                    _metric(name).set(value, {"run": run, "actor": actor})
        except Exception:  # Ray disconnecting between the check and the call: try again later
            continue


def _keep_alive(name: str, run: str, actor: str, value: float) -> None:
    global _refresher
    with _lock:
        _gauges[(name, run, actor)] = value
        if _refresher is None:
            _refresher = threading.Thread(target=_refresh_gauges, name="thoughtrl-gauges", daemon=True)
            _refresher.start()


class PartMetrics:
    """What one part (`part`, one of PARTS) records into Ray's export, tagged with its run and actor.

    `actor` defaults to the Ray actor's name (e.g. `rollout-0`, `judge-1-r1` after a restart),
    or the part's name where the actor has none.
    """

    def __init__(self, run: str, part: str, actor: str | None = None):
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; one of {sorted(PARTS)}")
        self.run, self.part, self._actor = run or "", part, actor

    def record(self, name: str, value: float) -> None:
        """Add to a counter, set a gauge or observe a histogram value, by the metric's kind."""
        spec = METRICS[name]
        if spec.part != self.part:  # one owner per name: nothing is counted twice
            raise ValueError(f"{PREFIX}{name} is recorded by the {spec.part}, not the {self.part}")
        ray = _ray()
        if ray is None:
            return
        _same_job(ray)
        if self._actor is None:
            self._actor = ray.get_runtime_context().get_actor_name() or self.part
        tags = {"run": self.run, "actor": self._actor}
        value = float(value)
        if spec.kind == "counter":
            if value > 0:  # Ray's counters refuse 0; the series appears with the first count
                _metric(name).inc(value, tags)
        elif spec.kind == "gauge":
            _metric(name).set(value, tags)
            _keep_alive(name, self.run, self._actor, value)
        else:
            _metric(name).observe(value, tags)
