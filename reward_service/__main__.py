"""Command line: grade a jsonl file, evaluate a judge on ProcessBench, Best-of-N, data selection.

    python -m reward_service grade IN.jsonl OUT.jsonl [--workers N --timeout S]
    python -m reward_service processbench FILE.json... --judge tool [--json]
    python -m reward_service processbench FILE.json... --judge rprm --model DIR [-o samples=4]
    python -m reward_service best-of-n IN.jsonl [--judge NAME --aggregate min|last|product|mean]
    python -m reward_service select IN.jsonl OUT.parquet --top-k K [--judge NAME] [--overall]
    python -m reward_service score IN.jsonl OUT.jsonl [--judge NAME --splitter S --algorithm A]

Each subcommand has a `check` (its settings and options, before any work) and a `run`. Every
error of what the user asked is one line, `error: ...`, and exit code 2: a ValueError from a
check, a `CliError` or an `OSError` (a file that cannot be read or written) from the work.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

from reward_service import best_of_n, grade_cli, processbench, score_cli
from reward_service import select as selection
from reward_service.cli_io import ArgumentParser, CliError, exit_on_sigterm


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m reward_service")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (grade_cli, processbench, best_of_n, selection, score_cli):
        command.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        try:
            checked = args.check(args)
        except ValueError as e:  # a setting or option the checks refuse
            raise CliError(str(e)) from None
        return args.run(args, checked)
    except (CliError, OSError) as e:  # what was asked cannot be done: one line, no traceback
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    exit_on_sigterm()  # SIGTERM stops worker processes and removes temporary outputs, as Ctrl-C
    sys.exit(main())
