"""Judge backends by name: `@register("name")` on a class, `get_judge("name", **options)`, and
`check_judge_options("name", options)` to find a config's mistakes before anything starts."""
from __future__ import annotations

from typing import Callable

from reward_service.judges.base import StepJudge
from reward_service.options import check_options, did_you_mean

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


def _factory(name: str) -> Callable[..., StepJudge]:
    _load_builtin()
    if name not in _JUDGES:
        raise ValueError(f"unknown judge {name!r}{did_you_mean(name, _JUDGES)}; "
                         f"known judges: {sorted(_JUDGES)}")
    return _JUDGES[name]


def get_judge(name: str, **options) -> StepJudge:
    judge = _factory(name)(**options)
    if not isinstance(judge, StepJudge):
        raise TypeError(f"judge {name!r} gave a {type(judge).__name__}, which does not subclass "
                        "reward_service.judges.StepJudge")
    return judge


def judge_option_sources(name: str, options: dict) -> list:
    """The callables (or signatures) whose keyword parameters are judge `name`'s options, in
    the order the options are passed on: a factory's `option_sources(options)` where it has
    one (every StepJudge does), else the factory itself."""
    factory = _factory(name)
    sources = getattr(factory, "option_sources", None)
    return sources(options) if sources is not None else [factory]


def check_judge_options(name: str, options: dict) -> None:
    """Raise ValueError naming every unknown option (with a "did you mean") and every option
    of the wrong type, read from the signatures of what will take them
    (`reward_service.options.check_options`); builds nothing."""
    _factory(name)
    try:
        sources = judge_option_sources(name, options)
    except ValueError as e:  # options that choose nothing (an LLM judge with no LLM, ...)
        raise ValueError(f"judge {name!r}: {e}") from None
    check_options(f"judge {name!r}", sources, options)


def _load_builtin() -> None:
    # Imported here so that registering a backend never needs to import the others.
    from reward_service.judges import tool  # noqa: F401
    from reward_service.judges import http, rprm, self_judge, tpgrpo  # noqa: F401  (LLM judges)
    from reward_service.judges import montecarlo, step_classifier  # noqa: F401
