"""Command line: `python -m cluster.launch CONFIG.yaml [--set key=value ...]`.

Runs the same locally (starts a Ray of its own) and under `ray job submit` (joins the cluster).
"""
from __future__ import annotations

import argparse
import sys

from core.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.launch", description=__doc__.splitlines()[0])
    ap.add_argument("config", help="YAML config, e.g. configs/local.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override any field, e.g. --set trainer.max_steps=2 (repeatable)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the run's latest checkpoint (trainer.checkpoint_every) if there is one")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cluster.resources import ResourceError
    from cluster.train import train  # heavy imports only once the config is known to be good

    try:
        train(cfg, resume=args.resume)
    except ResourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
