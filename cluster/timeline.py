"""When each part of a run worked, per actor: the timeline written with every step.

A span is `{"part", "actor", "batch", "start", "end"}`, times in seconds since the timeline
began, on the wall clock (so that a span measured in another process of the host lines up with
the driver's). Parts: `rollout` (one `generate` call), `judge` (one judge call), `learner`
(one optimizer step), `sync` (the driver's weight sync to every engine),
`step` (the driver's whole step); `batch` is the training batch the work was for, or "eval".

How each is timed:
- a judge times its own call and reports it in the call's summary;
- the driver times what it waits for itself: learner steps, the sync, the step;
- a rollout engine runs its calls one at a time in the order the driver sent them, so a call
  starts when it was sent or when the engine's previous call ended, whichever is later, and
  ends when its result exists: a thread of the driver waits for that moment on the results'
  references, without fetching them (`ray.wait(fetch_local=False)`).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import ray

POLL_S = 0.2  # how soon a call sent while the watcher waits is added to what it waits on


@dataclass
class _Call:
    part: str
    actor: str
    batch: int | str
    ref: "ray.ObjectRef"
    sent: float
    end: float | None = None


class Timeline:
    def __init__(self):
        self.origin = time.time()
        self._spans: list[dict] = []
        self._calls: dict[str, list[_Call]] = {}  # per actor: calls sent and not yet ended, in order
        self._last_end: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    def span(self, part: str, actor: str, batch: int | str, start: float, end: float) -> None:
        """Record work done from `start` to `end` (wall-clock seconds, `time.time()`)."""
        with self._lock:
            self._spans.append({"part": part, "actor": actor, "batch": batch,
                                "start": round(start - self.origin, 4), "end": round(end - self.origin, 4)})

    @contextmanager
    def timed(self, part: str, actor: str, batch: int | str):
        """Record the time the `with` block takes as one span."""
        start = time.time()
        try:
            yield
        finally:
            self.span(part, actor, batch, start, time.time())

    def call(self, part: str, actor: str, batch: int | str, ref: "ray.ObjectRef") -> None:
        """A call just sent to `actor`, whose result is `ref`: recorded once the result exists."""
        with self._lock:
            self._calls.setdefault(actor, []).append(_Call(part, actor, batch, ref, time.time()))
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="thoughtrl-timeline", daemon=True)
                self._watcher.start()

    def take(self) -> list[dict]:
        """The spans recorded since the last take, by start time."""
        with self._lock:
            spans, self._spans = self._spans, []
        return sorted(spans, key=lambda s: (s["start"], s["part"], s["actor"]))

    def close(self) -> None:
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5 * POLL_S)

    def _watch(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                waiting = {c.ref: c for calls in self._calls.values() for c in calls}
            if not waiting:
                self._closed.wait(POLL_S)
                continue
            try:
                done, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_S, fetch_local=False)
                if done:  # and every other call that has ended by now
                    done, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0, fetch_local=False)
            except Exception:  # noqa: BLE001 - Ray going down with the run: nothing left to time
                return
            now = time.time()
            with self._lock:
                for ref in done:
                    waiting[ref].end = now
                for actor, calls in self._calls.items():
                    # in the order sent: a call ends only after the ones before it on its actor
                    while calls and calls[0].end is not None:
                        c = calls.pop(0)
                        start = max(c.sent, self._last_end.get(actor, c.sent))
                        self._last_end[actor] = c.end
                        self._spans.append({"part": c.part, "actor": actor, "batch": c.batch,
                                            "start": round(start - self.origin, 4),
                                            "end": round(c.end - self.origin, 4)})
