"""Everything a config can get wrong is an error before Ray starts: `python -m cluster.launch`
exits 2 with one `error:` message naming the field, no traceback, nothing written, no Ray."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.validate import validate
from core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def launch(tmp_path: Path, *sets: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The launcher on configs/local.yaml writing under tmp_path/runs; Ray's files would go
    to tmp_path/ray, so their absence shows that no Ray was started."""
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray")}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "cluster.launch", "configs/local.yaml",
           "--set", f"trainer.output_dir={tmp_path / 'runs'}", *[a for s in sets for a in ("--set", s)], *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_config_error(proc: subprocess.CompletedProcess, tmp_path: Path, *needles: str) -> None:
    err = proc.stderr
    assert proc.returncode == 2, err
    assert err.startswith("error: ") and err.count("error:") == 1, err
    assert "Traceback" not in err + proc.stdout, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "ray").exists(), "Ray was started"
    assert not (tmp_path / "runs").exists(), "something was written"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("override, needles", [
    ("judge.backend=tol", ["judge.backend", "did you mean 'tool'"]),
    ("judge.splitter=lnies", ["judge.splitter", "did you mean 'lines'", "llm"]),
    ("algorithm.name=ppo", ["algorithm.name", "tpgrpo", "grpo"]),
    ("algorithm.name=tpgrop", ["algorithm.name", "did you mean 'tpgrpo'"]),
    ("judge.options={temperature: .nan}", ["judge.options.temperature", "finite"]),
    ("judge.options={sampels: 2}", ["judge.options: judge 'tool': unknown option 'sampels'"]),
    ("trainer.call_timeout_s=.inf", ["trainer.call_timeout_s", "finite"]),
    ("judge.grader_timeout_s=.nan", ["judge.grader_timeout_s", "finite"]),
    ("learner.lr=.nan", ["learner.lr", "finite"]),
    ("trainer.max_steps=true", ["trainer.max_steps", "integer"]),
    ("trainer.max_steps=2.0", ["trainer.max_steps", "integer"]),
    ('trainer.max_steps="3"', ["trainer.max_steps", "integer"]),
    ("learner.zero_stage=true", ["learner.zero_stage"]),
    ("warm_start.enabled=1", ["warm_start.enabled", "boolean"]),
    ("data.synthetic.num_train=true", ["data.synthetic", "num_train", "integer"]),
    ("name=../elsewhere", ["name", "directory name"]),
    ("model.path=/nonexistent/model", ["model.path", "not found"]),
    ("prompt.style=chat", ["prompt.style", "no chat template"]),
])
def test_bad_setting_is_one_error_naming_the_field(tmp_path, override, needles):
    assert_config_error(launch(tmp_path, override), tmp_path, *needles)


def test_chat_prompt_needs_a_model_with_a_chat_template(tmp_path):
    from cluster.validate import has_chat_template
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    assert not has_chat_template(str(model)) and not has_chat_template(None)
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert has_chat_template(str(model))


def test_model_path_must_be_a_hugging_face_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"x")
    assert_config_error(launch(tmp_path, f"model.path={tmp_path / 'model'}"), tmp_path,
                        "model.path", "config.json")


@pytest.mark.parametrize("case, rows, needle", [
    ("missing", None, "not found"),
    ("empty", [], "no problem column"),
    ("no_column", [{"text": "2 + 2", "answer": "4"}], "no problem column"),
    ("all_bad", [{"problem": "", "answer": "4"}, {"problem": 7, "answer": "1"}, "{not json"], "no usable rows"),
])
def test_data_files_are_loaded_before_anything_starts(tmp_path, case, rows, needle):
    path = tmp_path / f"{case}.jsonl"
    if rows is not None:
        write_jsonl(path, rows)
    assert_config_error(launch(tmp_path, f"data.train={path}"), tmp_path, "data.train", needle)


def test_every_problem_is_listed_in_the_one_error(tmp_path):
    """data.eval is checked like data.train; each problem is on a line of its own."""
    proc = launch(tmp_path, "judge.backend=tol", "algorithm.name=ppo", f"data.eval={tmp_path / 'x.jsonl'}")
    assert_config_error(proc, tmp_path, "judge.backend", "algorithm.name", "data.eval: dataset file not found")
    assert len([line for line in proc.stderr.splitlines() if line.startswith("  ")]) == 3


def test_a_good_data_file_passes(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"question": "1 + 1?", "answer": "#### 2"}, "{bad"])
    cfg = load_config(ROOT / "configs/local.yaml", [f"data.train={good}", f"trainer.output_dir={tmp_path}"])
    validate(cfg)  # one bad row is skipped at load time, not a config error


def test_llm_judge_options_are_checked_without_building_the_judge(tmp_path):
    cfg = load_config(ROOT / "configs/local.yaml", [
        "judge.backend=tpgrpo", "judge.options={model: /nowhere, sampels: 2, temperature: hot}",
        f"trainer.output_dir={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "judge.options: judge 'tpgrpo': unknown option 'sampels' (did you mean 'samples'?)" in str(err.value)
    assert "temperature" in str(err.value)
