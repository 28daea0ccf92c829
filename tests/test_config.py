"""Config: YAML → typed models; every mistake is an error that names the field."""
from pathlib import Path

import pytest

from cluster.launch import main as launch_main
from core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.rollout.num_actors >= 1 and cfg.learner.num_ranks >= 1


def test_overrides_are_typed():
    cfg = load_config(ROOT / "configs/local.yaml",
                      ["trainer.max_steps=2", "algorithm.name=grpo", "learner.lr=1e-4", "rollout.num_actors=3"])
    assert cfg.trainer.max_steps == 2 and cfg.algorithm.name == "grpo"
    assert cfg.learner.lr == 1e-4 and cfg.rollout.num_actors == 3


@pytest.mark.parametrize("override, needle", [
    ("trainer.max_step=2", "trainer.max_step: unknown field; did you mean 'max_steps'?"),
    ("rollout.num_actors=0", "rollout.num_actors"),
    ("learner.zero_stage=4", "learner.zero_stage"),
    ("learner.zero_stage=2.0", "learner.zero_stage: Input should be a valid integer"),
    ("trainer.max_steps=true", "trainer.max_steps: Input should be a valid integer"),
    ("trainer.max_steps='3'", "trainer.max_steps: Input should be a valid integer"),
    ("model.tiny.hidden_size=64.0", "model.tiny.hidden_size: Input should be a valid integer"),
    ("warm_start.enabled=yes_please", "warm_start.enabled: Input should be a valid boolean"),
    ("rollout.temperature='1.0'", "rollout.temperature: Input should be a valid number"),
    ("trainer.call_timeout_s=.inf", "trainer.call_timeout_s: Input should be a finite number"),
    ("metrics.linger_s=.nan", "metrics.linger_s: Input should be a finite number"),
    ("name=a/b", "name: must be a plain directory name"),
    ("name=..", "name: must be a plain directory name"),
    ("trainer.sync_every=3", "trainer.max_staleness (0) must be at least trainer.sync_every - 1"),
    ("nonsense", "--set expects key=value"),
])
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/local.yaml", [override])
    assert needle in str(err.value)


def test_numbers_read_as_people_write_them():
    """PyYAML reads `1e-4` as a string; the config reads it as the float it is, in files and --set."""
    cfg = load_config(ROOT / "configs/local.yaml", ["learner.lr=1e-4", "warm_start.lr=3E-3", "rollout.temperature=1"])
    assert cfg.learner.lr == 1e-4 and cfg.warm_start.lr == 3e-3 and cfg.rollout.temperature == 1.0
    assert load_config(ROOT / "configs/local.yaml", ["name=1e3x"]).name == "1e3x"


def test_bad_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout:\n  num_actor: 2\n")
    with pytest.raises(ConfigError, match=r"rollout.num_actor: unknown field; did you mean 'num_actors'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_launcher_reports_bad_config_and_exits_2(capsys):
    assert launch_main([str(ROOT / "configs/local.yaml"), "--set", "judge.num_actorz=1"]) == 2
    assert "judge.num_actorz: unknown field" in capsys.readouterr().err
