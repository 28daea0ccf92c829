"""What `make install` and `make bench` would run on a fresh checkout (`make -n`: nothing runs).

The checkout is the Makefile and pyproject.toml in an empty directory: no .venv, no .venv-trl.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def dry_run(tmp_path: Path, *args: str) -> list[str]:
    """The commands `make -n ARGS` prints in a fresh checkout, comment lines left out."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    # Under `make test` the parent make's level and flags would reach this make (and add its
    # "Entering directory" lines): it must see what a person's shell gives it.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line for line in out.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def index(lines: list[str], *words: str) -> int:
    """The first line holding every one of `words`."""
    found = [i for i, line in enumerate(lines) if all(w in line for w in words)]
    assert found, f"no command with {words} in:\n" + "\n".join(lines)
    return found[0]


def test_gpu_install_is_the_gpu_extra_and_nothing_of_the_cpu_build(tmp_path):
    lines = dry_run(tmp_path, "install", "EXTRA=gpu")
    index(lines, "python3 -m venv .venv")
    index(lines, "pip install", '-e ".[gpu,test]"')
    cpu_only = ("+cpu", "torch==", "--find-links", "whl/cpu", "uninstall", "[cpu")
    assert not [line for line in lines if any(w in line for w in cpu_only)], lines


@pytest.mark.parametrize("local_wheel", [True, False])
def test_cpu_install_puts_the_pinned_cpu_torch_first(tmp_path, local_wheel):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    if local_wheel:
        (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    lines = dry_run(checkout, "install", f"TORCH_WHEELS={wheels}")
    source = f"--find-links {wheels}" if local_wheel else "--extra-index-url https://download.pytorch.org/whl/cpu"
    torch = index(lines, "pip install", '"torch==2.13.0+cpu"', source)
    project = index(lines, "pip install", '-e ".[cpu,test]"', source)
    assert torch < project < index(lines, "pip uninstall", "torchvision")


def test_bench_builds_the_trl_venv_before_the_benchmarks(tmp_path):
    lines = dry_run(tmp_path, "bench")
    venv = index(lines, "pip install", '-e ".[cpu,test]"')
    trl_venv = index(lines, "-m venv .venv-trl")
    trl = index(lines, ".venv-trl/bin/python -m pip install", "trl==")
    assert venv < trl_venv < trl < index(lines, "-m benchmarks.run_all --quick")
    assert "--full" in dry_run(tmp_path, "bench", "FULL=1")[-1]
