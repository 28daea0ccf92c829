"""Moving prompts through rollout → judge → buffer by reference, surviving dead actors.

`submit` fans a batch of prompts out over the rollout actors; each rollout table goes to a
judge actor as an ObjectRef (Ray resolves it inside the judge, not here), and the judge's
scored table goes to the buffer still as a reference. The driver keeps only small summaries.

A piece of work whose rollout or judge actor died is re-issued after the actor is replaced
(a new rollout actor first receives the current weights). Group ids travel with the prompts,
so a re-issued group is the same group: nothing is lost and nothing counted twice — the buffer
only ever sees a group whose judge finished.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import ray  # noqa: F401  (ObjectRef in annotations)

from cluster.actor_group import ActorDied, ActorGroup, get
from core.config import Config


@dataclass
class Work:
    """One chunk of prompts on one rollout actor, and where its results are."""
    step: int
    prompts: list[dict]
    n: int
    temperature: float
    seed: int
    to_buffer: bool
    rollout_index: int
    summary: "ray.ObjectRef | None" = None
    added: "ray.ObjectRef | None" = None
    attempts: int = 0


@dataclass
class Batch:
    step: int
    works: list[Work] = field(default_factory=list)
    stream_state: dict = field(default_factory=dict)  # prompt stream position before this batch


@dataclass
class Weights:
    """The newest weights the engines should serve (a replaced engine is brought up to them)."""
    packed: "ray.ObjectRef | None" = None
    version: int = 0


def split_evenly(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return out


class Pipeline:
    def __init__(self, cfg: Config, rollout: ActorGroup, judges: ActorGroup, buffer, weights: Weights,
                 log=print, max_attempts: int = 3):
        self.cfg, self.rollout, self.judges, self.buffer = cfg, rollout, judges, buffer
        self.weights, self.log, self.max_attempts = weights, log, max_attempts
        self.restarts = {"rollout": 0, "judge": 0}

    def submit(self, step: int, prompts: list[dict], n: int | None = None, temperature: float | None = None,
               to_buffer: bool = True) -> Batch:
        r = self.cfg.rollout
        batch = Batch(step)
        for i, chunk in enumerate(split_evenly(prompts, len(self.rollout))):
            if not chunk:
                continue
            seed = (self.cfg.seed * 1_000_003 + step * 1_009 + i) % (2**31)
            work = Work(step, chunk, n or r.samples_per_prompt,
                        r.temperature if temperature is None else temperature, seed, to_buffer, i)
            self._launch(work)
            batch.works.append(work)
        return batch

    def _launch(self, w: Work) -> None:
        w.attempts += 1
        table = self.rollout.actors[w.rollout_index].generate.remote(
            w.prompts, n=w.n, max_tokens=self.cfg.rollout.max_new_tokens, temperature=w.temperature, seed=w.seed)
        w.summary, scored = self.judges.next_actor().score.options(num_returns=2).remote(table)
        w.added = self.buffer.add.remote(w.summary, [scored]) if w.to_buffer else None

    def collect(self, batch: Batch) -> list[dict]:
        """Block until every piece of the batch is judged (and in the buffer); returns summaries."""
        timeout = self.cfg.trainer.call_timeout_s
        summaries = []
        for w in batch.works:
            while True:
                try:
                    if w.added is not None:
                        get(w.added, timeout, f"buffer.add (step {w.step})")
                    summaries.append(get(w.summary, timeout, f"rollout/judge (step {w.step})"))
                    break
                except ActorDied as died:
                    if w.attempts >= self.max_attempts:
                        raise RuntimeError(f"step {w.step}: gave up after {w.attempts} attempts") from died
                    self.log(f"step {w.step}: {died}; replacing dead actors and re-issuing "
                             f"{len(w.prompts)} prompts")
                    self.heal()
                    self._launch(w)
        return summaries

    def heal(self) -> None:
        """Replace dead rollout/judge actors; bring every engine to the current weights."""
        timeout = self.cfg.trainer.call_timeout_s
        for group, role in ((self.rollout, "rollout"), (self.judges, "judge")):
            for i in group.dead_indices():
                group.replace(i, timeout)
                self.restarts[role] += 1
        if self.weights.packed is not None:
            stale = [a for a, v in zip(self.rollout.actors, self.rollout.get_all("version", timeout_s=timeout))
                     if v != self.weights.version]
            get([a.update_weights.remote(self.weights.packed, self.weights.version) for a in stale],
                timeout, "rollout.update_weights (restored engine)")

