"""One real learner step moves the policy the way the advantages say (DeepSpeed ZeRO-2 on CPU,
gloo, world size 1, the tiny model), and does not move it without a signal."""
from __future__ import annotations

import os
import socket

import pytest
import torch
from transformers import AutoTokenizer

from core.records import EXPERIENCE_SCHEMA, to_table
from learner.loss import token_logprobs

pytestmark = pytest.mark.timeout(300)

PROMPT = "Compute (2 + 3) * 2.\n"
RESPONSES = ["2 + 3 = 5\n5 * 2 = 10\nThe answer is 10.", "2 + 3 = 6\n6 * 2 = 12\nThe answer is 12."]


@pytest.fixture(scope="module")
def rank_factory(tiny_model_dir):
    """Builds learner ranks in this process; the process group and environment are undone after."""
    from learner.rank import LearnerRank

    saved = dict(os.environ)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def make():
        return LearnerRank(str(tiny_model_dir), rank=0, world_size=1, master_addr="127.0.0.1",
                           master_port=port, zero_stage=2, lr=1e-3, micro_batch_size=2,
                           backend="gloo", seed=0)
    yield make
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


def _ids(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    prompt = tok.encode(PROMPT, add_special_tokens=False)
    return prompt, [tok.encode(r, add_special_tokens=False) + [tok.eos_token_id] for r in RESPONSES]


def _response_logprobs(model, prompt, responses) -> list[float]:
    """Summed log-probability of each response given the prompt (a transformers forward)."""
    out = []
    with torch.no_grad():
        for response in responses:
            ids = torch.tensor([prompt + response])
            lp = token_logprobs(model(input_ids=ids).logits, ids)[0, len(prompt) - 1:]
            out.append(lp.sum().item())
    return out


def _step(rank, prompt, responses, signs) -> tuple[list[float], list[float]]:
    model = rank.engine.module
    model.eval()
    rows = []
    for i, (response, sign) in enumerate(zip(responses, signs)):
        ids = torch.tensor([prompt + response])
        with torch.no_grad():  # the rollout policy is the current one: exactly on-policy
            lp = token_logprobs(model(input_ids=ids).logits, ids)[0, len(prompt) - 1:].tolist()
        rows.append(dict(prompt_id="p", group_id="g", sample_index=i, policy_version=0,
                         input_ids=prompt + response, prompt_len=len(prompt),
                         advantages=[float(sign)] * len(response), rollout_logprobs=lp,
                         reward=float(sign > 0), outcome_correct=sign > 0, num_thoughts=1))
    before = _response_logprobs(model, prompt, responses)
    stats = rank.train_step([to_table(rows, EXPERIENCE_SCHEMA)])
    assert stats["num_samples"] == 2 and stats["ratio"] == pytest.approx(1.0, abs=1e-5)
    model.eval()
    return before, _response_logprobs(model, prompt, responses)


def test_one_step_raises_the_positive_response_and_lowers_the_negative(rank_factory, tiny_model_dir):
    prompt, responses = _ids(tiny_model_dir)
    before, after = _step(rank_factory(), prompt, responses, signs=[1.0, -1.0])
    assert after[0] > before[0] + 0.1, (before, after)
    assert after[1] < before[1] - 0.1, (before, after)


def test_all_zero_advantages_move_nothing(rank_factory, tiny_model_dir):
    prompt, responses = _ids(tiny_model_dir)
    before, after = _step(rank_factory(), prompt, responses, signs=[0.0, 0.0])
    assert after == pytest.approx(before, abs=1e-6)  # the check above would fail here
