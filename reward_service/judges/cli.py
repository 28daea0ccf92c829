"""Command-line options that choose a judge's LLM and set its options, for any subcommand."""
from __future__ import annotations

import argparse

import yaml

from reward_service.cli_io import CliError
from reward_service.judges.registry import check_judge_options


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="local Hugging Face model directory for an LLM judge")
    parser.add_argument("--endpoint", help="OpenAI-compatible URL for an LLM judge "
                        "(e.g. http://host:8000/v1, as served by `vllm serve`)")
    parser.add_argument("--model-name", help="model name at --endpoint (default: its only one)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a judge option, value read as YAML (repeatable): "
                             "-o samples=4 -o max_model_len=4096 -o method=rprm")


def parse_judge_options(args: argparse.Namespace) -> dict:
    """The judge options the command line gives (`-o KEY=VALUE`, `--model`, ...), unchecked."""
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise CliError(f"--option {item!r}: the value is not YAML ({' '.join(str(e).split())})")
    for key in ("model", "endpoint", "model_name"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    return options


def judge_options(args: argparse.Namespace) -> dict:
    """The options of `--judge` from the command line, checked against that judge before
    anything starts (a ValueError naming every unknown or mistyped option)."""
    options = parse_judge_options(args)
    check_judge_options(args.judge, options)
    return options
