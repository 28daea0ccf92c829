"""The LLM judges end to end through real vLLM on the tiny local model: prompt construction,
sampling, parsing, fusion. The tiny model is random, so its replies are garbage: exactly what
exercises the fallbacks and the judge_error paths."""
from __future__ import annotations

import json

import pytest
import torch

from reward_service.__main__ import main as cli
from reward_service.llm import LocalLLM, PromptTooLong
from reward_service.scorer import Scorer
from reward_service.steps import split_auto

pytestmark = pytest.mark.timeout(600)

PROBLEM = "What is (2 + 3) * 2?"
CORRECT = "2 + 3 = 6.\nSo 6 * 2 = 12.\nWait, 2 + 3 = 5, not 6.\n5 * 2 = 10. The answer is \\boxed{10}."
WRONG = "2 + 3 = 6.\n6 * 2 = 12.\nThe answer is \\boxed{12}."
LABELS = {"correct", "incorrect", "uncertain"}


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    local = LocalLLM(str(tiny_model_dir), max_model_len=1024, kv_cache_gb=0.25, dtype="float32")
    yield local
    local.shutdown()



def _check(v, text):
    assert len(v.step_scores) == len(v.step_spans) >= 2
    assert all(0.0 <= s <= 1.0 for s in v.step_scores)
    assert v.step_spans[0][0] == 0 and v.step_spans[-1][1] == len(text)
    assert set(v.thought_labels) <= LABELS and v.thought_spans[-1][1] == len(text)


def test_local_choice_logprobs_are_the_models_teacher_forced_logprobs(llm, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    prompt, choices = "Is the step correct (Yes/No)?", [" Yes", " No"]
    (got,) = llm.choice_logprobs([prompt], choices)
    head = llm.tokenizer.encode(prompt)
    for choice, value in zip(choices, got):
        tail = llm.tokenizer.encode(choice, add_special_tokens=False)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([head + tail])).logits[0].double(), -1)
        expected = sum(logp[len(head) - 1 + k, t].item() for k, t in enumerate(tail))
        assert value == pytest.approx(expected, abs=1e-3)


def test_local_generate_and_context_limit(llm):
    out = llm.generate(["abc", "de"], n=3, temperature=1.0, max_tokens=8, seed=1)
    assert [len(g) for g in out] == [3, 3] and all(len(t) <= 8 for g in out for t in g)
    (greedy,) = llm.generate(["abc"], n=2, temperature=0.0, max_tokens=8)  # vLLM wants n=1
    assert len(greedy) == 2 and greedy[0] == greedy[1]
    with pytest.raises(PromptTooLong):
        llm.generate(["x" * 2000], max_tokens=8)


def test_tpgrpo_on_vllm_falls_back_to_intrinsic_signals_on_garbage(llm, grader):
    scorer = Scorer(judge="tpgrpo", llm=llm, max_tokens=48, splitter="lines", grader=grader)
    v = scorer.score(PROBLEM, CORRECT, "10")
    assert v.judge_error is None and v.outcome_correct
    _check(v, CORRECT)
    raw = json.loads(v.judge_raw)
    assert raw["parsed"] == 0 and len(raw["replies"]) == 1  # a random model: unreadable
    # The rules' interval: the reflection restates step 0's "2 + 3", so steps 0 and 1 are wrong.
    assert raw["fallback_flags"] == [0, 1] and v.step_scores == [0.0, 0.0, 1.0, 1.0]
    assert v.step_labels == ["incorrect", "incorrect", "correct", "correct"]
    w = scorer.score(PROBLEM, WRONG, "10")
    assert w.judge_error is None and not w.outcome_correct
    _check(w, WRONG)
    assert w.step_scores == [0.5, 0.0, 0.0]  # the steps stating the wrong 12 match it
    assert w.thought_labels == ["uncertain", "incorrect"]


def test_tpgrpo_errors_are_judge_errors(llm, grader):
    strict = Scorer(judge="tpgrpo", llm=llm, max_tokens=16, on_malformed="error", grader=grader)
    v = strict.score(PROBLEM, CORRECT, "10")
    assert v.outcome_correct and v.judge_error.startswith("ValueError: tpgrpo: no readable")
    v = strict.score(PROBLEM, "2 + 3 = 5.\n" * 120 + "\\boxed{10}", "10")  # beyond 1024 tokens
    assert v.judge_error.startswith("PromptTooLong")


def test_rprm_on_vllm_averages_k_yes_no_probabilities(llm, grader):
    scorer = Scorer(judge="rprm", llm=llm, samples=2, max_tokens=16, splitter="lines",
                    grader=grader)
    v = scorer.score(PROBLEM, WRONG, "10")
    assert v.judge_error is None
    _check(v, WRONG)
    raw = json.loads(v.judge_raw)
    assert [len(c) for c in raw["critiques"]] == [2, 2, 2]
    assert v.step_scores == pytest.approx([sum(p) / 2 for p in raw["p_yes"]], abs=1e-6)
    assert all(0.0 < p < 1.0 for ps in raw["p_yes"] for p in ps)


def test_self_on_vllm_garbage_is_a_judge_error_or_accepted(llm, grader):
    v = Scorer(judge="self", llm=llm, max_tokens=24, grader=grader).score(PROBLEM, WRONG, "10")
    assert v.judge_error.startswith("ValueError: self: no \\boxed{index}")
    lenient = Scorer(judge="self", llm=llm, max_tokens=24, on_malformed="accept", grader=grader)
    v = lenient.score(PROBLEM, WRONG, "10")
    assert v.judge_error is None and v.first_error_index == -1 and v.trajectory_score == 1.0
    _check(v, WRONG)


def test_llm_segmenter_on_vllm_always_yields_spans_of_the_original(llm, grader):
    scorer = Scorer(judge="tpgrpo", llm=llm, max_tokens=16, splitter="llm",
                    splitter_options={"llm": llm, "max_tokens": 48}, grader=grader)
    v = scorer.score(PROBLEM, CORRECT, "10")
    assert v.judge_error is None
    assert v.step_spans == split_auto(CORRECT)  # garbage quotes: the deterministic fallback
    long = "Step 1: " + "add the numbers " * 80 + "\nStep 2: done"
    assert scorer.split(long) == split_auto(long)  # does not fit the context: fallback
    assert scorer.split.fallbacks == 2


def test_processbench_cli_with_a_local_model(tiny_model_dir, tmp_path, capsys):
    data = [{"problem": "1 + 1?", "steps": ["1 + 1 = 3", "so 3"], "label": 0},
            {"problem": "1 + 1?", "steps": ["1 + 1 = 2", "so 2"], "label": -1},
            {"problem": "2 * 2?", "steps": ["2 * 2 = 4", "so 4"], "label": -1}]
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(data))
    opts = ["-o", "max_tokens=16", "-o", "max_model_len=1024", "-o", "kv_cache_gb=0.25"]
    assert cli(["processbench", str(path), "--judge", "self", "--model", str(tiny_model_dir),
                *opts, "-o", "on_malformed=accept", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["subsets"]["mini"]
    # Garbage read as "no error": every correct sample right, every erroneous one wrong.
    assert (s["acc_correct"], s["acc_erroneous"], s["judge_errors"]) == (1.0, 0.0, 0)
