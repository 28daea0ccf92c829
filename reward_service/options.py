"""Checking keyword options against the signatures of what will take them, before anything is
built: a judge's options (`judges.registry.check_judge_options`), a splitter's
(`steps.check_splitter_options`) and what a Scorer is given (`scorer.check_options`).

    check_options("judge 'tpgrpo'", [TPGRPOJudge.__init__, LLMJudge.__init__, make_llm, ...],
                  {"samples": 4, "model": "/m"})

`sources` are the callables (or `inspect.Signature`s) the options are passed along, in order.
A parameter without a default in any source but the first is filled by the code that passes
the options on, so it is not an option; a `**kwargs` at the end of the chain accepts any other
name. Values are checked against the annotations (int, float, str, bool, None, Literal,
unions, containers by their kind); other annotations accept anything.
"""
from __future__ import annotations

import difflib
import inspect
import types
import typing
from typing import Any


def check_options(owner: str, sources: list, options: dict) -> None:
    """Raise ValueError naming every unknown option (with a "did you mean") and every option of
    the wrong type; `owner` begins the message (e.g. "judge 'tpgrpo'")."""
    accepted: dict[str, Any] = {}
    open_ended = False
    for i, source in enumerate(sources):
        signature = source if isinstance(source, inspect.Signature) else inspect.signature(source)
        hints = {} if isinstance(source, inspect.Signature) else _hints(source)
        open_ended = False
        for p in signature.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                open_ended = True
            elif _is_option(p, passed_on=i > 0):
                hint = hints.get(p.name, p.annotation)
                accepted.setdefault(p.name, Any if hint is p.empty else hint)
    problems = []
    for key, value in options.items():
        if key not in accepted:
            if not open_ended:
                problems.append(f"unknown option {key!r}{did_you_mean(key, accepted)}")
        elif not _fits(value, accepted[key]):
            problems.append(f"option {key!r} must be {_describe(accepted[key])}, "
                            f"got {type(value).__name__} {value!r}")
    if problems:
        raise ValueError(f"{owner}: " + "; ".join(problems))


def did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def without_var_keyword(fn) -> inspect.Signature:
    """`fn`'s signature less its `**kwargs`: for a chain that ends at `fn`."""
    signature = inspect.signature(fn, eval_str=True)  # annotations as types, for the check
    return signature.replace(parameters=[p for p in signature.parameters.values()
                                         if p.kind is not p.VAR_KEYWORD])


def _is_option(p: inspect.Parameter, passed_on: bool) -> bool:
    if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.name in ("self", "cls"):
        return False
    return not (passed_on and p.default is p.empty)  # the passer fills what has no default


def _hints(fn) -> dict:
    try:
        return typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except Exception:  # an annotation that does not resolve here: that parameter goes unchecked
        return {}


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return any(value == c and type(value) is type(c) for c in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kind = origin or hint
    if isinstance(kind, type):
        try:
            return isinstance(value, kind)
        except TypeError:  # a Protocol or generic that cannot be checked at runtime
            return True
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if hint is None or hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))
