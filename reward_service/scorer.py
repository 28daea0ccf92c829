"""Scores samples end to end: grade the final answer, split steps, judge them, label and merge
them into thoughts. A failure while judging one sample is recorded on that sample only."""
from __future__ import annotations

from reward_service.answers import extract_answer
from reward_service.grading import Grade, GradingPool
from reward_service.judges import get_judge
from reward_service.judges.base import StepRequest
from reward_service.steps import get_splitter
from reward_service.thoughts import first_error_index, label_steps, merge_thoughts
from reward_service.verdict import Verdict, failed


class Scorer:
    def __init__(self, judge: str = "tool", splitter: str = "auto",
                 grader: GradingPool | None = None, splitter_options: dict | None = None,
                 **judge_options):
        self.judge = get_judge(judge, **judge_options)
        splitter_options = dict(splitter_options or {})
        if splitter == "llm" and not {"llm", "model", "endpoint"} & splitter_options.keys():
            # The LLM segmenter shares an LLM judge's engine unless given its own model.
            splitter_options["llm"] = getattr(self.judge, "llm", None)
        self.split = get_splitter(splitter, **splitter_options)
        self._own_grader = grader is None
        self.grader = grader if grader is not None else GradingPool(num_workers=1)

    def score(self, problem: str, response: str, gold: str) -> Verdict:
        return self.score_many([{"problem": problem, "response_text": response,
                                 "gold_answer": gold}])[0]

    def score_many(self, rows: list[dict]) -> list[Verdict]:
        """Rows with `problem`, `response_text`, `gold_answer`: grading runs in parallel, then
        the judge gets every sample of the call in one `judge_batch`."""
        pairs = [(r.get("response_text") or "", r.get("gold_answer") or "") for r in rows]
        grades = self.grader.grade_many(pairs)
        requests: list[StepRequest | None] = []
        failures: dict[int, str] = {}
        for i, (r, (response, gold), grade) in enumerate(zip(rows, pairs, grades)):
            extracted = grade.extracted if grade.extracted is not None else extract_answer(response)
            try:
                spans = self.split(response)
            except Exception as e:  # a splitter failure is this sample's, never the batch's
                failures[i] = f"{type(e).__name__}: {e}"
                requests.append(None)
                continue
            requests.append(StepRequest(r.get("problem") or "", response, spans, grade.correct,
                                        extracted, gold))
        todo = [i for i, q in enumerate(requests) if q is not None]
        judged = dict(zip(todo, self.judge.judge_batch([requests[i] for i in todo]))) if todo else {}
        verdicts = []
        for i, grade in enumerate(grades):
            if i in failures:
                verdicts.append(failed(failures[i], grade.correct, grade.extracted))
            else:
                verdicts.append(self._verdict(requests[i], grade, judged[i]))
        return verdicts

    def close(self) -> None:
        self.judge.close()
        if self._own_grader:
            self.grader.close()

    def _verdict(self, request: StepRequest, grade: Grade, judgment) -> Verdict:
        spans, response = request.spans, request.response
        try:
            if isinstance(judgment, Exception):
                raise judgment
            if len(judgment.scores) != len(spans):
                raise ValueError(f"judge gave {len(judgment.scores)} scores for {len(spans)} steps")
            texts = [response[a:b] for a, b in spans]
            labels = judgment.labels or label_steps(judgment.scores, grade.correct, texts,
                                                    request.extracted)
            thought_spans, thought_labels = merge_thoughts(spans, labels)
        except Exception as e:  # one sample's failure is that sample's, never the batch's
            return failed(f"{type(e).__name__}: {e}", grade.correct, request.extracted)
        return Verdict(
            outcome_correct=grade.correct,
            extracted_answer=request.extracted,
            step_spans=spans,
            step_scores=[float(s) for s in judgment.scores],
            trajectory_score=judgment.trajectory_score,
            first_error_index=first_error_index(judgment.scores),
            thought_spans=thought_spans,
            thought_labels=thought_labels,
            judge_raw=judgment.raw,
            judge_error=None if grade.error is None else f"grading: {grade.error}",
        )
