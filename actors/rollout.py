"""Rollout: a policy engine that turns prompts into rollout records (core.records.ROLLOUT_SCHEMA).

`RolloutWorker` is a plain class (tests use it directly); `RolloutActor` is the same class as
a Ray actor, whose resources the caller sets with `.options(num_cpus=..., num_gpus=...)`.

New weights arrive whole from the object store (`update_weights`) or over a collective from
learner rank 0, which drives `init_weight_transfer`, `start_weight_update`, `receive_weights`
and `finish_weight_update` (learner.weight_transfer.EngineClient). The version advances only
when a transfer finishes; from its start until then `version()` is None: a transfer that fails
midway leaves part old, part new weights, which never serve (the run replaces the engine).
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import ray
import torch

from core.engine import VLLMEngine
from core.ray_metrics import PartMetrics
from core.records import ROLLOUT_SCHEMA, to_table
from core.weights import Packed, nbytes, padded_nbytes

PROMPT_FIELDS = ("prompt_id", "problem", "prompt_text", "gold_answer")


class RolloutWorker:
    def __init__(self, model_path: str, run_name: str = "", **engine_kwargs: Any):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.engine = VLLMEngine(model_path, **engine_kwargs)
        self._tokens_generated = 0
        self._samples_generated = 0
        self._generate_seconds = 0.0
        self._last_sync_seconds = 0.0
        self._last_sync_bytes = 0
        self._sync_started = self._busy_until = time.monotonic()
        self.metrics = PartMetrics(run_name, "rollout")  # Ray's metrics export, tagged with this actor

    def ready(self) -> bool:
        return True

    def version(self) -> int | None:
        """The policy version served; None while the weights are not one whole version."""
        return self.engine.version

    def generate(
        self,
        prompts: list[dict],
        n: int,
        max_tokens: int,
        temperature: float = 1.0,
        seed: int | None = None,
        top_p: float = 1.0,
        stop: list[str] | None = None,
    ) -> pa.Table:
        """n samples per prompt, one row each, all from the version served during the call.

        `prompt_text` is already formatted (chat template applied), so no special tokens are
        added. A prompt may carry its own `group_id` (e.g. to re-issue a group idempotently);
        otherwise a fresh one is made from prompt id, version and a random suffix.
        """
        for i, p in enumerate(prompts):
            missing = [f for f in PROMPT_FIELDS if f not in p]
            if missing:
                raise ValueError(f"prompt #{i} lacks fields {missing} (needs {list(PROMPT_FIELDS)})")
        start = time.monotonic()
        version = self.engine.version
        if version is None:
            raise RuntimeError("this engine holds incomplete weights (a weight transfer did not finish)")
        prompt_ids = [self.tokenizer.encode(p["prompt_text"], add_special_tokens=False) for p in prompts]
        groups = self.engine.generate(prompt_ids, n, max_tokens, temperature, top_p, seed, stop)
        rows = []
        for prompt, ids, completions in zip(prompts, prompt_ids, groups):
            group_id = prompt.get("group_id") or f"{prompt['prompt_id']}@v{version}-{uuid.uuid4().hex[:8]}"
            for index, c in enumerate(completions):
                rows.append({
                    "prompt_id": str(prompt["prompt_id"]),
                    "group_id": group_id,
                    "sample_index": index,
                    "problem": prompt["problem"],
                    "prompt_token_ids": ids,
                    "response_token_ids": c.token_ids,
                    "response_text": c.text,
                    "token_char_offsets": c.token_char_offsets,
                    "rollout_logprobs": c.logprobs,
                    "policy_version": version,
                    "finish_reason": c.finish_reason,
                    "gold_answer": prompt["gold_answer"],
                })
        end = time.monotonic()
        tokens = sum(len(r["response_token_ids"]) for r in rows)
        self._generate_seconds += end - start
        self._tokens_generated += tokens
        self.metrics.record("rollout_tokens", tokens)
        self.metrics.record("rollout_generate_seconds", end - start)
        self._samples_generated += len(rows)
        self._busy_until = end
        return to_table(rows, ROLLOUT_SCHEMA)

    def update_weights(self, packed: Packed, version: int) -> int:
        """Serve `packed` (HF names; pass its ObjectRef as a top-level argument) as `version`."""
        start = time.monotonic()
        self.engine.load_weights(packed)
        self.engine.version = int(version)
        end = time.monotonic()
        self._last_sync_seconds = end - start
        self._last_sync_bytes = nbytes(packed)
        self._busy_until = end
        return self.engine.version

    # ---- weights over a collective (vLLM's weight-sync client calls, in this order) ----------

    def init_weight_transfer(self, init_info: dict) -> None:
        self.engine.init_weight_transfer(init_info)

    def start_weight_update(self) -> None:
        self._sync_started = time.monotonic()
        self.engine.version = None
        self.engine.start_weight_update()

    def receive_weights(self, update_info: dict) -> None:
        self.engine.receive_weights(update_info)
        self._last_sync_bytes = sum(padded_nbytes(getattr(torch, d), s)
                                    for d, s in zip(update_info["dtype_names"], update_info["shapes"]))

    def finish_weight_update(self, version: int) -> int:
        self.engine.finish_weight_update()
        self.engine.version = int(version)
        self._busy_until = time.monotonic()
        self._last_sync_seconds = self._busy_until - self._sync_started
        return self.engine.version

    def weights_hash(self) -> str | None:
        """The served weights' hash; None where the engine cannot read them back (tensor-parallel
        shards): a check that cannot be made is reported as not made."""
        try:
            return self.engine.weights_hash()
        except NotImplementedError:
            return None

    def stats(self) -> dict[str, float]:
        return {
            "policy_version": float("nan") if self.engine.version is None else float(self.engine.version),
            "tokens_generated": float(self._tokens_generated),
            "samples_generated": float(self._samples_generated),
            "generate_seconds": self._generate_seconds,
            "tokens_per_second": self._tokens_generated / max(self._generate_seconds, 1e-9),
            "idle_seconds": time.monotonic() - self._busy_until,
            "last_sync_seconds": self._last_sync_seconds,
            "last_sync_bytes": float(self._last_sync_bytes),
        }

    def shutdown(self) -> None:
        self.engine.shutdown()


RolloutActor = ray.remote(RolloutWorker)
