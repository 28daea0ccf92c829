"""The experience buffer: a Ray actor that holds references, never the records themselves.

Scored tables arrive as ObjectRefs with a small summary (which groups, how many samples, which
policy version). A group is complete once all its G samples have arrived; then one Ray task
turns the complete groups into learner-ready experience (token advantages) and the buffer keeps
the reference to that. `take` hands out the oldest complete groups, refusing any whose policy
version is more than `max_staleness` behind the learner. `add` waits while the buffer is full,
so producers feel back-pressure instead of growing a queue without bound.

On a cluster a node can be lost with what its object store holds. The buffer lives on the
driver's node and builds the experience there, and `add` returns only once the experience of
the groups it completed exists: from then on nothing of those groups depends on a rollout or
judge node. If the scored table was lost first, `add` fails and forgets those groups, so the
caller can judge them again and add them as if for the first time.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.experience import make_experience
from core.ray_metrics import PartMetrics


@dataclass
class _Group:
    refs: list = field(default_factory=list)
    count: int = 0
    version: int = -1


@dataclass
class ReadyGroup:
    group_id: str
    version: int
    num_samples: int
    experience: "ray.ObjectRef"  # a table of this group's EXPERIENCE_SCHEMA rows
    ready_at: float


class ExperienceBuffer:
    def __init__(self, group_size: int, max_staleness: int, capacity_groups: int,
                 algorithm: str, alpha: float, beta: float = 0.75, run_name: str = ""):
        self.group_size = group_size
        self.max_staleness = max_staleness
        self.capacity = capacity_groups
        self.algorithm, self.alpha, self.beta = algorithm, alpha, beta
        self._pending: dict[str, _Group] = {}
        self._ready: list[ReadyGroup] = []
        self._changed = asyncio.Condition()
        self.stats = {"groups_added": 0, "groups_taken": 0, "groups_stale_dropped": 0,
                      "samples_stale_dropped": 0, "judge_errors": 0, "add_wait_s": 0.0}
        self.metrics = PartMetrics(run_name, "buffer", actor="buffer")  # Ray's metrics export
        # experience is built here, on the buffer's node (the driver's): see the module doc
        self._here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._publish_depth()

    async def add(self, summary: dict, refs: list) -> int:
        """Register one scored table (`refs` = [ObjectRef]); returns the number of groups completed,
        once their experience exists."""
        t0 = time.monotonic()
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._ready) < self.capacity)
            self.stats["add_wait_s"] += time.monotonic() - t0
            completed = []
            for gid, info in summary["groups"].items():
                g = self._pending.setdefault(gid, _Group(version=info["version"]))
                if all(r.hex() != refs[0].hex() for r in g.refs):
                    g.refs.append(refs[0])
                g.count += info["count"]
                if g.count > self.group_size:
                    raise ValueError(f"group {gid} received {g.count} samples, more than {self.group_size}")
                if g.count == self.group_size:
                    completed.append(gid)
            groups = {gid: self._pending.pop(gid) for gid in completed}
            self._publish_depth()
        ready = await self._experience(groups) if groups else []  # on failure the groups are forgotten
        async with self._changed:
            self.stats["judge_errors"] += summary.get("judge_errors", 0)
            self._ready += ready
            self.stats["groups_added"] += len(ready)
            self._changed.notify_all()
            self._publish_depth()
        return len(ready)

    async def _experience(self, groups: dict[str, _Group]) -> list[ReadyGroup]:
        """The groups' experience, built by one task on this node and waited for."""
        refs = list({r.hex(): r for g in groups.values() for r in g.refs}.values())
        # One returned object per group, so a take never drags other groups along.
        exps = make_experience.options(num_returns=len(groups), scheduling_strategy=self._here).remote(
            list(groups), self.algorithm, self.alpha, *refs, beta=self.beta)
        exps = exps if isinstance(exps, list) else [exps]
        await asyncio.gather(*exps)
        now = time.monotonic()
        return [ReadyGroup(gid, g.version, g.count, exp, now) for (gid, g), exp in zip(groups.items(), exps)]

    async def take(self, num_groups: int, learner_step: int, timeout_s: float) -> dict:
        """The oldest `num_groups` complete groups that are fresh enough for `learner_step`."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: self._fresh_count(learner_step) >= num_groups), timeout_s)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"experience buffer: waited {timeout_s:.0f}s for {num_groups} groups, have "
                    f"{len(self._ready)} ready and {len(self._pending)} incomplete") from None
            self._drop_stale(learner_step)
            self._ready.sort(key=lambda g: (g.version, g.ready_at))
            taken, self._ready = self._ready[:num_groups], self._ready[num_groups:]
            self._changed.notify_all()
        self.stats["groups_taken"] += len(taken)
        self._publish_depth()
        self.metrics.record("sample_staleness_max", max((learner_step - g.version for g in taken), default=0))
        return {"group_ids": [g.group_id for g in taken], "versions": [g.version for g in taken],
                "num_samples": sum(g.num_samples for g in taken),
                "experience": [g.experience for g in taken]}

    def _is_fresh(self, g: ReadyGroup, learner_step: int) -> bool:
        return learner_step - g.version <= self.max_staleness

    def _fresh_count(self, learner_step: int) -> int:
        return sum(1 for g in self._ready if self._is_fresh(g, learner_step))

    def _drop_stale(self, learner_step: int) -> None:
        keep = []
        for g in self._ready:
            if self._is_fresh(g, learner_step):
                keep.append(g)
            else:
                self.stats["groups_stale_dropped"] += 1
                self.stats["samples_stale_dropped"] += g.num_samples
        self._ready = keep

    def _publish_depth(self) -> None:
        self.metrics.record("buffer_ready_groups", len(self._ready))
        self.metrics.record("buffer_pending_groups", len(self._pending))
        self.metrics.record("samples_stale_dropped", self.stats["samples_stale_dropped"])

    def depth(self) -> dict:
        return {"ready_groups": len(self._ready), "pending_groups": len(self._pending),
                "ready_samples": sum(g.num_samples for g in self._ready), **self.stats}


def create_buffer(group_size: int, max_staleness: int, capacity_groups: int,
                  algorithm: str, alpha: float, beta: float = 0.75, run_name: str = ""):
    """The buffer actor, named "buffer" (findable with ray.get_actor), on the caller's node."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0)(ExperienceBuffer).options(name="buffer", scheduling_strategy=here)
    return actor.remote(group_size, max_staleness, capacity_groups, algorithm, alpha, beta, run_name)
