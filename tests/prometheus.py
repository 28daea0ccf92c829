"""Debian's `prometheus` for the tests: one with a config and storage of its own on a free
loopback port, its HTTP API, and the Grafana dashboard's queries evaluated the way Grafana
evaluates them."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.ray_head import free_port

DASHBOARD = ROOT / "cluster" / "grafana_dashboard.json"
PROMETHEUS = shutil.which("prometheus")
RATE_WINDOW = "30s"  # what Grafana's $__rate_interval is at least, with a 1s scrape, in these tests
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="the `prometheus` binary is absent (Debian: apt-get install -y prometheus)")


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


def substitute(expr: str, prefix: str, run: str) -> str:
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


def scrape_value(text: str, sample_name: str, run: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample_name and s.labels.get("run") == run:
                return s.value
    return None


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
