"""Safe, fast answer grading: a pool of killable math-verify worker processes.

Every answer gets a wall-clock limit; a worker that overruns it is SIGKILLed and replaced, and
only that row is marked `timeout`. Plain numbers (most of GSM8K) are compared exactly in-process
without the pool. Usable from any thread (asyncio executors, Ray actor threads).
"""
from __future__ import annotations

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

from reward_service.answers import extract_answer
from reward_service.grading_worker import worker_main

_STARTUP_TIMEOUT_S = 120.0  # importing sympy in a fresh process on a busy machine
_PLAIN_NUMBER = re.compile(r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\$?\.\d+")


@dataclass
class Grade:
    correct: bool
    extracted: str | None
    error: str | None = None


def plain_number(text: str | None) -> Fraction | None:
    """The exact value of a plain number such as "1,234", "18", "-3.50", "$5"; else None."""
    if text is None:
        return None
    text = text.strip()
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    return Fraction(text.replace(",", "").replace("$", ""))


def gold_answer(gold: str) -> str:
    """The answer inside a gold field that may be a bare answer or a whole solution."""
    return extract_answer(gold) or gold.strip()


class _Worker:
    """One grading process and the parent's end of its pipe."""

    def __init__(self, ctx) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child_conn,), daemon=True)
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

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.process.join(timeout=2)
        except (OSError, ValueError):
            pass
        self.kill()


class GradingPool:
    """Grades responses against gold answers in `num_workers` killable processes."""

    def __init__(self, num_workers: int = 1, timeout_s: float = 5.0, max_chars: int = 20_000,
                 require_answer: bool = False):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        # In RL a response must state its answer (boxed, "####", "The answer is"); otherwise
        # the parser's fallback to "last expression anywhere" rewards number soup.
        self.require_answer = require_answer
        # Counters read by metrics exporters.
        self.graded = 0
        self.timeouts = 0
        self.errors = 0
        self.too_long = 0
        self.restarts = 0
        self._ctx = mp.get_context("spawn")  # safe from threads and inside Ray actors
        self._lock = threading.Lock()
        self._request_ids = 0
        self._closed = False
        self._all: set[_Worker] = set()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(num_workers):
            self._idle.put(self._spawn())

    # -- public API ---------------------------------------------------------------------------

    def grade(self, response: str, gold: str) -> Grade:
        """Grade one response; never raises on bad text."""
        grade = self._grade(response, gold)
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

        with ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="grade") as ex:
            return list(ex.map(one, pairs))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.stop()

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
        pred = extract_answer(response)
        if pred is None and self.require_answer:
            return Grade(False, None, None)
        gold_ans = gold_answer(gold)
        pred_num, gold_num = plain_number(pred), plain_number(gold_ans)
        if pred_num is not None and gold_num is not None:
            return Grade(pred_num == gold_num, pred)  # exact, no parser needed
        to_parse = pred if pred is not None else response
        if len(to_parse) > self.max_chars or len(gold_ans) > self.max_chars:
            return Grade(False, pred, "too_long")
        if not gold_ans:
            return Grade(False, pred, "empty_gold")
        return self._grade_in_worker(to_parse, gold_ans, pred is not None)

    def _grade_in_worker(self, pred: str, gold: str, pred_is_extracted: bool) -> Grade:
        if self._closed:
            raise RuntimeError("GradingPool is closed")
        worker = self._idle.get()
        try:
            if not worker.wait_ready():
                worker = self._replace(worker)
                return Grade(False, None, "worker_start_failed")
            with self._lock:
                self._request_ids += 1
                request_id = self._request_ids
            worker.conn.send((request_id, pred, gold, pred_is_extracted))
            if not worker.conn.poll(self.timeout_s):
                worker = self._replace(worker)
                return Grade(False, pred if pred_is_extracted else None, "timeout")
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
        worker = _Worker(self._ctx)
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
