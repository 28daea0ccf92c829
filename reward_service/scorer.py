"""Scores samples end to end: grade the final answer, split steps, judge them, label and merge
them into thoughts. A failure while judging one sample is recorded on that sample only.

Every judge's output is checked here, where it enters: one score per step, each a finite number
in [0, 1], a trajectory score that is None or the same, labels from `thoughts.LABELS`. Anything
else (a NaN from an LLM server's logprobs, say) is that sample's `judge_error`, so no bad score
ever reaches the advantages.
"""
from __future__ import annotations

import math
from numbers import Real

from reward_service import llm as llm_module
from reward_service.answers import extract_answer
from reward_service.grading import Grade, GradingPool
from reward_service.judges import get_judge
from reward_service.judges.base import StepJudgment, StepRequest
from reward_service.judges.registry import check_judge_options, judge_option_sources
from reward_service.steps import check_splitter_options, get_splitter
from reward_service.thoughts import first_error_index, label_solution
from reward_service.verdict import Verdict, failed


def _unit_score(value, what: str) -> float:
    """`value` as a float in [0, 1]; anything else raises, naming `what`."""
    if isinstance(value, Real) and not isinstance(value, bool):
        x = float(value)
        if math.isfinite(x) and 0.0 <= x <= 1.0:
            return x
    raise ValueError(f"judge gave {what} {value!r}; scores must be finite numbers in [0, 1]")


def checked_scores(judgment: StepJudgment, num_steps: int) -> tuple[list[float], float | None]:
    """The judgment's step scores and trajectory score, checked (see the module doc)."""
    if len(judgment.scores) != num_steps:
        raise ValueError(f"judge gave {len(judgment.scores)} scores for {num_steps} steps")
    scores = [_unit_score(s, f"step {i} score") for i, s in enumerate(judgment.scores)]
    trajectory = judgment.trajectory_score
    if trajectory is not None:
        trajectory = _unit_score(trajectory, "trajectory score")
    return scores, trajectory


_SHARED_LLM = ("splitter 'llm' needs an LLM: the judge's (an LLM judge: tpgrpo, rprm, self, "
               "montecarlo, http) or its own in splitter_options (model or endpoint)")


def check_options(judge: str, splitter: str = "auto", options: dict | None = None) -> None:
    """Raise ValueError naming every problem with `Scorer(judge, splitter, **options)`: the
    judge's options (`registry.check_judge_options`) and `splitter_options`, the splitter's
    (`steps.check_splitter_options`). Builds nothing; what a config or command line calls."""
    options = dict(options or {})
    split = options.pop("splitter_options", None) or {}
    if not isinstance(split, dict):
        raise ValueError(f"splitter_options must be a mapping of option names to values, "
                         f"got {type(split).__name__} {split!r}")
    check_judge_options(judge, options)
    check_splitter_options(splitter, split)
    if splitter == "llm" and not llm_module.chooses_llm(split) and not _asks_llm(judge, options):
        raise ValueError(_SHARED_LLM)


def _asks_llm(judge: str, options: dict) -> bool:
    """Whether the judge these options build asks an LLM (one the `llm` splitter can share)."""
    return options.get("llm") is not None or \
        llm_module.make_llm in judge_option_sources(judge, options)


class Scorer:
    """`judge` and its options, `splitter` and its `splitter_options` (`check_options` checks
    them all before anything is built)."""

    def __init__(self, judge: str = "tool", splitter: str = "auto",
                 grader: GradingPool | None = None, splitter_options: dict | None = None,
                 **judge_options):
        self.judge = get_judge(judge, **judge_options)
        splitter_options = dict(splitter_options or {})
        if splitter == "llm" and not llm_module.chooses_llm(splitter_options):
            # The LLM segmenter shares an LLM judge's engine unless given its own model.
            if getattr(self.judge, "llm", None) is None:
                self.judge.close()
                raise ValueError(_SHARED_LLM)
            splitter_options["llm"] = self.judge.llm
        try:
            self.split = get_splitter(splitter, **splitter_options)
        except BaseException:
            self.judge.close()  # a judge's engine is not left running for a splitter mistake
            raise
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
            scores, trajectory = checked_scores(judgment, len(spans))
            labels = label_solution(spans, [response[a:b] for a, b in spans], scores,
                                    grade.correct, request.extracted, judgment.labels)
        except Exception as e:  # one sample's failure is that sample's, never the batch's
            return failed(f"{type(e).__name__}: {e}", grade.correct, request.extracted)
        return Verdict(
            outcome_correct=grade.correct,
            extracted_answer=request.extracted,
            step_spans=spans,
            step_scores=scores,
            step_labels=labels.step_labels,
            trajectory_score=trajectory,
            first_error_index=first_error_index(scores),
            thought_spans=labels.thought_spans,
            thought_labels=labels.thought_labels,
            judge_raw=judgment.raw,
            judge_error=None if grade.error is None else f"grading: {grade.error}",
        )
