"""The HTTP LLM client against a real loopback server speaking the OpenAI completions format:
ordering, model discovery, echoed logprobs, timeouts and retries; and the LLM judges, the LLM
segmenter, the Scorer and the JudgeWorker running over it."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from actors.judge import JudgeWorker
from core.config import load_config
from core.records import ROLLOUT_SCHEMA, to_table
from reward_service.judges import get_judge
from reward_service.llm import HttpLLM, LLMError, make_llm, renormalize
from reward_service.scorer import Scorer, check_options
from reward_service.steps import split_auto
from tests.openai_stub import MODEL, OpenAIStub

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]

CORRECT = "2 + 3 = 6.\nSo 6 * 2 = 12.\nWait, 2 + 3 = 5, not 6.\n5 * 2 = 10. The answer is \\boxed{10}."
WRONG = "2 + 3 = 6.\n6 * 2 = 12.\nThe answer is \\boxed{12}."


def _char_logprob(before: str, ch: str) -> float:
    return -(ord(ch) % 7 + 1) / 10


def _judge_reply(prompt: str, j: int) -> str:
    """What a good judge model would say to each of the prompts."""
    if "reaches the correct final answer" in prompt:
        return "One reflection.\nREFLECTION 2: WRONG 0-0; DEPENDENT 1"
    if "reaches a wrong final answer" in prompt:
        return "MATCHES: 1, 2"
    if "[Math Problem]" in prompt:
        return "Paragraph 1 is wrong.\n\\boxed{1}" if "6 * 2 = 12" in prompt else "I cannot tell."
    if "Split the following solution" in prompt:
        return '1. "2 + 3 = 6."\n2. So 6 * 2 = 12.\n3. Wait, 2 + 3 = 5\n4. 5 * 2 = 10.'
    return f"{prompt[-3:]}#{j} Verification: Yes"


@pytest.fixture(scope="module")
def stub():
    with OpenAIStub(reply=_judge_reply, char_logprob=_char_logprob) as server:
        yield server



def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_generate_groups_choices_by_index_and_discovers_the_model(stub):
    llm = HttpLLM(stub.url, max_batch=1)
    out = llm.generate(["aaa", "bbb"], n=2, temperature=1.0, max_tokens=40, stop=["Verification:"])
    assert out == [["aaa#0 ", "aaa#1 "], ["bbb#0 ", "bbb#1 "]]  # stop string cut client-side
    assert llm.model_name == MODEL and stub.bodies[-1]["model"] == MODEL
    assert stub.bodies[-1]["prompt"] == ["bbb"]  # max_batch=1: one request per prompt
    sent = len(stub.bodies)
    assert llm.generate(["ccc"], n=3, temperature=0.0, max_tokens=5) == [["ccc#0"] * 3]
    assert len(stub.bodies) == sent + 1 and stub.bodies[-1]["n"] == 1  # greedy: asked once


def test_choice_logprobs_sum_exactly_the_choice_tokens(stub):
    llm = HttpLLM(stub.url)
    (lps,) = llm.choice_logprobs(["Is it right?"], [" Yes", " No"])
    assert lps == pytest.approx([sum(_char_logprob("", c) for c in " Yes"),
                                 sum(_char_logprob("", c) for c in " No")])
    assert stub.bodies[-1]["echo"] is True and stub.bodies[-1]["max_tokens"] == 0
    probs = renormalize(lps)
    assert sum(probs) == pytest.approx(1.0) and probs[0] < probs[1]


def test_a_timeout_is_retried(stub):
    llm = HttpLLM(stub.url, model_name=MODEL, timeout_s=0.3, retries=2, backoff_s=0.01)
    stub.faults[:] = ["sleep:1.0"]
    assert llm.generate(["xyz"], max_tokens=40) == [["xyz#0 Verification: Yes"]]
    assert llm.requests == 2


def test_server_errors_and_garbage_are_retried_bad_requests_are_not(stub):
    llm = HttpLLM(stub.url, model_name=MODEL, retries=3, backoff_s=0.01)
    stub.faults[:] = ["500", "garbage", "500"]
    assert llm.generate(["abc"], max_tokens=3) == [["abc"]]
    assert llm.requests == 4
    stub.faults[:] = ["400"]
    with pytest.raises(LLMError, match="HTTP 400"):
        llm.generate(["abc"])
    assert llm.requests == 5


def test_exhausted_retries_and_dead_servers_raise_llm_error(stub):
    llm = HttpLLM(stub.url, model_name=MODEL, timeout_s=0.2, retries=1, backoff_s=0.01)
    stub.faults[:] = ["sleep:0.6", "sleep:0.6"]
    with pytest.raises(LLMError, match="after 2 attempts"):
        llm.generate(["abc"])
    dead = HttpLLM(_closed_port_url(), retries=1, backoff_s=0.01)
    with pytest.raises(LLMError, match="after 2 attempts"):
        dead.generate(["abc"])


def test_llm_options_are_checked():
    with pytest.raises(ValueError, match="exactly one of"):
        make_llm(model="/m", endpoint="http://x")
    with pytest.raises(ValueError, match="endpoint"):
        get_judge("http", method="rprm")
    with pytest.raises(ValueError, match="method"):
        get_judge("http", endpoint="http://x", method="tool")
    with pytest.raises(TypeError):
        get_judge("rprm", endpoint="http://x", not_an_option=1)


def test_tpgrpo_over_http_labels_reflections_and_wrong_answers(stub, grader):
    scorer = Scorer(judge="http", endpoint=stub.url, method="tpgrpo", splitter="lines",
                    grader=grader)
    v = scorer.score("What is (2 + 3) * 2?", CORRECT, "10")
    assert v.judge_error is None and v.outcome_correct
    assert v.step_scores == [0.0, 0.0, 1.0, 1.0]  # corrected interval + its dependent step
    assert v.thought_labels == ["incorrect", "correct"] and v.first_error_index == 0
    w = scorer.score("What is (2 + 3) * 2?", WRONG, "10")
    assert w.judge_error is None and not w.outcome_correct
    assert w.step_scores == [0.5, 0.0, 0.0]
    assert w.thought_labels == ["uncertain", "incorrect"]
    assert json.loads(w.judge_raw)["replies"] == ["MATCHES: 1, 2"]


def test_rprm_over_http_scores_each_step_from_yes_no(stub):
    judge = get_judge("rprm", endpoint=stub.url, samples=3)
    spans = split_auto(WRONG)
    j = judge.judge_steps("What is (2 + 3) * 2?", WRONG, spans, False, "12")
    raw = json.loads(j.raw)
    assert [len(c) for c in raw["critiques"]] == [3, 3, 3]
    assert all(c.endswith(" ") and "Verification" not in c for g in raw["critiques"] for c in g)
    # " Yes" is less likely than " No" per character under the stub's logprobs
    p_yes = 1 / (1 + pow(2.718281828459045, sum(_char_logprob("", c) for c in " No")
                         - sum(_char_logprob("", c) for c in " Yes")))
    assert j.scores == pytest.approx([p_yes] * 3)


def test_self_over_http_and_a_malformed_critique_is_that_samples_judge_error(stub):
    rows = [dict(prompt_id="p", group_id="g", sample_index=i, problem="What is (2 + 3) * 2?",
                 prompt_token_ids=[1], response_token_ids=[2, 3], response_text=text,
                 token_char_offsets=[0, 1], rollout_logprobs=[-0.1, -0.2], policy_version=0,
                 finish_reason="stop", gold_answer="10")
            for i, text in enumerate([WRONG, CORRECT.replace("So 6 * 2 = 12.", "Hmm.")])]
    worker = JudgeWorker(backend="http", splitter="lines", endpoint=stub.url, method="self",
                         retries=0)
    try:
        summary, table = worker.score(to_table(rows, ROLLOUT_SCHEMA))
    finally:
        worker.shutdown()
    scored = table.to_pylist()
    assert summary["judge_errors"] == 1
    assert scored[0]["judge_error"] is None and scored[0]["first_error_index"] == 1
    assert scored[0]["step_scores"] == [1.0, 0.0, 0.0]
    assert "no \\boxed{index}" in scored[1]["judge_error"] and scored[1]["outcome_correct"]


def test_a_dead_llm_is_a_judge_error_not_an_exception(grader):
    scorer = Scorer(judge="rprm", endpoint=_closed_port_url(), model_name=MODEL, retries=0,
                    grader=grader)
    v = scorer.score("What is (2 + 3) * 2?", CORRECT, "10")
    assert v.outcome_correct and v.judge_error.startswith("LLMError")
    assert v.step_scores == [] and v.thought_labels == []


def test_llm_segmenter_over_http_maps_steps_to_original_spans(stub, grader):
    scorer = Scorer(judge="tool", splitter="llm", splitter_options={"endpoint": stub.url},
                    grader=grader)
    v = scorer.score("What is (2 + 3) * 2?", CORRECT, "10")
    starts = [a for a, _ in v.step_spans]
    assert starts == [0] + [CORRECT.index(s) for s in ("So 6", "Wait", "5 * 2")]
    assert v.step_spans[-1][1] == len(CORRECT) and scorer.split.fallbacks == 0
    # The same splitter with the LLM of an http judge (shared, not a second client).
    shared = Scorer(judge="http", endpoint=stub.url, method="tpgrpo", splitter="llm", grader=grader)
    assert shared.split.llm is shared.judge.llm
    odd = "Some text\n\nwith paragraphs\n\nthe LLM did not quote."
    assert shared.split(odd) == split_auto(odd) and shared.split.fallbacks == 1


def test_splitter_options_travel_in_the_judge_config(stub):
    """`judge.options.splitter_options` reaches the LLM segmenter of every judge actor: its own
    endpoint beside the tool judge, and the length of its reply."""
    cfg = load_config(ROOT / "configs" / "local.yaml", [
        "judge.splitter=llm", f"judge.options.splitter_options.endpoint={stub.url}",
        "judge.options.splitter_options.max_tokens=1000"])
    j = cfg.judge
    check_options(j.backend, j.splitter, j.options)  # what the config check calls
    worker = JudgeWorker(backend=j.backend, splitter=j.splitter, grader_workers=1,
                         require_answer=j.require_answer, **j.options)  # as cluster.train builds it
    rows = [dict(prompt_id="p", group_id="g", sample_index=0, problem="What is (2 + 3) * 2?",
                 prompt_token_ids=[1], response_token_ids=[2, 3], response_text=CORRECT,
                 token_char_offsets=[0, 1], rollout_logprobs=[-0.1, -0.2], policy_version=0,
                 finish_reason="stop", gold_answer="10")]
    seen = len(stub.bodies)
    try:
        _, table = worker.score(to_table(rows, ROLLOUT_SCHEMA))
    finally:
        worker.shutdown()
    (scored,) = table.to_pylist()
    assert scored["step_spans"] == [[0, 11], [11, 26], [26, 50], [50, len(CORRECT)]]
    segment = [b for b in stub.bodies[seen:] if "Split the following solution" in b["prompt"][0]]
    assert segment and all(b["max_tokens"] == 1000 for b in segment)


@pytest.mark.parametrize("options, phrase", [
    ({"splitter_options": {"endpoint": "http://x/v1", "max_token": 9}}, "did you mean 'max_tokens'"),
    ({"splitter_options": {"endpoint": "http://x/v1", "max_tokens": "many"}}, "'max_tokens' must be int"),
    ({"splitter_options": {"endpoint": "http://x/v1", "fallback": "llm"}}, "fallback must be one of"),
    ({"splitter_options": {"max_tokens": 9}}, "splitter 'llm' needs an LLM"),
    ({}, "splitter 'llm' needs an LLM"),
])
def test_splitter_options_are_checked_before_anything_starts(options, phrase):
    with pytest.raises(ValueError, match=re.escape(phrase)):
        check_options("tool", "llm", options)
    with pytest.raises(ValueError, match=re.escape(phrase)):
        Scorer(judge="tool", splitter="llm", **options)
