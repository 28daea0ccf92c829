"""Discriminative step PRMs, served by vLLM's pooling runner with step pooling.

Two input styles; all solutions of a batch go through the engine in one call:

- `classifier` (Qwen2.5-Math-PRM, ReasonFlux-PRM): the steps, each followed by `<extra_0>`,
  are the assistant turn of the chat template; the model's 2-label head gives logits at every
  separator and a step's score is softmax(logits)[1], P(positive). vLLM serves these as
  `Qwen2ForProcessRewardModel`.
- `shepherd` (Math-Shepherd): "{problem} {step 1} ки\\n{step 2} ки..." through a causal LM;
  a step's score is the softmax over the next-token logits of "+" and "-" at its tag, i.e.
  P(+) / (P(+) + P(-)). vLLM's `convert="classify"` turns the LM head's rows of those two
  tokens into a 2-label head, so the same step pooler returns exactly those logits.

Options: `model` (a Hugging Face model directory), `style` ("auto" reads the architecture:
`*ForProcessRewardModel` is `classifier`, `*ForCausalLM` is `shepherd`), `step_tag`
(default `<extra_0>` / `ки`), `good_token` / `bad_token` (vocabulary spellings of "+" / "-"),
`system` (the classifier's system prompt), `engine` (a ready pooling `VLLMEngine`), and
engine arguments (`max_model_len`, `dtype`, `kv_cache_gb`, ...).
"""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

from reward_service.judges.base import Spans, StepJudge, StepJudgment, StepRequest
from reward_service.judges.llm_judge import in_one_call, per_sample
from reward_service.judges.registry import register
from reward_service.llm import context_length, vllm_engine_arguments

CLASSIFIER, SHEPHERD = "classifier", "shepherd"
DEFAULT_TAGS = {CLASSIFIER: "<extra_0>", SHEPHERD: "ки"}
# The system prompt of Qwen2.5-Math-PRM's reference usage.
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def detect_style(model_dir: str | Path) -> str:
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {model_dir}/config.json to pick a style ({e}); "
                         "pass style=classifier or style=shepherd") from None
    architectures = config.get("architectures") or []
    if any(a.endswith("ForProcessRewardModel") for a in architectures):
        return CLASSIFIER
    if any(a.endswith("ForCausalLM") for a in architectures):
        return SHEPHERD
    raise ValueError(f"{model_dir}: architecture {architectures} is neither a process reward "
                     "model nor a causal LM; pass style=classifier or style=shepherd")


