"""The policy a run starts from: a Hugging Face directory, or the tiny local model; then an
optional supervised warm start. Both built artefacts are cached by the settings that made them,
so a second run (or the next test) starts at once.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from cluster.progress import Progress
from core.config import Config
from core.datasets import SYNTHETIC, SYNTHETIC_TASKS, synthetic_task
from core.prompts import PromptFormat
from core.tiny_model import build_tiny_model

_DONE = "thoughtrl_done.json"


def _code_version(*extra) -> str:
    """The source of everything that shapes a built model, and of the `extra` modules (the
    synthetic task that made the warm-start data): a change there invalidates the cache."""
    import core.arith_task, core.prompts, core.tiny_model, learner.sft  # noqa: E401
    modules = dict.fromkeys((core.arith_task, core.prompts, core.tiny_model, learner.sft, *extra))
    return "".join(Path(m.__file__).read_text() for m in modules)


def _key(*parts, code: tuple = ()) -> str:
    text = json.dumps(parts, sort_keys=True, default=str) + _code_version(*code)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached(out: Path, build: Callable[[Path], dict | None], meta: dict) -> Path:
    """Build into a private temp dir and rename when done: an interrupted build is never
    reused, and two runs building the same model at once do not trip over each other."""
    if (out / _DONE).exists():
        return out
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    stats = build(tmp) or {}
    (tmp / _DONE).write_text(json.dumps({**meta, **stats}, indent=2, default=str))
    try:
        tmp.rename(out)
    except OSError:  # another run finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def check_model_dir(path: str | Path) -> Path:
    """`path` if it is a Hugging Face model directory; FileNotFoundError / ValueError saying why not."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} not found")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} is not a Hugging Face model directory (no config.json)")
    try:
        json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p / 'config.json'} is not readable JSON ({e})") from None
    return p


def prepare_model(cfg: Config, train_rows: list[dict], log: Callable[[str], None],
                  progress: Callable[[str, int], Progress] = Progress) -> Path:
    """The model directory the run starts from. `log` gets a line per stage; `progress(label,
    total)` makes the progress bar of each warm-start stage (its per-step lines go to the
    `thoughtrl.warm_start` logger: the run's driver log)."""
    cache = Path(cfg.model.cache_dir or Path(cfg.trainer.output_dir) / "_models")
    if cfg.model.path:
        base = check_model_dir(cfg.model.path)
    else:
        tiny = cfg.model.tiny.model_dump()
        base = _cached(cache / f"tiny-{_key(tiny)}", lambda d: build_tiny_model(d, cfg.model.tiny) and None,
                       {"tiny": tiny})
    ws = cfg.warm_start
    if not ws.enabled or ws.steps == 0:
        return base
    rows = [r for r in train_rows if r.get("solution")]
    if not rows:
        log("warm start skipped: the training data has no solutions")
        return base
    from learner.sft import answer_only, warm_start

    # The warm start trains on exactly the prompts the rollout will send.
    prompt = PromptFormat.for_model(base, **cfg.prompt.model_dump())
    detail = logging.getLogger("thoughtrl.warm_start").info
    # exclude_none: a setting left unset keeps the key of warm starts built before it existed
    spec = {"base": str(base.resolve()), "ws": ws.model_dump(exclude={"answer_only"}, exclude_none=True),
            "data": cfg.data.train, "synthetic": cfg.data.synthetic.model_dump(), "seed": cfg.seed,
            "rows": len(rows), "prompt": cfg.prompt.model_dump()}
    task = SYNTHETIC_TASKS[synthetic_task(cfg.data.synthetic)]
    # The training rows of each stage are made only when the stage is built, not when it is reused.
    def first() -> list[dict]:
        return rows if ws.habit_rate is None else task.habit_rows(cfg.data.synthetic, rows, ws.habit_rate, cfg.seed)
    what = "" if ws.habit_rate is None else f" with the task's habit at rate {ws.habit_rate:.0%}"
    worked = _stage(cache / f"warm-{_key(spec, code=(inspect.getmodule(task.make_split),))}", spec, log, lambda: progress("warm start", ws.steps),
                    f"{ws.steps} supervised steps on {len(rows)} solutions{what}",
                    lambda d, on_step: warm_start(str(base), str(d), first(), steps=ws.steps, lr=ws.lr,
                                                  batch_size=ws.batch_size, seed=cfg.seed, log=detail,
                                                  on_step=on_step, prompt=prompt))
    stage = ws.answer_only
    if stage.steps == 0:
        return worked
    spec = {"from": str(worked.resolve()), "stage": stage.model_dump(), "batch_size": ws.batch_size, "seed": cfg.seed}
    if task.habit_rows is not None and cfg.data.train == SYNTHETIC:  # the task's own habit
        def mixed() -> list[dict]:
            return task.habit_rows(cfg.data.synthetic, rows, stage.rate, cfg.seed)
        label = "habit"
        what = f"{stage.steps} more steps on solutions with the task's habit at rate {stage.rate:.0%}"
    else:
        def mixed() -> list[dict]:
            return answer_only(rows, stage.rate, cfg.seed)
        label = "answer-only"
        what = f"{stage.steps} more steps with {stage.rate:.0%} of solutions cut to the answer"
    return _stage(cache / f"warm-answer-only-{_key(spec)}", spec, log, lambda: progress(label, stage.steps), what,
                  lambda d, on_step: warm_start(str(worked), str(d), mixed(), steps=stage.steps, lr=stage.lr,
                                                batch_size=ws.batch_size, seed=cfg.seed, log=detail,
                                                on_step=on_step, prompt=prompt))


def _stage(out: Path, spec: dict, log: Callable[[str], None], new_bar: Callable[[], Progress], what: str,
           build: Callable[[Path, Callable[[int, float], None]], dict]) -> Path:
    if (out / _DONE).exists():
        log(f"warm start: reusing {out}")
        return out
    log(f"warm start: {what}")
    bar, recent = new_bar(), []

    def on_step(step: int, loss: float) -> None:
        recent[:] = [*recent[-19:], loss]  # the bar shows the mean loss of the last 20 steps
        bar.update(step, f"loss {sum(recent) / len(recent):.3f}")

    try:
        return _cached(out, lambda d: build(d, on_step), spec)
    finally:
        bar.close()
