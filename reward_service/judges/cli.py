"""Command-line options that choose a judge's LLM and set its options, for any subcommand."""
from __future__ import annotations

import argparse

import yaml


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="local Hugging Face model directory for an LLM judge")
    parser.add_argument("--endpoint", help="OpenAI-compatible URL for an LLM judge "
                        "(e.g. http://host:8000/v1, as served by `vllm serve`)")
    parser.add_argument("--model-name", help="model name at --endpoint (default: its only one)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="a judge option, value read as YAML (repeatable): "
                             "-o samples=4 -o max_model_len=4096 -o method=rprm")


def judge_options(args: argparse.Namespace) -> dict:
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    if args.model:
        options["model"] = args.model
    if args.endpoint:
        options["endpoint"] = args.endpoint
    if args.model_name:
        options["model_name"] = args.model_name
    return options
