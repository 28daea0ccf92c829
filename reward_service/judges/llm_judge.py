"""The base of the judges that ask an LLM (`reward_service.llm`), and how they judge in batches.

`LLMJudge` takes the options all of them share: `samples` replies per prompt, sampled at
`temperature` with at most `max_tokens` new tokens and `seed` (None: unseeded); every other
option chooses and configures the LLM (`model`, `endpoint` or a ready `llm`, then that LLM's
own options). A judge states its defaults as class attributes.

A judge's `judge_batch` runs in phases, each one LLM call for all samples of the batch:

    prompts = per_sample(self.prompts_of, requests)       # per sample: its prompts, or its error
    replies = self.sample(prompts)                        # one llm.generate for every sample
    return per_sample(self.judgment, requests, replies)   # per sample: a StepJudgment, or error

`OnePromptJudge` is that flow for the judges that ask one prompt per sample.

`per_sample` applies a function sample by sample and keeps each sample's error in its place;
`in_one_call` makes one call over the items of every sample still open and hands each sample
its own answers, or the error of its own item (`llm.PromptError`), so that a bad sample (a
prompt too long, an unreadable reply) costs only itself.
"""
from __future__ import annotations

import math
from typing import Any, Callable, get_args

from reward_service import llm as llm_module
from reward_service.judges.base import StepJudge, StepJudgment, StepRequest
from reward_service.judges.prompts import step_texts
from reward_service.llm import PromptError, make_llm

PerSample = list[Any]  # one entry per sample: its value, or the Exception it failed with


def per_sample(fn: Callable, *columns: PerSample) -> PerSample:
    """`fn(a, b, ...)` for each sample's entries of the columns; a sample that failed in an
    earlier phase keeps its error, and an error raised now becomes that sample's."""
    out: PerSample = []
    for args in zip(*columns):
        failed = next((a for a in args if isinstance(a, Exception)), None)
        if failed is not None:
            out.append(failed)
            continue
        try:
            out.append(fn(*args))
        except Exception as e:  # this sample's failure, kept in its place
            out.append(e)
    return out


def in_one_call(call: Callable[[list], list], groups: PerSample) -> PerSample:
    """`call(items)` once over the items of every open sample (a list each); each sample gets
    the answers to its own items back. A `PromptError` fails the samples of the failed items
    only; any other failure of the call is every open sample's."""
    flat = [item for g in groups if not isinstance(g, Exception) for item in g]
    try:
        answers = call(flat) if flat else []
    except PromptError as e:
        if not e.failed:
            return [g if isinstance(g, Exception) else e for g in groups]
        answers = [e.failed.get(i, answer) for i, answer in enumerate(e.answers)]
    except Exception as e:  # the model failed as a whole
        return [g if isinstance(g, Exception) else e for g in groups]
    out: PerSample = []
    pos = 0
    for g in groups:
        if isinstance(g, Exception):
            out.append(g)
            continue
        mine = answers[pos:pos + len(g)]
        pos += len(g)
        out.append(next((a for a in mine if isinstance(a, Exception)), mine))
    return out


def one_of(name: str, value: Any, choices: Any) -> Any:
    """`value` if it is one of the `Literal[...]` `choices`, else a ValueError naming `name`."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class LLMJudge(StepJudge):
    """A judge asking an LLM; each judge's defaults are these class attributes (an option left
    at None takes them)."""
    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 512

    def __init__(self, samples: int | None = None, temperature: float | None = None,
                 max_tokens: int | None = None, seed: int | None = 0, **llm_options):
        samples = self.samples if samples is None else samples
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        temperature = self.temperature if temperature is None else temperature
        self.samples = positive_int("samples", samples)
        self.max_tokens = positive_int("max_tokens", max_tokens)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        self.temperature, self.seed = float(temperature), seed
        self._own_llm = llm_options.get("llm") is None
        self.llm = make_llm(**llm_options)

    @classmethod
    def option_sources(cls, options: dict) -> list:
        return super().option_sources(options) + llm_module.option_sources(options)

    def sample(self, prompts: PerSample, stop: list[str] | None = None) -> PerSample:
        """`samples` replies to each prompt of each open sample, in one `llm.generate`."""
        return in_one_call(lambda batch: self.llm.generate(
            batch, n=self.samples, temperature=self.temperature, max_tokens=self.max_tokens,
            stop=stop, seed=self.seed), prompts)

    def close(self) -> None:
        if self._own_llm and hasattr(self.llm, "shutdown"):  # an LLM it was given is not its own
            self.llm.shutdown()


class OnePromptJudge(LLMJudge):
    """A judge that asks one prompt per sample about all its steps (`tpgrpo`, `self`):
    `prompt(request, texts)` writes it, `judgment(request, texts, replies)` reads the `samples`
    replies. A sample without steps asks nothing."""

    def prompt(self, request: StepRequest, texts: list[str]) -> str:
        raise NotImplementedError

    def judgment(self, request: StepRequest, texts: list[str], replies: list[str]) -> StepJudgment:
        raise NotImplementedError

    def judge_batch(self, requests: list[StepRequest]) -> list[StepJudgment | Exception]:
        texts = per_sample(lambda r: step_texts(r.response, r.spans), requests)
        prompts = per_sample(lambda r, t: [self.prompt(r, t)] if t else [], requests, texts)
        return per_sample(self._judged, requests, texts, self.sample(prompts))

    def _judged(self, request: StepRequest, texts: list[str], replies: list) -> StepJudgment:
        if not texts:
            return StepJudgment(scores=[], raw="")
        (mine,) = replies  # the replies to its one prompt
        return self.judgment(request, texts, mine)
