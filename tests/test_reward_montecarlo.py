"""montecarlo judge: completions sampled by the tiny policy through the real vLLM engine,
graded against the gold answer; outcomes forced by what the prefix already states; the prefix
starts with the policy's own prompt, chat template included."""
from __future__ import annotations

import json

import pytest

from reward_service.judges import get_judge
from reward_service.judges.montecarlo import MonteCarloJudge
from reward_service.judges.registry import check_judge_options
from reward_service.llm import LocalLLM
from reward_service.scorer import Scorer
from reward_service.steps import split_auto
from tests.conftest import run_prompt

pytestmark = pytest.mark.timeout(600)
PROBLEM = "What is 6 * 7?"
# Step 2 states the boxed answer: every completion of a prefix that contains it keeps it as
# the last boxed answer (the tiny random policy does not write "\boxed{"), so step 2's value
# is forced to 1.0 against gold 42 and to 0.0 against any other gold.
RESPONSE = "Step 1: multiply.\nStep 2: 6 * 7 = 42, so \\boxed{42}.\nStep 3: done.\n"



@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    llm = LocalLLM(str(tiny_model_dir), prompt_template="{prompt}", dtype="float32",
                   max_model_len=256, kv_cache_gb=0.1)
    yield llm
    llm.shutdown()





@pytest.fixture(scope="module")
def chat_judge(chat_model_dir, grader):
    """The judge as a config builds it, on the chat policy's directory."""
    judge = get_judge("montecarlo", model=str(chat_model_dir), samples=2, max_tokens=4, seed=0,
                      dtype="float32", max_model_len=512, kv_cache_gb=0.1, grader=grader)
    yield judge
    judge.close()



def test_prefixes_are_the_rollout_prompt_plus_the_steps_so_far(llm, grader):
    judge = MonteCarloJudge(llm=llm, grader=grader)
    spans = split_auto(RESPONSE)
    assert judge.prefixes(PROBLEM, RESPONSE, spans) == [
        "Problem: What is 6 * 7?\nSolution:\nStep 1: multiply.\n",
        "Problem: What is 6 * 7?\nSolution:\nStep 1: multiply.\nStep 2: 6 * 7 = 42, so \\boxed{42}.\n",
    ]


def test_values_are_forced_by_a_stated_answer(llm, grader):
    judge = MonteCarloJudge(llm=llm, grader=grader, samples=4, max_tokens=24, seed=1)
    spans = split_auto(RESPONSE)
    right = judge.judge_steps(PROBLEM, RESPONSE, spans, True, "42", gold="42")
    assert len(right.scores) == 3 and all(0.0 <= s <= 1.0 for s in right.scores)
    raw = json.loads(right.raw)
    assert raw["samples"] == 4 and raw["correct"][1] == 4  # 4 completions sampled and graded
    assert right.scores[1:] == [1.0, 1.0]  # the last step is the solution's own outcome
    wrong = judge.judge_steps(PROBLEM, RESPONSE, spans, False, "42", gold="41")
    assert wrong.scores[1:] == [0.0, 0.0]


def test_completions_are_sampled_per_step(llm, grader):
    # Every step but the last gets `samples` completions, sampled (they differ), not copies.
    judge = MonteCarloJudge(llm=llm, grader=grader, samples=6, max_tokens=8, seed=3)
    groups = judge.llm.generate(judge.prefixes(PROBLEM, RESPONSE, split_auto(RESPONSE)),
                                n=6, temperature=1.0, max_tokens=8, seed=3)
    assert len(groups) == 2 and all(len(g) == 6 for g in groups)
    assert len({text for text in groups[0]}) > 1


def test_through_the_scorer_with_gold_and_a_failing_sample(llm, grader):
    scorer = Scorer(judge="montecarlo", grader=grader, llm=llm, samples=2, max_tokens=16)
    rows = [{"problem": PROBLEM, "response_text": RESPONSE, "gold_answer": "#### 42"},
            {"problem": PROBLEM, "response_text": RESPONSE, "gold_answer": ""}]
    ok, no_gold = scorer.score_many(rows)
    assert ok.judge_error is None and ok.outcome_correct
    assert len(ok.step_scores) == 3 and ok.step_scores[1:] == [1.0, 1.0]
    assert "needs the gold answer" in no_gold.judge_error and no_gold.step_scores == []
    # The tool judge, which takes no gold, still works through the same Scorer code.
    tool = Scorer(judge="tool", grader=grader).score(PROBLEM, RESPONSE, "42")
    assert tool.judge_error is None and tool.step_scores == [1.0, 1.0, 1.0]


def test_a_chat_policy_is_prompted_with_its_chat_template_as_in_rollout(chat_judge, chat_model_dir):
    """What the engine receives: the rollout's prompt for this model, then the steps so far."""
    sent: list[str] = []
    generate = chat_judge.llm.generate

    def recording(prompts, **kwargs):
        sent.extend(prompts)
        return generate(prompts, **kwargs)

    chat_judge.llm.generate = recording
    try:
        spans = split_auto(RESPONSE)
        judged = chat_judge.judge_steps(PROBLEM, RESPONSE, spans, True, "42", gold="42")
    finally:
        del chat_judge.llm.generate
    head = run_prompt(chat_model_dir)(PROBLEM)
    assert head.startswith("<|im_start|>user\nWhat is 6 * 7? Let's think step by step")
    assert head.endswith("<|im_start|>assistant\n")
    assert sent == [head + RESPONSE[:end] for _, end in spans[:-1]]
    assert judged.scores[1:] == [1.0, 1.0]
    # Sent as text without added special tokens, as the rollout sends prompts.
    tok = chat_judge.llm.tokenizer
    assert chat_judge.llm._encode(sent[0]) == tok.encode(sent[0], add_special_tokens=False)


@pytest.mark.parametrize("options, overrides", [
    ({}, []),
    ({"prompt_style": "plain"}, ["prompt.style=plain"]),
    ({"prompt_style": "plain", "problem_template": "Q: {problem} A:"},
     ["prompt.style=plain", "prompt.template='Q: {problem} A:'"]),
    ({"prompt_instruction": None, "prompt_system": "Answer briefly."},
     ["prompt.instruction=", "prompt.system=Answer briefly."]),
    ({"prompt_style": "chat", "prompt_instruction": "Box it."}, ["prompt.instruction=Box it."]),
])
def test_the_prompt_options_are_the_runs_prompt_settings(chat_judge, chat_model_dir, grader,
                                                         options, overrides):
    check_judge_options("montecarlo", {"model": "/m", **options})
    judge = MonteCarloJudge(llm=chat_judge.llm, grader=grader, **options)
    spans = split_auto(RESPONSE)
    head = run_prompt(chat_model_dir, *overrides)(PROBLEM)
    assert judge.prefixes(PROBLEM, RESPONSE, spans) == [head + RESPONSE[:end] for _, end in spans[:-1]]


def test_prompt_options_are_checked(tiny_model_dir, grader):
    with pytest.raises(ValueError, match="'prompt_style' must be one of 'auto', 'chat', 'plain'"):
        check_judge_options("montecarlo", {"model": "/m", "prompt_style": "jinja"})
    with pytest.raises(ValueError, match="no chat template"):
        get_judge("montecarlo", model=str(tiny_model_dir), prompt_style="chat")
    with pytest.raises(ValueError, match=r"\{problem\}"):
        get_judge("montecarlo", model=str(tiny_model_dir), problem_template="Solve it.")
    with pytest.raises(ValueError, match="needs the policy's tokenizer"):
        get_judge("montecarlo", endpoint="http://127.0.0.1:9/v1", prompt_style="chat")
