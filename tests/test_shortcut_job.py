"""configs/shortcut.yaml: `data.synthetic.task` routes the data, the warm start is keyed by the
task's generator, and the job trains a step end to end (real Ray, vLLM, judges, DeepSpeed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import ray

import core.arith_task
import core.shortcut_task
from cluster.model_prep import _code_version
from cluster.report import read_records
from cluster.validate import validate
from core.arith_task import ArithTaskConfig
from core.config import ConfigError, load_config
from core.datasets import load_dataset
from core.shortcut_task import ShortcutTaskConfig, habit_rows, parse_problem
from tests.conftest import MODEL_CACHE, ROOT

CONFIG = ROOT / "configs" / "shortcut.yaml"


def test_the_config_selects_the_shortcut_task_and_passes_the_checks(tmp_path):
    cfg = load_config(CONFIG, [f"trainer.output_dir={tmp_path}"])
    assert isinstance(cfg.data.synthetic, ShortcutTaskConfig) and cfg.judge.splitter == "lines"
    validate(cfg)
    rows = load_dataset(cfg.data.train, cfg.data.fields, cfg.data.synthetic, split="eval").rows
    assert len(rows) == cfg.data.synthetic.num_eval
    assert all(str(parse_problem(r["problem"]).answer) == r["answer"] for r in rows)


def test_the_task_field_picks_the_generator_and_names_itself_in_errors():
    local = ROOT / "configs" / "local.yaml"
    assert isinstance(load_config(local).data.synthetic, ArithTaskConfig)
    assert isinstance(load_config(local, ["data.synthetic.task=arith"]).data.synthetic, ArithTaskConfig)
    with pytest.raises(ConfigError, match=r"data\.synthetic.*'shortcutt'.*'arith', 'shortcut'"):
        load_config(local, ["data.synthetic.task=shortcutt"])
    with pytest.raises(ConfigError, match=r"data\.synthetic\.shortcut\.slip_rate"):
        load_config(CONFIG, ["data.synthetic.slip_rate=1.5"])


def test_the_warm_start_key_holds_the_generator_of_its_task_only():
    shortcut_source = Path(core.shortcut_task.__file__).read_text()
    assert shortcut_source in _code_version(core.shortcut_task)
    assert shortcut_source not in _code_version()
    assert _code_version(core.arith_task) == _code_version()  # the default job's key is unchanged


def warm_start_data(tmp_path, monkeypatch, *overrides: str):
    """What each warm-start stage of configs/shortcut.yaml (with `overrides`) trains on, for
    real (one step each), and the training rows it started from."""
    import learner.sft
    from cluster.model_prep import prepare_model

    trained: list[list[dict]] = []
    real = learner.sft.warm_start

    def spy(model_dir, out_dir, rows, **kw):  # trains for real; records what on
        trained.append(rows)
        return real(model_dir, out_dir, rows, **kw)

    monkeypatch.setattr(learner.sft, "warm_start", spy)
    cfg = load_config(CONFIG, [f"model.cache_dir={tmp_path}", "warm_start.steps=1", "warm_start.batch_size=4",
                               "data.synthetic.num_train=40", *overrides])
    rows = load_dataset(cfg.data.train, cfg.data.fields, cfg.data.synthetic, split="train").rows
    prepare_model(cfg, rows, log=lambda msg: None)
    return cfg, rows, trained


def test_the_shipped_warm_start_is_one_stage_on_the_tasks_habit(tmp_path, monkeypatch):
    cfg, rows, trained = warm_start_data(tmp_path, monkeypatch)
    assert cfg.warm_start.habit_rate == 0.5 and cfg.warm_start.answer_only.steps == 0
    [habit] = trained
    assert habit == habit_rows(cfg.data.synthetic, rows, 0.5, cfg.seed)
    merged = sum("," in line for r in habit for line in r["solution"].splitlines() if line.startswith("Step "))
    assert 0 < merged < sum(r["solution"].count("Step ") for r in habit)  # some lines merged, some worked


def test_a_second_stage_trains_on_the_tasks_habit(tmp_path, monkeypatch):
    cfg, rows, trained = warm_start_data(tmp_path, monkeypatch, "warm_start.habit_rate=null",
                                         "warm_start.answer_only.steps=1", "warm_start.answer_only.rate=0.75")
    worked, habit = trained
    assert worked == rows and all("," not in r["solution"] for r in worked)  # one operation per line
    assert habit == habit_rows(cfg.data.synthetic, rows, cfg.warm_start.answer_only.rate, cfg.seed)
    assert sum("Step a," in r["solution"] for r in habit) > len(habit) / 2


def test_a_habit_rate_for_a_task_without_a_habit_is_a_config_error():
    with pytest.raises(ConfigError, match=r"warm_start\.habit_rate needs .*shortcut.*task 'arith'"):
        load_config(ROOT / "configs/local.yaml", ["warm_start.habit_rate=0.5"])


@pytest.mark.slow  # the default job's path, with the task's config: `make test-all`
@pytest.mark.timeout(900)
def test_one_step_end_to_end(tmp_path):
    from cluster.train import train
    cfg = load_config(CONFIG, [
        f"model.cache_dir={MODEL_CACHE}", f"trainer.output_dir={tmp_path}", "name=shortcut-e2e",
        "rollout.num_actors=1", "judge.num_actors=1", "learner.num_ranks=1", "rollout.samples_per_prompt=4",
        "rollout.max_new_tokens=96", "trainer.prompts_per_step=4", "trainer.max_steps=1",
        "trainer.eval_every=0", "trainer.check_weights_every=1", "warm_start.steps=20",
        "warm_start.answer_only.steps=5", "data.eval_size=8",
        "data.synthetic.num_train=200", "data.synthetic.num_eval=8"])
    try:
        summary = train(cfg)
    finally:
        ray.shutdown()
    (step,) = read_records(cfg.run_dir, "step")
    assert summary["samples_trained"] == 16 and summary["weights_in_sync"] is True
    assert summary["judge_errors"] == 0 and step["thoughts_per_sample"] >= 1
    assert summary["eval_problems"] == 8
