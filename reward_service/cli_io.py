"""What the command-line tools share: one-line errors (`CliError`, `ArgumentParser`,
`starting`), the fields of an input row (`text_field`), SIGTERM as a clean exit, and output
files checked before the work and replaced only when complete.

    with atomic_output(args.output, inputs=[args.input]) as tmp:
        write(tmp)          # a path next to OUT; renamed over OUT only if the block succeeds

OUT may not be one of the inputs, its folder must exist and be writable, and an interrupted or
failed run leaves any earlier OUT untouched.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, NoReturn

from core.files import replaced_atomically


class CliError(ValueError):
    """A problem with what the user asked for, phrased as one line for `error: ...`."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage mistakes are one line, `error: ...`, like every other CLI error
    (its subcommand parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


@contextlib.contextmanager
def starting(what: str) -> Iterator[None]:
    """Starting `what` (a judge, its model) from what the user gave: a ValueError or OSError
    (a bad model directory, an option value out of range) is a CliError naming `what`."""
    try:
        yield
    except CliError:
        raise
    except (ValueError, OSError) as e:
        raise CliError(f"{what}: {e}") from None


def text_field(row: dict, key: str, required: bool = True, number: bool = False) -> str | None:
    """`row[key]` as a string (with `number`, a JSON number is one too: a numeric gold answer);
    a missing (or null) optional field is None; anything else raises, naming the field."""
    value = row.get(key)
    if value is None and not required:
        return None
    if number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"needs a string{' or number' if number else ''} field {key!r}")
    return value


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit in the main thread, so `finally` blocks run: worker
    processes are stopped and a temporary output is removed, as on Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def check_output(output: str | Path, inputs: list[str | Path] = ()) -> Path:
    out = Path(output)
    for given in inputs:
        if Path(given).exists() and out.exists() and os.path.samefile(out, given):
            raise CliError(f"output {out} is the input file; write to another path")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise CliError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CliError(f"output folder {folder} is not writable")
    if out.is_dir():
        raise CliError(f"output {out} is a directory")
    return out


@contextlib.contextmanager
def atomic_output(output: str | Path, inputs: list[str | Path] = ()) -> Iterator[Path]:
    with replaced_atomically(check_output(output, inputs)) as tmp:
        yield tmp
