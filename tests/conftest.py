"""Shared fixtures: tiny models built locally once per session; a grading pool."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from core.tiny_model import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def grader():
    """One grading worker process per test module (each start imports sympy and math-verify)."""
    from reward_service.grading import GradingPool
    with GradingPool(num_workers=1, timeout_s=5.0) as pool:
        yield pool
