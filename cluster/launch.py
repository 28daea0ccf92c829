"""Command line: `python -m cluster.launch CONFIG.yaml [--set key=value ...] [--resume | --overwrite]`.

Runs the same locally (starts a Ray of its own) and under `ray job submit` (joins the cluster).
Everything that can be checked without Ray is checked first (cluster/validate.py): a mistake
is one `error:` message and exit code 2, before anything is started or written.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback

from cluster.logs import current_log_file
from core.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.launch", description=__doc__.splitlines()[0])
    ap.add_argument("config", help="YAML config, e.g. configs/local.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override any field, e.g. --set trainer.max_steps=2 (repeatable)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run of the same name from its newest complete checkpoint")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an earlier run of the same name (its metrics, summary and checkpoints)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        from cluster.validate import validate
        validate(cfg, args.config, resume=args.resume, overwrite=args.overwrite)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cluster.resources import ResourceError
    from cluster.run_dir import RunDirError
    from cluster.train import train  # heavy imports only once the config is known to be good

    try:
        train(cfg, resume=args.resume, overwrite=args.overwrite)
    except (ResourceError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # A crash: the error (an actor's arrives inside Ray's exception) once on the console,
        # the whole traceback in the run's driver log.
        logging.getLogger("thoughtrl").exception("the run failed")
        log_file = current_log_file()
        where = f"the traceback is in {log_file}" if log_file else traceback.format_exc().rstrip()
        print(f"error: the run failed: {describe_failure(e)}\n{where}", file=sys.stderr)
        return 1
    return 0


def describe_failure(error: BaseException) -> str:
    """The error and, unless it already says it, the last line of its root cause (which, for an
    actor's failure, is the actor's own exception)."""
    root = error
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    text = f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    cause = lines[-1] if lines else type(root).__name__
    return text if root is error or cause in text else f"{text}\n  caused by: {cause}"


if __name__ == "__main__":
    sys.exit(main())
