"""`http`: an OpenAI-compatible completion endpoint as the LLM behind tpgrpo / rprm / self.

    get_judge("http", endpoint="http://judge-node:8000/v1", method="rprm", samples=8)

is the same judge as `get_judge("rprm", endpoint=..., samples=8)`; the name exists so a config
can say `backend: http` and keep the LLM choice (a large judge model served by `vllm serve`
elsewhere on the cluster) apart from the method. Client options: `model_name` (default: the
server's only model), `timeout_s`, `retries`, `backoff_s`, `api_key`, `prompt_template`.
"""
from __future__ import annotations

from reward_service.judges.base import StepJudge
from reward_service.judges.registry import register

METHODS = ("tpgrpo", "rprm", "self")


@register("http")
def http_judge(endpoint: str | None = None, method: str = "tpgrpo", **options) -> StepJudge:
    from reward_service.judges.registry import get_judge

    if not endpoint:
        raise ValueError("judge 'http' needs the option `endpoint` (e.g. http://host:8000/v1)")
    if method not in METHODS:
        raise ValueError(f"judge 'http': method must be one of {METHODS}, got {method!r}")
    return get_judge(method, endpoint=endpoint, **options)
