"""The default job learns: `make run`'s configuration, from an empty model cache, raises held-out
greedy accuracy by at least 10 points and ends with every engine holding the learner's weights.

It runs the whole job (both warm-start stages, then TP-GRPO), about 7 minutes on an idle 2-core
machine, so it is left out of `make test`; `make test-all` runs it.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_default_job_raises_held_out_accuracy_by_ten_points(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cluster.launch", "configs/local.yaml",
                           "--set", f"trainer.output_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "local" / "summary.json").read_text())
    print(json.dumps({k: summary[k] for k in ("eval_accuracy_before", "eval_accuracy_after", "wall_seconds")}))
    assert summary["weights_in_sync"] is True
    assert summary["steps"] == summary["policy_version"] == 40
    assert summary["eval_accuracy_after"] >= summary["eval_accuracy_before"] + 0.10, summary
    evals = [json.loads(line) for line in (tmp_path / "local" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["kind"] == "eval"] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
