"""The learner side of a collective weight transfer, through vLLM's trainer-side API.

Every learner rank builds a trainer engine with `WeightTransferTrainerFactory.trainer_init` and
calls its `send_weights` together; rank 0 is the sender. It drives the rollout engines through
`EngineClient` (vLLM's `VLLMWeightSyncClient` protocol, over Ray actor handles) and broadcasts
the weights in buckets over the channel that `core.weight_transfer` receives on. Under ZeRO-3
every rank gathers every tensor in the same order (`LearnerWeights`); rank 0 keeps gathering
after a failed broadcast so the other ranks never wait for it.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Iterator

import ray
import torch
from vllm.distributed.weight_transfer.base import (
    ParamMeta,
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    WeightSource,
)
from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

from core.weight_transfer import CHANNELS, PREFIX, BucketInitInfo, BucketUpdateInfo
from core.weights import pack_bucket, padded_nbytes, plan_buckets


class WeightTransferFailed(RuntimeError):
    """A transfer did not complete; the message names the engines that failed and how."""


class LearnerWeights(WeightSource):
    """The learner's weights in Hugging Face names, a tied weight once. `metadata` gives full
    shapes without gathering; iterating gathers one tensor at a time (a collective of all ranks
    under ZeRO-3)."""

    def __init__(self, meta: list[ParamMeta], tensors: Callable[[], Iterator[tuple[str, torch.Tensor]]]):
        self._meta, self._tensors = meta, tensors

    def metadata(self) -> list[ParamMeta]:
        return self._meta

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        return self._tensors()


class EngineClient:
    """vLLM's weight-sync client protocol over rollout actors: each call goes to every engine at
    once and waits at most `timeout_s`. At the first engine that fails (dies, raises, or gives
    no answer in time) it calls `abort` (the sender closes its channel, so the engines still
    receiving fail at once instead of at their timeout), then raises a WeightTransferFailed
    naming every engine that failed and why."""

    def __init__(self, engines: list, names: list[str], timeout_s: float):
        self.engines, self.names, self.timeout_s = engines, names, timeout_s
        self.abort: Callable[[], None] = lambda: None

    def _all(self, method: str, args_of: Callable[[int], tuple] = lambda i: ()) -> None:
        refs = [getattr(e, method).remote(*args_of(i)) for i, e in enumerate(self.engines)]
        failed: dict[int, str] = {}
        pending, deadline = list(refs), time.monotonic() + self.timeout_s
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()),
                                     fetch_local=False)
            if not done:
                failed.update({refs.index(r): f"no answer within {self.timeout_s:g}s" for r in pending})
                self.abort()
                break
            try:
                ray.get(done[0])
            except ray.exceptions.RayError as err:
                if not failed:
                    self.abort()
                failed[refs.index(done[0])] = _describe(err)
        if failed:
            raise WeightTransferFailed(f"{method} failed on " + "; ".join(
                f"{self.names[i]}: {why}" for i, why in sorted(failed.items())))

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        # One rank per engine (tensor_parallel_size 1): engine i is rank rank_offset + i.
        self._all("init_weight_transfer", lambda i: ({**init_info, "rank_offset": init_info["rank_offset"] + i},))

    def start_weight_update(self) -> None:
        self._all("start_weight_update")

    def update_weights(self, update_info: dict[str, Any]) -> None:
        self._all("receive_weights", lambda i: (update_info,))

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        if weight_version is None:
            raise ValueError("an engine's weights need a version")
        self._all("finish_weight_update", lambda i: (int(weight_version),))


def _describe(err: BaseException) -> str:
    if isinstance(err, ray.exceptions.RayActorError):
        return "the actor died"
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    return str(err).strip().splitlines()[0]


@dataclass
class GlooTransfer(TrainerInitInfo):
    """Where rank 0 hosts the group and what every member must agree on."""
    backend: ClassVar[str] = PREFIX + "gloo"
    master_address: str
    master_port: int
    world_size: int  # rank 0 + one rank per engine
    bucket_bytes: int
    timeout_s: float


@dataclass
class NcclTransfer(GlooTransfer):
    """The same transfer over nccl (only the channel differs)."""
    backend: ClassVar[str] = PREFIX + "nccl"


TRANSFERS = {"gloo": GlooTransfer, "nccl": NcclTransfer}


class BucketTrainerEngine(TrainerWeightTransferEngine[GlooTransfer]):
    init_info_cls = GlooTransfer

    @classmethod
    def trainer_init(cls, init_info: GlooTransfer, *, client: EngineClient, source: WeightSource | None = None
                     ) -> "BucketTrainerEngine":
        engine = cls(client=client, source=source, is_sender=init_info.is_sender)
        engine.info, engine.channel, engine._closing = init_info, None, threading.Lock()
        if not engine.is_sender:
            return engine
        client.abort = engine.shutdown
        channel = init_info.backend.removeprefix(PREFIX)
        worker_info = BucketInitInfo(channel, init_info.master_address, init_info.master_port, 1,
                                     init_info.world_size, init_info.bucket_bytes, init_info.timeout_s)
        # The engines block in the rendezvous until rank 0 opens it too.
        with ThreadPoolExecutor(max_workers=1) as pool:
            joined = pool.submit(client.init_weight_transfer_engine, asdict(worker_info))
            try:
                engine.channel = CHANNELS[channel](init_info.master_address, init_info.master_port, 0,
                                                   init_info.world_size, init_info.timeout_s)
            finally:
                joined.result()  # the engines' own error, naming them, comes first
        return engine

    def send_weights(self, weight_version: str | None = None) -> int:
        """Every engine serves the weights as `weight_version` once all buckets arrived; the bytes
        sent. Called on every rank; only rank 0 talks to the engines."""
        meta = self.source.metadata()
        sizes = [padded_nbytes(m.dtype, m.shape) for m in meta]
        tensors = iter(self.source)
        try:
            if self.is_sender:
                self._send(meta, sizes, tensors, weight_version)
        finally:
            for _ in tensors:  # whatever happened, this rank takes part in every gather
                pass
        return sum(sizes) if self.is_sender else 0

    def _send(self, meta: list[ParamMeta], sizes: list[int], tensors: Iterator, weight_version: str | None) -> None:
        channel = self.channel
        if channel is None:
            raise WeightTransferFailed("the transfer group is closed (a transfer failed): connect again")
        self.client.start_weight_update()
        update = BucketUpdateInfo([m.name for m in meta], [str(m.dtype).removeprefix("torch.") for m in meta],
                                  [list(m.shape) for m in meta])
        broken = None
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The engines receive while this thread sends; an engine's failure closes the channel.
            received = pool.submit(self.client.update_weights, asdict(update))
            for bucket in plan_buckets(sizes, self.info.bucket_bytes):
                chunk = [next(tensors) for _ in bucket]  # gathered on every rank, sent or not
                if broken is not None or received.done():
                    continue
                try:
                    for (name, t), i in zip(chunk, bucket):
                        if name != meta[i].name or tuple(t.shape) != meta[i].shape:
                            raise RuntimeError(f"{name} {tuple(t.shape)} is not what metadata() declared: {meta[i]}")
                    channel.broadcast(pack_bucket([t for _, t in chunk], channel.device), src=0)
                except Exception as err:  # noqa: BLE001 - reported with the engines' side below
                    broken = err
                    self.shutdown()
            failed = received.exception()  # names the engines that failed, if any did
        if failed is not None:
            raise failed
        if broken is not None:
            raise WeightTransferFailed(f"broadcast failed: {type(broken).__name__}: {broken}") from broken
        self.client.finish_weight_update(weight_version)

    def shutdown(self) -> None:
        with self._closing:  # the client's abort and this thread may both close
            channel, self.channel = self.channel, None
        if channel is not None:
            channel.close()


def register() -> None:
    """Make the trainer engines known to vLLM in this process (idempotent)."""
    for channel in TRANSFERS:
        try:
            WeightTransferTrainerFactory.register_engine(PREFIX + channel, BucketTrainerEngine)
        except ValueError:  # already registered in this process
            pass


def connect(channel: str, rank: int, address: str, port: int, engines: list, names: list[str],
            source: LearnerWeights, bucket_bytes: int, timeout_s: float, channel_timeout_s: float
            ) -> BucketTrainerEngine:
    """A trainer engine on every rank; rank 0 forms the group with `engines` (named `names`).
    `timeout_s` bounds each call to the engines; `channel_timeout_s` each wait on the channel
    (a peer that died mid-transfer costs the others this long, at most)."""
    register()
    info = TRANSFERS[channel](address, port, 1 + len(engines), bucket_bytes, channel_timeout_s, rank=rank)
    return WeightTransferTrainerFactory.trainer_init(info, client=EngineClient(engines, names, timeout_s),
                                                     source=source)
