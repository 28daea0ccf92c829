"""The supervised warm start on a very short budget: loss drops, the saved dir loads and generates."""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.arith_task import ArithTaskConfig, is_correct, make_split
from core.prompts import format_prompt
from core.tiny_model import build_tiny_model
from learner.sft import IGNORE, _encode, answer_only, cosine_lr, evaluate_greedy, length_grouped_batches, warm_start


def test_solution_tokens_only_are_trained(tmp_path):
    base = build_tiny_model(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(base)
    row = {"problem": "Compute 1 + 2.", "solution": "Step 1: 1 + 2 = 3\nThe answer is \\boxed{3}"}
    [(ids, labels)] = _encode(tokenizer, [row])
    prompt_len = len(tokenizer(format_prompt(row["problem"]), add_special_tokens=False)["input_ids"])
    answer_len = len(tokenizer(row["solution"], add_special_tokens=False)["input_ids"])
    assert len(ids) == len(labels) == prompt_len + answer_len + 1
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tokenizer.eos_token_id


def test_length_grouped_batches_cover_each_epoch_and_group_lengths():
    lengths = [(i * 37) % 101 for i in range(200)]
    stream = length_grouped_batches(lengths, batch_size=8, seed=0, group=5)
    epoch = [next(stream) for _ in range(25)]  # 200 rows / 8
    assert sorted(i for b in epoch for i in b) == list(range(200))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch) / 25
    assert spread < 30  # random batches of 8 would spread ~80
    assert [next(stream) for _ in range(25)] != epoch  # next epoch is reshuffled


def test_cosine_schedule_warms_up_then_decays():
    lrs = [cosine_lr(s, 100, 1e-3, warmup=5) for s in range(100)]
    assert lrs[0] < lrs[4] == 1e-3
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))
    assert abs(lrs[-1] - 1e-4) < 1e-5


def test_short_warm_start_lowers_loss_and_saves_a_loadable_model(tmp_path):
    base = build_tiny_model(tmp_path / "base")
    rows = make_split(ArithTaskConfig(num_train=64, num_eval=8, seed=1), "train")
    logs: list[str] = []
    stats = warm_start(str(base), str(tmp_path / "sft"), rows, steps=40, lr=3e-3, batch_size=8,
                       seed=0, log=logs.append, num_threads=1)
    early, late = sum(stats["losses"][:5]) / 5, stats["final_loss"]
    assert late < 0.6 * early, (early, late)
    assert len(logs) == 2 and "loss" in logs[0] and "s/step" in logs[0]

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "sft")
    trained = dict(model.named_parameters())
    untrained = dict(AutoModelForCausalLM.from_pretrained(base).named_parameters())
    assert not torch.equal(trained["model.norm.weight"], untrained["model.norm.weight"])
    enc = tokenizer(format_prompt(rows[0]["problem"]), return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]

    accuracy = evaluate_greedy(str(tmp_path / "sft"), rows[:4], max_new_tokens=8, num_threads=1)
    assert 0.0 <= accuracy <= 1.0


def test_answer_only_cuts_about_rate_of_solutions_to_the_answer_and_keeps_the_rest():
    rows = make_split(ArithTaskConfig(num_train=2000, num_eval=8, seed=1), "train")
    mixed = answer_only(rows, 0.6, seed=0)
    cut = [m for m, r in zip(mixed, rows) if m["solution"] != r["solution"]]
    assert 0.55 < len(cut) / len(rows) < 0.65
    assert all(m["solution"] == f"The answer is \\boxed{{{m['answer']}}}" for m in cut)
    assert all(m["problem"] == r["problem"] and m["answer"] == r["answer"] for m, r in zip(mixed, rows))
    assert all(is_correct(m["solution"], m["answer"]) for m in mixed)
    assert answer_only(rows, 0.6, seed=0) == mixed and answer_only(rows, 0.6, seed=1) != mixed
    assert answer_only(rows, 0.0, seed=0) == rows
