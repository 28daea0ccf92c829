import pyarrow as pa
import pytest

from core.records import VERDICT_FIELDS
from reward_service.judges import StepJudge, StepJudgment, register
from reward_service.scorer import Scorer
from reward_service.verdict import failed
from tests import scripted_judges  # noqa: F401  (registers "test-exploding")


def test_score_correct_solution_with_a_detour(grader):
    scorer = Scorer(grader=grader)
    text = "Step 1: 16 - 3 - 4 = 10 eggs.\nStep 2: Wait, 16 - 3 - 4 = 9.\nStep 3: 9 * 2 = 18.\n" \
           "The answer is 18."
    v = scorer.score("ducks", text, "#### 18")
    assert v.outcome_correct and v.extracted_answer == "18" and v.judge_error is None
    assert v.step_scores == [0.0, 1.0, 1.0]  # the reflection's own claims are true here
    assert v.first_error_index == 0
    assert v.thought_labels == ["incorrect", "correct"]
    assert v.thought_spans == [(0, v.step_spans[0][1]), (v.step_spans[1][0], len(text))]


def test_score_wrong_solution_labels(grader):
    scorer = Scorer(grader=grader)
    text = "Step 1: 16 - 3 - 4 = 9 eggs.\nStep 2: 9 * 3 = 27 dollars.\nStep 3: So she earns 27."
    v = scorer.score("ducks", text, "18")
    assert not v.outcome_correct
    assert v.thought_labels == ["uncertain", "incorrect"]


def test_score_many_isolates_a_failing_sample_and_fits_the_schema(grader):
    scorer = Scorer(judge="test-exploding", grader=grader)
    rows = [{"problem": "p", "response_text": "a\nb\n#### 3", "gold_answer": "3"},
            {"problem": "p", "response_text": "boom\n#### 4", "gold_answer": "4"},
            {"problem": "p", "response_text": "\\boxed{\\frac{1}{2}}", "gold_answer": "0.5"}]
    v = scorer.score_many(rows)
    assert [x.outcome_correct for x in v] == [True, True, True]
    assert v[0].judge_error is None and len(v[0].step_spans) == 3
    assert "judge exploded" in v[1].judge_error and v[1].step_spans == []
    table = pa.Table.from_pylist([x.to_row() for x in v], schema=pa.schema(VERDICT_FIELDS))
    assert table.num_rows == 3
    assert failed("x").to_row()["judge_error"] == "x"


def test_grading_timeout_is_recorded_on_that_sample(grader):
    scorer = Scorer(grader=grader)
    v = scorer.score("p", "\\boxed{\\dfrac{5^{5^{5^{5^5}}}}{2}}", "1")
    assert not v.outcome_correct and v.judge_error == "grading: timeout"


REFLECTION_EXAMPLE = ("Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 56\nWait, 19 * 3 = 57.\n"
                      "Step 3: 57 - 5 = 52\nThe answer is \\boxed{52}")


def _texts(text, spans):
    return [text[a:b] for a, b in spans]


def test_a_reflection_is_its_own_correct_step_and_thought(grader):
    v = Scorer(grader=grader).score("p", REFLECTION_EXAMPLE, "52")
    assert v.outcome_correct and v.judge_error is None
    assert _texts(REFLECTION_EXAMPLE, v.step_spans)[2] == "Wait, 19 * 3 = 57.\n"
    assert v.step_labels == ["correct", "incorrect", "correct", "correct"]
    assert _texts(REFLECTION_EXAMPLE, v.thought_spans) == [
        "Step 1: 12 + 7 = 19\n", "Step 2: 19 * 3 = 56\n",
        "Wait, 19 * 3 = 57.\nStep 3: 57 - 5 = 52\nThe answer is \\boxed{52}"]
    assert v.thought_labels == ["correct", "incorrect", "correct"]


