"""VLLMEngine on the tiny model: sampling outputs, greedy parity with transformers, weight
reload from the object store and over a collective (served weights hash and logprobs equal the
new learner weights), offsets on BPE."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.engine import VLLMEngine, decode_with_offsets
from core.weights import pack, state_hash

pytestmark = pytest.mark.timeout(300)
PROMPTS = [[5, 6, 7, 8, 9], [40, 41, 42], [70, 71, 72, 73, 74, 75, 76]]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    eng = VLLMEngine(str(tiny_model_dir), dtype="float32", max_model_len=256, kv_cache_gb=0.25, weight_transfer="gloo")
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()


def hf_prompt_logprobs(model, ids: list[int]) -> list[float]:
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return [logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)]


def hf_greedy(model, ids: list[int], max_new: int) -> list[int]:
    out = model.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False,
                         attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def test_sampling_returns_n_consistent_completions(engine):
    groups = engine.generate(PROMPTS, n=4, max_tokens=12, temperature=1.0, seed=3)
    assert len(groups) == len(PROMPTS) and all(len(g) == 4 for g in groups)
    tok = engine.tokenizer
    for group in groups:
        assert len({tuple(c.token_ids) for c in group}) > 1  # n samples differ
        for c in group:
            assert 1 <= len(c.token_ids) <= 12
            assert len(c.logprobs) == len(c.token_ids) == len(c.token_char_offsets)
            assert all(lp <= 0.0 for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")
            assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
            for tid, start in zip(c.token_ids, c.token_char_offsets):
                piece = tok.decode([tid], skip_special_tokens=True)
                assert c.text[start:start + len(piece)] == piece
    again = engine.generate(PROMPTS, n=4, max_tokens=12, temperature=1.0, seed=3)
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in groups]


def test_rollout_logprobs_are_the_model_logprobs(engine, hf_model):
    (c,) = engine.generate([PROMPTS[0]], n=1, max_tokens=10, temperature=1.0, seed=0)[0]
    ref = hf_prompt_logprobs(hf_model, PROMPTS[0] + c.token_ids)[len(PROMPTS[0]) - 1:]
    assert max(abs(a - b) for a, b in zip(c.logprobs, ref)) < 1e-3


def test_greedy_matches_transformers(engine, hf_model):
    for ids, group in zip(PROMPTS, engine.generate(PROMPTS, n=1, max_tokens=16, temperature=0.0)):
        got = group[0].token_ids
        assert got == hf_greedy(hf_model, ids, 16)[: len(got)]


def test_load_weights_serves_exactly_the_new_weights(engine, hf_model, tiny_model_dir):
    old_hash = state_hash(hf_model.named_parameters())
    assert engine.weights_hash() == old_hash
    old_sampled = [c.token_ids for g in engine.generate(PROMPTS, n=2, max_tokens=16, seed=5) for c in g]
    old_lps = engine.prompt_logprobs(PROMPTS)

    new = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5 * p.std().clamp(min=0.02))
    engine.load_weights(pack(new.named_parameters()))

    new_hash = state_hash(new.named_parameters())
    assert new_hash != old_hash and engine.weights_hash() == new_hash
    for ids, lps, old in zip(PROMPTS, engine.prompt_logprobs(PROMPTS), old_lps):
        assert max(abs(a - b) for a, b in zip(lps, hf_prompt_logprobs(new, ids))) < 1e-3
        assert max(abs(a - b) for a, b in zip(lps, old)) > 1e-2
    new_sampled = [c.token_ids for g in engine.generate(PROMPTS, n=2, max_tokens=16, seed=5) for c in g]
    assert new_sampled != old_sampled
    for ids, group in zip(PROMPTS, engine.generate(PROMPTS, n=1, max_tokens=16, temperature=0.0)):
        got = group[0].token_ids
        assert got == hf_greedy(new, ids, 16)[: len(got)]

    # Back to the original weights: the hash follows.
    engine.load_weights(pack(hf_model.named_parameters()))
    assert engine.weights_hash() == old_hash


class LocalClient:
    """vLLM's weight-sync client protocol for one engine in this process."""

    def __init__(self, engine):
        self.engine = engine

    def init_weight_transfer_engine(self, init_info):
        self.engine.init_weight_transfer(init_info)

    def start_weight_update(self):
        self.engine.start_weight_update()

    def update_weights(self, update_info):
        self.engine.receive_weights(update_info)

    def finish_weight_update(self, weight_version=None):
        self.engine.finish_weight_update()


