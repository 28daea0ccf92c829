import pyarrow as pa

from core.records import VERDICT_FIELDS
from reward_service.judges import StepJudge, StepJudgment, register
from reward_service.scorer import Scorer
from reward_service.verdict import failed


@register("test-exploding")
class ExplodingJudge(StepJudge):
    def judge_steps(self, problem, response, spans, outcome_correct, extracted, gold=None):
        if "boom" in response:
            raise RuntimeError("judge exploded")
        return StepJudgment(scores=[1.0] * len(spans))



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
