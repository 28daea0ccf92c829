"""Safe, fast answer grading: math-verify's verdict, in a pool of killable worker processes.

A grade is math-verify's `verify(parse(gold), parse(response))` with its default extraction
(its own patterns and priorities; reward_service.grading_worker), a bare LaTeX gold being read
whole (answers.gold_readings). Every answer gets a wall-clock limit; a worker that overruns it
is SIGKILLed and replaced, and only that row is marked `timeout`. Where math-verify's own
patterns read a plain integer on both sides (GSM8K's `#### 18`, `\\boxed{52}`), the integers are
compared in-process, without a worker: math-verify would compare the same integers. Usable
from any thread (asyncio executors, Ray actor threads); `grade` never raises.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from reward_service.answers import SCAN_CHARS, first_candidate, gold_readings, stated_candidate
from reward_service.grading_worker import worker_main

_STARTUP_TIMEOUT_S = 120.0  # importing sympy in a fresh process on a busy machine
_MAX_TIMEOUT_S = 3600.0
_PLAIN_NUMBER = re.compile(r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\$?\.\d+")


@dataclass
class Grade:
    correct: bool
    extracted: str | None
    error: str | None = None


def max_workers() -> int:
    return 4 * (os.cpu_count() or 1)


def check_settings(num_workers: int, timeout_s: float,
                   names: tuple[str, str] = ("workers", "timeout")) -> None:
    """ValueError naming the setting (by `names`: a command line's `--workers`, ...), for a pool
    that could not work as asked."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) \
            or not 1 <= num_workers <= max_workers():
        raise ValueError(f"{names[0]} must be a whole number from 1 to {max_workers()} "
                         f"(4 per CPU), got {num_workers!r}")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) \
            or not math.isfinite(timeout_s) or not 0 < timeout_s <= _MAX_TIMEOUT_S:
        raise ValueError(f"{names[1]} must be a number of seconds above 0 and at most "
                         f"{_MAX_TIMEOUT_S:g}, got {timeout_s!r}")


def plain_number(text: str | None) -> Fraction | None:
    """The exact value of a plain number such as "1,234", "18", "-3.50", "$5"; else None."""
    if text is None:
        return None
    text = text.strip()
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Fraction(text.replace(",", "").replace("$", ""))
    except ValueError:  # more digits than Python converts
        return None


def settle_in_process(response: str, gold: str, require_answer: bool = False) -> Grade | None:
    """The grade where math-verify's own patterns settle it without sympy (a plain integer on
    both sides, or no answer at all); None where math-verify must parse. Reads at most
    `answers.SCAN_CHARS` of each text, so it never takes long."""
    if len(response) > SCAN_CHARS or len(gold) > SCAN_CHARS:
        return None
    try:
        pred = stated_candidate(response) if require_answer else first_candidate(response)
        if pred is None:  # states no answer, or math-verify finds nothing to read: wrong
            return Grade(False, None, None)
        if pred.integer is None:
            return None
        if gold_readings(gold) != [gold]:  # a bare LaTeX gold: math-verify parses it whole
            return None
        gold_candidate = first_candidate(gold)
        if gold_candidate is None or gold_candidate.integer is None:
            return None
        return Grade(pred.integer == gold_candidate.integer, pred.text)
    except Exception:  # an odd text: math-verify in a worker decides
        return None


class _Worker:
    """One grading process and the parent's end of its pipe."""

    def __init__(self, ctx) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child_conn, os.getpid()), daemon=True)
        self.process.start()
        child_conn.close()
        self.ready = False

    def wait_ready(self) -> bool:
        if not self.ready and self.conn.poll(_STARTUP_TIMEOUT_S):
            self.ready = self.conn.recv() == ("ready",)
        return self.ready

    def kill(self) -> None:
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.join(timeout=5)
        self.conn.close()