def perturbed(model_dir, seed: int):
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5 * p.std().clamp(min=0.02))
    return model


def test_collective_transfer_in_buckets_serves_exactly_the_sent_weights(engine, hf_model, tiny_model_dir):
    """Learner side and engine side of the gloo transfer in one process: rank 0 here, the engine
    rank 1; small buckets, so most tensors travel several to a bucket and the largest alone."""
    import socket

    from vllm.distributed.weight_transfer import ParamMeta, WeightTransferTrainerFactory

    from learner.weight_transfer import GlooTransfer, LearnerWeights, register

    models = [perturbed(tiny_model_dir, seed) for seed in (2, 3)]
    sources = [LearnerWeights([ParamMeta(n, p.dtype, tuple(p.shape)) for n, p in m.named_parameters()],
                              lambda m=m: ((n, p.detach()) for n, p in m.named_parameters())) for m in models]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    register()
    info = GlooTransfer("127.0.0.1", port, world_size=2, bucket_bytes=64 * 1024, timeout_s=120, rank=0)
    sender = WeightTransferTrainerFactory.trainer_init(info, client=LocalClient(engine), source=sources[0])
    try:
        for model, source in zip(models, sources):  # one group, two transfers
            sender.source = source
            sent = sender.send_weights("1")
            assert sent == sum(p.numel() * 4 for p in model.parameters())  # fp32, all sizes multiples of 16
            assert engine.weights_hash() == state_hash(model.named_parameters())
            for ids, lps in zip(PROMPTS, engine.prompt_logprobs(PROMPTS)):
                assert max(abs(a - b) for a, b in zip(lps, hf_prompt_logprobs(model, ids))) < 1e-3
    finally:
        sender.shutdown()
        engine.load_weights(pack(hf_model.named_parameters()))
    assert engine.weights_hash() == state_hash(hf_model.named_parameters())


def test_hash_sees_a_stale_tied_lm_head_kernel(engine, hf_model):
    """vLLM's reload alone leaves the tied lm_head kernel packed from the old embedding;
    the hash reads served kernels, so it must notice (and load_weights must repair it)."""
    new = {n: p.detach() + 0.01 for n, p in hf_model.named_parameters()}
    engine.llm.collective_rpc("reload_weights", kwargs={
        "weights_iterator": list(new.items()), "is_checkpoint_format": True})
    assert engine.weights_hash() != state_hash(new.items())
    engine.load_weights(pack(new.items()))
    assert engine.weights_hash() == state_hash(new.items())
    engine.load_weights(pack(hf_model.named_parameters()))


def _byte_bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "café naïve 3+4=7", "wait, the total"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.mark.parametrize("fast", [True, False])
def test_offsets_on_byte_level_bpe_with_multibyte_chars(fast):
    tok = _byte_bpe_tokenizer()
    text = "the café: 3+4=7 😀, wait"
    ids = tok.encode(text) + [tok.eos_token_id]
    if not fast:  # the window-decoding path for tokenizers without a Rust backend
        tok = type("Slow", (), {"decode": staticmethod(tok.decode)})()
    got, offsets = decode_with_offsets(tok, ids)
    assert got == text and len(offsets) == len(ids)
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] == len(text)
    # Each char is covered by the first token whose offset reaches it; multi-byte chars
    # split over tokens share one offset.
    assert len(set(offsets)) < len(ids)  # the emoji spans several byte tokens
    assert "".join(text[a:b] for a, b in zip(offsets, offsets[1:] + [len(text)])) == text


def test_seeded_sampling_survives_a_batch_larger_than_one_prefill_chunk(engine):
    # 80 prompts × 8 samples: more prompt tokens than vLLM's default per-step budget on CPU,
    # where a chunked prefill used to crash seeded sampling ("CPU Generator does not use offset").
    ids = [engine.tokenizer.encode(f"Problem: Compute {i} + {i + 3} * 2.\nSolution:\n", add_special_tokens=False)
           for i in range(80)]
    first = engine.generate(ids, n=8, max_tokens=16, temperature=1.0, seed=5)
    again = engine.generate(ids, n=8, max_tokens=16, temperature=1.0, seed=5)
    assert len(first) == 80 and all(len(g) == 8 for g in first)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in again]
