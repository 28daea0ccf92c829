"""A named group of identical Ray actors: create N, call one round-robin or all, replace the dead.

Every blocking wait goes through `get`, which turns a hang into a TimeoutError naming the group
and the method, and an actor's death into `ActorDied`, which the pipeline heals.
"""
from __future__ import annotations

import itertools
from typing import Any

import ray


class ActorDied(RuntimeError):
    """An actor this call depended on is gone; replacing it and retrying is safe."""


def _is_actor_death(err: BaseException) -> bool:
    cause = getattr(err, "cause", None)
    return isinstance(err, ray.exceptions.RayActorError) or isinstance(cause, ray.exceptions.RayActorError)


def get(refs, timeout_s: float, what: str):
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"{what}: no answer within {timeout_s:.0f}s") from None
    except ray.exceptions.RayError as e:
        if _is_actor_death(e):
            raise ActorDied(f"{what}: an actor died ({type(e).__name__})") from e
        raise


class ActorGroup:
    def __init__(self, name: str, cls: type, count: int, options: dict, *args, **kwargs):
        self.name = name
        self._remote_cls = ray.remote(cls)
        self._options, self._args, self._kwargs = options, args, kwargs
        self.generation = [0] * count
        self.actors = [self._create(i) for i in range(count)]
        self._next = itertools.cycle(range(count))

    def _create(self, index: int):
        # Named "<group>-<index>" (then "-r1", "-r2" after replacements): findable with ray.get_actor.
        suffix = f"-r{self.generation[index]}" if self.generation[index] else ""
        return self._remote_cls.options(name=f"{self.name}-{index}{suffix}", **self._options).remote(
            *self._args, **self._kwargs)

    def __len__(self) -> int:
        return len(self.actors)

    def next_actor(self):
        return self.actors[next(self._next)]

    def call_all(self, method: str, *args, **kwargs) -> list:
        """Start `method` on every actor; returns ObjectRefs (one per actor)."""
        return [getattr(a, method).remote(*args, **kwargs) for a in self.actors]

    def get_all(self, method: str, *args, timeout_s: float = 600.0, **kwargs) -> list[Any]:
        return get(self.call_all(method, *args, **kwargs), timeout_s, f"{self.name}.{method}")

    def dead_indices(self, timeout_s: float = 60.0) -> list[int]:
        dead = []
        for i, a in enumerate(self.actors):
            try:
                ray.get(a.ready.remote(), timeout=timeout_s)
            except ray.exceptions.RayActorError:
                dead.append(i)
        return dead

    def replace(self, index: int, timeout_s: float = 600.0) -> None:
        ray.kill(self.actors[index])  # no-op for a dead actor; frees a hung one
        self.generation[index] += 1
        self.actors[index] = self._create(index)
        get(self.actors[index].ready.remote(), timeout_s, f"{self.name}[{index}] restart")
