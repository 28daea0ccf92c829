"""The HTTP LLM client against loopback servers that misbehave: a reply that drips, a reply
too large, a redirect, a non-HTTP endpoint, NaN / Infinity / missing logprobs, a prompt the
server refuses. Each costs the request (or only the prompt it concerns), never a hang, a
leaked API key or a NaN score."""
from __future__ import annotations

import math

import pytest

from reward_service.judges import get_judge
from reward_service.judges.base import StepRequest
from reward_service.llm import BadReply, HttpLLM, LLMError, PromptError, Rejected, make_llm
from tests.openai_stub import MODEL, OpenAIStub

pytestmark = pytest.mark.timeout(120)


def _echo_logprob(before: str, ch: str) -> float | None:
    """-0.5 per character, except in text marked to make the server misbehave."""
    for mark, value in (("NAN", math.nan), ("INF", math.inf), ("NONE", None)):
        if mark in before:
            return value
    return -0.5


@pytest.fixture(scope="module")
def stub():
    with OpenAIStub(reply=lambda prompt, j: f"critique {j}", char_logprob=_echo_logprob,
                    max_prompt_chars=1200) as server:
        yield server


def _llm(stub, **options) -> HttpLLM:
    return HttpLLM(stub.url, model_name=MODEL, **{"retries": 0, **options})


@pytest.mark.parametrize("fault", ["drip:0.05", "drip-headers:0.05"])
def test_a_dripping_server_meets_the_whole_request_deadline(stub, fault):
    # Each byte arrives well within timeout_s, so only a deadline on the whole request ends it
    # (the body would take 14 hours, the headers 8 minutes).
    stub.faults[:] = [fault]
    with pytest.raises(LLMError, match="no complete reply within 1"):
        _llm(stub, timeout_s=1.0).generate(["abc"])


def test_a_deadline_miss_is_retried_like_a_timeout(stub):
    stub.faults[:] = ["drip:0.05"]
    llm = _llm(stub, timeout_s=1.0, retries=1, backoff_s=0.0)
    assert llm.generate(["abc"], temperature=1.0) == [["critique 0"]]
    assert llm.requests == 2


@pytest.mark.parametrize("fault", ["huge-chunked:50000000", "huge:50000000"])
def test_a_reply_over_the_size_cap_is_refused_without_reading_it(stub, fault):
    before = len(stub.sent)
    stub.faults[:] = [fault]
    with pytest.raises(LLMError, match="larger than 1 MB"):
        _llm(stub, max_reply_mb=1).generate(["abc"])
    # The client hung up early: the server got out a fraction of the 50 MB (socket buffers).
    assert stub.wait_streamed(before + 1)[-1] < 25_000_000


def test_an_error_body_is_read_only_as_far_as_its_first_bytes(stub):
    before = len(stub.sent)
    stub.faults[:] = ["huge-error:50000000"]
    with pytest.raises(LLMError, match="HTTP 500"):
        _llm(stub).generate(["abc"])
    assert stub.wait_streamed(before + 1)[-1] < 25_000_000


def test_a_redirect_is_not_followed_so_the_key_stays_with_the_endpoint(stub):
    with OpenAIStub() as elsewhere:
        stub.faults[:] = [f"redirect:{elsewhere.url}/completions"]
        llm = _llm(stub, api_key="sekrit")
        with pytest.raises(LLMError, match="302"):
            llm.generate(["abc"])
        assert elsewhere.headers == []  # nothing reached the other server
    assert stub.headers[-1]["Authorization"] == "Bearer sekrit"


@pytest.mark.parametrize("endpoint", ["file:///etc/passwd", "ftp://host/v1", "localhost:8000",
                                      "http:///v1", "gopher://x"])
def test_only_http_and_https_endpoints_are_accepted(endpoint):
    with pytest.raises(ValueError, match="http"):
        HttpLLM(endpoint)
    with pytest.raises(ValueError, match="http"):
        make_llm(endpoint=endpoint)
    assert HttpLLM("https://judge.example:8443/v1").url == "https://judge.example:8443/v1/completions"


@pytest.mark.parametrize("mark", ["NAN", "INF", "NONE"])
def test_a_non_finite_or_missing_logprob_fails_that_prompt_only(stub, mark):
    llm = _llm(stub)
    with pytest.raises(BadReply) as caught:
        llm.choice_logprobs(["Right?", f"{mark} right?", "Sure?"], [" Yes", " No"])
    e = caught.value
    assert set(e.failed) == {1} and isinstance(e.failed[1], BadReply)
    assert e.answers[1] is None
    assert e.answers[0] == pytest.approx([-2.0, -1.5]) and e.answers[2] == e.answers[0]
    assert len(stub.bodies[-1]["prompt"]) == 6  # one request for the whole batch


def test_rprm_gives_a_judge_error_for_nan_logprobs_never_a_nan_score(stub):
    judge = get_judge("rprm", endpoint=stub.url, model_name=MODEL, samples=2, retries=0)
    good = StepRequest("What is 2 + 2?", "2 + 2 = 4.\nSo 4.", [(0, 11), (11, 16)], True, "4")
    bad = StepRequest("What is NAN?", "2 + 2 = 4.\nSo 4.", [(0, 11), (11, 16)], True, "4")
    sent = len(stub.bodies)
    ok, failed, ok_again = judge.judge_batch([good, bad, good])
    assert len(stub.bodies) == sent + 2  # one request per phase: critiques, then verdicts
    assert isinstance(failed, BadReply) and "logprob" in str(failed)
    assert ok.scores == ok_again.scores and all(math.isfinite(s) for s in ok.scores)


def test_a_prompt_the_server_refuses_fails_its_sample_only(stub):
    judge = get_judge("tpgrpo", endpoint=stub.url, model_name=MODEL, retries=0)
    short = StepRequest("What is 2 + 2?", "2 + 2 = 4.\nSo 4.", [(0, 11), (11, 16)], True, "4")
    long = StepRequest("What is 2 + 2? " * 100, "2 + 2 = 4.", [(0, 10)], True, "4")
    alone = judge.judge_batch([short])
    sent = len(stub.bodies)
    first, refused, last = judge.judge_batch([short, long, short])
    # The batch was refused whole (as vLLM does), so the client split it to find the culprit.
    assert isinstance(refused, Rejected) and "maximum context length" in str(refused)
    assert isinstance(refused, PromptError)
    assert first.scores == last.scores == alone[0].scores and first.raw == alone[0].raw
    assert len(stub.bodies[sent]["prompt"]) == 3  # asked as one batch first
    assert len(stub.bodies) - sent <= 5  # 1 refused batch + a bisection of 3 prompts
