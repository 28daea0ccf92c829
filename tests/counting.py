"""A proxy that counts the calls of some methods of a real object and delegates everything."""
from __future__ import annotations

from collections import Counter


class Counting:
    def __init__(self, target, *methods: str):
        self._target = target
        self.calls: Counter[str] = Counter()
        for name in methods:
            setattr(self, name, self._counted(name))

    def _counted(self, name: str):
        method = getattr(self._target, name)

        def call(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)
        return call

    def __getattr__(self, name: str):
        return getattr(self._target, name)
