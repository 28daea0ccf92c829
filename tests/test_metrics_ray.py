"""The cluster path of the metrics: actors → Ray's metrics agent → service discovery → Prometheus.

A real `ray start --head --metrics-export-port=P` (own ports, temp dir and auth token: the
fixture of tests/test_ray_job.py) runs a short real training job joined through `RAY_ADDRESS`,
with no `metrics.port`: nothing is served by the driver. Debian's `prometheus` finds the node's
metrics agent only through Ray's service discovery file (`file_sd_configs`). The test then
checks that the rollout, judge, learner and buffer actors' own metrics arrived tagged with
their actor, that every name comes from exactly one part (totals match the run exactly), and
that every Grafana panel query returns data from Ray's export. A probe actor on the same head
shows that a gauge recorded once stays on the agent's endpoint, which Ray alone does not do.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cluster.report import read_records
from core.ray_metrics import METRICS, PartMetrics
from tests.conftest import ROOT
from tests.test_e2e import MODEL_CACHE
from tests.test_metrics_prometheus import (PROMETHEUS, http_get, panels_without_data, prom_api, resolve_prefix,
                                           start_prometheus, stop)
from tests.test_ray_job import RayHead

RUN = "raymetrics"
STEPS, PROMPTS, G, EVAL = 4, 4, 4, 8
RUN_DEADLINE_S = 540  # ~2 min alone; the machine may be shared
# Small and untrained (no warm start): the metrics path, not the learning, is under test; two
# actors per role, so the actor tag has something to tell apart. An evaluation after every step
# keeps the learner steps apart: steps that all land in one export interval give Prometheus a
# first sample that is already final, so every rate() panel over them is 0/0.
RUN_ARGS = [
    f"name={RUN}", "warm_start.enabled=false", f"model.cache_dir={MODEL_CACHE}", f"trainer.max_steps={STEPS}",
    "trainer.eval_every=1", f"trainer.prompts_per_step={PROMPTS}", f"rollout.samples_per_prompt={G}",
    "rollout.max_new_tokens=48", f"data.eval_size={EVAL}", "data.synthetic.num_train=200",
    f"data.synthetic.num_eval={EVAL}", "rollout.num_actors=2", "judge.num_actors=2", "learner.num_ranks=2",
]
# Ray's agent exports what workers report every interval (10 s by default); 1 s keeps the test short.
RAY_ENV = {"RAY_metrics_report_interval_ms": "1000"}
OWNERS = {"rollout": {"rollout-0", "rollout-1"}, "judge": {"judge-0", "judge-1"},
          "learner": {"learner-0", "learner-1"}, "buffer": {"buffer"}, "driver": {"driver"}}

pytestmark = pytest.mark.timeout(RUN_DEADLINE_S + 400)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="the `prometheus` binary is absent (Debian: apt-get install -y prometheus)")


def wait_for(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(every_s)


def sd_targets(sd_file: Path) -> list[str]:
    try:
        return [t for group in json.loads(sd_file.read_text()) for t in group["targets"]]
    except (OSError, ValueError):
        return []


def query(base: str, promql: str) -> list[dict]:
    return prom_api(base, "/api/v1/query", query=promql)["result"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head exporting metrics every second; yields (head, its agent's address as listed in
    Ray's service discovery file, that file)."""
    tmp = Path(tempfile.mkdtemp(prefix="trl-rmx-"))  # short: Ray's socket paths must stay < 108 chars
    with pytest.MonkeyPatch.context() as mp:
        for k, v in RAY_ENV.items():
            mp.setenv(k, v)
        head = RayHead(tmp)  # its processes (raylet, workers) inherit RAY_ENV
    try:
        head.wait_ready(timeout_s=240)
        export_port = head.ports["metrics-export-port"]
        sd_file = tmp / "ray" / "prom_metrics_service_discovery.json"
        # The head lists its node once the raylet has registered; a driver started earlier can fail.
        target = wait_for("the node's metrics agent in Ray's service discovery file",
                          lambda: next((t for t in sd_targets(sd_file) if t.endswith(f":{export_port}")), None),
                          timeout_s=90)
        yield head, target, sd_file
    finally:
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def driver_env(head: RayHead) -> dict:
    """A driver joining the head as `ray job submit` would have it join (RAY_ADDRESS, token)."""
    return {**head.env, **RAY_ENV, "RAY_ADDRESS": f"127.0.0.1:{head.ports['port']}",
            "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ray_run(ray_cluster):
    """Prometheus on Ray's service discovery file, and a finished run on the head.
    Yields a dict of what the tests need."""
    head, target, sd_file = ray_cluster
    tmp = head.tmp
    prom = run = None
    try:
        prom, base = start_prometheus(tmp, (
            "  - job_name: ray\n"
            f"    file_sd_configs: [{{files: ['{sd_file}'], refresh_interval: 5s}}]\n"))
        started = time.time()
        out = tmp / "runs"
        sets = [a for s in RUN_ARGS + [f"trainer.output_dir={out}"] for a in ("--set", s)]
        log = tmp / "run.log"
        run = subprocess.Popen([sys.executable, "-m", "cluster.launch", "configs/local.yaml", *sets],
                               cwd=ROOT, env=driver_env(head), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            run.wait(timeout=RUN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not finish within {RUN_DEADLINE_S}s: {log.read_text()[-3000:]}")
        assert run.returncode == 0, f"the run failed (rc {run.returncode}): {log.read_text()[-3000:]}"
        steps = read_records(out / RUN, "step")

        # The agent exports with a delay (report interval, then scrape): wait for the final counts.
        trained = STEPS * PROMPTS * G
        wait_for("the driver's last samples_trained in Prometheus",
                 lambda: query(base, f'sum(ray_thoughtrl_samples_trained_total{{run="{RUN}"}}) == {trained}'),
                 timeout_s=60)
        yield {"base": base, "started": started, "target": target, "sd_file": sd_file, "steps": steps,
               "summary": json.loads((out / RUN / "summary.json").read_text())}
    finally:
        stop(run)
        stop(prom)


def by_actor(base: str, promql: str) -> dict[str, float]:
    return {r["metric"].get("actor", ""): float(r["value"][1]) for r in query(base, promql)}


@needs_prometheus
def test_prometheus_found_the_agent_through_service_discovery(ray_run):
    base, target = ray_run["base"], ray_run["target"]
    active = prom_api(base, "/api/v1/targets", state="active")["activeTargets"]
    ours = [t for t in active if t["labels"].get("instance") == target]
    assert ours, f"{target} is not among Prometheus' targets: {[t['labels'] for t in active]}"
    assert ours[0]["discoveredLabels"]["__meta_filepath"] == str(ray_run["sd_file"])
    assert ours[0]["labels"]["job"] == "ray" and ours[0]["health"] == "up", ours[0]
    # Every thoughtrl series came from that target.
    sources = query(base, f'count by (instance, job) ({{__name__=~"ray_thoughtrl_.+", run="{RUN}"}})')
    assert [(s["metric"]["instance"], s["metric"]["job"]) for s in sources] == [(target, "ray")]


@needs_prometheus
def test_actors_export_their_own_metrics_tagged_by_actor(ray_run):
    base = ray_run["base"]
    tokens = by_actor(base, f'ray_thoughtrl_rollout_tokens_total{{run="{RUN}"}}')
    assert set(tokens) == OWNERS["rollout"] and all(v > 0 for v in tokens.values()), tokens
    # The actors also count evaluation (greedy, one sample per problem) beside training.
    assert sum(tokens.values()) > sum(s["rollout_tokens"] for s in ray_run["steps"])
    judged = by_actor(base, f'ray_thoughtrl_samples_judged_total{{run="{RUN}"}}')
    assert set(judged) == OWNERS["judge"]
    # training + evaluations: before, after every step but the last, and after the run
    assert sum(judged.values()) == STEPS * PROMPTS * G + (STEPS + 1) * EVAL
    steps = by_actor(base, f'ray_thoughtrl_learner_step_seconds_count{{run="{RUN}"}}')
    assert steps == {"learner-0": STEPS, "learner-1": STEPS}
    tps = by_actor(base, f'max_over_time(ray_thoughtrl_learner_tokens_per_second{{run="{RUN}"}}[15m])')
    assert set(tps) == OWNERS["learner"] and all(v > 0 for v in tps.values()), tps
    # The buffer's depth is back to 0 a moment after each step's groups complete, so only its
    # presence is certain at a 1 s export interval.
    ready = by_actor(base, f'max_over_time(ray_thoughtrl_buffer_ready_groups{{run="{RUN}"}}[15m])')
    assert set(ready) == {"buffer"} and 0 <= ready["buffer"] <= PROMPTS, ready
    stale = by_actor(base, f'max_over_time(ray_thoughtrl_sample_staleness_max{{run="{RUN}"}}[15m])')
    assert stale == {"buffer": 0}  # synchronous training
    version = by_actor(base, f'max_over_time(ray_thoughtrl_policy_version{{run="{RUN}"}}[15m])')
    assert version == {"driver": STEPS} and ray_run["summary"]["policy_version"] == STEPS


@needs_prometheus
def test_each_metric_comes_from_one_part_only(ray_run):
    """No name is recorded by two parts, so sums over a name count nothing twice."""
    base = ray_run["base"]
    seen = set()
    for name, spec in METRICS.items():
        # Over the whole run: gauges of finished actors have aged out of Ray's export by now.
        selector = f'{{__name__=~"ray_thoughtrl_{name}(_total|_count)?", run="{RUN}"}}'
        series = query(base, f"count by (actor) (count_over_time({selector}[15m]))")
        actors = {s["metric"].get("actor") for s in series}
        assert actors <= OWNERS[spec.part], f"{name}: recorded by {actors}, owned by the {spec.part}"
        seen |= {name} if actors else set()
    # Judge errors appear only once a sample fails; everything else was recorded in this run.
    assert set(METRICS) - seen <= {"judge_errors"}, set(METRICS) - seen
    trained = query(base, f'sum(ray_thoughtrl_samples_trained_total{{run="{RUN}"}})')
    assert float(trained[0]["value"][1]) == ray_run["summary"]["samples_trained"] == STEPS * PROMPTS * G


@needs_prometheus
def test_every_panel_query_returns_data_from_rays_export(ray_run):
    base = ray_run["base"]
    assert resolve_prefix(base) == ["ray_thoughtrl_"]  # the dashboard's source variable, as Grafana computes it
    empty = panels_without_data(base, "ray_thoughtrl_", RUN, ray_run["started"])
    assert not empty, "panels without data:\n" + "\n".join(empty)


PROBE = """
import time, ray
from core.ray_metrics import PartMetrics
ray.init()

@ray.remote(num_cpus=0)
class Probe:
    def record_once(self):
        PartMetrics("gaugecheck", "buffer", actor="probe").record("buffer_ready_groups", 7)

probe = Probe.remote()
ray.get(probe.record_once.remote())
print("recorded", flush=True)
time.sleep(120)
"""


def test_a_gauge_recorded_once_stays_exported(ray_cluster):
    """Ray's agent forgets a gauge that is not recorded again within two report intervals (2 s
    here), while a training step can take minutes: the parts re-record their gauges."""
    head, target, _ = ray_cluster
    proc = subprocess.Popen([sys.executable, "-c", PROBE], cwd=ROOT, env=driver_env(head), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "recorded", "the probe actor did not record"
        recorded = time.monotonic()

        def probe_gauge():
            text = http_get(f"http://{target}/metrics")
            return [line for line in text.splitlines()
                    if line.startswith("ray_thoughtrl_buffer_ready_groups{") and 'run="gaugecheck"' in line]

        first = wait_for("the probe's gauge on the agent", probe_gauge, timeout_s=15, every_s=0.5)
        time.sleep(max(0.0, recorded + 8 - time.monotonic()))  # four times as long as Ray keeps it
        later = probe_gauge()
        assert later and later[0].endswith(" 7.0") and 'actor="probe"' in later[0], (first, later)
    finally:
        stop(proc)


def test_part_metrics_do_nothing_outside_ray_and_refuse_other_parts_names():
    import ray

    from core import ray_metrics
    if ray.is_initialized():
        pytest.skip("an earlier test left Ray connected in this process")
    made, gauges = dict(ray_metrics._made), dict(ray_metrics._gauges)
    rollout = PartMetrics("r", "rollout")
    rollout.record("rollout_tokens", 5)  # not under Ray: nothing made, nothing raised
    rollout.record("rollout_generate_seconds", 0.5)
    PartMetrics("r", "buffer").record("buffer_ready_groups", 3)
    assert ray_metrics._made == made and ray_metrics._gauges == gauges
    with pytest.raises(ValueError, match="recorded by the judge"):
        rollout.record("samples_judged", 1)
    with pytest.raises(ValueError, match="unknown part"):
        PartMetrics("r", "nobody")
