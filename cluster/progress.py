"""A progress bar with rate and time left, for the warm start and for training.

On a terminal it is one line redrawn in place (`\\r`); where stderr is not a terminal (`ray job
logs`, a file, a CI log) it prints one plain line each `every` (10%) of the way instead, so a
log stays short and readable.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, label: str, total: int, unit: str = "steps", done: int = 0,
                 stream: TextIO | None = None, every: float = 0.1, width: int = 24,
                 on_close: Callable[["Progress"], None] | None = None):
        self.label, self.total, self.unit, self.width = label, max(total, 1), unit, width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start_done, self.done = done, done
        self.every = every
        self.t0 = self._last_draw = time.monotonic()
        self._next_line = done / self.total + every  # non-TTY: the next fraction that prints a line
        self.postfix = ""
        self.visible = False  # a TTY line is on screen
        self.printed_end = False  # non-TTY: the final line was printed
        self.on_close = on_close

    def line(self) -> str:
        frac = min(self.done / self.total, 1.0)
        elapsed = time.monotonic() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            speed = f"{rate:.2f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit.rstrip('s')}"
            left = f"{_duration((self.total - self.done) / rate)} left"
        else:
            speed, left = "", ""
        filled = int(frac * self.width)
        bar = ("█" * filled + "░" * (self.width - filled) + " " if self.tty else "") + f"{frac:4.0%}"
        parts = [f"{self.label} {bar} {self.done}/{self.total} {self.unit}", self.postfix, speed,
                 left if self.done < self.total else f"took {_duration(elapsed)}"]
        return " | ".join(p for p in parts if p)

    def update(self, done: int, postfix: str = "") -> None:
        self.done, self.postfix = done, postfix or self.postfix
        finished = done >= self.total
        if self.tty:
            now = time.monotonic()
            if finished or now - self._last_draw >= 0.2:  # redraw a few times a second at most
                self._last_draw = now
                self.redraw()
        elif (finished and not self.printed_end) or (not finished and done / self.total >= self._next_line - 1e-9):
            while self._next_line <= done / self.total + 1e-9:
                self._next_line += self.every
            self.printed_end = finished
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def redraw(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
            self.visible = True

    def clear(self) -> None:
        """Take the TTY line off the screen, so a message can be printed above it."""
        if self.tty and self.visible:
            self.stream.write("\r\x1b[K")
            self.visible = False

    def close(self) -> None:
        """Leave the final state as an ordinary line."""
        if self.tty and self.visible:
            self.redraw()
            self.stream.write("\n")
            self.stream.flush()
            self.visible = False
        if self.on_close is not None:
            self.on_close, on_close = None, self.on_close
            on_close(self)
