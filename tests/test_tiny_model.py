"""The locally built model directory loads like any Hugging Face model and its tokenizer is exact."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.mark.parametrize("text", [
    "Problem: Compute 3 + 4 * 2.\nSolution:\nStep 1: 3 + 4 = 7\n\n\tThe answer is \\boxed{14}",
    "  leading and trailing spaces  ", "", "~!@#$%^&*()_+{}|:<>?`-=[]\\;',./\"",
])
def test_tokenizer_round_trips_through_auto_tokenizer(tiny_model_dir, text):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert len(ids) == len(text)  # one token per character: the tiny model reads characters


def test_characters_outside_ascii_are_dropped_not_fatal(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.decode(tok.encode("café = 3 €", add_special_tokens=False)) == "caf = 3 "


def test_model_loads_and_ties_embeddings(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.hidden_size // model.config.num_attention_heads == 32  # vLLM CPU needs >= 32
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tok.eos_token_id is not None and tok.eos_token_id < model.config.vocab_size
    logits = model(torch.tensor([tok.encode("1 + 1 =", add_special_tokens=False)])).logits
    assert logits.shape[-1] == model.config.vocab_size
