"""The LLM judges judge a whole batch of samples with one engine call per phase, through real
vLLM on the tiny local model, and give each sample exactly what judging it alone gives; a sample
whose prompt does not fit, or that cannot be judged, costs only itself."""
from __future__ import annotations

import json

import pytest

from core.engine import VLLMEngine
from reward_service.judges import get_judge
from reward_service.judges.base import StepRequest
from reward_service.llm import LocalLLM, PromptTooLong
from reward_service.steps import split_lines
from tests.counting import Counting

pytestmark = pytest.mark.timeout(600)

PROBLEM = "What is (2 + 3) * 2?"
CORRECT = "2 + 3 = 6.\nSo 6 * 2 = 12.\nWait, 2 + 3 = 5, not 6.\n5 * 2 = 10. The answer is \\boxed{10}."
WRONG = "2 + 3 = 6.\n6 * 2 = 12.\nThe answer is \\boxed{12}."
OTHER = "6 * 7 = 42.\nThe answer is \\boxed{42}."
LONG = "2 + 3 = 5.\n" * 120 + "The answer is \\boxed{10}."  # beyond the 1024-token context


def _requests() -> list[StepRequest]:
    def req(problem, text, correct, extracted, gold):
        return StepRequest(problem, text, split_lines(text), correct, extracted, gold)
    return [req(PROBLEM, CORRECT, True, "10", "10"),
            req(PROBLEM, WRONG, False, "12", "10"),
            StepRequest(PROBLEM, "", [], False, None, "10"),  # no steps: nothing to ask
            req(PROBLEM, LONG, True, "10", "10"),
            req("What is 6 * 7?", OTHER, True, "42", "42"),
            req("What is 6 * 7?", OTHER, True, "42", None)]  # no gold: montecarlo cannot judge it


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    real = VLLMEngine(str(tiny_model_dir), dtype="float32", max_model_len=1024, kv_cache_gb=0.25)
    yield Counting(real, "generate", "prompt_logprobs")
    real.shutdown()


@pytest.fixture
def llm(engine, tiny_model_dir):
    engine.calls.clear()
    return LocalLLM(str(tiny_model_dir), engine=engine)


def _close(a, b) -> bool:
    """Equal, with floats compared to 1e-6 (a batch may add rounding in the last bits)."""
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, abs=1e-6)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def _assert_same(batch, alone):
    assert len(batch) == len(alone)
    for i, (b, a) in enumerate(zip(batch, alone)):
        if isinstance(a, Exception):
            assert type(b) is type(a) and str(b) == str(a), i
        else:
            assert _close(b.scores, a.scores) and b.labels == a.labels, i
            assert _close(json.loads(b.raw or "{}"), json.loads(a.raw or "{}")), i
            assert _close(b.trajectory_score, a.trajectory_score), i


def _judge_each(judge, requests):
    return [judge.judge_batch([r])[0] for r in requests]


@pytest.mark.parametrize("name, options, phases", [
    ("tpgrpo", {"max_tokens": 24, "samples": 2, "temperature": 1.0}, {"generate": 1}),
    ("rprm", {"max_tokens": 12, "samples": 2}, {"generate": 1, "prompt_logprobs": 1}),
    ("self", {"max_tokens": 24, "samples": 3, "temperature": 1.0, "on_malformed": "accept"},
     {"generate": 1}),
])
def test_one_engine_call_per_phase_and_the_per_sample_results(llm, engine, name, options, phases):
    judge = get_judge(name, llm=llm, **options)
    requests = _requests()
    batch = judge.judge_batch(requests)
    assert dict(engine.calls) == phases
    assert isinstance(batch[3], PromptTooLong)  # the long sample alone
    assert batch[2].scores == []
    assert all(not isinstance(j, Exception) for i, j in enumerate(batch) if i != 3)
    _assert_same(batch, _judge_each(judge, requests))


def test_montecarlo_samples_and_grades_the_batch_in_one_call_each(tiny_model_dir, engine, grader):
    engine.calls.clear()
    llm = LocalLLM(str(tiny_model_dir), engine=engine, prompt_template="{prompt}")
    counted = Counting(grader, "grade_many")
    judge = get_judge("montecarlo", llm=llm, grader=counted, samples=2, max_tokens=12)
    requests = _requests()
    batch = judge.judge_batch(requests)
    assert engine.calls["generate"] == 1 and counted.calls["grade_many"] == 1
    assert isinstance(batch[3], PromptTooLong)
    assert isinstance(batch[5], ValueError) and "gold" in str(batch[5])
    assert batch[1].scores[-1] == 0.0 and batch[4].scores[-1] == 1.0  # the last step: the outcome
    _assert_same(batch, _judge_each(judge, requests))
