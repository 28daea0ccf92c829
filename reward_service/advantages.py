"""Token-level advantages for one group of G samples of the same prompt.

`group_advantages(name, group, alpha, beta)` dispatches through `ALGORITHMS`:
- grpo: the standardized outcome reward on every token.
- tpgrpo: TP-GRPO's capability-adaptive thought rewards (DESIGN.md §4 table), penalty α·acc_G.
- tpgrpo_static: the same with a constant penalty α.
- step_grpo: DeepSeekMath process supervision; standardized step rewards summed over the
  token's step and every later step.
- reasonflux: ReasonFlux-PRM's blend r = (1-β)·r_out + β·r̂ with r̂ = mean(step scores)
  + α·trajectory score (α's term only where the judge gives a trajectory score), standardized
  within the group as in GRPO and put on every token. A sample whose judging failed has no
  step scores and keeps r = r_out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reward_service.thoughts import CORRECT, INCORRECT

_EPS = 1e-6
Spans = list[tuple[int, int]]


@dataclass
class GroupSample:
    outcome_correct: bool
    num_tokens: int
    token_char_offsets: list[int]  # char start of each response token
    thought_spans: Spans = field(default_factory=list)
    thought_labels: list[str] = field(default_factory=list)
    step_spans: Spans = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    trajectory_score: float | None = None


def outcome_reward(group: list[GroupSample]) -> list[float]:
    return [1.0 if s.outcome_correct else 0.0 for s in group]


def standardized(values: list[float]) -> np.ndarray:
    """(x - mean) / (population std + eps); identical values give zeros."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    return (x - x.mean()) / (x.std() + _EPS)


def span_index_of_tokens(sample: GroupSample, spans: Spans) -> np.ndarray:
    """For each token, the index of the span containing it or, outside every span (an EOS
    past the text), the nearest preceding one; tokens before the first span take the first."""
    offsets = np.asarray(sample.token_char_offsets[: sample.num_tokens], dtype=np.int64)
    if offsets.size < sample.num_tokens:  # tokens without text (EOS) sit at the end
        last = offsets[-1] if offsets.size else 0
        offsets = np.concatenate([offsets, np.full(sample.num_tokens - offsets.size, last)])
    starts = np.asarray([s for s, _ in spans], dtype=np.int64)
    return np.clip(np.searchsorted(starts, offsets, side="right") - 1, 0, None)


def _grpo(group: list[GroupSample], alpha: float) -> list[np.ndarray]:
    r_hat = standardized(outcome_reward(group))
    return [np.full(s.num_tokens, r, dtype=np.float32) for s, r in zip(group, r_hat)]


def _thought_advantages(group: list[GroupSample], penalty: float) -> list[np.ndarray]:
    r_hat = standardized(outcome_reward(group))
    out = []
    for sample, r in zip(group, r_hat):
        if not sample.thought_spans:  # judging failed: outcome reward only
            out.append(np.full(sample.num_tokens, r, dtype=np.float32))
            continue
        if sample.outcome_correct:
            per_thought = [r - penalty if label == INCORRECT else r for label in sample.thought_labels]
        else:  # a wrong solution: only thoughts that lead to the wrong answer are blamed
            per_thought = [r if label == INCORRECT else 0.0 for label in sample.thought_labels]
        index = span_index_of_tokens(sample, sample.thought_spans)
        out.append(np.asarray(per_thought, dtype=np.float32)[index])
    return out


def _tpgrpo(group: list[GroupSample], alpha: float) -> list[np.ndarray]:
    acc = float(np.mean(outcome_reward(group))) if group else 0.0
    return _thought_advantages(group, alpha * acc)


def _tpgrpo_static(group: list[GroupSample], alpha: float) -> list[np.ndarray]:
    return _thought_advantages(group, alpha)


def _step_grpo(group: list[GroupSample], alpha: float) -> list[np.ndarray]:
    flat = standardized([x for s in group for x in s.step_scores])
    out, k = [], 0
    for sample in group:
        n = len(sample.step_scores)
        rewards, k = flat[k:k + n], k + n
        if n == 0 or not sample.step_spans:
            out.append(np.zeros(sample.num_tokens, dtype=np.float32))
            continue
        later_sum = np.cumsum(rewards[::-1])[::-1]  # step j gets the sum over steps >= j
        index = span_index_of_tokens(sample, sample.step_spans)
        out.append(later_sum[index].astype(np.float32))
    return out


def reasonflux_rewards(group: list[GroupSample], alpha: float, beta: float) -> list[float]:
    """(1-β)·r_out + β·r̂ per sample, before standardization."""
    out = []
    for sample, r_out in zip(group, outcome_reward(group)):
        if not sample.step_scores:  # judging failed: the outcome alone
            out.append(r_out)
            continue
        r_hat = float(np.mean(sample.step_scores))
        if sample.trajectory_score is not None:
            r_hat += alpha * sample.trajectory_score
        out.append((1.0 - beta) * r_out + beta * r_hat)
    return out


def _reasonflux(group: list[GroupSample], alpha: float, beta: float = 0.75) -> list[np.ndarray]:
    r_hat = standardized(reasonflux_rewards(group, alpha, beta))
    return [np.full(s.num_tokens, r, dtype=np.float32) for s, r in zip(group, r_hat)]


ALGORITHMS: dict[str, Callable[..., list[np.ndarray]]] = {
    "grpo": _grpo,
    "tpgrpo": _tpgrpo,
    "tpgrpo_static": _tpgrpo_static,
    "step_grpo": _step_grpo,
    "reasonflux": _reasonflux,  # also takes beta
}


def group_advantages(algorithm: str, group: list[GroupSample], alpha: float = 1.0,
                     beta: float = 0.75) -> list[np.ndarray]:
    """One float32 array of length num_tokens per sample."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown advantage algorithm {algorithm!r}; known: {sorted(ALGORITHMS)}")
    for i, s in enumerate(group):
        if len(s.thought_spans) != len(s.thought_labels):
            raise ValueError(f"sample {i}: {len(s.thought_spans)} thought spans but "
                             f"{len(s.thought_labels)} labels")
        if len(s.step_spans) != len(s.step_scores):
            raise ValueError(f"sample {i}: {len(s.step_spans)} step spans but "
                             f"{len(s.step_scores)} step scores")
    if algorithm == "reasonflux":
        return _reasonflux(group, alpha, beta)
    return ALGORITHMS[algorithm](group, alpha)


__all__ = ["ALGORITHMS", "CORRECT", "GroupSample", "group_advantages", "outcome_reward"]
