"""What a config asks of the cluster, a fail-fast check, and placement groups that reserve it.

One actor of each role holds:

| role | one actor is | CPUs | GPUs |
| --- | --- | --- | --- |
| rollout | one vLLM engine | num_cpus_per_actor | num_gpus_per_actor × tensor_parallel_size |
| judge | one PRM judge | num_cpus_per_actor | num_gpus_per_actor |
| learner | one DeepSpeed rank | num_cpus_per_rank | num_gpus_per_rank |

Tensor parallelism: `rollout.num_gpus_per_actor` is the share of one GPU per tensor-parallel
shard (1 on a GPU cluster), so an engine holds `tensor_parallel_size` whole GPUs. They sit in
one placement-group bundle, and a bundle never spans nodes, so an engine's shards share a node.
The rollout actor owns all of them and vLLM starts the extra shard processes itself inside that
allocation (`distributed_executor_backend="mp"`, see `rollout_engine_kwargs`).

Placement groups, one per role, one bundle per actor, created before any actor:
- learner: PACK, so ranks share as few nodes as possible (their all-reduce is the chattiest
  traffic); created first so it gets first pick of whole nodes.
- rollout: PACK, so engines fill nodes one after another and leave whole nodes free.
- judge: SPREAD, so CPU-bound grading spreads over the nodes.
A role asking for no CPUs and no GPUs (the CPU laptop default) gets no placement group: Ray
rejects all-zero bundles, and such actors need nothing reserved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from core.config import Config

PLACEMENT_TIMEOUT_S = 120.0
RESERVE_ORDER = ("learner", "rollout", "judge")  # Ray places groups in creation order
RESOURCE_KEYS = ("GPU", "CPU")  # the order messages list them in


class ResourceError(RuntimeError):
    """The cluster cannot hold what the config asks for; the message says what is missing."""


@dataclass(frozen=True)
class RoleResources:
    role: str
    count: int  # actors (or learner ranks)
    unit: str  # "actors" | "ranks", for messages
    cpus_each: float
    gpus_each: float
    strategy: str  # placement-group strategy

    def each(self, key: str) -> float:
        return self.gpus_each if key == "GPU" else self.cpus_each

    def total(self, key: str) -> float:
        return self.count * self.each(key)

    def bundle(self) -> dict[str, float]:
        """One actor's reservation, zero entries left out (Ray rejects all-zero bundles)."""
        return {k: self.each(k) for k in RESOURCE_KEYS if self.each(k) > 0}

    def actor_options(self) -> dict[str, float]:
        return {"num_cpus": self.cpus_each, "num_gpus": self.gpus_each}


def required_resources(cfg: Config) -> dict[str, RoleResources]:
    """Per role: how many actors and what each holds (see the table at the top)."""
    r, j, l = cfg.rollout, cfg.judge, cfg.learner
    if r.tensor_parallel_size > 1 and r.num_gpus_per_actor not in (0, 1):
        raise ResourceError(
            f"rollout.num_gpus_per_actor is {r.num_gpus_per_actor:g} with tensor_parallel_size "
            f"{r.tensor_parallel_size}: each tensor-parallel shard needs one whole GPU, so set it to 1 "
            "(or 0 on CPU)")
    return {
        "rollout": RoleResources("rollout", r.num_actors, "actors", r.num_cpus_per_actor,
                                 r.num_gpus_per_actor * r.tensor_parallel_size, "PACK"),
        "judge": RoleResources("judge", j.num_actors, "actors", j.num_cpus_per_actor, j.num_gpus_per_actor, "SPREAD"),
        "learner": RoleResources("learner", l.num_ranks, "ranks", l.num_cpus_per_rank, l.num_gpus_per_rank, "PACK"),
    }


def rollout_engine_kwargs(cfg: Config) -> dict[str, Any]:
    """Extra vLLM arguments that follow from the placement above.

    With tensor_parallel_size > 1 inside a placement group, vLLM would default to its Ray
    executor, which wants one bundle per shard; our engine owns all its GPUs in one bundle, so
    the shards are started as local processes instead.
    """
    return {"distributed_executor_backend": "mp"} if cfg.rollout.tensor_parallel_size > 1 else {}


