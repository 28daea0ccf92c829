"""How well an advantage estimator assigns credit, measured without training.

Given groups of judged solutions whose faulty steps are known by construction, each token is
*faulty* (it lies in a faulty step) or *sound*, and each algorithm either *blames* it (advantage
< 0) or *spares* it (advantage >= 0). Over all tokens of all groups:

- `faulty_blamed`: the share of faulty tokens blamed;
- `sound_spared`: the share of sound tokens spared;
- `mutual_information`: I(blamed; faulty) in bits, from the 2 x 2 table of token counts, and
  `information_share`, the same divided by H(faulty): the part of the uncertainty about which
  tokens are faulty that the sign of the advantage removes (1: the sign marks exactly the
  faulty tokens, or exactly the sound ones; 0: it says nothing about them).

A token belongs to the step its first non-space character lies in, as for the advantages
(`advantages.token_anchors`). Only the sign is counted: an estimator that blames the right
tokens a little and one that blames them a lot score alike here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reward_service.advantages import GroupSample, group_advantages, token_anchors
from reward_service.verdict import Verdict

Spans = list[tuple[int, int]]


@dataclass
class CreditTable:
    """Token counts by (faulty or sound) x (blamed or spared)."""
    faulty_blamed_tokens: int = 0
    faulty_spared_tokens: int = 0
    sound_blamed_tokens: int = 0
    sound_spared_tokens: int = 0

    def add(self, advantages: np.ndarray, faulty: np.ndarray) -> None:
        blamed = np.asarray(advantages) < 0
        faulty = np.asarray(faulty, dtype=bool)
        if blamed.shape != faulty.shape:
            raise ValueError(f"{blamed.size} advantages but {faulty.size} token labels")
        self.faulty_blamed_tokens += int(np.sum(blamed & faulty))
        self.faulty_spared_tokens += int(np.sum(~blamed & faulty))
        self.sound_blamed_tokens += int(np.sum(blamed & ~faulty))
        self.sound_spared_tokens += int(np.sum(~blamed & ~faulty))

    @property
    def faulty_blamed(self) -> float:
        n = self.faulty_blamed_tokens + self.faulty_spared_tokens
        return self.faulty_blamed_tokens / n if n else math.nan

    @property
    def sound_spared(self) -> float:
        n = self.sound_blamed_tokens + self.sound_spared_tokens
        return self.sound_spared_tokens / n if n else math.nan

    def _joint(self) -> np.ndarray:
        counts = np.array([[self.faulty_blamed_tokens, self.faulty_spared_tokens],
                           [self.sound_blamed_tokens, self.sound_spared_tokens]], dtype=np.float64)
        return counts / counts.sum() if counts.sum() else counts

    @property
    def mutual_information(self) -> float:
        """I(blamed; faulty) in bits."""
        p = self._joint()
        outer = np.outer(p.sum(axis=1), p.sum(axis=0))
        nz = p > 0
        return float(np.sum(p[nz] * np.log2(p[nz] / outer[nz])))

    @property
    def information_share(self) -> float:
        """I(blamed; faulty) / H(faulty); nan when every token is faulty or every token sound."""
        q = self._joint().sum(axis=1)
        h = -sum(x * math.log2(x) for x in q if x > 0)
        return self.mutual_information / h if h > 0 else math.nan

    def summary(self) -> dict:
        return {"faulty_blamed": self.faulty_blamed, "sound_spared": self.sound_spared,
                "mutual_information_bits": self.mutual_information,
                "information_share": self.information_share,
                "faulty_tokens": self.faulty_blamed_tokens + self.faulty_spared_tokens,
                "sound_tokens": self.sound_blamed_tokens + self.sound_spared_tokens}


def faulty_tokens(sample: GroupSample, faulty_spans: Spans) -> np.ndarray:
    """For each token: whether its anchor character lies in one of `faulty_spans`."""
    anchors = token_anchors(sample)
    out = np.zeros(sample.num_tokens, dtype=bool)
    for start, end in faulty_spans:
        out |= (anchors >= start) & (anchors < end)
    return out


def judged_sample(verdict: Verdict, response: str, token_char_offsets: list[int]) -> GroupSample:
    """A judged response as the advantage functions read it."""
    return GroupSample(
        outcome_correct=verdict.outcome_correct, num_tokens=len(token_char_offsets),
        token_char_offsets=list(token_char_offsets), response_text=response,
        thought_spans=list(verdict.thought_spans), thought_labels=list(verdict.thought_labels),
        step_spans=list(verdict.step_spans), step_scores=list(verdict.step_scores),
        step_labels=list(verdict.step_labels), trajectory_score=verdict.trajectory_score)


def credit_tables(groups: list[list[tuple[GroupSample, Spans]]], algorithms: list[str],
                  alpha: float = 1.0, beta: float = 0.75) -> dict[str, CreditTable]:
    """One table per algorithm over `groups`: each a list of (sample, its faulty spans)."""
    tables = {name: CreditTable() for name in algorithms}
    for group in groups:
        samples = [s for s, _ in group]
        masks = [faulty_tokens(s, spans) for s, spans in group]
        for name in algorithms:
            for adv, mask in zip(group_advantages(name, samples, alpha=alpha, beta=beta), masks):
                tables[name].add(adv, mask)
    return tables
