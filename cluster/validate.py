"""Every check that can run before Ray starts, so that a mistake costs seconds, not a warm start.

`validate(cfg)` raises one ConfigError that lists every problem, each naming its field: names
looked up in the registries (judge backend and splitter, judge options, algorithm), data files
(loaded for real, as the run will load them), the model directory, where the run writes, and
finally the run directory itself (an earlier run is never overwritten silently).
Reads only; writes nothing.
"""
from __future__ import annotations

import difflib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from cluster.model_prep import check_model_dir
from cluster.run_dir import check_run_dir
from core.config import Config, ConfigError
from core.datasets import SYNTHETIC, load_dataset


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})"


def _judge(cfg: Config) -> Iterator[str]:
    from reward_service.judges import known_judges
    from reward_service.judges.registry import check_judge_options
    from reward_service.steps import SPLITTERS

    j = cfg.judge
    judges, splitters = known_judges(), sorted([*SPLITTERS, "llm"])
    if j.backend not in judges:
        yield f"judge.backend: {_unknown('judge', j.backend, judges)}"
    if j.splitter not in splitters:
        yield f"judge.splitter: {_unknown('splitter', j.splitter, splitters)}"
    yield from _non_finite(j.options, "judge.options")
    if j.backend in judges:
        try:  # names and types against the judge's constructor; builds nothing
            check_judge_options(j.backend, dict(j.options))
        except (ValueError, TypeError) as e:
            yield f"judge.options: {e}"


def _non_finite(value: Any, where: str) -> Iterator[str]:
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{where}: must be a finite number (got {value})"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{where}[{i}]")


def _algorithm(cfg: Config) -> Iterator[str]:
    from reward_service.advantages import known_algorithms

    known = known_algorithms()
    if cfg.algorithm.name not in known:
        yield f"algorithm.name: {_unknown('algorithm', cfg.algorithm.name, known)}"


def _data(cfg: Config) -> Iterator[str]:
    """Load each data file as the run will: a file that is missing, empty, without a problem or
    answer column, or without one usable row is an error here rather than after the warm start."""
    errors: dict[str, str | None] = {}
    for field in ("train", "eval"):
        spec = getattr(cfg.data, field)
        if spec == SYNTHETIC:
            continue
        if spec not in errors:
            errors[spec] = _load_error(spec, cfg)
        if errors[spec]:
            yield f"data.{field}: {errors[spec]}"


def _load_error(spec: str, cfg: Config) -> str | None:
    try:
        load_dataset(spec, cfg.data.fields)
    except (FileNotFoundError, ValueError) as e:
        return str(e)
    except Exception as e:  # whatever a damaged file makes pyarrow or the decoder raise
        return f"cannot read {spec}: {type(e).__name__}: {e}"
    return None


def _model(cfg: Config) -> Iterator[str]:
    if cfg.model.path is not None:
        try:
            check_model_dir(cfg.model.path)
        except (FileNotFoundError, ValueError) as e:
            yield f"model.path: {e}"
            return
    if cfg.prompt.style == "chat" and not has_chat_template(cfg.model.path):
        where = cfg.model.path or "the tiny model built by the run"
        yield f"prompt.style: 'chat' but {where} has no chat template; use 'auto' or 'plain'"


def has_chat_template(model_dir: str | None) -> bool:
    """Whether a model directory's tokenizer carries a chat template, read from its files
    (tokenizer_config.json or chat_template.jinja/.json) without loading the tokenizer."""
    if model_dir is None:
        return False
    d = Path(model_dir)
    if (d / "chat_template.jinja").is_file() or (d / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((d / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _writable(cfg: Config) -> Iterator[str]:
    for field, path in (("trainer.output_dir", cfg.trainer.output_dir), ("model.cache_dir", cfg.model.cache_dir)):
        if path is None:
            continue
        existing = Path(path).absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            yield f"{field}: cannot write under {path} ({existing} is not a writable directory)"


CHECKS: tuple[Callable[[Config], Iterator[str]], ...] = (_judge, _algorithm, _data, _model, _writable)


def validate(cfg: Config, source: str = "config", resume: bool = False, overwrite: bool = False) -> None:
    problems = [p for check in CHECKS for p in check(cfg)]
    if problems:
        raise ConfigError(f"invalid config ({source}):\n" + "\n".join(f"  {p}" for p in problems))
    problem = check_run_dir(cfg, resume, overwrite)
    if problem:
        raise ConfigError(problem)
