"""A rollout worker whose engine stops after the first bucket of a weight transfer when told to.

A file `<index>.raise` or `<index>.exit` in `faults_dir` arms the next transfer of the engine at
that index of its group: once the first bucket has been received and loaded, the engine raises
(its process lives on) or ends its own process (os._exit, a real death in mid-transfer). The
file is taken (deleted) by the engine that acts on it, so its replacement behaves.
Import as `tests.faulty_rollout`, so Ray workers import it by name."""
from __future__ import annotations

import os

import ray

from actors.rollout import RolloutWorker
from core import weight_transfer


class FaultyRollout(RolloutWorker):
    def __init__(self, *args, faults_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.faults_dir = faults_dir
        self.index = ray.get_runtime_context().get_actor_name().split("-")[1]
        self.fault, self.buckets = None, 0
        receive = weight_transfer.GlooChannel.broadcast
        worker = self

        def broadcast(channel, tensor, src):  # this process only: every actor is its own process
            worker.buckets += 1
            if worker.fault and worker.buckets == 2:
                if worker.fault == "exit":
                    os._exit(1)
                raise RuntimeError("stopped after the first bucket (test fault)")
            receive(channel, tensor, src)

        weight_transfer.GlooChannel.broadcast = broadcast

    def receive_weights(self, update_info: dict) -> None:
        self.fault, self.buckets = None, 0
        for kind in ("raise", "exit"):
            try:
                os.unlink(os.path.join(self.faults_dir, f"{self.index}.{kind}"))
                self.fault = kind
            except FileNotFoundError:
                pass
        super().receive_weights(update_info)


class Idle:
    """A stand-in judge group for pipelines that only sync weights: healing checks it is alive."""

    def ready(self) -> bool:
        return True
