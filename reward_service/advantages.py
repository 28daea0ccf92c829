"""Rewards and token-level advantages for one group of G samples of the same prompt.

Each algorithm is a registry entry that owns both its scalar reward per sample (what a sample
is credited with, reported as `reward`) and its per-token advantages:
- grpo: the standardized outcome reward r̂ᵒ on every token.
- tpgrpo: TP-GRPO's capability-adaptive thought rewards (DESIGN.md §4 table): correct solution,
  correct thought r̂ᵒ, incorrect thought r̂ᵒ − α·acc_G; wrong solution, thought matching the
  wrong answer r̂ᵒ, uncertain thought 0. Process rewards are not standardized.
- tpgrpo_static: the same with a constant penalty α.
- tpgrpo_steps: the paper's ablation without thought merging: the same table on the step
  labels, each step its own thought. Since a token's advantage depends on its own label only,
  merging equally labelled steps changes no advantage; the two differ only where a wrong
  solution ends in several uncertain steps: the final *thought* (all of them) carries r̂ᵒ in
  tpgrpo, the final *step* in tpgrpo_steps (`thoughts.label_solution`).
- step_grpo: DeepSeekMath process supervision; standardized step rewards summed over the
  token's step and every later step.
- reasonflux: ReasonFlux-PRM's blend r = (1-β)·r_out + β·r̂ with r̂ = mean(step scores)
  + α·trajectory score (α's term only where the judge gives a trajectory score), standardized
  within the group as in GRPO and put on every token. A sample whose judging failed (no step
  scores) takes the lowest r̂ of the judged samples with its outcome (0 if there are none), so
  a failed judging never ranks it above them.

A token belongs to the step (or thought) in which its first non-space character lies; a token
of whitespace only stays with the step before (where the partition puts whitespace).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reward_service.thoughts import CORRECT, INCORRECT, LABELS

_EPS = 1e-6
Spans = list[tuple[int, int]]


@dataclass
class GroupSample:
    outcome_correct: bool
    num_tokens: int
    token_char_offsets: list[int]  # char start in response_text of each response token
    response_text: str
    thought_spans: Spans = field(default_factory=list)
    thought_labels: list[str] = field(default_factory=list)
    step_spans: Spans = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    step_labels: list[str] = field(default_factory=list)
    trajectory_score: float | None = None

    @classmethod
    def judged(cls, verdict, response_text: str, token_char_offsets: list[int]) -> "GroupSample":
        """A response and its `verdict.Verdict`, as the advantage functions read them."""
        return cls(verdict.outcome_correct, len(token_char_offsets), list(token_char_offsets),
                   response_text, list(verdict.thought_spans), list(verdict.thought_labels),
                   list(verdict.step_spans), list(verdict.step_scores),
                   list(verdict.step_labels), verdict.trajectory_score)


Advantages = Callable[[list[GroupSample], float, float], list[np.ndarray]]
Rewards = Callable[[list[GroupSample], float, float], list[float]]


@dataclass(frozen=True)
class Algorithm:
    name: str
    rewards: Rewards  # (group, alpha, beta) -> the scalar reward of each sample
    advantages: Advantages  # (group, alpha, beta) -> float32 array of num_tokens per sample
    doc: str


_ALGORITHMS: dict[str, Algorithm] = {}


def outcome_reward(group: list[GroupSample], alpha: float = 0.0, beta: float = 0.0) -> list[float]:
    return [1.0 if s.outcome_correct else 0.0 for s in group]


def register(name: str, rewards: Rewards = outcome_reward):
    """Register an advantage function `(group, alpha, beta)` under `name`."""
    def decorate(fn: Advantages) -> Advantages:
        if name in _ALGORITHMS:
            raise ValueError(f"algorithm {name!r} is registered twice")
        _ALGORITHMS[name] = Algorithm(name, rewards, fn, (fn.__doc__ or "").strip())
        return fn
    return decorate


def known_algorithms() -> list[str]:
    return sorted(_ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known: {known_algorithms()}")
    return _ALGORITHMS[name]


# ---- helpers ------------------------------------------------------------------------------

def standardized(values: list[float]) -> np.ndarray:
    """(x - mean) / (population std + eps); identical values give zeros."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    return (x - x.mean()) / (x.std() + _EPS)


