"""The README's cluster path, on one real job: a Ray head of its own (`ray start --head`, its
metrics agent exporting every second), the default job sent with `ray job submit`, and Debian's
`prometheus` scraping both metric sources of the run at once: the driver's `metrics.port`
endpoint (a static target) and the node's metrics agent, found only through Ray's service
discovery file (`file_sd_configs`).

The job is what a user sends: a Hugging Face model directory (the tiny model, untrained: the
paths, not the learning, are under test) and GSM8K rows as the data set ships them. It is also
the suite's synchronous run with two actors per role: the engines' weights are checked against
the learner's after every sync, and every sample is trained exactly once.
Two actors per role, so the actor tag has something to tell apart; the rollout engines and the
learner ranks reserve CPU slivers, so they run in placement groups the job must release. An
evaluation after every step keeps the learner steps apart: steps that all land in one export
interval give Prometheus a first sample that is already final, so every rate() panel is 0/0.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from cluster.report import read_records
from core.ray_metrics import METRICS
from tests.conftest import ROOT
from tests.prometheus import (PROMETHEUS, http_get, needs_prometheus, panels_without_data, prom_api, query, resolve_prefix,
                              scrape_value, sd_targets, start_prometheus, stop, wait_for)
from tests.ray_head import free_port, ray_head

RUN = "clusterjob"
STEPS, PROMPTS, G, EVAL = 6, 4, 4, 8
RUN_DEADLINE_S = 600  # ~2 min alone; the machine may be shared
GSM8K = ROOT / "tests/data/gsm8k_test_head40.jsonl"
RUN_ARGS = [
    f"name={RUN}", "warm_start.enabled=false", f"data.train={GSM8K}", f"data.eval={GSM8K}",
    f"trainer.max_steps={STEPS}", "trainer.eval_every=1", f"trainer.prompts_per_step={PROMPTS}",
    f"rollout.samples_per_prompt={G}", "rollout.max_new_tokens=16", f"data.eval_size={EVAL}",  # prompts to 490 tokens
    "rollout.num_actors=2", "judge.num_actors=2", "learner.num_ranks=2",
    "rollout.num_cpus_per_actor=0.25", "learner.num_cpus_per_rank=0.25",  # 1 of the head's 2 CPUs stays for tasks
    "metrics.host=127.0.0.1", "metrics.linger_s=5",  # several 1s scrapes of the driver's final values
    "trainer.check_weights_every=1",
]
# Ray's agent exports what workers report every interval (10 s by default); 1 s keeps the test short.
RAY_ENV = {"RAY_metrics_report_interval_ms": "1000"}
OWNERS = {"rollout": {"rollout-0", "rollout-1"}, "judge": {"judge-0", "judge-1"},
          "learner": {"learner-0", "learner-1"}, "buffer": {"buffer"}, "driver": {"driver"}}
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}

pytestmark = pytest.mark.timeout(RUN_DEADLINE_S + 400)


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("runs")
    with ray_head("trl-job-", RAY_ENV) as head:
        sd_file = head.tmp / "ray" / "prom_metrics_service_discovery.json"
        # The head lists its node once the raylet has registered.
        agent = wait_for("the node's metrics agent in Ray's service discovery file",
                         lambda: next((t for t in sd_targets(sd_file)
                                       if t.endswith(f":{head.ports['metrics-export-port']}")), None), timeout_s=90)
        endpoint = free_port()
        prom = base = None
        try:
            if PROMETHEUS is not None:  # without it the job's own checks still run
                prom, base = start_prometheus(head.tmp, (
                    f"  - job_name: thoughtrl\n    static_configs: [{{targets: ['127.0.0.1:{endpoint}']}}]\n"
                    f"  - job_name: ray\n    file_sd_configs: [{{files: ['{sd_file}'], refresh_interval: 5s}}]\n"))
            started = time.time()
            job_id = f"thoughtrl-test-{secrets.token_hex(4)}"
            sets = [a for s in RUN_ARGS + [f"model.path={tiny_model_dir}", f"trainer.output_dir={out}",
                                           f"metrics.port={endpoint}"] for a in ("--set", s)]
            submit = head.ray("job", "submit", "--no-wait", "--address", head.dashboard, "--submission-id", job_id,
                              "--working-dir", str(ROOT), "--", "python", "-m", "cluster.launch",
                              "configs/local.yaml", *sets, timeout_s=240)
            assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-3000:]
            jobs = JobSubmissionClient(head.dashboard, headers=head.headers)
            last_scrape, deadline = "", time.monotonic() + RUN_DEADLINE_S
            while jobs.get_job_status(job_id) not in TERMINAL:
                if time.monotonic() > deadline:
                    jobs.stop_job(job_id)
                    pytest.fail(f"the job did not finish within {RUN_DEADLINE_S}s: "
                                f"{jobs.get_job_logs(job_id)[-3000:]}")
                try:  # the driver's endpoint lives only as long as the run
                    text = http_get(f"http://127.0.0.1:{endpoint}/metrics", timeout_s=2)
                    if (scrape_value(text, "thoughtrl_rollout_tokens_total", RUN) or 0) > 0:
                        last_scrape = text
                except OSError:
                    pass
                time.sleep(1)
            status = jobs.get_job_status(job_id)
            assert status == JobStatus.SUCCEEDED, f"job {job_id} is {status}:\n{jobs.get_job_logs(job_id)[-8000:]}"
            if prom is not None:  # the agent exports with a delay (report interval, then scrape)
                trained = STEPS * PROMPTS * G
                wait_for("the driver's last samples_trained in Prometheus through Ray's export",
                         lambda: query(base, f'sum(ray_thoughtrl_samples_trained_total{{run="{RUN}"}}) == {trained}'),
                         timeout_s=60)
            yield SimpleNamespace(head=head, base=base, started=started, agent=agent, sd_file=sd_file,
                                  last_scrape=last_scrape, steps=read_records(out / RUN, "step"), run_dir=out / RUN,
                                  summary=json.loads((out / RUN / "summary.json").read_text()))
        finally:
            stop(prom)


# --- the job ------------------------------------------------------------------------------

def test_the_submitted_job_trains_to_its_step_count(job):
    summary = job.summary
    for key in ("steps", "samples_trained", "policy_version", "eval_accuracy_before", "eval_accuracy_after",
                "weights_in_sync"):
        assert key in summary
    assert summary["steps"] == STEPS and summary["policy_version"] == STEPS
    assert (job.run_dir / "accuracy.png").stat().st_size > 1000


def test_engines_hold_the_learners_weights_after_every_sync(job):
    assert [s["weights_in_sync"] for s in job.steps] == [True] * STEPS
    assert job.summary["weights_in_sync"] is True


def test_every_sample_trained_exactly_once_and_fresh(job):
    keys = [k for s in job.steps for k in s["sample_keys"]]
    assert len(keys) == STEPS * PROMPTS * G == job.summary["samples_trained"]
    assert not [k for k, n in Counter(keys).items() if n > 1], "a sample was trained twice"
    assert sorted(s["step"] for s in job.steps) == list(range(1, STEPS + 1))
    assert all(s["staleness_max"] == 0 for s in job.steps) and job.summary["samples_stale_dropped"] == 0


def test_engines_and_ranks_ran_in_placement_groups_released_with_the_job(job):
    listed = job.head.ray("list", "placement-groups", "--address", job.head.dashboard, "--format", "json",
                          "--detail", timeout_s=60)
    groups = {g["name"]: g for g in json.loads(listed.stdout)}
    # the judges asked for nothing, so they got none
    assert set(groups) == {f"{RUN}-learner", f"{RUN}-rollout"}, listed.stdout
    for g in groups.values():
        assert [b["unit_resources"] for b in g["bundles"]] == [{"CPU": 0.25}] * 2 and g["state"] == "REMOVED"


def test_the_working_dir_was_uploaded_without_what_gitignore_lists(job):
    unpacked = [p.parent.parent for p in (job.head.tmp / "ray").glob(
        "session_*/runtime_resources/working_dir_files/*/cluster/launch.py")]
    assert unpacked, "the job's working dir was not found under the head's temp dir"
    # .venv is gigabytes
    assert all((d / "cluster" / "resources.py").exists() and not (d / ".venv").exists() for d in unpacked)


# --- the driver's endpoint ----------------------------------------------------------------

def test_the_drivers_endpoint_served_generated_tokens(job):
    assert job.last_scrape, "no scrape of the driver's endpoint showed thoughtrl_rollout_tokens_total > 0"
    assert scrape_value(job.last_scrape, "thoughtrl_policy_version", RUN) >= 1


@needs_prometheus
def test_prometheus_scraped_the_driver_several_times(job):
    data = prom_api(job.base, "/api/v1/query", query='sum_over_time(up{job="thoughtrl"}[15m])')
    assert data["result"] and float(data["result"][0]["value"][1]) >= 10, data
    # what the dashboard's `prefix` variable offers (as Grafana computes it) and its `run` lists
    assert resolve_prefix(job.base) == ["ray_thoughtrl_", "thoughtrl_"]
    assert RUN in prom_api(job.base, "/api/v1/label/run/values", **{"match[]": "thoughtrl_policy_version"})


@needs_prometheus
def test_the_drivers_values_are_measured_not_placeholders(job):
    def peak(metric: str) -> float:
        data = prom_api(job.base, "/api/v1/query", query=f'max_over_time({metric}{{run="{RUN}"}}[15m])')
        assert data["result"], f"{metric} was never scraped"
        return float(data["result"][0]["value"][1])

    assert peak("thoughtrl_policy_version") == STEPS
    assert peak("thoughtrl_samples_trained_total") == STEPS * PROMPTS * G
    assert peak("thoughtrl_weight_sync_bytes_total") > 0
    assert peak("thoughtrl_rollout_generate_seconds_count") >= STEPS  # one per actor and step, or more
    # Synchronous training: engines wait while the learner trains and the learner waits while
    # they generate, so both parts are idle for part of every step.
    for part in ("rollout", "learner"):
        assert 0 < peak(f"thoughtrl_{part}_idle_ratio") <= 1, part


# --- Ray's export ---------------------------------------------------------------------------

def by_actor(base: str, promql: str) -> dict[str, float]:
    return {r["metric"].get("actor", ""): float(r["value"][1]) for r in query(base, promql)}


@needs_prometheus
def test_prometheus_found_the_agent_through_service_discovery(job):
    active = prom_api(job.base, "/api/v1/targets", state="active")["activeTargets"]
    ours = [t for t in active if t["labels"].get("instance") == job.agent]
    assert ours, f"{job.agent} is not among Prometheus' targets: {[t['labels'] for t in active]}"
    assert ours[0]["discoveredLabels"]["__meta_filepath"] == str(job.sd_file)
    assert ours[0]["labels"]["job"] == "ray" and ours[0]["health"] == "up", ours[0]
    # Every series of Ray's export came from that target.
    sources = query(job.base, f'count by (instance, job) ({{__name__=~"ray_thoughtrl_.+", run="{RUN}"}})')
    assert [(s["metric"]["instance"], s["metric"]["job"]) for s in sources] == [(job.agent, "ray")]


@needs_prometheus
def test_actors_export_their_own_metrics_tagged_by_actor(job):
    base = job.base
    tokens = by_actor(base, f'ray_thoughtrl_rollout_tokens_total{{run="{RUN}"}}')
    assert set(tokens) == OWNERS["rollout"] and all(v > 0 for v in tokens.values()), tokens
    # The actors also count evaluation (greedy, one sample per problem) beside training.
    assert sum(tokens.values()) > sum(s["rollout_tokens"] for s in job.steps)
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
    assert version == {"driver": STEPS}


@needs_prometheus
def test_each_metric_comes_from_one_part_only(job):
    """No name is recorded by two parts, so sums over a name count nothing twice."""
    seen = set()
    for name, spec in METRICS.items():
        # Over the whole run: gauges of finished actors have aged out of Ray's export by now.
        selector = f'{{__name__=~"ray_thoughtrl_{name}(_total|_count)?", run="{RUN}"}}'
        series = query(job.base, f"count by (actor) (count_over_time({selector}[15m]))")
        actors = {s["metric"].get("actor") for s in series}
        assert actors <= OWNERS[spec.part], f"{name}: recorded by {actors}, owned by the {spec.part}"
        seen |= {name} if actors else set()
    # Judge errors appear only once a sample fails; everything else was recorded in this run.
    assert set(METRICS) - seen <= {"judge_errors"}, set(METRICS) - seen
    trained = query(job.base, f'sum(ray_thoughtrl_samples_trained_total{{run="{RUN}"}})')
    assert float(trained[0]["value"][1]) == job.summary["samples_trained"] == STEPS * PROMPTS * G


# --- the dashboard, on both sources -----------------------------------------------------------

@needs_prometheus
@pytest.mark.parametrize("prefix", ["thoughtrl_", "ray_thoughtrl_"])
def test_every_panel_query_returns_data(job, prefix):
    empty = panels_without_data(job.base, prefix, RUN, job.started)
    assert not empty, f"panels without data from {prefix}*:\n" + "\n".join(empty)


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


def test_a_gauge_recorded_once_stays_exported(job):
    """Ray's agent forgets a gauge that is not recorded again within two report intervals (2 s
    here), while a training step can take minutes: the parts re-record their gauges."""
    proc = subprocess.Popen([sys.executable, "-c", PROBE], cwd=ROOT, env=job.head.driver_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "recorded", "the probe actor did not record"
        recorded = time.monotonic()

        def probe_gauge():
            text = http_get(f"http://{job.agent}/metrics")
            return [line for line in text.splitlines()
                    if line.startswith("ray_thoughtrl_buffer_ready_groups{") and 'run="gaugecheck"' in line]

        first = wait_for("the probe's gauge on the agent", probe_gauge, timeout_s=15, every_s=0.5)
        time.sleep(max(0.0, recorded + 8 - time.monotonic()))  # four times as long as Ray keeps it
        later = probe_gauge()
        assert later and later[0].endswith(" 7.0") and 'actor="probe"' in later[0], (first, later)
    finally:
        stop(proc)
