"""Judge backends by name: `@register("name")` on a class, `get_judge("name", **options)`."""
from __future__ import annotations

from typing import Callable

from reward_service.judges.base import StepJudge

_JUDGES: dict[str, Callable[..., StepJudge]] = {}


def register(name: str):
    def decorate(factory):
        if name in _JUDGES:
            raise ValueError(f"judge {name!r} is registered twice")
        _JUDGES[name] = factory
        return factory
    return decorate


def known_judges() -> list[str]:
    _load_builtin()
    return sorted(_JUDGES)


def get_judge(name: str, **options) -> StepJudge:
    _load_builtin()
    if name not in _JUDGES:
        raise ValueError(f"unknown judge {name!r}; known judges: {sorted(_JUDGES)}")
    judge = _JUDGES[name](**options)
    if not isinstance(judge, StepJudge):
        raise TypeError(f"judge {name!r} gave a {type(judge).__name__}, which does not subclass "
                        "reward_service.judges.StepJudge")
    return judge


def _load_builtin() -> None:
    # Imported here so that registering a backend never needs to import the others.
    from reward_service.judges import tool  # noqa: F401
    from reward_service.judges import http, rprm, self_judge, tpgrpo  # noqa: F401  (LLM judges)
    from reward_service.judges import montecarlo, step_classifier  # noqa: F401