def token_anchors(sample: GroupSample) -> np.ndarray:
    """For each token, the character it belongs by: its first non-space one, or its start when
    it is all whitespace; tokens past the offsets (an EOS) sit at the end of the text."""
    text, n = sample.response_text, sample.num_tokens
    offsets = list(sample.token_char_offsets[:n])
    ends = offsets[1:] + [len(text)]
    next_text = [len(text)] * (len(text) + 1)  # next_text[p]: first non-space at or after p
    for p in range(len(text) - 1, -1, -1):
        next_text[p] = p if not text[p].isspace() else next_text[p + 1]
    anchors = [next_text[min(a, len(text))] if next_text[min(a, len(text))] < e else a
               for a, e in zip(offsets, ends)]
    return np.asarray(anchors + [len(text)] * (n - len(offsets)), dtype=np.int64)


def span_index_of_tokens(sample: GroupSample, spans: Spans) -> np.ndarray:
    """For each token, the index of the span its anchor (`token_anchors`) lies in; past the
    last span, the last one."""
    starts = np.asarray([s for s, _ in spans], dtype=np.int64)
    return np.clip(np.searchsorted(starts, token_anchors(sample), side="right") - 1, 0, None)


def _check(i: int, s: GroupSample) -> None:
    """A sample's inputs are consistent and finite; anything else names the sample."""
    for what, spans, values in (("thought", s.thought_spans, s.thought_labels),
                                ("step", s.step_spans, s.step_scores)):
        if len(spans) != len(values):
            raise ValueError(f"sample {i}: {len(spans)} {what} spans but {len(values)} "
                             f"{what} {'labels' if what == 'thought' else 'scores'}")
    if s.step_labels and len(s.step_labels) != len(s.step_spans):
        raise ValueError(f"sample {i}: {len(s.step_spans)} step spans but {len(s.step_labels)} "
                         "step labels")
    for what, labels in (("thought_labels", s.thought_labels), ("step_labels", s.step_labels)):
        bad = [x for x in labels if x not in LABELS]
        if bad:
            raise ValueError(f"sample {i}: {what} holds {bad[0]!r}; known: {LABELS}")
    bad = [x for x in s.step_scores if not (math.isfinite(x) and 0.0 <= x <= 1.0)]
    if bad:
        raise ValueError(f"sample {i}: step_scores holds {bad[0]!r}; need finite values in [0, 1]")
    t = s.trajectory_score
    if t is not None and not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise ValueError(f"sample {i}: trajectory_score {t!r}; need a finite value in [0, 1]")


def group_advantages(algorithm: str, group: list[GroupSample], alpha: float = 1.0,
                     beta: float = 0.75) -> list[np.ndarray]:
    """One finite float32 array of length num_tokens per sample."""
    algo = get_algorithm(algorithm)
    for i, s in enumerate(group):
        _check(i, s)
    out = algo.advantages(group, alpha, beta)
    for i, a in enumerate(out):
        if not np.all(np.isfinite(a)):  # unreachable with checked inputs; never train on it
            raise ValueError(f"sample {i}: {algorithm} gave non-finite advantages")
    return out


def group_rewards(algorithm: str, group: list[GroupSample], alpha: float = 1.0,
                  beta: float = 0.75) -> list[float]:
    """The scalar reward each sample is credited with (what `reward_mean` reports)."""
    return get_algorithm(algorithm).rewards(group, alpha, beta)


def _per_token(group: list[GroupSample], values) -> list[np.ndarray]:
    return [np.full(s.num_tokens, v, dtype=np.float32) for s, v in zip(group, values)]


# ---- the algorithms -----------------------------------------------------------------------

@register("grpo")
def _grpo(group: list[GroupSample], alpha: float, beta: float) -> list[np.ndarray]:
    """Outcome-only GRPO: the standardized outcome reward on every token."""
    return _per_token(group, standardized(outcome_reward(group)))


