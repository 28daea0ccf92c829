"""A named group of identical Ray actors: create N, call one round-robin or call all.

Every blocking wait goes through `get`, which turns a hang into a TimeoutError naming the group
and the method, and a dead actor into an error naming which one.
"""
from __future__ import annotations

import itertools
from typing import Any

import ray


class ActorGroup:
    def __init__(self, name: str, cls: type, count: int, options: dict, *args, **kwargs):
        self.name = name
        remote_cls = ray.remote(cls)
        self.actors = [remote_cls.options(name=None, **options).remote(*args, **kwargs) for _ in range(count)]
        self._next = itertools.cycle(range(count))

    def __len__(self) -> int:
        return len(self.actors)

    def next_actor(self):
        return self.actors[next(self._next)]

    def call_all(self, method: str, *args, **kwargs) -> list:
        """Start `method` on every actor; returns ObjectRefs (one per actor)."""
        return [getattr(a, method).remote(*args, **kwargs) for a in self.actors]

    def get_all(self, method: str, *args, timeout_s: float = 600.0, **kwargs) -> list[Any]:
        return get(self.call_all(method, *args, **kwargs), timeout_s, f"{self.name}.{method}")


def get(refs, timeout_s: float, what: str):
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"{what}: no answer within {timeout_s:.0f}s") from None
    except ray.exceptions.RayActorError as e:
        raise RuntimeError(f"{what}: an actor died ({e.__class__.__name__}): {e}") from e
