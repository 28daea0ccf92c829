"""`python -m reward_service grade`: row-for-row output, one-line errors before any work, an
output replaced only when complete, and no grading worker outliving the command."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOWER = "\\boxed{\\dfrac{5^{5^{5^{5^5}}}}{2}}"  # math-verify's comparison never returns


def _grade(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "reward_service", "grade", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_every_line_is_kept_in_order_with_its_error(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        json.dumps({"id": 1, "response": "#### 18", "answer": "18"}).encode(),
        b"{not json",
        json.dumps({"id": 2, "response": "\\boxed{\\frac{1}{2}}", "answer": "0.5"}).encode(),
        json.dumps({"id": 3, "response": 5, "answer": "5"}).encode(),
        b"",  # blank lines are not rows
        json.dumps({"id": 4, "response": "The answer is 7", "answer": "#### 8"}).encode(),
        json.dumps({"id": 5, "response": "so \\boxed{18}", "answer": 18}).encode(),  # numeric gold
        b"\xff\xfe\x00binary",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": 6, "response": "1", "answer": ' + b"1" * 5000 + b"}",  # past Python's int limit
        json.dumps([1, 2]).encode(),
        json.dumps({"id": 7, "response": f"\\boxed{{{'9' * 5000}}}", "answer": "9" * 5000}).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = _grade(src, dst, "--workers", "1", "--timeout", "30")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]  # every non-blank line
    by_line = {r["line"]: r for r in rows}
    assert [(by_line[n]["id"], by_line[n]["correct"], by_line[n]["error"]) for n in (1, 3, 6, 7)] == \
        [(1, True, None), (2, True, None), (4, False, None), (5, True, None)]
    assert by_line[1]["extracted"] == "18"
    bad = {n: by_line[n]["error"] for n in (2, 4, 8, 9, 10, 11)}
    assert all(e.startswith("bad row: ") for e in bad.values()) and not any(
        by_line[n]["correct"] for n in bad)
    assert by_line[4]["id"] == 3 and "'response'" in bad[4]  # a parsed row keeps its fields
    assert "UTF-8" in bad[8] and "nested" in bad[9] and "digits" in bad[10] and "list" in bad[11]
    assert by_line[12]["id"] == 7 and by_line[12]["error"] in (None, "gold_unparsable")
    assert "in.jsonl:2:" in out.stderr and "6 bad rows kept" in out.stderr


def test_output_equal_to_input_is_refused(tmp_path):
    src = tmp_path / "in.jsonl"
    content = json.dumps({"response": "#### 1", "answer": "1"}) + "\n"
    src.write_text(content)
    for same in (src, tmp_path / "." / "in.jsonl"):
        out = _grade(src, same)
        assert out.returncode != 0 and out.stderr.count("\n") == 1
        assert out.stderr.startswith("error: ") and "is the input" in out.stderr
    assert src.read_text() == content


@pytest.mark.parametrize("flag,value", [("--timeout", "nan"), ("--timeout", "inf"),
                                        ("--timeout", "1e12"), ("--timeout", "0"),
                                        ("--timeout", "-1"), ("--workers", "0"),
                                        ("--workers", "-1"), ("--workers", "1000000000"),
                                        ("--workers", "two")])
def test_bad_settings_are_one_line_errors_before_any_work(tmp_path, flag, value):
    missing = tmp_path / "absent.jsonl"  # the settings are refused before the input is read
    dst = tmp_path / "out.jsonl"
    out = _grade(missing, dst, flag, value, timeout=120)
    assert out.returncode != 0
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert flag in out.stderr and "absent" not in out.stderr
    assert not dst.exists()


@pytest.mark.parametrize("problem,needle", [("absent", "no such file"), ("dir", "directory"),
                                            ("out_dir", "does not exist")])
def test_path_problems_are_one_line_errors(tmp_path, problem, needle):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"response": "#### 1", "answer": "1"}) + "\n")
    if problem == "absent":
        src = tmp_path / "absent.jsonl"
    elif problem == "dir":
        src = tmp_path
    else:
        dst = tmp_path / "no" / "out.jsonl"
    out = _grade(src, dst, timeout=120)
    assert out.returncode != 0 and out.stderr.startswith("error: ")
    assert out.stderr.count("\n") == 1 and needle in out.stderr, out.stderr


def test_a_binary_file_gives_one_bad_row_per_line(tmp_path):
    src, dst = tmp_path / "in.bin", tmp_path / "out.jsonl"
    src.write_bytes(bytes(range(256)) * 40)  # 40 lines (byte 10 ends each), none of them text
    out = _grade(src, dst, "--workers", "1")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(rows) == 41 and all(r["error"].startswith("bad row: ") for r in rows)


# -- no grading worker outlives the command --------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the state on


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in "ZX"  # a zombie has ended


def _cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_command(tmp_path, sig):
    src, dst = tmp_path / "towers.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"response": TOWER, "answer": str(i)}) + "\n" for i in range(6)))
    dst.write_text("an earlier output\n")
    proc = subprocess.Popen([sys.executable, "-m", "reward_service", "grade", str(src), str(dst),
                             "--workers", "2", "--timeout", "600"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait until both workers are stuck in math-verify: each has burnt more CPU time than
        # starting (importing sympy and math-verify, about 1 s) takes.
        deadline = time.monotonic() + 600
        while True:
            workers = [p for p in _descendants(proc.pid) if _is_worker(p)]
            if len(workers) == 2 and all(_cpu_seconds(p) > 3.0 for p in workers):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "workers never got busy"
            time.sleep(0.2)
        family = _descendants(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in family if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert dst.read_text() == "an earlier output\n"  # an interrupted run replaces nothing
    if sig == signal.SIGTERM:  # a clean exit also removes its temporary output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "towers.jsonl"]
