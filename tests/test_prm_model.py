"""The PRM's model and loss without Ray: Qwen's names (what vLLM's Qwen2ForProcessRewardModel
loads), the separator as a special token, the input the step_classifier judge sends, and the
soft-label cross-entropy (plus the trajectory term) against a computation written out here."""
from __future__ import annotations

import math

import pytest
import torch

from learner.prm import (SEPARATOR, Example, ProcessRewardModel, collate, encode, padded_vocab, prm_loss,
                         prm_tokenizer)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return prm_tokenizer(tiny_model_dir)


def test_the_separator_is_one_special_token_and_the_input_is_the_judges(tokenizer):
    sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    assert tokenizer.encode(SEPARATOR, add_special_tokens=False) == [sep]
    assert SEPARATOR in tokenizer.all_special_tokens
    ex = encode(tokenizer, "Compute 2 + 3.", [" Step 1: 2 + 3 = 5\n", "The answer is \\boxed{5}"],
                [1.0, 1.0], [True, True], 1.0)
    text = tokenizer.decode(ex.input_ids)
    assert text == f"Compute 2 + 3.\n\nStep 1: 2 + 3 = 5{SEPARATOR}The answer is \\boxed{{5}}{SEPARATOR}"
    # a separator written inside a step would add a score position: it is removed
    inside = encode(tokenizer, "p", [f"a {SEPARATOR} b"], [1.0], [True], 1.0)
    assert inside.input_ids.count(sep) == 1
    assert padded_vocab(tokenizer, 192) == 192 and padded_vocab(tokenizer, 64) == 192


def test_weights_are_named_as_qwen_prm_checkpoints(tiny_model_dir, tokenizer):
    model = ProcessRewardModel.from_causal_lm(tiny_model_dir, padded_vocab(tokenizer, 192))
    names = set(model.state_dict())
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias", "model.embed_tokens.weight",
            "model.norm.weight", "model.layers.1.self_attn.q_proj.weight"} <= names
    assert not any(n.startswith("lm_head") for n in names)
    assert model.score[2].out_features == 2


def _reference_loss(logits, examples, sep, coef):
    """Soft cross-entropy averaged over all steps, plus coef x BCE(mean step score, outcome)
    averaged over solutions, written as loops."""
    steps, total, traj = 0, 0.0, 0.0
    for i, e in enumerate(examples):
        probs = []
        k = 0
        for t, tok in enumerate(e.input_ids):
            if tok != sep:
                continue
            lp = torch.log_softmax(logits[i, t].double(), -1)
            total += -(e.soft[k] * lp[1] + (1 - e.soft[k]) * lp[0]).item()
            probs.append(lp[1].exp().item())
            k += 1
            steps += 1
        m = sum(probs) / len(probs)
        traj += -(e.outcome * math.log(m) + (1 - e.outcome) * math.log(1 - m))
    return total / steps + coef * traj / len(examples)


@pytest.mark.parametrize("coef", [0.0, 0.5])
def test_loss_is_soft_cross_entropy_at_the_separators(tokenizer, coef):
    sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    examples = [encode(tokenizer, "Compute 7 - 2.", ["Step 1: 7 - 2 = 4", "The answer is 4"], [0.25, 0.0],
                       [True, False], 0.0),
                encode(tokenizer, "Compute 1 + 1.", ["Step 1: 1 + 1 = 2", "Step 2: ok", "So 2"], [0.875, 1.0, 1.0],
                       [True, True, True], 1.0)]
    mb = collate(examples, sep, pad_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    logits = torch.randn(*mb.input_ids.shape, 2, requires_grad=True)
    loss, parts = prm_loss(logits, mb, num_steps=5, num_samples=2, trajectory_coef=coef)
    assert loss.item() == pytest.approx(_reference_loss(logits.detach(), examples, sep, coef), rel=1e-5)
    assert int(mb.at_step.sum()) == 5 and mb.attention_mask[0].sum() == len(examples[0].input_ids)
    loss.backward()
    grad = logits.grad[mb.at_step]  # only the separators get a gradient
    assert logits.grad[~mb.at_step].abs().max() == 0 and grad.abs().min() > 0
    probs = torch.softmax(logits.detach()[mb.at_step], -1)[:, 1]
    right = ((probs >= 0.5) == torch.tensor([True, False, True, True, True])).sum()
    assert parts["step_right"].item() == right.item()


def test_a_step_count_that_does_not_match_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="0 steps"):
        encode(tokenizer, "p", [], [], [], 1.0)
    with pytest.raises(ValueError, match="1 soft labels"):
        encode(tokenizer, "p", ["a", "b"], [1.0], [True, True], 1.0)
    assert isinstance(encode(tokenizer, "p", ["a"], [1.0], [True], 1.0), Example)
