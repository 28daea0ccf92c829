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
    ("algorithm.name=ppo", "algorithm.name"),
    ("learner.zero_stage=4", "learner.zero_stage"),
    ("trainer.sync_every=3", "trainer.max_staleness (0) must be at least trainer.sync_every - 1"),
    ("nonsense", "--set expects key=value"),
])
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/local.yaml", [override])
    assert needle in str(err.value)


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
