"""A real Prometheus scrapes a real training run; every Grafana panel query returns data.

The run is the launcher in a subprocess (Ray, vLLM engines, judge actors, DeepSpeed ranks)
serving `metrics.port` on loopback; Debian's `prometheus` binary scrapes it every second with
a config and storage of its own in a temp dir. After the run, each target expression of
`cluster/grafana_dashboard.json` is evaluated over the run with `/api/v1/query_range`, with the
dashboard's `prefix` variable resolved from Prometheus the way Grafana resolves it. The same
checks run against Ray's metrics export in tests/test_metrics_ray.py.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster.metrics import RunMetrics
from core.ray_metrics import METRICS, PREFIX
from tests.conftest import ROOT

DASHBOARD = ROOT / "cluster" / "grafana_dashboard.json"
PROMETHEUS = shutil.which("prometheus")
RUN = "promrun"
RATE_WINDOW = "30s"  # what Grafana's $__rate_interval is at least, with a 1s scrape, in this test
RUN_DEADLINE_S = 330
# Small and untrained (no warm start): the metrics, not the learning, are under test; enough
# steps that Prometheus sees the counters move across several 1s scrapes.
RUN_ARGS = [
    f"name={RUN}", "warm_start.enabled=false", "trainer.max_steps=20", "trainer.eval_every=5",
    "trainer.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=48",
    "data.eval_size=8", "data.synthetic.num_train=200", "data.synthetic.num_eval=8", "metrics.host=127.0.0.1",
    "metrics.linger_s=5",  # several 1s scrapes of the final values, even when one times out
]
pytestmark = pytest.mark.timeout(RUN_DEADLINE_S + 150)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="the `prometheus` binary is absent (Debian: apt-get install -y prometheus)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Loopback only: no http_proxy from the environment may stand between the test and its servers.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout_s: float = 5.0) -> str:
    with _DIRECT.open(url, timeout=timeout_s) as r:
        return r.read().decode()


def prom_api(base: str, path: str, **params) -> dict:
    body = json.loads(http_get(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout_s=15))
    assert body["status"] == "success", body
    return body["data"]


def panel_targets(panels: list[dict]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target, rows' nested panels included."""
    out = []
    for p in panels:
        out += [(p["title"], t["expr"]) for t in p.get("targets", [])]
        out += panel_targets(p.get("panels", []))
    return out


def substitute(expr: str, prefix: str = PREFIX, run: str = RUN) -> str:
    """What Grafana sends for this dashboard with the metrics source (`prefix`) and run selected."""
    expr = expr.replace("${prefix}", prefix).replace("$__rate_interval", RATE_WINDOW)
    expr = expr.replace("${run}", "$run").replace("$run", re.escape(run))
    assert "$" not in expr, f"unsubstituted template variable in {expr!r}"
    return expr


def template_variable(name: str) -> dict:
    return next(v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["name"] == name)


def resolve_prefix(base: str) -> list[str]:
    """The options of the dashboard's `prefix` variable, computed as Grafana does: its
    `metrics(REGEX)` query lists the metric names matching REGEX (/api/v1/label/__name__/values),
    then the variable's regex keeps its capture group of each."""
    var = template_variable("prefix")
    query = re.fullmatch(r"metrics\((.*)\)", var["query"]["query"]).group(1)
    capture = re.compile(var["regex"].strip("/"))
    names = [n for n in prom_api(base, "/api/v1/label/__name__/values") if re.search(query, n)]
    return sorted({capture.search(n).group(1) for n in names})


def panels_without_data(base: str, prefix: str, run: str, start: float) -> list[str]:
    """Each target of the dashboard evaluated over [start, now]; the ones with no finite value."""
    targets = panel_targets(json.loads(DASHBOARD.read_text())["panels"])
    assert len(targets) >= 20
    empty = []
    for title, expr in targets:
        data = prom_api(base, "/api/v1/query_range", query=substitute(expr, prefix, run),
                        start=f"{start:.3f}", end=f"{time.time():.3f}", step="2s")
        values = [float(v) for series in data["result"] for _, v in series["values"]]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title}: {expr} → {len(data['result'])} series, no finite value")
    return empty


def stop(proc: subprocess.Popen | None, grace_s: float = 30.0) -> None:
    """End a process group this test started: SIGTERM, then SIGKILL after `grace_s`."""
    if proc is None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; its children get the same signal once more
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


