"""The `self` judge with several critics predicts what ProcessBench's own evaluation predicts:
the most common boxed index (ties: the one given first), and its step scores put the first
score < 0.5 exactly there. Checked on many random critic replies through the real HTTP client."""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from reward_service.judges import get_judge, self_judge
from reward_service.judges.base import StepRequest
from reward_service.thoughts import first_error_index
from tests.openai_stub import MODEL, OpenAIStub

pytestmark = pytest.mark.timeout(120)


def processbench_prediction(replies: list[str]) -> int | None:
    """ProcessBench's critic evaluation with voting, step by step: the last `\\boxed{...}` of each
    reply, replies without one dropped, `Counter(preds).most_common(1)[0][0]`, then int()."""
    preds = [m[-1].strip() for m in (re.findall(r"\\boxed\{([^}]*)\}", r) for r in replies) if m]
    if not preds:
        return None
    try:
        return int(Counter(preds).most_common(1)[0][0])
    except ValueError:
        return None


def _random_reply(rng: random.Random, num_steps: int) -> str:
    k = rng.randint(-1, num_steps - 1)
    kind = rng.random()
    if kind < 0.15:
        return "I cannot tell where the error is."
    if kind < 0.3:  # an earlier box the critic took back: the last one counts
        return f"First \\boxed{{{rng.randint(-1, num_steps - 1)}}}, but no: \\boxed{{ {k} }}"
    return f"Paragraph {max(k, 0)} is where it goes wrong.\n\n\\boxed{{{k}}}"


def test_vote_by_hand():
    assert self_judge.vote([0, 0, 1, 2, 3]) == 0  # the mode, not the median (1)
    assert self_judge.vote([2, -1, -1, 2]) == 2  # a tie goes to the index given first
    assert self_judge.vote([-1, 3, 3, -1]) == -1
    assert self_judge.step_scores(1, 3) == [1.0, 0.0, 0.0]
    assert self_judge.step_scores(-1, 2) == [1.0, 1.0]


@pytest.mark.parametrize("samples", [1, 2, 3, 4, 5, 8])
def test_agrees_with_processbench_on_random_critics(samples):
    rng = random.Random(samples)
    cases: dict[str, list[str]] = {}
    requests, expected = [], []
    for case in range(60):
        num_steps = rng.randint(1, 7)
        problem = f"case {case}"
        cases[problem] = [_random_reply(rng, num_steps) for _ in range(samples)]
        steps = "".join(f"Step {i}.\n" for i in range(num_steps))
        spans = [(i * 8, i * 8 + 8) for i in range(num_steps)]
        requests.append(StepRequest(problem, steps, spans, False, None))
        expected.append(processbench_prediction(cases[problem]))

    def reply(prompt: str, j: int) -> str:
        problem = re.search(r"\[Math Problem\]\n\n(.*?)\n\n", prompt).group(1)
        return cases[problem][j]

    with OpenAIStub(reply=reply) as stub:
        judge = get_judge("self", endpoint=stub.url, model_name=MODEL, samples=samples,
                          temperature=1.0, max_tokens=200)
        judged = judge.judge_batch(requests)
    assert sum(e is None for e in expected) < len(expected)  # the cases are not all unreadable
    for want, got, request in zip(expected, judged, requests):
        if want is None:
            assert isinstance(got, ValueError) and "no \\boxed{index}" in str(got)
            continue
        assert first_error_index(got.scores) == want, cases[request.problem]
        assert len(got.scores) == len(request.spans)
        votes = [k for k in map(lambda r: self_judge.parse_index(r, len(request.spans)),
                                cases[request.problem]) if k is not None]
        assert got.trajectory_score == pytest.approx(votes.count(-1) / len(votes))