def test_interval_verification_overrides_the_tool_judges_true_steps(grader):
    text = "3 + 4 = 8\n8 * 2 = 16\nWait, 3 + 4 = 7\n7 * 2 = 14\nThe answer is 14."
    v = Scorer(grader=grader).score("p", text, "14")
    assert v.step_scores == [0.0, 1.0, 1.0, 1.0, 1.0]  # the judge finds 8 * 2 = 16 true
    assert v.step_labels == ["incorrect", "incorrect", "correct", "correct", "correct"]
    assert v.thought_labels == ["incorrect", "correct"]
    assert _texts(text, v.thought_spans)[0] == "3 + 4 = 8\n8 * 2 = 16\n"


@pytest.fixture(scope="module")
def rl_grader():
    """Grading as in training: a response that states no answer is wrong."""
    from reward_service.grading import GradingPool
    with GradingPool(num_workers=1, require_answer=True) as pool:
        yield pool


def test_a_truncated_wrong_solution_is_blamed_in_its_verdict(rl_grader):
    text = "Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 57\nStep 3: 57 - 5 ="
    v = Scorer(grader=rl_grader).score("p", text, "52")
    assert not v.outcome_correct and v.extracted_answer is None and v.judge_error is None
    assert v.step_labels == ["uncertain", "uncertain", "incorrect"]
    assert v.thought_labels == ["incorrect"] and v.thought_spans == [(0, len(text))]


@register("test-scripted")
class ScriptedJudge(StepJudge):
    """Scores (and a trajectory score) from the response's first line: `scores: [...] traj: x`."""

    def judge_steps(self, problem, response, spans, outcome_correct, extracted, gold=None):
        spec = eval(response.split("\n", 1)[0], {"nan": float("nan"), "inf": float("inf")})
        return StepJudgment(scores=spec["scores"], trajectory_score=spec.get("traj"),
                            labels=spec.get("labels"))


@pytest.mark.parametrize("spec, error", [
    ("{'scores': [nan, 1.0]}", "step 0 score nan"),
    ("{'scores': [1.0, inf]}", "step 1 score inf"),
    ("{'scores': [1.0, -inf]}", "step 1 score -inf"),
    ("{'scores': [1.5, 1.0]}", "step 0 score 1.5"),
    ("{'scores': [1.0, -0.1]}", "step 1 score -0.1"),
    ("{'scores': [1.0, '0.5']}", "step 1 score '0.5'"),
    ("{'scores': [1.0, None]}", "step 1 score None"),
    ("{'scores': [1.0, 1.0], 'traj': nan}", "trajectory score nan"),
    ("{'scores': [1.0, 1.0], 'traj': 2.0}", "trajectory score 2.0"),
    ("{'scores': [1.0, 1.0], 'labels': ['correct', 'nope']}", "unknown label 'nope'"),
    ("{'scores': [1.0]}", "1 scores for 2 steps"),
])
def test_a_score_that_is_not_finite_and_in_0_1_is_that_samples_judge_error(grader, spec, error):
    scorer = Scorer(judge="test-scripted", splitter="lines", grader=grader)
    good = "{'scores': [1.0, 0.25], 'traj': 0.5}\n#### 3"
    v, ok = scorer.score_many([{"problem": "p", "response_text": spec + "\n#### 3", "gold_answer": "3"},
                               {"problem": "p", "response_text": good, "gold_answer": "3"}])
    assert v.judge_error is not None and error in v.judge_error, v.judge_error
    assert v.step_scores == [] and v.thought_labels == [] and v.step_labels == []
    assert v.outcome_correct  # the grade survives
    assert ok.judge_error is None and ok.step_scores == [1.0, 0.25] and ok.trajectory_score == 0.5


def test_an_llm_server_returning_nan_logprobs_costs_that_sample_only(grader):
    from tests.openai_stub import MODEL, OpenAIStub

    with OpenAIStub(char_logprob=lambda before, ch: float("nan")) as stub:
        scorer = Scorer(judge="rprm", endpoint=stub.url, model_name=MODEL, retries=0,
                        grader=grader, splitter="lines")
        v = scorer.score("p", "2 + 3 = 5.\nSo 10.\n#### 10", "10")
    assert v.outcome_correct and v.judge_error is not None and "nan" in v.judge_error
    assert v.step_scores == []
