"""Output files of the command-line tools: checked before the work, replaced only when complete.

    with atomic_output(args.output, inputs=[args.input]) as tmp:
        write(tmp)          # a path next to OUT; renamed over OUT only if the block succeeds

OUT may not be one of the inputs, its folder must exist and be writable, and an interrupted or
failed run leaves any earlier OUT untouched.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


class CliError(ValueError):
    """A problem with what the user asked for, phrased as one line for `error: ...`."""


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
    out = check_output(output, inputs)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
