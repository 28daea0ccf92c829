"""Weights on the wire: a state dict as flat numpy byte views plus dtype/shape (object store), or
buckets of packed bytes (collective transfer).

Ray stores numpy arrays out-of-band, so a packed state dict is put once and every receiver
maps the same shared-memory buffers without a pickled copy; `unpack` rebuilds torch views
over them. Byte views also carry bfloat16, which numpy cannot represent.
"""
from __future__ import annotations

import hashlib
import warnings
from typing import Iterable

import numpy as np
import torch

Packed = dict[str, tuple[np.ndarray, str, tuple[int, ...]]]


def pack(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Packed:
    out: Packed = {}
    for name, t in named_tensors:
        t = t.detach().to("cpu").contiguous()
        out[name] = (t.view(-1).view(torch.uint8).numpy(), str(t.dtype).removeprefix("torch."), tuple(t.shape))
    return out


def unpack(packed: Packed) -> list[tuple[str, torch.Tensor]]:
    out = []
    for name, (buf, dtype, shape) in packed.items():
        with warnings.catch_warnings():
            # Buffers from the object store are read-only; every consumer only reads them.
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            t = torch.frombuffer(memoryview(buf), dtype=torch.uint8) if buf.size else torch.empty(0, dtype=torch.uint8)
        out.append((name, t.view(getattr(torch, dtype)).reshape(shape)))
    return out


def nbytes(packed: Packed) -> int:
    return sum(buf.nbytes for buf, _, _ in packed.values())


def state_hash(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Order-independent digest of names, dtypes, shapes and exact bytes."""
    h = hashlib.sha256()
    for name, t in sorted(named_tensors, key=lambda kv: kv[0]):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---- buckets: the wire format of a collective weight transfer -----------------------------
# Sender and receivers cut the same list of tensors into the same buckets from metadata alone
# (names, dtypes, shapes), so only the bytes travel. Each tensor starts at a multiple of ALIGN
# bytes, so every slice can be viewed as its own dtype whatever precedes it.

ALIGN = 16


def padded_nbytes(dtype: torch.dtype, shape: Iterable[int]) -> int:
    n = dtype.itemsize
    for d in shape:
        n *= int(d)
    return -(-n // ALIGN) * ALIGN


def plan_buckets(sizes: list[int], limit: int) -> list[range]:
    """Consecutive runs of `sizes` (bytes), in order, each at most `limit` bytes; a single item
    larger than `limit` is a run of its own. Order is kept so a receiver completes one layer
    after another and holds at most a bucket and a partly loaded layer."""
    if limit <= 0:
        raise ValueError(f"bucket limit must be > 0 bytes, got {limit}")
    buckets, start, total = [], 0, 0
    for i, n in enumerate(sizes):
        if i > start and total + n > limit:
            buckets.append(range(start, i))
            start, total = i, 0
        total += n
    if start < len(sizes):
        buckets.append(range(start, len(sizes)))
    return buckets


def pack_bucket(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """One uint8 buffer on `device` holding the tensors' bytes at ALIGN-ed offsets."""
    sizes = [padded_nbytes(t.dtype, t.shape) for t in tensors]
    buf = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
    offset = 0
    for t, size in zip(tensors, sizes):
        raw = t.detach().contiguous().view(-1).view(torch.uint8)
        buf[offset:offset + raw.numel()].copy_(raw)
        offset += size
    return buf


def unpack_bucket(buf: torch.Tensor, names: list[str], dtypes: list[torch.dtype],
                  shapes: list[tuple[int, ...]]) -> list[tuple[str, torch.Tensor]]:
    """Views into `buf` (as `pack_bucket` laid it out), one per name; nothing is copied."""
    out, offset = [], 0
    for name, dtype, shape in zip(names, dtypes, shapes):
        n = dtype.itemsize
        for d in shape:
            n *= int(d)
        out.append((name, buf[offset:offset + n].view(dtype).view(shape)))
        offset += padded_nbytes(dtype, shape)
    return out
