"""Shared fixtures: tiny models built locally once per session; a grading pool."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "configs" / "local.yaml"
# One model cache for every run of every session on this machine: the tiny model and its warm
# starts are built once (builds are atomic, so concurrent sessions do not trip over each other).
MODEL_CACHE = Path(tempfile.gettempdir()) / f"thoughtrl-test-models-{os.getuid()}"

# ChatML, as Qwen models write it (without Qwen's default system message).
CHATML = ("{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
          "+ '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{%- endif %}")

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from core.tiny_model import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def chat_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model whose tokenizer carries a Qwen-style chat template."""
    out = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(tiny_model_dir, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["chat_template"] = CHATML
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def run_prompt(model_dir, *overrides: str):
    """The prompt a run of configs/local.yaml (with `overrides`) gives the policy in `model_dir`."""
    from core.config import load_config
    from core.prompts import PromptFormat
    return PromptFormat.for_model(model_dir, **load_config(LOCAL, list(overrides)).prompt.model_dump())


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray for the module whose workers import the project (another module's Ray, if
    still up, is used as it is)."""
    import ray
    if ray.is_initialized():
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                       "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def grader():
    """One grading worker process per test module (each start imports sympy and math-verify)."""
    from reward_service.grading import GradingPool
    with GradingPool(num_workers=1, timeout_s=5.0) as pool:
        yield pool
