"""A newcomer's console: progress bars, evaluations and real problems, each once; the libraries'
logs (vLLM, DeepSpeed, Ray, transformers, Python warnings) in files under runs/<name>/logs/."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cluster.launch import describe_failure
from cluster.progress import Progress
from cluster.report import RunLog
from tests.test_e2e import SMALL

ROOT = Path(__file__).resolve().parent.parent
# What library output looks like on a console: log levels, Python warnings, Ray's actor prefix,
# progress bars of tqdm, timestamps of logging formats.
LIBRARY_LINE = re.compile(r"WARNING|Warning|warn\(|\(\w+ pid=\d+\)|it/s\]|\d+/\d+ \[\d|^\d{4}-\d\d-\d\d|^\[W\d+")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_a_line_per_tenth_when_not_a_terminal():
    out = io.StringIO()
    bar = Progress("warm start", 200, stream=out)
    for step in range(1, 201):
        bar.update(step, f"loss {1 / step:.3f}")
    bar.update(200)  # a repeated final update prints nothing more
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]
    assert all("steps" in line and "loss" in line for line in lines)
    assert all(" left" in line for line in lines[:-1]) and "took" in lines[-1] and "200/200" in lines[-1]
    assert "\r" not in out.getvalue()


def test_progress_redraws_one_line_on_a_terminal():
    out = Tty()
    bar = Progress("train", 4, stream=out)
    for step in range(1, 5):
        bar.update(step)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r\x1b[K") and text.endswith("\n") and text.count("\n") == 1
    assert "4/4 steps" in text.splitlines()[-1] and "█" * 24 in text


def test_a_message_is_printed_above_the_bar_and_a_problem_once(tmp_path):
    out = Tty()
    log = RunLog(tmp_path, stream=out)
    bar = log.progress("train", 10)
    bar.update(3)
    log.info("held-out greedy accuracy at step 3: 0.500")
    for step in (4, 5):
        log.warn(f"step {step}: 2 samples lost to judge errors", key="judge_errors")
    bar.close()
    text = out.getvalue()
    assert "\r\x1b[K[" in text  # the bar is cleared before the line is printed
    assert text.count("warning: ") == 1 and "step 4: 2 samples" in text and "step 5" not in text
    driver_log = (tmp_path / "logs" / "driver.log").read_text()
    assert "step 4: 2 samples" in driver_log and "step 5: 2 samples" in driver_log
    assert "held-out greedy accuracy at step 3" in driver_log and log.bar is None


ROUTING = textwrap.dedent("""
    import logging, sys, warnings
    from cluster.logs import route_library_logs
    early = logging.getLogger("early_lib")                # configured before routing, like Ray
    early.addHandler(logging.StreamHandler(sys.stderr)); early.propagate = False
    logging.basicConfig()                                   # a console handler on the root
    route_library_logs(sys.argv[1])
    late = logging.getLogger("late_lib")                  # configured after, like DeepSpeed
    late.addHandler(logging.StreamHandler(sys.stdout)); late.propagate = False
    early.warning("early warning")
    late.warning("late warning")
    logging.getLogger("plain").warning("plain warning")
    warnings.warn("a deprecation", FutureWarning)
    early.addHandler(logging.StreamHandler(sys.stderr))   # reconfigured later, like ray.init does
    early.warning("after reconfiguring")
""")


def test_library_loggers_write_to_the_file_not_the_console(tmp_path):
    log_file = tmp_path / "logs" / "driver.log"
    proc = subprocess.run([sys.executable, "-c", ROUTING, str(log_file)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    text = log_file.read_text()
    for msg in ("early warning", "late warning", "plain warning", "FutureWarning: a deprecation",
                "after reconfiguring"):
        assert text.count(msg) == 1, (msg, text)


def failure(message: str) -> RuntimeError:
    try:
        try:
            raise ValueError("the actor's own error\nTraceback ...\nValueError: kv cache too large")
        except ValueError as e:
            raise RuntimeError(message) from e
    except RuntimeError as e:
        return e


def test_a_failure_names_its_root_cause_once():
    assert describe_failure(failure("rollout.ready: an actor died")) == (
        "RuntimeError: rollout.ready: an actor died\n  caused by: ValueError: kv cache too large")
    said = "rollout.ready failed: ValueError: kv cache too large"
    assert describe_failure(failure(said)) == f"RuntimeError: {said}"
    assert describe_failure(KeyError("x")) == "KeyError: 'x'"


def launch(tmp_path: Path, name: str, *sets: str) -> subprocess.CompletedProcess:
    args = [a for s in [*SMALL, f"name={name}", f"trainer.output_dir={tmp_path}", *sets] for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "cluster.launch", "configs/local.yaml", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.timeout(1800)
def test_the_console_shows_progress_evaluations_and_no_library_lines(tmp_path):
    # a model cache of its own, so that the warm start runs (and shows its bars)
    proc = launch(tmp_path, "console", f"model.cache_dir={tmp_path / 'models'}", "warm_start.steps=10",
                  "warm_start.answer_only.steps=3", "trainer.max_steps=2", "trainer.eval_every=1",
                  "trainer.checkpoint_every=1", "rollout.num_actors=1", "judge.num_actors=1", "learner.num_ranks=1")
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-5000:]
    assert not [line for line in console.splitlines() if LIBRARY_LINE.search(line)], console
    assert re.search(r"^warm start 100% 10/10 steps \| loss \d.* took \d", console, re.M), console
    assert re.search(r"^answer-only 100% 3/3 steps", console, re.M)
    assert re.search(r"^train  50% 1/2 steps \| reward [-+]\d.*left$", console, re.M), console
    assert re.search(r"^train 100% 2/2 steps .*took", console, re.M)
    for line in ("held-out greedy accuracy before training", "held-out greedy accuracy at step 1", "done: "):
        assert console.count(line) == 1, console

    logs = tmp_path / "console" / "logs"
    driver = (logs / "driver.log").read_text()
    assert "ray._private.worker: Started a local Ray instance" in driver
    assert "thoughtrl.warm_start: sft step 10/10" in driver and "held-out greedy accuracy at step 1" in driver
    rollout, learner = (logs / "rollout-0.log").read_text(), (logs / "learner-0.log").read_text()
    assert "INFO vllm." in rollout and "Failed to load weights" in rollout  # vLLM, on every weight sync
    assert "WARNING DeepSpeed: Setting accelerator to CPU" in learner
    assert "py.warnings" in rollout  # Python warnings (torch's deprecations, seen by vLLM) too


@pytest.mark.timeout(1800)
def test_an_actor_that_cannot_start_shows_its_error_once(tmp_path):
    missing = tmp_path / "no-such-prm"
    proc = launch(tmp_path, "crash", "judge.backend=step_classifier", f"judge.options.model={missing}",
                  "warm_start.enabled=false", "rollout.num_actors=1", "judge.num_actors=1", "learner.num_ranks=1")
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console[-3000:]
    assert console.count("error: the run failed: ActorError: judge.ready on judge-0 failed") == 1, console
    assert console.count(f"cannot read {missing / 'config.json'}") == 1, console
    assert "Traceback" not in console and f"the traceback is in {tmp_path / 'crash' / 'logs' / 'driver.log'}" in console
    assert str(missing) in (tmp_path / "crash" / "logs" / "driver.log").read_text()
