"""The body of one grading worker process: math-verify's `parse` and `verify`, as plain
math-verify calls them.

Runs in a child process that the pool kills on timeout, so math-verify's own SIGALRM timeouts
are switched off (they cannot stop every hang). The worker dies with its parent: on Linux the
kernel sends it SIGKILL when the pool's spawning thread (alive as long as the pool) ends, and
an idle worker also ends when its pipe closes.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent goes, even while it is stuck in sympy."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent went before the signal was armed
        os._exit(0)


def read_prediction(response: str, require_answer: bool) -> list:
    """math-verify's reading of a response. With `require_answer`, only a stated answer counts
    (answers.stated_candidate): math-verify's anchored patterns, else the `####` line."""
    from math_verify import parse

    from reward_service.answers import extraction_configs, gsm8k_answer
    if not require_answer:
        return parse(response, parsing_timeout=None)
    found = parse(response, extraction_configs(anchored=True), parsing_timeout=None)
    if found:
        return found
    tail = gsm8k_answer(response)
    return parse(tail, parsing_timeout=None) if tail is not None else []


def _text(parsed: list) -> str | None:
    # parse() ends its list with the matched text; str() of a sympy value can itself hang.
    return parsed[-1] if parsed and isinstance(parsed[-1], str) and parsed[-1] else None


def _verify(gold_parsed: list, pred_parsed: list) -> bool:
    from math_verify import verify
    # The matched texts first: plain math-verify compares them too, after the sympy values,
    # and its own timeout lets it reach them even when the sympy comparison hangs.
    texts = verify([g for g in gold_parsed if isinstance(g, str)],
                   [p for p in pred_parsed if isinstance(p, str)], timeout_seconds=None)
    return bool(texts or verify(gold_parsed, pred_parsed, timeout_seconds=None))


def read_gold(gold: str) -> list:
    """math-verify's parse of the first of `answers.gold_readings` that gives a value (else of
    the first that gives a text)."""
    return list(_read_gold(gold))


@functools.lru_cache(maxsize=256)
def _read_gold(gold: str) -> tuple:
    # The G samples of a prompt share one gold: each worker parses it once.
    from math_verify import parse

    from reward_service.answers import gold_readings
    fallback: list = []
    for reading in gold_readings(gold):
        parsed = parse(reading, parsing_timeout=None)
        if any(not isinstance(x, str) for x in parsed):
            return tuple(parsed)
        fallback = fallback or parsed
    return tuple(fallback)


def grade_pair(response: str, gold: str, require_answer: bool) -> tuple[bool, str | None, str | None]:
    """(correct, extracted answer, error): math-verify's `verify(parse(gold), parse(response))`."""
    from math_verify.errors import TimeoutException

    try:
        pred_parsed = read_prediction(response, require_answer)
        extracted = _text(pred_parsed)
        gold_parsed = read_gold(gold)
        if not gold_parsed:
            return False, extracted, "gold_unparsable"
        if not pred_parsed:
            return False, None, None  # no answer found: wrong, not an error
        return _verify(gold_parsed, pred_parsed), extracted, None
    except (Exception, TimeoutException) as e:  # TimeoutException is a BaseException
        return False, None, f"{type(e).__name__}: {str(e)[:200]}"


def worker_main(conn, parent_pid: int) -> None:
    """Serve grading requests on `conn` until it closes."""
    die_with_parent(parent_pid)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silence "timeout disabled"
    # Start-up is not grading time: the first LaTeX parse builds the parser (seconds on a loaded
    # machine), so it happens before saying ready, not inside the first request's timeout.
    grade_pair("\\boxed{\\frac{1}{2}}", "0.5", False)
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        request_id, response, gold, require_answer = msg
        conn.send((request_id, *grade_pair(response, gold, require_answer)))