class GradingPool:
    """Grades responses against gold answers in `num_workers` killable processes."""

    def __init__(self, num_workers: int = 1, timeout_s: float = 5.0, max_chars: int = 100_000,
                 require_answer: bool = False):
        check_settings(num_workers, timeout_s)
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        # In RL a response must state its answer (answers.stated_candidate); else math-verify's
        # fallback to "the last number anywhere" rewards number soup.
        self.require_answer = require_answer
        # Counters read by metrics exporters.
        self.graded = 0
        self.timeouts = 0
        self.errors = 0
        self.too_long = 0
        self.restarts = 0
        self.in_process = 0  # settled without a worker
        self._ctx = mp.get_context("spawn")  # safe from threads and inside Ray actors
        # Workers are started from this one long-lived thread: the kernel's parent-death signal
        # fires when the *thread* that started a process ends, and grading threads come and go.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grading-spawn")
        self._lock = threading.Lock()
        self._request_ids = 0
        self._closed = False
        self._all: set[_Worker] = set()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(num_workers):
            self._idle.put(self._spawn())

    # -- public API ---------------------------------------------------------------------------

    def grade(self, response: str, gold: str) -> Grade:
        """Grade one response; never raises."""
        try:
            grade = self._grade(response, gold)
        except Exception as e:  # a grader bug costs this row, never the caller's run
            grade = Grade(False, None, f"{type(e).__name__}: {str(e)[:200]}")
        self._count(grade)
        return grade

    def grade_many(self, pairs: list[tuple[str, str]],
                   progress: Callable[[int, int], None] | None = None) -> list[Grade]:
        """Grade (response, gold) pairs in parallel over the workers; order is preserved."""
        total = len(pairs)
        done = 0
        done_lock = threading.Lock()

        def one(pair: tuple[str, str]) -> Grade:
            nonlocal done
            grade = self.grade(*pair)
            if progress is not None:
                with done_lock:
                    done += 1
                    progress(done, total)
            return grade

        ex = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="grade")
        try:
            return list(ex.map(one, pairs))
        finally:  # interrupted (Ctrl-C, SIGTERM): the rows not yet started are dropped
            ex.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Kill the workers (they hold no state); a grade still waiting on one gets an error."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.kill()
        self._spawner.shutdown(wait=False)

    def __enter__(self) -> "GradingPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- internals ----------------------------------------------------------------------------

    def _grade(self, response: str, gold: str) -> Grade:
        if not isinstance(response, str) or not isinstance(gold, str):
            return Grade(False, None, "bad_input")
        if not gold.strip():
            return Grade(False, None, "empty_gold")
        if len(response) > self.max_chars or len(gold) > self.max_chars:
            return Grade(False, None, "too_long")
        settled = settle_in_process(response, gold, self.require_answer)
        if settled is not None:
            with self._lock:
                self.in_process += 1
            return settled
        return self._grade_in_worker(response, gold)

    def _grade_in_worker(self, response: str, gold: str) -> Grade:
        if self._closed:
            return Grade(False, None, "pool_closed")
        worker = self._idle.get()
        try:
            if not worker.wait_ready():
                worker = self._replace(worker)
                return Grade(False, None, "worker_start_failed")
            with self._lock:
                self._request_ids += 1
                request_id = self._request_ids
            worker.conn.send((request_id, response, gold, self.require_answer))
            if not worker.conn.poll(self.timeout_s):
                worker = self._replace(worker)
                return Grade(False, None, "timeout")
            got_id, correct, extracted, error = worker.conn.recv()
            if got_id != request_id:  # cannot happen with one request per worker; be loud if it does
                worker = self._replace(worker)
                return Grade(False, None, "worker_protocol_error")
            return Grade(correct, extracted, error)
        except (EOFError, OSError, BrokenPipeError):
            worker = self._replace(worker)
            return Grade(False, None, "worker_died")
        finally:
            if worker is not None:
                self._idle.put(worker)

    def _spawn(self) -> _Worker:
        worker = self._spawner.submit(_Worker, self._ctx).result()
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker | None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            self.restarts += 1
            if self._closed:
                return None
        return self._spawn()

    def _count(self, grade: Grade) -> None:
        with self._lock:
            self.graded += 1
            if grade.error == "timeout":
                self.timeouts += 1
            elif grade.error == "too_long":
                self.too_long += 1
            elif grade.error is not None:
                self.errors += 1