def _fmt(x: float) -> str:
    return f"{x:g}"


def _alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def check_cluster(cfg: Config, cluster: dict[str, float] | None = None,
                  nodes: list[dict[str, float]] | None = None) -> dict[str, float]:
    """Fail fast, before any actor starts, when the cluster can never hold the config.

    Compares totals per resource with `ray.cluster_resources()` (what the cluster has, busy or
    not: waiting for busy resources is the placement groups' job) and each single actor with the
    largest node, since one actor cannot span nodes. Returns the totals asked for.
    """
    roles = required_resources(cfg)
    cluster = ray.cluster_resources() if cluster is None else cluster
    nodes = _alive_nodes() if nodes is None else nodes
    problems = []
    wanted = {}
    for key in RESOURCE_KEYS:
        wanted[key] = sum(role.total(key) for role in roles.values())
        have = cluster.get(key, 0.0)
        if wanted[key] > have + 1e-9:
            parts = ", ".join(f"{role.role} {_fmt(role.total(key))} = {role.count} {role.unit} × {_fmt(role.each(key))}"
                              for role in roles.values() if role.total(key) > 0)
            problems.append(f"config asks for {_fmt(wanted[key])} {key}s ({parts}); the cluster has {_fmt(have)} {key}s")
    for key in RESOURCE_KEYS:
        largest = max((n.get(key, 0.0) for n in nodes), default=0.0)
        for role in roles.values():
            if role.each(key) > largest + 1e-9 and role.total(key) <= cluster.get(key, 0.0) + 1e-9:
                problems.append(f"one {role.role} actor needs {_fmt(role.each(key))} {key}s on one node; "
                                f"the largest node has {_fmt(largest)}")
    if problems:
        raise ResourceError("not enough resources for this config:\n  " + "\n  ".join(problems) +
                            "\nlower the actor counts or per-actor resources in the config, or add nodes")
    return wanted


@dataclass
class Placement:
    """A role's reserved resources and the `.options(...)` its actors are created with."""
    resources: RoleResources
    group: PlacementGroup | None  # None: nothing to reserve (all-zero bundles)

    @property
    def scheduling(self) -> dict[str, Any]:
        if self.group is None:
            return {}
        # Any free bundle of the group: every bundle fits exactly one actor of the role.
        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=self.group)}

    @property
    def options(self) -> dict[str, Any]:
        """num_cpus, num_gpus and (when reserved) the scheduling strategy for one actor."""
        return {**self.resources.actor_options(), **self.scheduling}


def reserve(cfg: Config, timeout_s: float = PLACEMENT_TIMEOUT_S) -> dict[str, Placement]:
    """check_cluster, then one placement group per role; an unsatisfiable one is an error in
    `timeout_s` (e.g. the GPUs exist but are held by another job, or split over nodes)."""
    check_cluster(cfg)
    roles = required_resources(cfg)
    placements: dict[str, Placement] = {}
    for name in RESERVE_ORDER:
        role, group = roles[name], None
        if role.bundle():
            group = placement_group([role.bundle()] * role.count, strategy=role.strategy,
                                    name=f"{cfg.name}-{name}")
        placements[name] = Placement(role, group)
    waiting = {name: p.group.ready() for name, p in placements.items() if p.group is not None}
    pending = []
    if waiting:
        _, pending = ray.wait(list(waiting.values()), num_returns=len(waiting), timeout=timeout_s)
    if pending:
        stuck = [name for name, ref in waiting.items() if ref in pending]
        details = "; ".join(f"{n}: {placements[n].resources.count} × {placements[n].resources.bundle()} "
                            f"{placements[n].resources.strategy}" for n in stuck)
        free = {k: _fmt(v) for k, v in ray.available_resources().items() if k in RESOURCE_KEYS}
        release(placements)
        raise ResourceError(f"could not reserve resources within {timeout_s:g}s for {details}; "
                            f"free now: {free} (held by other jobs, or not on one node)")
    return placements


def release(placements: dict[str, Placement]) -> None:
    for p in placements.values():
        if p.group is not None:
            remove_placement_group(p.group)
            p.group = None
