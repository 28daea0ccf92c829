"""The command line: ProcessBench's metric and files; what every subcommand does with a mistake
of the user's (one line, exit code 2, before any work) and with a bug (its traceback)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reward_service.__main__ import main
from reward_service.processbench import join_steps, metrics
from tests import scripted_judges  # noqa: F401  (registers "test-broken")

ROOT = Path(__file__).resolve().parents[1]


def test_processbench_metrics_by_hand():
    # erroneous: labels 1, 2, 0 -> predicted right twice; correct: two, one predicted right
    m = metrics(predicted=[1, 2, -1, -1, 3], labels=[1, 2, 0, -1, -1])
    assert m["acc_erroneous"] == pytest.approx(2 / 3)
    assert m["acc_correct"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert metrics([0], [-1])["f1"] == 0.0


def test_join_steps_spans_partition_the_text():
    text, spans = join_steps(["a = 1", "b", "c"])
    assert [text[a:b] for a, b in spans] == ["a = 1\n\n", "b\n\n", "c"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "reward_service", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_processbench_cli_json(tmp_path):
    data = [
        {"problem": "p", "steps": ["2 + 2 = 4", "4 * 3 = 13", "so 13"], "label": 1},
        {"problem": "p", "steps": ["2 + 2 = 4", "so 4"], "label": -1},
        {"problem": "p", "steps": ["Let x be the count.", "x is 4"], "label": 0},
    ]
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data))
    out = _run("processbench", str(path), "--judge", "tool", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    s = result["subsets"]["tiny"]
    assert s["acc_erroneous"] == 0.5 and s["acc_correct"] == 1.0
    assert result["mean_f1"] == pytest.approx(2 * 0.5 / 1.5)


# ---- every subcommand: errors of what was asked are one line and exit 2; bugs keep tracebacks

ROW = {"problem": "What is 2 + 3?", "response": "2 + 3 = 5\n#### 5", "answer": "5"}


def _commands(tmp_path, source: Path) -> dict[str, list[str]]:
    """Each scoring subcommand on `source` (which need not exist)."""
    return {"best-of-n": ["best-of-n", str(source)],
            "select": ["select", str(source), str(tmp_path / "o.parquet"), "--top-k", "1"],
            "score": ["score", str(source), str(tmp_path / "o.jsonl")]}


@pytest.mark.parametrize("command", ["best-of-n", "select", "score"])
@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--workers", "1000000"),
                                         ("--timeout", "0"), ("--timeout", "nan"),
                                         ("--timeout", "1e9")])
def test_bad_settings_are_one_line_before_the_input_is_read(tmp_path, capsys, command, flag,
                                                            value):
    args = _commands(tmp_path, tmp_path / "absent.jsonl")[command]
    assert main([*args, flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag} must be"), err
    assert not any(tmp_path.iterdir())  # nothing read, nothing written


@pytest.mark.parametrize("command", ["best-of-n", "select", "score"])
def test_a_missing_input_and_an_unknown_option_are_one_line_and_exit_2(tmp_path, capsys,
                                                                         command):
    assert main(_commands(tmp_path, tmp_path / "absent.jsonl")[command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such file" in err and err.count("\n") == 1
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(ROW) + "\n")
    assert main([*_commands(tmp_path, source)[command], "-o", "max_step_char=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'max_step_chars'" in err[0], err


@pytest.mark.parametrize("command", ["best-of-n", "select", "score", "processbench"])
def test_a_bug_keeps_its_traceback(tmp_path, command):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({**ROW, "steps": ["2 + 3 = 5"], "label": -1}) + "\n")
    args = (["processbench", str(source)] if command == "processbench"
            else _commands(tmp_path, source)[command])
    with pytest.raises(RuntimeError, match="a bug in the judge's constructor"):
        main([*args, "--judge", "test-broken"])
