"""One DeepSpeed data-parallel rank of the learner: a plain class, usable with or without Ray.

All ranks are built with the same arguments (except `rank`) and must call every method
together: train_step, export_weights, connect_engines, send_weights, weights_hash, save_* and
load_checkpoint are collectives.
"""
from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import deepspeed
import pyarrow as pa
import torch
from transformers import AutoModelForCausalLM

from core.ray_metrics import PartMetrics
from core.weights import Packed, pack, state_hash
from learner import checkpoints
from learner.batching import MicroBatch, concat_tables, micro_batches, rows_of, shard_rows
from learner.loss import policy_loss, token_logprobs

# DeepSpeed config fragment per training dtype (master weights stay fp32 in the optimizer).
DTYPE_CONFIGS: dict[str, dict] = {
    "float32": {},
    "bfloat16": {"bf16": {"enabled": True}},
    "float16": {"fp16": {"enabled": True, "initial_scale_power": 16}},
}
_STAT_NAMES = ("loss", "clip_frac", "ratio", "kl", "kl_ref")
# Files of a model directory that save_hf writes itself rather than copies.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'auto', 'nccl' or 'gloo', got {backend!r}")
    return backend


def _disable_cpu_op_builds() -> None:
    """Keep DeepSpeed's CPU accelerator from JIT-compiling C++ ops (a shared-memory all-reduce on
    process-group start, ~80 s and a compiler needed). Gloo and torch's AdamW need none of them."""
    import deepspeed.ops
    for name in deepspeed.ops.__compatible_ops__:
        deepspeed.ops.__compatible_ops__[name] = False


def check_engine_settings(zero_stage: int, dtype: str) -> None:
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage}")
    if dtype not in DTYPE_CONFIGS:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_CONFIGS)}, got {dtype!r}")


def deepspeed_engine(model, optimizer, micro_batch_size: int, grad_clip: float, zero_stage: int, dtype: str):
    """DeepSpeed's engine and optimizer for `model` (every rank of a learner builds the same)."""
    config = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        # Accumulation length varies per call; train_step marks the boundary itself.
        "gradient_accumulation_steps": 1,
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        **DTYPE_CONFIGS[dtype],
    }
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine, optimizer


