"""What the PRM stages share (cluster/label.py, cluster/prm_train.py, cluster/prm_lifecycle.py):
their config checks, a reservation of only the roles a stage starts, and the command line.

Each stage's command takes a config and `--set` overrides like `cluster.launch`; everything
that can be checked without Ray is checked first (`cluster.validate`'s checks and those below),
and a mistake is one `error:` message and exit code 2, before anything is started or written.
A stage writes only its own output and refuses to replace it without `--overwrite`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from core.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from cluster.report import RunLog

ROLES = ("rollout", "judge", "learner")


def _label(cfg: Config) -> Iterator[str]:
    from reward_service.judges import known_judges
    from reward_service.judges.registry import check_judge_options

    lc, judges = cfg.label, known_judges()
    if lc.method not in judges:
        yield f"label.method: unknown judge {lc.method!r} (known: {', '.join(judges)})"
        return
    options = dict(lc.options)
    if lc.method == "montecarlo" and not any(options.get(k) for k in ("llm", "model", "endpoint")):
        options["llm"] = object()  # the rollout actors, given when the job starts
    try:
        check_judge_options(lc.method, options)
    except (ValueError, TypeError) as e:
        yield f"label.options: {e}"


def _prm(cfg: Config) -> Iterator[str]:
    from cluster.model_prep import check_model_dir
    from learner.prm import BACKBONES

    if cfg.prm.init is not None:
        try:
            config = json.loads((check_model_dir(cfg.prm.init) / "config.json").read_text())
        except (FileNotFoundError, ValueError) as e:
            yield f"prm.init: {e}"
            return
        if config.get("model_type") not in BACKBONES:
            yield (f"prm.init: {cfg.prm.init} is a {config.get('model_type')!r} model; a PRM's backbone must be "
                   f"one of {', '.join(BACKBONES)} (what vLLM serves as Qwen2ForProcessRewardModel)")
    if cfg.prm.data is not None and not Path(cfg.prm.data).exists():
        yield f"prm.data: {cfg.prm.data} not found"


def _lifecycle(cfg: Config) -> Iterator[str]:
    from reward_service.judges import known_judges

    baseline = cfg.lifecycle.rl_baseline
    if baseline is not None and baseline not in known_judges():
        yield f"lifecycle.rl_baseline: unknown judge {baseline!r} (known: {', '.join(known_judges())})"


CHECKS = {"label": (_label,), "prm_train": (_prm,), "prm_lifecycle": (_label, _prm, _lifecycle)}


def check(cfg: Config, source: str, stage: str) -> None:
    """Every problem of `cfg` for `stage`, as one ConfigError (the run directory may hold the
    other stages' outputs: each stage checks its own output when it starts)."""
    from cluster.validate import CHECKS as RUN_CHECKS

    problems = [p for c in (*RUN_CHECKS, *CHECKS[stage]) for p in c(cfg)]
    if problems:
        raise ConfigError(f"invalid config ({source}):\n" + "\n".join(f"  {p}" for p in problems))


def reserve_roles(cfg: Config, roles: tuple[str, ...]) -> dict:
    """Placement groups for `roles` only: a stage that starts no learner reserves none."""
    from cluster.resources import reserve

    zeroed = {"rollout": ("num_gpus_per_actor", "num_cpus_per_actor"),
              "judge": ("num_gpus_per_actor", "num_cpus_per_actor"),
              "learner": ("num_gpus_per_rank", "num_cpus_per_rank")}
    update = {role: getattr(cfg, role).model_copy(update=dict.fromkeys(zeroed[role], 0.0))
              for role in ROLES if role not in roles}
    return reserve(cfg.model_copy(update=update))


def open_stage(cfg: Config) -> "RunLog":
    """The stage's console and logs in the run directory, Ray joined or started, the cluster
    checked against the config."""
    from cluster.report import RunLog
    from cluster.resources import check_cluster
    from cluster.runtime import connect

    log = RunLog(cfg.run_dir)
    log.info(f"ray: {connect(log_dir=cfg.run_dir / 'logs')}")
    check_cluster(cfg)
    return log


def stage_main(prog: str, doc: str, run: Callable[[Config, bool, ExitStack], dict],
               argv: list[str] | None = None) -> int:
    """The command line of stage `prog` (`cluster.<stage>`): `run(cfg, overwrite, started)`;
    everything registered on `started` is stopped when the stage ends, however it ends."""
    ap = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.splitlines()[0])
    ap.add_argument("config", help="YAML config, e.g. configs/prm.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override any field, e.g. --set label.problems=64 (repeatable)")
    ap.add_argument("--overwrite", action="store_true", help="replace what an earlier run of this stage wrote")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        check(cfg, args.config, prog.rsplit(".", 1)[-1])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cluster.launch import describe_failure
    from cluster.logs import current_log_file
    from cluster.resources import ResourceError
    from cluster.run_dir import RunDirError

    try:
        with ExitStack() as started:
            run(cfg, args.overwrite, started)
    except (FileExistsError, FileNotFoundError, ResourceError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the whole traceback is in the run's driver log
        logging.getLogger("thoughtrl").exception(f"{prog} failed")
        print(f"error: {prog} failed: {describe_failure(e)}\nthe traceback is in {current_log_file()}",
              file=sys.stderr)
        return 1
    return 0