def classifier_text(tokenizer, problem: str, steps: list[str], step_tag: str = DEFAULT_TAGS[CLASSIFIER],
                    system: str = QWEN_PRM_SYSTEM) -> str:
    """Qwen2.5-Math-PRM's input: the steps, each followed by `step_tag`, as the assistant turn of
    the tokenizer's chat template (without one: the problem, a blank line, the steps). A tag
    inside the text itself would add a score position: tags are removed first."""
    problem = problem.replace(step_tag, "")
    assistant = "".join(s.strip().replace(step_tag, "") + step_tag for s in steps)
    if not getattr(tokenizer, "chat_template", None):
        return f"{problem}\n\n{assistant}"
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": problem},
                {"role": "assistant", "content": assistant}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def classifier_ids(tokenizer, problem: str, steps: list[str], step_tag: str = DEFAULT_TAGS[CLASSIFIER],
                   system: str = QWEN_PRM_SYSTEM) -> list[int]:
    """`classifier_text` as token ids: what this judge sends a PRM, and what a PRM is trained
    on (learner/prm.py). Chat-formatted text carries its own special tokens."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    return tokenizer.encode(classifier_text(tokenizer, problem, steps, step_tag, system),
                            add_special_tokens=not chat)


def _softmax_column(logits: list[list[float]], column: int) -> list[float]:
    out = []
    for row in logits:
        top = max(row)
        weights = [math.exp(x - top) for x in row]
        out.append(weights[column] / sum(weights))
    return out


@register("step_classifier")
class StepClassifierJudge(StepJudge):
    def __init__(self, model: str | None = None, style: str = "auto", step_tag: str | None = None,
                 good_token: str = "+", bad_token: str = "-", system: str = QWEN_PRM_SYSTEM,
                 engine=None, max_model_len: int | None = None, dtype: str = "auto",
                 **engine_kwargs):
        if engine is None and model is None:
            raise ValueError("step_classifier needs `model` (a PRM directory) or `engine`")
        if style == "auto":
            style = detect_style(model if model is not None else engine.model_path)
        if style not in DEFAULT_TAGS:
            raise ValueError(f"unknown style {style!r}; known: {sorted(DEFAULT_TAGS)}")
        self.style = style
        self.step_tag = step_tag or DEFAULT_TAGS[style]
        self.system = system
        if engine is None:
            engine = self.make_engine(model, style, self.step_tag, good_token, bad_token,
                                      max_model_len=max_model_len, dtype=dtype, **engine_kwargs)
        self.engine = engine
        self.tokenizer = engine.tokenizer
        # The tag's id as the reference code takes it: the last token of the tag alone.
        self.step_tag_id = self.tokenizer.encode(self.step_tag, add_special_tokens=False)[-1]
        self.max_model_len = int(engine.llm.llm_engine.model_config.max_model_len)

    @classmethod
    def option_sources(cls, options: dict) -> list:
        if options.get("engine") is not None:  # a ready engine takes no engine arguments
            return [cls.__init__, inspect.Signature()]
        from core.engine import VLLMEngine
        return [cls.__init__, VLLMEngine, vllm_engine_arguments()]

    @staticmethod
    def make_engine(model: str, style: str, step_tag: str, good_token: str = "+",
                    bad_token: str = "-", max_model_len: int | None = None, dtype: str = "auto",
                    **engine_kwargs):
        """A pooling `VLLMEngine` that returns 2 logits at every step tag."""
        from transformers import AutoTokenizer

        from core.engine import VLLMEngine

        tokenizer = AutoTokenizer.from_pretrained(model)
        tag_id = tokenizer.encode(step_tag, add_special_tokens=False)[-1]
        pooler = {"task": "token_classify", "tok_pooling_type": "STEP", "step_tag_id": tag_id}
        if style == SHEPHERD:
            for token in (good_token, bad_token):
                if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
                    raise ValueError(f"{model}: {token!r} is not a token of the vocabulary")
            engine_kwargs.update(
                convert="classify",
                hf_overrides={"classifier_from_token": [good_token, bad_token],
                              "method": "no_post_processing"})
        return VLLMEngine(str(model), dtype=dtype, runner="pooling", pooler_config=pooler,
                          max_model_len=max_model_len or context_length(model), **engine_kwargs)

    def format(self, problem: str, steps: list[str]) -> str:
        if self.style == SHEPHERD:
            return f"{problem} " + "\n".join(f"{s} {self.step_tag}" for s in steps)
        return classifier_text(self.tokenizer, problem, steps, self.step_tag, self.system)

    def token_ids(self, problem: str, response: str, spans: Spans) -> list[int]:
        steps = [response[a:b] for a, b in spans]
        if self.style == CLASSIFIER:
            ids = classifier_ids(self.tokenizer, problem, steps, self.step_tag, self.system)
        else:  # a tag inside the text itself would add a score position: tags are removed first
            text = self.format(problem.replace(self.step_tag, ""),
                               [s.strip().replace(self.step_tag, "") for s in steps])
            ids = self.tokenizer.encode(text, add_special_tokens=True)
        found = sum(1 for t in ids if t == self.step_tag_id)
        if found != len(spans):
            raise ValueError(f"{found} step tags in the tokenized input for {len(spans)} steps "
                             f"(the tag {self.step_tag!r} does not tokenize on its own here)")
        if len(ids) > self.max_model_len:
            raise ValueError(f"input of {len(ids)} tokens exceeds the PRM's context of "
                             f"{self.max_model_len}")
        return ids

    def judge_batch(self, requests: list[StepRequest]) -> list[StepJudgment | Exception]:
        ids = per_sample(lambda r: [self.token_ids(r.problem, r.response, r.spans)]
                         if r.spans else [], requests)
        return per_sample(self.judgment, requests, in_one_call(self.step_logits, ids))

    def step_logits(self, batch: list[list[int]]) -> list[list[list[float]]]:
        """The 2 logits at every step tag of each input, in one pass of the pooling engine."""
        from vllm.pooling_params import PoolingParams

        # Raw logits (no activation): the softmax below is the reference code's, for both styles.
        params = PoolingParams(use_activation=False, step_tag_id=self.step_tag_id)
        outputs = self.engine.encode([{"prompt_token_ids": ids} for ids in batch], params,
                                     pooling_task="token_classify")
        return [out.outputs.data.float().reshape(-1, 2).tolist() for out in outputs]

    def judgment(self, request: StepRequest, logits: list) -> StepJudgment:
        if not request.spans:
            return StepJudgment(scores=[], raw="")
        (logits,) = logits
        if len(logits) != len(request.spans):
            raise ValueError(f"the PRM scored {len(logits)} tags for {len(request.spans)} steps")
        # classifier: label 1 is "correct"; shepherd: column 0 is the good token "+".
        scores = _softmax_column(logits, 1 if self.style == CLASSIFIER else 0)
        return StepJudgment(scores=scores, raw=json.dumps({"style": self.style, "logits": logits}))

    def close(self) -> None:
        self.engine.shutdown()
