"""`http`: an OpenAI-compatible completion endpoint as the LLM behind tpgrpo / rprm / self.

    get_judge("http", endpoint="http://judge-node:8000/v1", method="rprm", samples=8)

is the same judge as `get_judge("rprm", endpoint=..., samples=8)`; the name exists so a config
can say `backend: http` and keep the LLM choice (a large judge model served by `vllm serve`
elsewhere on the cluster) apart from the method. Client options: `model_name` (default: the
server's only model), `timeout_s`, `retries`, `backoff_s`, `api_key`, `prompt_template`,
`max_batch`, `max_reply_mb`.
"""
from __future__ import annotations

from typing import Literal, get_args

from reward_service.judges.base import StepJudge
from reward_service.judges.registry import judge_option_sources, register

Method = Literal["tpgrpo", "rprm", "self"]
METHODS = get_args(Method)


def _check(endpoint, method) -> None:
    if not endpoint:
        raise ValueError("needs the option `endpoint` (e.g. http://host:8000/v1)")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


@register("http")
def http_judge(endpoint: str | None = None, method: Method = "tpgrpo", **options) -> StepJudge:
    from reward_service.judges.registry import get_judge

    _check(endpoint, method)
    return get_judge(method, endpoint=endpoint, **options)


def _option_sources(options: dict) -> list:
    method = options.get("method", "tpgrpo")
    _check(options.get("endpoint"), method)
    rest = {k: v for k, v in options.items() if k != "method"}
    return [http_judge, *judge_option_sources(method, rest)]


http_judge.option_sources = _option_sources