class LearnerRank:
    def __init__(
        self,
        model_path: str,
        rank: int,
        world_size: int,
        master_addr: str,
        master_port: int,
        zero_stage: int = 2,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        micro_batch_size: int = 8,
        grad_clip: float = 1.0,
        clip_eps: float = 0.2,
        kl_coef: float = 0.0,
        dtype: str = "float32",
        backend: str = "auto",
        seed: int = 0,
        gradient_checkpointing: bool = False,
        collective_timeout_s: float = 600.0,
        run_name: str = "",
        weight_channel: str = "auto",
        weight_bucket_mb: float = 256.0,
        weight_timeout_s: float = 120.0,
    ):
        check_engine_settings(zero_stage, dtype)
        self.model_path, self.rank, self.world_size = str(model_path), rank, world_size
        self.zero_stage, self.micro_batch_size = zero_stage, micro_batch_size
        self.clip_eps, self.kl_coef = clip_eps, kl_coef
        self.step = 0
        # Collective weight sync (connect_engines / send_weights): channel, bucket size, timeout.
        self.weight_channel, self.weight_bucket_bytes = weight_channel, int(weight_bucket_mb * 2**20)
        self.collective_timeout_s, self.weight_timeout_s = collective_timeout_s, weight_timeout_s
        self._transfer = None
        self.metrics = PartMetrics(run_name, "learner", actor=f"learner-{rank}")  # Ray's metrics export
        self._join_process_group(master_addr, master_port, resolve_backend(backend), collective_timeout_s)
        torch.manual_seed(seed)

        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
        model.config.use_cache = False
        if gradient_checkpointing:
            model.gradient_checkpointing_enable()
        pad = model.config.pad_token_id
        self.pad_id = pad if pad is not None else (model.config.eos_token_id or 0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.engine, _ = deepspeed_engine(model, optimizer, micro_batch_size, grad_clip, zero_stage, dtype)
        self.device = self.engine.device
        self.ref_model = self._load_reference(dtype) if kl_coef > 0 else None

    def _join_process_group(self, addr: str, port: int, backend: str, timeout_s: float) -> None:
        local_rank = self.rank % torch.cuda.device_count() if torch.cuda.device_count() > 1 else 0
        os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK=str(local_rank),
                          MASTER_ADDR=str(addr), MASTER_PORT=str(port))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        if deepspeed.get_accelerator().device_name() == "cpu":
            _disable_cpu_op_builds()
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False,
                                   timeout=timedelta(seconds=timeout_s))

    def _load_reference(self, dtype: str) -> torch.nn.Module:
        # A full frozen copy per rank: fine for small models; large ones would shard it with ZeRO-3.
        ref = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, dtype))
        ref.config.use_cache = False
        return ref.to(self.device).eval().requires_grad_(False)

    # ---- training -------------------------------------------------------------------------

    def train_step(self, tables: list[pa.Table]) -> dict:
        """One optimizer step on the global batch `tables` (every rank gets all of it)."""
        start = time.perf_counter()
        rows = rows_of(concat_tables(tables))
        shard = shard_rows(rows, self.rank, self.world_size)
        batches = micro_batches(shard, self.micro_batch_size, self.pad_id)
        local_tokens = sum(float(mb.response_mask.sum()) for mb in batches)
        global_tokens = self._all_reduce_sum(torch.tensor([local_tokens]))[0]

        self.engine.train()
        totals = torch.zeros(len(_STAT_NAMES))
        for i, mb in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(i == len(batches) - 1)
            loss, stats = self._micro_batch_loss(mb, global_tokens)
            # DeepSpeed averages gradients over ranks; scaling by world_size turns that average
            # of per-rank sums into the token mean over the global batch.
            self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            totals += torch.stack([loss.detach().cpu()] + [stats[k].cpu() for k in _STAT_NAMES[1:]])
        grad_norm = self._grad_norm_before_step()
        self.engine.step()
        if grad_norm is None:
            grad_norm = self.engine.get_global_grad_norm()
        self.step += 1

        totals = self._all_reduce_sum(totals)
        seconds = time.perf_counter() - start
        self.metrics.record("learner_step_seconds", seconds)
        self.metrics.record("learner_tokens_per_second", float(global_tokens) / seconds)
        trained = [r for r in shard if r.key is not None]
        return {
            **{name: float(v) for name, v in zip(_STAT_NAMES, totals)},
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "num_samples": len(rows),
            "num_tokens": int(global_tokens),
            "step_seconds": seconds,
            "tokens_per_s": float(global_tokens) / seconds,
            "sample_keys": [r.key for r in trained],
            "policy_versions": [r.policy_version for r in trained],
            "rewards": [r.reward for r in trained],
            "step": self.step,
            "lr": float(self.engine.get_lr()[0]),
        }

    def _micro_batch_loss(self, mb: MicroBatch, num_tokens: torch.Tensor):
        ids, attn = mb.input_ids.to(self.device), mb.attention_mask.to(self.device)
        logits = self.engine(input_ids=ids, attention_mask=attn, use_cache=False).logits
        ref_logprobs = None
        if self.ref_model is not None:
            with torch.no_grad():
                ref_logprobs = token_logprobs(self.ref_model(input_ids=ids, attention_mask=attn).logits, ids)
        return policy_loss(
            token_logprobs(logits, ids),
            mb.rollout_logprobs.to(self.device),
            mb.advantages.to(self.device),
            mb.response_mask.to(self.device),
            clip_eps=self.clip_eps,
            ref_logprobs=ref_logprobs,
            kl_coef=self.kl_coef,
            num_tokens=num_tokens.to(self.device),
        )

    def _grad_norm_before_step(self) -> float | None:
        """ZeRO stages report the pre-clip norm after step(); without ZeRO we measure it here."""
        if self.zero_stage != 0:
            return None
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def _all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, torch.float64 if self.device.type == "cpu" else torch.float32)
        torch.distributed.all_reduce(t)
        return t.cpu()

    # ---- weights ---------------------------------------------------------------------------

    def _state_entries(self, tied: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, tensor) of every state_dict entry, not gathered. `tied=False` lists a tied
        weight once (as `named_parameters()` does): what the engines need and hash."""
        seen: set[int] = set()
        for name, t in self.engine.module.state_dict(keep_vars=True).items():
            if not tied and id(t) in seen:
                continue
            seen.add(id(t))
            yield name, t

    def _full_named_tensors(self, tied: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """`_state_entries` with full tensors. Under ZeRO-3 each parameter is gathered in turn
        (a collective: all ranks iterate fully)."""
        for name, t in self._state_entries(tied):
            if hasattr(t, "ds_id"):  # a ZeRO-3 partitioned parameter
                with deepspeed.zero.GatheredParameters([t]):
                    yield name, t.detach().clone()
            else:
                yield name, t.detach()

    def export_weights(self) -> Packed | None:
        """Rank 0: the full HF-named state dict, packed for the object store; others: None."""
        if self.rank == 0:
            return pack(self._full_named_tensors(tied=False))
        for _ in self._full_named_tensors(tied=False):
            pass
        return None

    def connect_engines(self, engines: list, names: list[str], address: str, port: int) -> None:
        """Form the weight-transfer group of rank 0 (hosting it at address:port) and the rollout
        engines `engines` (Ray actor handles, named `names` in errors); every rank calls this."""
        from core.weight_transfer import resolve_channel
        from learner.weight_transfer import LearnerWeights, connect
        from vllm.distributed.weight_transfer.base import ParamMeta

        self.close_engines()
        meta = [ParamMeta(name, t.dtype, tuple(getattr(t, "ds_shape", t.shape)))
                for name, t in self._state_entries(tied=False)]
        source = LearnerWeights(meta, lambda: self._full_named_tensors(tied=False))
        self._transfer = connect(resolve_channel(self.weight_channel), self.rank, address, port, engines, names,
                                 source, self.weight_bucket_bytes, self.collective_timeout_s,
                                 self.weight_timeout_s)

    def send_weights(self, version: int) -> int:
        """Stream the weights to the connected engines, which serve them as `version` once every
        bucket has arrived; returns the bytes rank 0 sent (0 on other ranks). A failure closes
        the group: connect_engines again before the next send."""
        if self._transfer is None:
            raise RuntimeError("no engines connected: call connect_engines first")
        try:
            return self._transfer.send_weights(str(version))
        except BaseException:
            self.close_engines()
            raise

    def close_engines(self) -> None:
        if self._transfer is not None:
            transfer, self._transfer = self._transfer, None
            transfer.shutdown()

    def weights_hash(self) -> str:
        return state_hash(self._full_named_tensors(tied=False))

    def save_hf(self, out_dir: str) -> None:
        """Rank 0 writes a Hugging Face model directory (weights, config, tokenizer files)."""
        state = dict(self._full_named_tensors())
        if self.rank != 0:
            return
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.engine.module.save_pretrained(str(out), state_dict=state, safe_serialization=True)
        for f in Path(self.model_path).iterdir():
            if f.is_file() and not f.name.endswith(_WEIGHT_SUFFIXES) and not (out / f.name).exists():
                shutil.copy2(f, out / f.name)

    # ---- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, ckpt_dir: str, client_state: dict, keep: int = 2) -> None:
        """Model, optimizer and scheduler state of every rank, plus the driver's `client_state`,
        as checkpoint "step<N>" of `ckpt_dir`: complete or absent (learner/checkpoints.py).

        Every rank writes its files; the ranks then hash them between them; rank 0 writes the
        manifest, points `latest` at the new checkpoint and keeps the `keep` newest complete ones.
        `ckpt_dir` must be one directory all ranks can write (a shared filesystem across nodes).
        """
        tag, dist = checkpoints.tag_for(self.step), torch.distributed
        tag_dir = Path(ckpt_dir) / tag
        if self.rank == 0:
            shutil.rmtree(tag_dir, ignore_errors=True)  # left by a save that did not finish
        dist.barrier()
        state = {"client_state": client_state, "learner_step": self.step}
        # DeepSpeed's own `latest` is written without a rename; checkpoints.commit writes it.
        self.engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=state, save_latest=False)
        names = [checkpoints.list_files(tag_dir) if self.rank == 0 else None]
        dist.broadcast_object_list(names, src=0)
        described = [None] * self.world_size
        dist.all_gather_object(described, checkpoints.describe_files(tag_dir, names[0][self.rank::self.world_size]))
        if self.rank == 0:
            checkpoints.write_manifest(tag_dir, {k: v for part in described for k, v in part.items()})
            checkpoints.commit(ckpt_dir, tag, keep)
        dist.barrier()  # no rank returns before the checkpoint is committed

    def load_checkpoint(self, ckpt_dir: str, tag: str | None = None) -> dict:
        """Restore checkpoint `tag` of `ckpt_dir` (default: the newest complete one); returns the
        driver's client_state. The driver picks and verifies the tag (checkpoints.find) so that
        every rank loads the same one."""
        if tag is None:
            tag = checkpoints.find(ckpt_dir).tag
            if tag is None:
                raise FileNotFoundError(f"no complete checkpoint in {ckpt_dir}")
        path, state = self.engine.load_checkpoint(str(ckpt_dir), tag=tag, load_optimizer_states=True,
                                                  load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"DeepSpeed found no checkpoint {tag} in {ckpt_dir}")
        self.step = int(state["learner_step"])
        return state["client_state"]
