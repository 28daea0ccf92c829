"""The body of one grading worker process: math-verify parsing and equivalence.

Runs in a child process that the pool kills on timeout, so math-verify's own SIGALRM timeouts
are switched off (they only work on a main thread and cannot stop every hang anyway).
"""
from __future__ import annotations

import logging


def wrap_latex(answer: str) -> str:
    """An extracted answer as LaTeX math that math-verify's extractor recognizes."""
    return "\\boxed{" + answer + "}"


def verify_answer(pred: str, gold: str, pred_is_extracted: bool) -> tuple[bool, str | None, str | None]:
    """(correct, extracted prediction, error). Parses gold and prediction and compares them."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    try:
        gold_parsed = parse(wrap_latex(gold), parsing_timeout=None)
        if not gold_parsed:
            return False, None, "gold_unparsable"
        pred_parsed = parse(wrap_latex(pred) if pred_is_extracted else pred, parsing_timeout=None)
        if not pred_parsed:
            return False, None, None  # no answer found: wrong, not an error
        extracted = pred if pred_is_extracted else str(pred_parsed[-1])
        correct = verify(gold_parsed, pred_parsed, timeout_seconds=None)
        return bool(correct), extracted, None
    except (Exception, TimeoutException) as e:  # TimeoutException is a BaseException
        return False, None, f"{type(e).__name__}: {str(e)[:200]}"


def worker_main(conn) -> None:
    """Serve grading requests on `conn` until it sends None or closes."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silence "timeout disabled"
    import math_verify  # noqa: F401  (import before saying ready: start-up is not grading time)

    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        request_id, pred, gold, pred_is_extracted = msg
        conn.send((request_id, *verify_answer(pred, gold, pred_is_extracted)))