def _table(group: list[GroupSample], penalty: float, steps: bool) -> list[np.ndarray]:
    """The TP-GRPO table on thoughts (or, with `steps`, on steps as thoughts)."""
    r_hat = standardized(outcome_reward(group))
    out = []
    for sample, r in zip(group, r_hat):
        spans, labels = ((sample.step_spans, sample.step_labels) if steps
                         else (sample.thought_spans, sample.thought_labels))
        if not labels:  # judging failed: outcome reward only
            out.append(np.full(sample.num_tokens, r, dtype=np.float32))
            continue
        if sample.outcome_correct:
            per_unit = [r - penalty if label == INCORRECT else r for label in labels]
        else:  # a wrong solution: only what leads to the wrong answer is blamed
            per_unit = [r if label == INCORRECT else 0.0 for label in labels]
        out.append(np.asarray(per_unit, dtype=np.float32)[span_index_of_tokens(sample, spans)])
    return out


def _accuracy(group: list[GroupSample]) -> float:
    return float(np.mean(outcome_reward(group))) if group else 0.0


@register("tpgrpo")
def _tpgrpo(group: list[GroupSample], alpha: float, beta: float) -> list[np.ndarray]:
    """TP-GRPO: thought rewards with the capability-adaptive penalty α·acc_G."""
    return _table(group, alpha * _accuracy(group), steps=False)


@register("tpgrpo_static")
def _tpgrpo_static(group: list[GroupSample], alpha: float, beta: float) -> list[np.ndarray]:
    """TP-GRPO with a constant penalty α on incorrect thoughts."""
    return _table(group, alpha, steps=False)


@register("tpgrpo_steps")
def _tpgrpo_steps(group: list[GroupSample], alpha: float, beta: float) -> list[np.ndarray]:
    """TP-GRPO without thought merging: each step its own thought (penalty α·acc_G)."""
    return _table(group, alpha * _accuracy(group), steps=True)


@register("step_grpo")
def _step_grpo(group: list[GroupSample], alpha: float, beta: float) -> list[np.ndarray]:
    """DeepSeekMath process supervision: standardized step scores summed over later steps."""
    flat = standardized([x for s in group for x in s.step_scores])
    out, k = [], 0
    for sample in group:
        n = len(sample.step_scores)
        rewards, k = flat[k:k + n], k + n
        if n == 0:
            out.append(np.zeros(sample.num_tokens, dtype=np.float32))
            continue
        later_sum = np.cumsum(rewards[::-1])[::-1]  # step j gets the sum over steps >= j
        out.append(later_sum[span_index_of_tokens(sample, sample.step_spans)].astype(np.float32))
    return out


def reasonflux_rewards(group: list[GroupSample], alpha: float, beta: float) -> list[float]:
    """(1-β)·r_out + β·r̂ per sample, before standardization (see the module doc)."""
    r_hat = [None if not s.step_scores else float(np.mean(s.step_scores))
             + (alpha * s.trajectory_score if s.trajectory_score is not None else 0.0)
             for s in group]
    for i, s in enumerate(group):
        if r_hat[i] is None:
            peers = [r for r, p in zip(r_hat, group)
                     if r is not None and p.step_scores and p.outcome_correct == s.outcome_correct]
            r_hat[i] = min(peers, default=0.0)
    return [(1.0 - beta) * r_out + beta * r for r_out, r in zip(outcome_reward(group), r_hat)]


@register("reasonflux", rewards=reasonflux_rewards)
def _reasonflux(group: list[GroupSample], alpha: float, beta: float) -> list[np.ndarray]:
    """ReasonFlux-PRM: the blend (1-β)·r_out + β·r̂, standardized in the group, on every token."""
    return _per_token(group, standardized(reasonflux_rewards(group, alpha, beta)))


__all__ = ["Algorithm", "CORRECT", "GroupSample", "get_algorithm", "group_advantages",
           "group_rewards", "known_algorithms", "outcome_reward", "reasonflux_rewards", "register",
           "span_index_of_tokens", "standardized", "token_anchors"]