def start_prometheus(tmp: Path, scrape_configs: str, interval: str = "1s") -> tuple[subprocess.Popen, str]:
    """Prometheus with its own config and storage under `tmp`, on a free loopback port;
    `scrape_configs` is the YAML list that goes under `scrape_configs:`."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}, scrape_timeout: {interval}}}\n"
        f"scrape_configs:\n{scrape_configs}")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=open(tmp / "prometheus.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}")
        try:
            http_get(f"{base}/-/ready", timeout_s=2)
            return proc, base
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError("prometheus was not ready within 30s")


def start_run(tmp: Path, metrics_port: int) -> tuple[subprocess.Popen, Path]:
    log = tmp / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a Ray of its own
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    sets = [a for s in RUN_ARGS + [f"trainer.output_dir={tmp / 'runs'}", f"metrics.port={metrics_port}"]
            for a in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "cluster.launch", "configs/local.yaml", *sets],
                            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def scrape_value(text: str, sample_name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample_name and s.labels.get("run") == RUN:
                return s.value
    return None


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory):
    """Runs training under a scraping Prometheus; yields (prometheus URL, run start, last scrape)."""
    tmp = tmp_path_factory.mktemp("prom")
    metrics_port = free_port()
    prom = run = None
    try:
        prom, base = start_prometheus(
            tmp, f"  - job_name: thoughtrl\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
        started = time.time()
        run, log = start_run(tmp, metrics_port)
        last_scrape = ""
        deadline = time.monotonic() + RUN_DEADLINE_S
        while run.poll() is None and time.monotonic() < deadline:
            try:  # the driver's endpoint lives only as long as the run
                text = http_get(f"http://127.0.0.1:{metrics_port}/metrics", timeout_s=2)
                if (scrape_value(text, "thoughtrl_rollout_tokens_total") or 0) > 0:
                    last_scrape = text
            except OSError:
                pass
            time.sleep(1)
        if run.poll() is None:
            pytest.fail(f"the run did not finish within {RUN_DEADLINE_S}s: {log.read_text()[-3000:]}")
        assert run.returncode == 0, f"the run failed (rc {run.returncode}): {log.read_text()[-3000:]}"
        yield base, started, last_scrape
    finally:
        stop(run)
        stop(prom)


def test_dashboard_covers_every_metric_and_uses_the_templates():
    dash = json.loads(DASHBOARD.read_text())
    names = {v["name"]: v for v in dash["templating"]["list"]}
    assert names["DS_PROMETHEUS"]["type"] == "datasource" and names["DS_PROMETHEUS"]["query"] == "prometheus"
    # The run list follows the chosen source: driver endpoint or Ray's export.
    assert names["run"]["query"]["query"] == "label_values(${prefix}policy_version, run)"
    targets = panel_targets(dash["panels"])
    exprs = " ".join(e for _, e in targets)
    for panel in (p for p in dash["panels"] if p.get("targets")):
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    for _, expr in targets:
        assert 'run=~"$run"' in expr, expr
        # Every metric through the variable, so the same panel reads either source.
        assert "thoughtrl_" not in expr, expr
    metrics = RunMetrics("unused")
    families = {family.name for family in metrics.registry.collect()}
    assert families == {PREFIX + name for name in METRICS}
    for name in METRICS:
        assert f"${{prefix}}{name}" in exprs, f"no panel shows {PREFIX}{name}"


def test_prefix_variable_matches_both_sources():
    var = template_variable("prefix")
    query = re.fullmatch(r"metrics\((.*)\)", var["query"]["query"]).group(1)
    capture = re.compile(var["regex"].strip("/"))
    found = {capture.search(n).group(1) for n in ("thoughtrl_policy_version", "ray_thoughtrl_policy_version")
             if re.search(query, n)}
    assert found == {"thoughtrl_", "ray_thoughtrl_"}
    assert not re.search(query, "ray_thoughtrl_policy_version_total")


@needs_prometheus
def test_metrics_endpoint_serves_generated_tokens(scraped_run):
    _, _, last_scrape = scraped_run
    assert last_scrape, "no scrape of the run's endpoint showed thoughtrl_rollout_tokens_total > 0"
    assert scrape_value(last_scrape, "thoughtrl_rollout_tokens_total") > 0
    assert scrape_value(last_scrape, "thoughtrl_policy_version") >= 1


@needs_prometheus
def test_prometheus_scraped_the_run_several_times(scraped_run):
    base, started, _ = scraped_run
    data = prom_api(base, "/api/v1/query", query='sum_over_time(up{job="thoughtrl"}[15m])')
    assert data["result"] and float(data["result"][0]["value"][1]) >= 10, data
    assert resolve_prefix(base) == ["thoughtrl_"]  # what the dashboard's `prefix` variable offers
    runs = prom_api(base, "/api/v1/label/run/values", **{"match[]": "thoughtrl_policy_version"})
    assert RUN in runs  # what the dashboard's `run` variable lists


@needs_prometheus
def test_every_panel_query_returns_data(scraped_run):
    base, started, _ = scraped_run
    empty = panels_without_data(base, "thoughtrl_", RUN, started)
    assert not empty, "panels without data:\n" + "\n".join(empty)


@needs_prometheus
def test_scraped_values_are_measured_not_placeholders(scraped_run):
    base, _, _ = scraped_run

    def peak(metric: str) -> float:
        data = prom_api(base, "/api/v1/query", query=f'max_over_time({metric}{{run="{RUN}"}}[15m])')
        assert data["result"], f"{metric} was never scraped"
        return float(data["result"][0]["value"][1])

    steps = 20  # trainer.max_steps above
    assert peak("thoughtrl_policy_version") == steps
    assert peak("thoughtrl_samples_trained_total") == steps * 4 * 4  # prompts × samples per prompt
    assert peak("thoughtrl_weight_sync_bytes_total") > 0
    assert peak("thoughtrl_rollout_generate_seconds_count") >= steps  # one per actor and step, or more
    # Synchronous training: engines wait while the learner trains and the learner waits while
    # they generate, so both parts are idle for part of every step.
    for part in ("rollout", "learner"):
        assert 0 < peak(f"thoughtrl_{part}_idle_ratio") <= 1, part
