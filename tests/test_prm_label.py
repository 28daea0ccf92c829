"""The label job for real: Ray, a vLLM rollout actor sampling the solutions and the Monte-Carlo
completions, a judge actor splitting and grading. Every soft label is recomputed here from the
completions the job logged: the fraction of a step prefix's completions that reach the gold
answer, graded independently of the job."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from cluster.report import read_records
from core.config import load_config
from core.prompts import PromptFormat
from core.stepwise import read_stepwise
from reward_service.grading import GradingPool
from tests.conftest import MODEL_CACHE, ROOT

pytestmark = pytest.mark.timeout(900)
# Small answers, so that a barely trained policy reaches the gold answer from some prefixes and
# not from others: the fractions vary.
PROBLEMS = [("Compute 2 + 3.", "5"), ("Compute 9 - 8.", "1"), ("Compute 3 * 3.", "9"), ("Compute 8 / 4.", "2"),
            ("Compute 1 + 6.", "7"), ("Compute 4 - 4.", "0")]
# Built once per machine (the tests' model cache): 150 supervised steps, so solutions come in steps.
POLICY = [f"model.cache_dir={MODEL_CACHE}", "warm_start.steps=150", "warm_start.answer_only.steps=0",
          "data.synthetic.num_train=500", "data.synthetic.num_eval=16"]


@pytest.fixture(scope="module")
def policy() -> str:
    """A policy that writes "Step k: a op b = c" lines and a boxed answer, often wrongly."""
    from cluster.model_prep import prepare_model
    from core.datasets import load_dataset

    cfg = load_config(ROOT / "configs/local.yaml", POLICY)
    rows = load_dataset(cfg.data.train, cfg.data.fields, cfg.data.synthetic, split="train").rows
    return str(prepare_model(cfg, rows, print))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, policy):
    from cluster import label

    tmp = tmp_path_factory.mktemp("label")
    data = tmp / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": p, "answer": a}) + "\n" for p, a in PROBLEMS))
    cfg = load_config(ROOT / "configs/local.yaml", [
        "name=lab", f"trainer.output_dir={tmp}", f"model.path={policy}", "warm_start.enabled=false",
        f"data.train={data}", f"data.eval={data}", "rollout.num_actors=1", "judge.num_actors=1",
        "rollout.max_new_tokens=64", "rollout.kv_cache_gb=0.1", "label.problems=6", "label.samples_per_problem=3",
        "label.completions=6", "label.problems_per_call=2", "label.threshold=0.0"])
    try:
        with ExitStack() as started:
            summary = label.run(cfg, False, started)
    finally:
        ray.shutdown()
    return cfg, summary


def logged_completions(audit: Path) -> dict[str, list[list[str]]]:
    """prompt → every list of completions the rollout actors returned for it."""
    out: dict[str, list[list[str]]] = {}
    for path in audit.glob("rollouts-*.jsonl"):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            out.setdefault(rec["prompt"], []).append(rec["completions"])
    return out


def step_ends(response: str, steps: list[str]) -> list[int]:
    """Where each step's span ends in the response: where the next step begins (the whitespace
    between steps belongs to the step before), the last at the end."""
    starts, pos = [], 0
    for step in steps:
        pos = response.index(step, pos)
        starts.append(pos)
        pos += len(step)
    return starts[1:] + [len(response)]


def test_every_solution_is_labelled_or_counted(labelled):
    cfg, summary = labelled
    assert summary["solutions"] == 6 * 3 == summary["labelled"] + sum(summary["lost"].values())
    assert summary["labelled"] >= 12 and summary["steps"] >= summary["labelled"]
    rows = read_stepwise(cfg.run_dir / "labels.parquet")
    assert rows.bad == [] and len(rows.rows) == summary["labelled"]
    assert sum(len(r["labels"]) for r in rows.rows) == summary["steps"]
    records = read_records(cfg.run_dir, "label")
    assert records[-1]["problems"] == 6 and records[-1]["steps_per_s"] > 0


def test_soft_labels_are_the_fraction_of_completions_that_reach_the_gold_answer(labelled, policy):
    cfg, _ = labelled
    rows = read_stepwise(cfg.run_dir / "labels.parquet").rows
    logged = logged_completions(cfg.run_dir / "label_rollouts")
    prompt = PromptFormat.for_model(policy, **cfg.prompt.model_dump())
    fractions, checked = set(), 0
    with GradingPool(num_workers=1) as plain, GradingPool(num_workers=1, require_answer=True) as stated:
        for row in rows:
            ends = step_ends(row["response"], row["completions"])
            for k, end in enumerate(ends[:-1]):
                options = logged[prompt(row["prompt"]) + row["response"][:end]]
                graded = [sum(g.correct for g in plain.grade_many([(row["response"][:end] + c, row["gold"])
                                                                   for c in texts])) / len(texts)
                          for texts in options]
                assert all(len(texts) == 6 for texts in options)
                # float32 in the scored records: 1/6 comes back as 0.16666667
                assert any(row["soft_labels"][k] == pytest.approx(g, abs=1e-6) for g in graded), (row, k, graded)
                assert row["labels"][k] == (row["soft_labels"][k] > 0.0)
                fractions.add(round(row["soft_labels"][k], 6))
                checked += 1
            # the last step's value is the solution's own outcome (the run's grading: answer stated)
            (outcome,) = stated.grade_many([(row["response"], row["gold"])])
            assert row["soft_labels"][-1] == float(outcome.correct) and row["outcome_correct"] == outcome.correct
    assert checked >= 10 and len(fractions) >= 2  # the check would notice a constant label


def test_the_file_is_trls_stepwise_layout_with_the_soft_labels(labelled):
    cfg, _ = labelled
    table = pq.read_table(cfg.run_dir / "labels.parquet")
    assert table.schema.field("completions").type == pa.list_(pa.string())
    assert table.schema.field("labels").type == pa.list_(pa.bool_())
    row = table.slice(0, 1).to_pylist()[0]
    assert row["judge"] == "montecarlo" and row["gold"] in {a for _, a in PROBLEMS}
    assert "".join("".join(row["completions"]).split()) == "".join(row["response"].split())
