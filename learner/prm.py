"""A process reward model in Qwen2.5-Math-PRM's layout: what it reads, how it scores, its loss.

The model is a causal LM's backbone with a 2-label head read at the step separator
`<extra_0>` (added to the tokenizer as a special token): `model.*`, then `score.0` (Linear
h→h), ReLU, `score.2` (Linear h→2). Those are the names of Qwen's checkpoints and of vLLM's
`Qwen2ForProcessRewardModel`, so a saved directory (`save_dir`) is served by the
`step_classifier` judge exactly as a released PRM is, with no conversion. A step's score is
softmax(logits)[1] at its separator; the input is the judge's own (`classifier_ids`).

Loss (`prm_loss`): soft-label cross-entropy at every separator, the target being the step's
soft label (MM-PRM: the Monte-Carlo fraction itself, not a thresholded bit), plus
`trajectory_coef` × binary cross-entropy of the mean step score against the solution's outcome
(ReasonFlux-PRM's trajectory-level term: the mean step score, its r̂, learns to rank whole
solutions). Training ranks: learner/prm_rank.py; the job: cluster/prm_train.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reward_service.judges.step_classifier import DEFAULT_TAGS, classifier_ids

SEPARATOR = DEFAULT_TAGS["classifier"]  # <extra_0>
ARCHITECTURE = "Qwen2ForProcessRewardModel"
BACKBONES = ("qwen2",)  # what vLLM serves as Qwen2ForProcessRewardModel


def prm_tokenizer(base_dir: str | Path):
    """The base model's tokenizer with the separator as a special token of its own."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if SEPARATOR not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [SEPARATOR]},
                                     replace_extra_special_tokens=False)
    return tokenizer


@dataclass
class Example:
    """One labelled solution as the model reads it: a target per separator."""
    input_ids: list[int]
    soft: list[float]  # the step's target in [0, 1]
    hard: list[bool]  # the step's label (for accuracy)
    outcome: float  # the solution's outcome (trajectory term)


def encode(tokenizer, problem: str, steps: list[str], soft: list[float], hard: list[bool],
           outcome: float) -> Example:
    if not steps or len(soft) != len(steps) or len(hard) != len(steps):
        raise ValueError(f"{len(steps)} steps with {len(soft)} soft labels and {len(hard)} labels")
    ids = classifier_ids(tokenizer, problem, steps, SEPARATOR)
    sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    found = sum(t == sep for t in ids)
    if found != len(steps):
        raise ValueError(f"{found} separators in the input for {len(steps)} steps")
    return Example(ids, [float(s) for s in soft], [bool(h) for h in hard], float(outcome))


class ProcessRewardModel(nn.Module):
    """`model` (a causal LM's backbone) and `score` (the 2-label head), named as in Qwen's PRMs."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.model = backbone
        self.score = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2))

    @classmethod
    def from_causal_lm(cls, path: str | Path, vocab_size: int) -> "ProcessRewardModel":
        """The backbone of the causal LM at `path` (its LM head dropped), embeddings grown to
        `vocab_size` where the separator needs a new row; a freshly initialised head."""
        from transformers import AutoModelForCausalLM
        lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        check_backbone(lm.config.model_type, path)
        if vocab_size > lm.config.vocab_size:
            lm.resize_token_embeddings(vocab_size)
        backbone = getattr(lm, lm.base_model_prefix)
        backbone.config.use_cache = False
        return cls(backbone, lm.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.score(hidden)


def check_backbone(model_type: str, path) -> None:
    if model_type not in BACKBONES:
        raise ValueError(f"{path}: a {model_type!r} model cannot be the backbone of a {ARCHITECTURE} "
                         f"(vLLM serves it on {', '.join(BACKBONES)} backbones)")


def padded_vocab(tokenizer, base_vocab: int) -> int:
    """The embedding rows the PRM needs: the base's, or the tokenizer's rounded up to 64."""
    return max(base_vocab, -(-len(tokenizer) // 64) * 64)


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    soft: torch.Tensor  # (B, T): the target at separators, 0 elsewhere
    hard: torch.Tensor  # (B, T) bool
    at_step: torch.Tensor  # (B, T) bool: a separator
    outcome: torch.Tensor  # (B,)


def collate(examples: list[Example], sep_id: int, pad_id: int) -> MicroBatch:
    width = max(len(e.input_ids) for e in examples)
    b = len(examples)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    soft = torch.zeros((b, width))
    hard = torch.zeros((b, width), dtype=torch.bool)
    for i, e in enumerate(examples):
        ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, :len(e.input_ids)] = 1
        where = (ids[i] == sep_id) & (mask[i] == 1)
        soft[i, where] = torch.tensor(e.soft)
        hard[i, where] = torch.tensor(e.hard)
    return MicroBatch(ids, mask, soft, hard, (ids == sep_id) & (mask == 1),
                      torch.tensor([e.outcome for e in examples]))


def prm_loss(logits: torch.Tensor, mb: MicroBatch, num_steps: float, num_samples: float,
             trajectory_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of a micro-batch as its share of the global batch's mean (`num_steps`
    separators, `num_samples` solutions in all), and its sums for the report."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, 2)
    at = mb.at_step.to(logits.device)
    soft = mb.soft.to(logits.device)
    step_ce = -(soft * logp[..., 1] + (1 - soft) * logp[..., 0])[at].sum()
    loss = step_ce / num_steps
    p_good = logp[..., 1].exp()
    mean_score = (p_good * at).sum(1) / at.sum(1).clamp(min=1)
    outcome = mb.outcome.to(logits.device)
    eps = 1e-6
    traj_ce = -(outcome * torch.log(mean_score.clamp(eps, 1 - eps)) +
                (1 - outcome) * torch.log((1 - mean_score).clamp(eps, 1 - eps))).sum()
    if trajectory_coef:
        loss = loss + trajectory_coef * traj_ce / num_samples
    right = ((p_good >= 0.5) == mb.hard.to(logits.device))[at].sum()
    return loss, {"step_ce": step_ce.detach(), "trajectory_ce": traj_ce.detach(), "step_right": right.detach().float()}


def save_dir(out: Path, state: dict[str, torch.Tensor], base_dir: str | Path, vocab_size: int) -> None:
    """The Hugging Face directory vLLM and the `step_classifier` judge load: `state` under
    Qwen's names (`model.*`, `score.*`), the base's config as a Qwen2ForProcessRewardModel.
    The tokenizer files are already there (cluster/prm_train.py writes them first)."""
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(base_dir) / "config.json").read_text())
    config.update(architectures=[ARCHITECTURE], num_labels=2, vocab_size=vocab_size,
                  id2label={"0": "wrong", "1": "right"}, label2id={"wrong": 0, "right": 1})
    config.pop("auto_map", None)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if not any(k.startswith("score.") for k in tensors) or not any(k.startswith("model.") for k in tensors):
        raise ValueError(f"not a PRM state dict: {sorted(tensors)[:4]} ...")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
