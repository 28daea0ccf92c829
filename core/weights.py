"""Weights on the wire: a state dict as flat numpy byte views plus dtype/shape.

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
