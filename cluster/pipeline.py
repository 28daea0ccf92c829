"""Moving prompts through rollout → judge → buffer by reference.

`submit` fans one batch of prompts out over the rollout actors; each rollout table goes to a
judge actor as an ObjectRef (Ray resolves it inside the judge, not here), and the judge's
scored table goes to the buffer still as a reference. The driver keeps only the small
summaries, for progress and metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cluster.actor_group import ActorGroup, get
from core.config import Config


@dataclass
class Batch:
    step: int
    prompts: list[dict]
    summaries: list = field(default_factory=list)  # ObjectRefs of judge summaries
    adds: list = field(default_factory=list)  # ObjectRefs of buffer.add results


def split_evenly(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return [chunk for chunk in out if chunk]


class Pipeline:
    def __init__(self, cfg: Config, rollout: ActorGroup, judges: ActorGroup, buffer):
        self.cfg, self.rollout, self.judges, self.buffer = cfg, rollout, judges, buffer

    def submit(self, step: int, prompts: list[dict]) -> Batch:
        batch = Batch(step, prompts)
        r = self.cfg.rollout
        for i, (actor, chunk) in enumerate(zip(self.rollout.actors, split_evenly(prompts, len(self.rollout)))):
            seed = (self.cfg.seed * 1_000_003 + step * 1_009 + i) % (2**31)
            table = actor.generate.remote(chunk, n=r.samples_per_prompt, max_tokens=r.max_new_tokens,
                                          temperature=r.temperature, seed=seed)
            summary, scored = self.judges.next_actor().score.options(num_returns=2).remote(table)
            batch.summaries.append(summary)
            batch.adds.append(self.buffer.add.remote(summary, [scored]))
        return batch

    def wait(self, batch: Batch) -> list[dict]:
        """Block until the batch is in the buffer; returns its judge summaries."""
        timeout = self.cfg.trainer.call_timeout_s
        get(batch.adds, timeout, f"rollout/judge batch of step {batch.step}")
        return get(batch.summaries, timeout, f"judge summaries of step {batch.step}")


def generate_and_score(cfg: Config, rollout: ActorGroup, judges: ActorGroup, prompts: list[dict],
                       n: int, temperature: float, seed: int) -> list[dict]:
    """One synchronous pass without the buffer (evaluation): returns the judge summaries."""
    summaries = []
    for actor, chunk in zip(rollout.actors, split_evenly(prompts, len(rollout))):
        table = actor.generate.remote(chunk, n=n, max_tokens=cfg.rollout.max_new_tokens,
                                      temperature=temperature, seed=seed)
        summary, _ = judges.next_actor().score.options(num_returns=2).remote(table)
        summaries.append(summary)
    return get(summaries, cfg.trainer.call_timeout_s, "evaluation")

