"""When each training batch is sampled, and from which policy version.

The learner trains batch t at step t (counting from 0). Version v is the learner's weights
after v optimizer steps; the engines serve a version from one sync to the next, and the driver
syncs after every `sync_every`-th step (S) and after the last. A sample of version v trained at
step t is t - v versions old, and the buffer refuses it beyond `max_staleness` (K).

The rule: whenever the engines serve version v, sample every batch not sampled yet with
t <= v + K. It is right for every S and K >= S - 1 (what the config accepts):

- fresh: batch t is sampled from a version v with t - v <= K, by construction, so the buffer
  never refuses what the schedule itself asked for;
- in time: at step t the engines serve at least the last sync point, v >= t - (S - 1) >= t - K,
  so batch t is sampled at step t at the latest and the learner never waits for a batch nobody
  asked for;
- as early as possible: an earlier version is too old for batch t, so generation runs as far
  ahead of learning as staleness allows, with at most K + 1 batches in flight (what the buffer's
  capacity is sized for).

A count of batches in flight alone is not enough: with S = 2 and K = 1, keeping two batches in
flight samples batch 2 at step 1 from version 0, two versions old when trained.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Schedule:
    max_steps: int
    sync_every: int
    max_staleness: int
    next_batch: int = 0  # the first batch not sampled yet (the resumed step after a restart)

    def __post_init__(self) -> None:
        if self.max_staleness < self.sync_every - 1:
            raise ValueError(f"max_staleness ({self.max_staleness}) must be at least sync_every - 1 "
                             f"({self.sync_every - 1})")

    def sample_now(self, version: int) -> range:
        """The batches to sample now from engines serving `version`; each is handed out once."""
        end = min(self.max_steps, version + self.max_staleness + 1)
        due = range(self.next_batch, max(self.next_batch, end))
        self.next_batch = due.stop
        return due

    def syncs_after(self, step: int) -> bool:
        """Whether the engines receive the learner's weights after `step`."""
        return (step + 1) % self.sync_every == 0 or step + 1 == self.max_steps
