"""One DeepSpeed data-parallel rank training a process reward model (learner/prm.py).

A `LearnerRank` in all but its model and loss: the same process group, DeepSpeed engine
settings, checkpoints and full-weight gathering; the model is a `ProcessRewardModel` and a
step is soft-label cross-entropy at the step separators. The labelled solutions are given once
(`examples`, from the object store); each `train_step` names the global batch by index, and
every rank takes its share. All ranks call every method together (collectives).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from core.ray_metrics import PartMetrics
from learner.prm import Example, ProcessRewardModel, collate, prm_loss, save_dir
from learner.rank import LearnerRank, check_engine_settings, deepspeed_engine, resolve_backend
from learner.sft import cosine_lr

_SUMS = ("step_ce", "trajectory_ce", "step_right")


class PRMRank(LearnerRank):
    def __init__(
        self,
        model_path: str,
        rank: int,
        world_size: int,
        master_addr: str,
        master_port: int,
        examples: list[Example],
        separator_id: int,
        pad_id: int,
        vocab_size: int,
        steps: int,
        zero_stage: int = 2,
        lr: float = 3e-4,
        warmup: int = 20,
        weight_decay: float = 0.0,
        micro_batch_size: int = 32,
        grad_clip: float = 1.0,
        trajectory_coef: float = 0.0,
        dtype: str = "float32",
        backend: str = "auto",
        seed: int = 0,
        collective_timeout_s: float = 600.0,
        run_name: str = "",
    ):
        check_engine_settings(zero_stage, dtype)
        self.model_path, self.rank, self.world_size = str(model_path), rank, world_size
        self.zero_stage, self.micro_batch_size = zero_stage, micro_batch_size
        self.examples, self.separator_id, self.pad_id = examples, separator_id, pad_id
        self.vocab_size, self.total_steps, self.peak_lr, self.warmup = vocab_size, steps, lr, warmup
        self.trajectory_coef = trajectory_coef
        self.step = 0
        self.metrics = PartMetrics(run_name, "learner", actor=f"learner-{rank}")
        self._join_process_group(master_addr, master_port, resolve_backend(backend), collective_timeout_s)
        torch.manual_seed(seed)  # the same head on every rank
        model = ProcessRewardModel.from_causal_lm(self.model_path, vocab_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
        self.engine, self.optimizer = deepspeed_engine(model, optimizer, micro_batch_size, grad_clip, zero_stage, dtype)
        self.device = self.engine.device

    def _batches(self, indices: list[int]):
        mine = [self.examples[i] for i in indices[self.rank::self.world_size]]
        return [collate(mine[i:i + self.micro_batch_size], self.separator_id, self.pad_id)
                for i in range(0, len(mine), self.micro_batch_size)]

    def _counts(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        local = torch.tensor([float(sum(int(mb.at_step.sum()) for mb in batches)),
                              float(sum(len(mb.outcome) for mb in batches))])
        steps, samples = self._all_reduce_sum(local)
        return steps, samples

    def train_step(self, indices: list[int]) -> dict:
        """One optimizer step on the examples `indices` (the global batch, the same on every rank)."""
        start = time.perf_counter()
        batches = self._batches(indices)
        if not batches:
            raise ValueError(f"rank {self.rank} got no example of a batch of {len(indices)}; "
                             "the batch must hold at least one example per rank")
        num_steps, num_samples = self._counts(batches)
        lr = cosine_lr(self.step, self.total_steps, self.peak_lr, self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.engine.train()
        sums = torch.zeros(len(_SUMS))
        for i, mb in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(i == len(batches) - 1)
            logits = self.engine(mb.input_ids.to(self.device), mb.attention_mask.to(self.device))
            loss, parts = prm_loss(logits, mb, float(num_steps), float(num_samples), self.trajectory_coef)
            # DeepSpeed averages over ranks; world_size turns that into the global batch's mean.
            self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            sums += torch.stack([parts[k].cpu() for k in _SUMS])
        self.engine.step()
        self.step += 1
        seconds = time.perf_counter() - start
        self.metrics.record("learner_step_seconds", seconds)
        return {**self._report(sums, num_steps, num_samples), "lr": lr, "step_seconds": seconds, "step": self.step}

    @torch.no_grad()
    def evaluate(self, indices: list[int]) -> dict:
        """Loss and step accuracy (a step is right when score >= 0.5 equals its label) on `indices`."""
        batches = self._batches(indices)
        num_steps, num_samples = self._counts(batches)
        self.engine.eval()
        sums = torch.zeros(len(_SUMS))
        for mb in batches:
            logits = self.engine(mb.input_ids.to(self.device), mb.attention_mask.to(self.device))
            _, parts = prm_loss(logits, mb, 1.0, 1.0)
            sums += torch.stack([parts[k].cpu() for k in _SUMS])
        return self._report(sums, num_steps, num_samples)

    def _report(self, sums: torch.Tensor, num_steps: torch.Tensor, num_samples: torch.Tensor) -> dict:
        step_ce, traj_ce, right = self._all_reduce_sum(sums).tolist()
        steps, samples = max(float(num_steps), 1.0), max(float(num_samples), 1.0)
        return {"step_ce": step_ce / steps, "trajectory_ce": traj_ce / samples, "step_accuracy": right / steps,
                "num_steps": int(num_steps), "num_samples": int(num_samples)}

    def save_prm(self, out_dir: str) -> None:
        """Rank 0 writes the PRM's weights and config into `out_dir` (a collective under ZeRO-3)."""
        state = dict(self._full_named_tensors())
        if self.rank == 0:
            save_dir(Path(out_dir), state, self.model_path, self.vocab_size)
