"""The Grafana dashboard and the metric names, without a run: every metric has a panel, every
panel reads either source through the `prefix` variable, and the parts record only their own names.
The panels' queries are evaluated on a real run in tests/test_cluster_job.py."""
from __future__ import annotations

import json
import re

import pytest

from cluster.metrics import RunMetrics
from core.ray_metrics import METRICS, PREFIX, PartMetrics
from tests.prometheus import DASHBOARD, panel_targets, template_variable


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
