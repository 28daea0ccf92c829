"""A tiny Qwen2-style causal LM and a character-level tokenizer, built locally.

Nothing is fetched from a hub: the embedded default and the tests build their model here and
save it as an ordinary Hugging Face directory, so every loader in the project (transformers,
vLLM, DeepSpeed) takes the same path it takes for a real model.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


class TinyModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 2
    num_heads: int = 4  # head_dim 32: vLLM's CPU attention rejects 16
    num_kv_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 0


def byte_vocab() -> list[str]:
    """Special tokens, then one token per ASCII byte (in GPT-2's printable byte alphabet).

    ASCII only: whatever the model samples is then valid text; other characters are dropped.
    """
    b2u = _bytes_to_unicode()
    return [PAD, EOS, UNK] + [b2u[b] for b in range(128)]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-character table (what byte-level BPE stores)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def build_tokenizer(out_dir: str | Path):
    """A character-level fast tokenizer that round-trips ASCII text exactly.

    It is byte-level BPE with no merges over the ASCII bytes: one token per character; a
    character outside ASCII is dropped. transformers
    loads a qwen2 directory with Qwen2Tokenizer, which installs its own byte-level
    pre-tokenizer; a plain character vocabulary would lose its whitespace there.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(byte_vocab())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
        model_max_length=4096, clean_up_tokenization_spaces=False,
    )
    hf.save_pretrained(str(out_dir))
    return hf


def build_tiny_model(out_dir: str | Path, cfg: TinyModelConfig | None = None) -> Path:
    """Write tokenizer + randomly initialised Qwen2 weights to `out_dir` and return it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = cfg or TinyModelConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up: friendlier matmul shapes
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(str(out), safe_serialization=True)
    gen = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(gen))
    return out
